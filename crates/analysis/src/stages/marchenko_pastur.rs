//! `marchenko_pastur`: a Marchenko–Pastur law fitted to the bulk of a spectrum.
use crate::marchenko_pastur_density;
use crate::plots::{Plot, YScale};
use hesslab_artifacts::{Dataset, Eigenvalues, Fit, FitRow};
use hesslab_pipeline::{Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::WriteFigure;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `marchenko_pastur`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MarchenkoPasturParams {
    /// Largest eigenvalues left out of the fit (the expected outliers).
    pub outliers: usize,
    /// Also fit the ratio α (otherwise P/N): for a spectrum whose effective sample count is
    /// not the training set's.
    pub fit_ratio: bool,
}
impl Default for MarchenkoPasturParams {
    fn default() -> Self {
        MarchenkoPasturParams { outliers: 1, fit_ratio: false }
    }
}

/// The `marchenko_pastur` stage kind.
pub struct MarchenkoPastur;

/// The Marchenko–Pastur CDF of ratio α at σ² = 1 (a point mass 1 − 1/α at 0 when α > 1, then
/// the continuous part), tabulated in θ where x = λ₋ + (λ₊ − λ₋)(1 − cos θ)/2, which makes the
/// square-root edges smooth; F_σ²(x) = F_1(x/σ²).
struct MpCdf {
    lm: f64,
    lp: f64,
    atom: f64,
    table: Vec<f64>,
}

impl MpCdf {
    const STEPS: usize = 4096;
    fn new(alpha: f64) -> MpCdf {
        let (lm, lp) = ((1.0 - alpha.sqrt()).powi(2), (1.0 + alpha.sqrt()).powi(2));
        let half = (lp - lm) / 2.0;
        let atom = if alpha > 1.0 { 1.0 - 1.0 / alpha } else { 0.0 };
        // ρ(x) dx = half² sin²θ / (2π α x) dθ; Simpson per step from its midpoint.
        let f = |t: f64| {
            let x = lm + half * (1.0 - t.cos());
            if x <= 0.0 {
                half / (std::f64::consts::PI * alpha)
            } else {
                half * half * t.sin().powi(2) / (2.0 * std::f64::consts::PI * alpha * x)
            }
        };
        let h = std::f64::consts::PI / Self::STEPS as f64;
        let mut table = Vec::with_capacity(Self::STEPS + 1);
        let mut acc = atom;
        table.push(acc);
        for i in 0..Self::STEPS {
            let (a, b) = (i as f64 * h, (i + 1) as f64 * h);
            acc += h / 6.0 * (f(a) + 4.0 * f((a + b) / 2.0) + f(b));
            table.push(acc);
        }
        // The continuous part has mass min(1, 1/α): renormalize the quadrature's last bits.
        let total = *table.last().expect("steps");
        table.iter_mut().for_each(|v| *v = atom + (*v - atom) * (1.0 - atom) / (total - atom).max(f64::MIN_POSITIVE));
        MpCdf { lm, lp, atom, table }
    }
    /// F(x) at σ² = 1.
    fn at(&self, x: f64) -> f64 {
        if x < 0.0 {
            return 0.0;
        }
        if x <= self.lm {
            return self.atom;
        }
        if x >= self.lp {
            return 1.0;
        }
        let t = (1.0 - 2.0 * (x - self.lm) / (self.lp - self.lm)).clamp(-1.0, 1.0).acos();
        let pos = t / std::f64::consts::PI * Self::STEPS as f64;
        let i = (pos.floor() as usize).min(Self::STEPS - 1);
        let frac = pos - i as f64;
        self.table[i] * (1.0 - frac) + self.table[i + 1] * frac
    }
}

/// sup |F_n − F| of the sorted (ascending) values `bulk` against `cdf(x)`.
fn ks_distance(bulk: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let n = bulk.len() as f64;
    let mut d = 0.0f64;
    let mut i = 0;
    while i < bulk.len() {
        // Ties (the zero eigenvalues of a rank-deficient spectrum) step F_n at once.
        let mut j = i;
        while j + 1 < bulk.len() && bulk[j + 1] == bulk[i] {
            j += 1;
        }
        // F's only jump is its zero mass: against F_n's left limit goes F's left limit.
        let (f, f_left) = (cdf(bulk[i]), if bulk[i] == 0.0 { cdf(-f64::MIN_POSITIVE) } else { cdf(bulk[i]) });
        d = d.max((f_left - i as f64 / n).abs()).max(((j + 1) as f64 / n - f).abs());
        i = j + 1;
    }
    d
}

/// The σ² (over a log grid then golden-section refinement) minimizing the KS distance of the
/// law of ratio α to `bulk`, starting around `guess`.
fn best_sigma2(bulk: &[f64], alpha: f64, guess: f64) -> (f64, f64) {
    let cdf = MpCdf::new(alpha);
    let ks = |log_s: f64| {
        let s = log_s.exp();
        ks_distance(bulk, |x| cdf.at(x / s))
    };
    let (lo, hi) = ((guess / 100.0).ln(), (guess * 100.0).ln());
    let grid = 200;
    let step = (hi - lo) / grid as f64;
    let best = (0..=grid).map(|i| lo + i as f64 * step).map(|l| (l, ks(l))).fold((lo, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
    let (mut a, mut b) = (best.0 - step, best.0 + step);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if ks(c) < ks(d) { b = d } else { a = c }
    }
    let l = (a + b) / 2.0;
    let (l, d) = if ks(l) <= best.1 { (l, ks(l)) } else { best };
    (l.exp(), d)
}

/// The Marchenko–Pastur law fitted to the bulk (the spectrum without its `outliers` largest
/// values): σ² (and with `fit_ratio` the ratio α, else M/N) minimizing the Kolmogorov–Smirnov
/// distance between the law and the bulk's empirical distribution, with that distance, a
/// yardstick critical value, the moment estimate (the bulk's mean), the edges and the count
/// above λ₊. Refused when the bulk's mean is not positive: the law describes a positive
/// semidefinite (Wishart) spectrum.
pub fn fit(desc: &[f64], n: usize, outliers: usize, fit_ratio: bool) -> Result<FitRow, String> {
    let m = desc.len();
    if n == 0 || m == 0 {
        return Err(format!("Marchenko–Pastur needs eigenvalues and training examples ({m} eigenvalues, {n} examples)"));
    }
    let skip = outliers.min(m);
    let mean: f64 = desc[skip..].iter().sum::<f64>() / (m - skip).max(1) as f64;
    if mean.is_nan() || mean <= 0.0 || skip == m {
        return Err(format!(
            "the bulk's mean eigenvalue is {mean:e} ≤ 0 (after {skip} outliers): the Marchenko–Pastur law describes a positive semidefinite (Wishart) spectrum; fit it to a Gauss–Newton or covariance spectrum, not one with a negative bulk"
        ));
    }
    // Eigenvalues within rounding of zero are the law's zero mass, not a tiny negative tail.
    let top = desc.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
    let mut bulk: Vec<f64> = desc[skip..].iter().map(|&v| if v.abs() <= 1e-12 * top { 0.0 } else { v }).collect();
    bulk.sort_by(f64::total_cmp);
    let alpha0 = m as f64 / n as f64;
    let (alpha, sigma2, d) = if fit_ratio {
        (0..=40)
            .map(|i| alpha0 * 4f64.powf(i as f64 / 20.0 - 1.0))
            .map(|a| {
                let (s, d) = best_sigma2(&bulk, a, mean);
                (a, s, d)
            })
            .fold((alpha0, mean, f64::INFINITY), |b, c| if c.2 < b.2 { c } else { b })
    } else {
        let (s, d) = best_sigma2(&bulk, alpha0, mean);
        (alpha0, s, d)
    };
    let (lm, lp) = (sigma2 * (1.0 - alpha.sqrt()).powi(2), sigma2 * (1.0 + alpha.sqrt()).powi(2));
    let above = desc.iter().filter(|&&x| x > lp).count();
    Ok(FitRow {
        alpha,
        sigma2,
        lambda_minus: lm,
        lambda_plus: lp,
        above_edge: above as u64,
        sigma2_mean: Some(mean),
        ks_distance: Some(d),
        ks_critical: Some(1.358 / (bulk.len() as f64).sqrt()),
    })
}

impl StageKind for MarchenkoPastur {
    type Params = MarchenkoPasturParams;
    const KIND: &'static str = "marchenko_pastur";
    /// 3: σ² fitted by least Kolmogorov–Smirnov distance (was the bulk mean), with the distance.
    const VERSION: u32 = 3;
    const DOC: &'static str = "Fit a Marchenko–Pastur law to the bulk of a spectrum — σ² (and with fit_ratio the ratio α, else P/N) by least Kolmogorov–Smirnov distance, reported with that distance, a yardstick critical value and the moment estimate — and count eigenvalues above its right edge (S18 App. B); plot histogram and density.";
    const INPUTS: &'static [PortSpec] = &[port::<Eigenvalues>(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Fit>()];
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let desc = ctx.read::<Eigenvalues>(Eigenvalues::NAME)?.values;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let fit_row = fit(&desc, ds.train().len(), p.outliers, p.fit_ratio).map_err(StageError::msg)?;
        ctx.write::<Fit>(Fit::NAME, &Fit(fit_row.clone()))?;
        mp_figure(&desc, &fit_row).write(ctx, "marchenko_pastur")?;
        Ok(())
    }
}

/// The figure: the histogram of the positive spectrum (normalized over all M eigenvalues) as
/// bars, empty bins empty, against the fitted MP density; the axis reaches the largest
/// eigenvalue when it is within 3 λ₊ (else the title says where it is), and the eigenvalues
/// above λ₊ are marked.
pub fn mp_figure(desc: &[f64], fit: &FitRow) -> Plot {
    let &FitRow { alpha, sigma2, lambda_plus: lp, above_edge: above, .. } = fit;
    let m = desc.len();
    let top = desc.first().copied().unwrap_or(0.0);
    let hi = if top <= 3.0 * lp { (top * 1.05).max(lp * 1.3) } else { lp * 1.3 };
    // Bins sized for the bulk (Rice's 2·M^⅓ over [0, λ₊]), continued to the axis's end.
    let per_bulk = (2.0 * (m as f64).cbrt()).ceil().clamp(8.0, 60.0);
    let bins = ((hi / lp.max(f64::MIN_POSITIVE)) * per_bulk).ceil().clamp(8.0, 200.0) as usize;
    let w = hi / bins as f64;
    let c = crate::plots::bin_counts(desc.iter().copied().filter(|&v| v > 1e-12 * top.abs() && v < hi), 0.0, w, bins);
    let hist: Vec<(f64, f64)> = c.iter().enumerate().map(|(i, k)| ((i as f64 + 0.5) * w, *k as f64 / (m as f64 * w))).collect();
    let curve: Vec<(f64, f64)> = (1..400).map(|i| hi * i as f64 / 400.0).map(|x| (x, marchenko_pastur_density(x, alpha, sigma2))).collect();
    // Marked at the bars' height, beside them.
    let mark = hist.iter().fold(0.0f64, |a, b| a.max(b.1)) * 0.05;
    let beyond: Vec<(f64, f64)> = desc.iter().filter(|&&v| v > lp && v < hi).map(|&v| (v, mark)).collect();
    let off = if top >= hi { format!("; the largest, {top:.3}, lies beyond the axis") } else { String::new() };
    let ks = fit.ks_distance.map(|d| format!(", KS {d:.3}")).unwrap_or_default();
    let mut plot = Plot::new(&format!("Bulk vs Marchenko–Pastur (α = {alpha:.2}{ks}, {above} above λ₊{off})"), "eigenvalue", "density")
        .bars(&format!("eigenvalues ({bins} bins)"), hist)
        .line("Marchenko–Pastur", curve)
        .vline(lp, "λ₊")
        .y_scale(YScale::Linear);
    if !beyond.is_empty() {
        plot = plot.points("eigenvalues above λ₊", beyond);
    }
    plot
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_negative_bulk_is_refused_and_a_positive_one_fitted() {
        let e = super::fit(&[1.0, -0.5, -0.7, -1.0], 10, 1, false).unwrap_err();
        assert!(e.contains("≤ 0") && e.contains("positive semidefinite"), "{e}");
        assert!(super::fit(&[], 10, 0, false).is_err() && super::fit(&[1.0], 0, 0, false).is_err());
        let f = super::fit(&[4.0, 1.0, 1.0, 1.0], 16, 1, false).unwrap();
        assert_eq!((f.sigma2_mean, f.alpha, f.above_edge), (Some(1.0), 0.25, 1));
    }

    /// Seeded Gaussian N × M data: the eigenvalues of XᵀX/N (a Wishart spectrum of ratio M/N and
    /// variance σ²), largest first.
    fn wishart(n: usize, m: usize, sigma2: f64, seed: u64) -> Vec<f64> {
        let mut state = seed;
        let mut uniform = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let x = faer::Mat::<f64>::from_fn(n, m, |_, _| {
            (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos() * sigma2.sqrt()
        });
        let w = x.transpose() * &x * faer::Scale(1.0 / n as f64);
        let mut ev = w.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
        ev.reverse();
        ev
    }

    /// The fit recovers σ² of Wishart spectra at α < 1 and α > 1 (with its zero mass), within
    /// the KS yardstick; a spectrum that is not Marchenko–Pastur (uniform on [0, 2]) is far
    /// outside it; with `fit_ratio` the ratio of a spectrum is found from the spectrum alone.
    #[test]
    fn the_fit_recovers_wishart_spectra_and_the_ks_distance_tells_a_non_mp_bulk() {
        for (n, m, seed) in [(800, 200, 1), (150, 300, 2), (400, 400, 3)] {
            let ev = wishart(n, m, 2.0, seed);
            let f = super::fit(&ev, n, 0, false).unwrap();
            let (d, crit) = (f.ks_distance.unwrap(), f.ks_critical.unwrap());
            assert!((f.sigma2 / 2.0 - 1.0).abs() < 0.03, "N = {n}, M = {m}: σ² = {} (moment estimate {:?})", f.sigma2, f.sigma2_mean);
            assert!(d < crit, "N = {n}, M = {m}: KS {d} ≥ {crit}");
        }
        let uniform: Vec<f64> = (0..400).map(|i| 2.0 * (399 - i) as f64 / 399.0).collect();
        let f = super::fit(&uniform, 1600, 0, false).unwrap();
        assert!(f.ks_distance.unwrap() > f.ks_critical.unwrap(), "{f:?}");
        // The ratio from the spectrum: 300 eigenvalues of 1200 samples, told 300 "samples".
        let ev = wishart(1200, 300, 1.0, 4);
        let free = super::fit(&ev, 300, 0, true).unwrap();
        let fixed = super::fit(&ev, 300, 0, false).unwrap();
        assert!((free.alpha / 0.25 - 1.0).abs() < 0.1, "fitted α = {}", free.alpha);
        assert!(free.ks_distance.unwrap() < fixed.ks_distance.unwrap() / 3.0, "{free:?} vs {fixed:?}");
    }

    /// #44: bars (empty bins draw nothing), not dots along zero, and the eigenvalue the title
    /// counts above λ₊ on the axis when it is near, said when it is not.
    #[test]
    fn the_figure_is_a_bar_histogram_that_shows_the_outlier_above_the_edge() {
        let mut desc: Vec<f64> = (0..120).map(|i| 0.1 + 0.3 * (i as f64 / 119.0)).collect();
        desc.push(0.9);
        desc.sort_by(|a, b| b.total_cmp(a));
        let fit = super::fit(&desc, 600, 1, false).unwrap();
        assert_eq!(fit.above_edge, 1);
        let p = super::mp_figure(&desc, &fit);
        assert_eq!(p.series[0].mark, crate::plots::Mark::Bars);
        let (_, hi) = p.series[1].points.iter().fold((0.0, 0.0f64), |a, q| (0.0, a.1.max(q.0)));
        assert!(hi >= 0.9 && !p.title.contains("beyond the axis"), "x reaches {hi}: {}", p.title);
        assert_eq!(p.series[2].points.iter().map(|q| q.0).collect::<Vec<_>>(), [0.9], "the outlier is marked");
        desc[0] = 30.0;
        let fit = super::fit(&desc, 600, 1, false).unwrap();
        let p = super::mp_figure(&desc, &fit);
        assert!(p.title.contains("the largest, 30.000, lies beyond the axis"), "{}", p.title);
    }
}
