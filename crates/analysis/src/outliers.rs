//! Counting outliers of a spectrum, the three ways of S18 Table 1.

/// Outlier counts on eigenvalues sorted in descending order.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierCounts {
    /// Index of the largest consecutive gap λᵢ − λᵢ₊₁, plus one.
    pub gap: usize,
    /// Index of the largest consecutive ratio λᵢ / λᵢ₊₁ among positive eigenvalues, plus one.
    pub ratio: usize,
    /// Number of eigenvalues above `cutoff`.
    pub heuristic: usize,
    /// The threshold used by the heuristic count (given, or the elbow of the top curve).
    pub cutoff: f64,
}

/// `top`: how many of the largest eigenvalues to look at (S18 looks at ~120).
/// `cutoff`: a fixed heuristic threshold, or None for the elbow of the top curve (searched
/// over the top max(20, 3 × ratio count) eigenvalues).
pub fn count_outliers(desc: &[f64], top: usize, cutoff: Option<f64>) -> OutlierCounts {
    let k = top.min(desc.len());
    let v = &desc[..k];
    let mut gap = 0;
    let mut best = f64::NEG_INFINITY;
    for i in 0..k.saturating_sub(1) {
        let g = v[i] - v[i + 1];
        if g > best {
            best = g;
            gap = i + 1;
        }
    }
    let mut ratio = 0;
    let mut best = f64::NEG_INFINITY;
    for i in 0..k.saturating_sub(1) {
        if v[i + 1] > 0.0 {
            let r = v[i] / v[i + 1];
            if r > best {
                best = r;
                ratio = i + 1;
            }
        }
    }
    // The elbow is looked for in a window three times the ratio count (at least 20): over a
    // much wider window the slowly decaying bulk edge pulls the knee into the bulk.
    let window = (3 * ratio).max(20).min(k);
    let cutoff = cutoff.unwrap_or_else(|| elbow_cutoff(&v[..window]));
    let heuristic = desc.iter().filter(|&&x| x > cutoff).count();
    OutlierCounts { gap, ratio, heuristic, cutoff }
}

/// The elbow of a descending curve: the point farthest below the chord from the first to the
/// last point, on the curve normalized to the unit square (Kneedle, Satopää et al. 2011).
/// Returns the arithmetic mean of the elbow value and the one above it: a threshold halfway
/// between the last outlier and the first bulk value.
pub fn elbow_cutoff(desc: &[f64]) -> f64 {
    let k = desc.len();
    if k < 3 {
        return desc.last().copied().unwrap_or(0.0);
    }
    let (hi, lo) = (desc[0], desc[k - 1]);
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let mut best = (f64::NEG_INFINITY, 0);
    for (i, &l) in desc.iter().enumerate() {
        let x = i as f64 / (k - 1) as f64;
        let y = (l - lo) / span;
        let d = (1.0 - x) - y;
        if d > best.0 {
            best = (d, i);
        }
    }
    // Everything strictly before the elbow index counts as an outlier.
    let i = best.1.max(1);
    0.5 * (desc[i - 1] + desc[i])
}
