//! The bulk of a spectrum: every eigenvalue past the outliers, from a fixed rank on (counted from
//! the largest), summarized by quantiles and a density histogram so that the bulks of different
//! networks and data sets can be compared — the abstract's conjecture that the bulk follows the
//! architecture while the outliers follow the data.

/// Quantile measures of one bulk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BulkMeasures {
    /// 1 % quantile (the bulk's left edge, below zero after training).
    pub q01: f64,
    /// Median.
    pub median: f64,
    /// 99 % quantile (the bulk's right edge).
    pub q99: f64,
    /// Mean absolute eigenvalue: the bulk's scale.
    pub abs_mean: f64,
}

impl BulkMeasures {
    /// The measures as named quantities (the `spread` artifact's `quantity` names).
    pub fn named(&self) -> [(&'static str, f64); 4] {
        [("bulk_q01", self.q01), ("bulk_median", self.median), ("bulk_q99", self.q99), ("bulk_abs_mean", self.abs_mean)]
    }
}

/// The `q`-quantile (0 ≤ q ≤ 1) of ascending values by linear interpolation between order
/// statistics (numpy's default); NaN for no values.
pub fn quantile(ascending: &[f64], q: f64) -> f64 {
    match ascending.len() {
        0 => f64::NAN,
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let (i, frac) = (pos.floor() as usize, pos.fract());
            if i + 1 < n { ascending[i] + frac * (ascending[i + 1] - ascending[i]) } else { ascending[n - 1] }
        }
    }
}

/// The bulk of a full spectrum given in descending order: the eigenvalues from `from_rank` on,
/// ascending. Empty when the spectrum has no more than `from_rank` eigenvalues.
pub fn bulk_of(descending: &[f64], from_rank: usize) -> Vec<f64> {
    let mut bulk: Vec<f64> = descending.iter().skip(from_rank).copied().collect();
    bulk.sort_by(f64::total_cmp);
    bulk
}

/// Quantile measures of an ascending bulk; `None` when it is empty.
pub fn measures(ascending: &[f64]) -> Option<BulkMeasures> {
    if ascending.is_empty() {
        return None;
    }
    Some(BulkMeasures {
        q01: quantile(ascending, 0.01),
        median: quantile(ascending, 0.5),
        q99: quantile(ascending, 0.99),
        abs_mean: ascending.iter().map(|v| v.abs()).sum::<f64>() / ascending.len() as f64,
    })
}

/// A density histogram on `bins` equal bins over [lo, hi]: (bin centre, the fraction of all
/// `values` in the bin divided by the bin width). Values outside [lo, hi] count in the
/// denominator only, so curves over different ranges stay comparable.
pub fn density_histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    if values.is_empty() || bins == 0 || hi <= lo {
        return Vec::new();
    }
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values.iter().filter(|v| (lo..=hi).contains(*v)) {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let total = values.len() as f64;
    counts.iter().enumerate().map(|(i, &c)| (lo + (i as f64 + 0.5) * width, c as f64 / total / width)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_order_statistics_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        // numpy.quantile([1,2,3,4,5], 0.01) = 1.04, 0.99 → 4.96
        assert!((quantile(&v, 0.01) - 1.04).abs() < 1e-12);
        assert!((quantile(&v, 0.99) - 4.96).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_bulk_starts_at_the_given_rank_from_the_largest() {
        let descending = [9.0, 7.0, 0.3, 0.1, -0.2, 0.0];
        assert_eq!(bulk_of(&descending, 2), vec![-0.2, 0.0, 0.1, 0.3]);
        assert!(bulk_of(&descending, 6).is_empty());
        let m = measures(&bulk_of(&descending, 2)).unwrap();
        assert_eq!(m.median, 0.05);
        assert!((m.abs_mean - 0.15).abs() < 1e-15);
        assert!(measures(&[]).is_none());
    }

    #[test]
    fn the_density_histogram_integrates_to_the_share_inside_its_range() {
        let values: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        let h = density_histogram(&values, 0.0, 0.5, 10);
        let integral: f64 = h.iter().map(|p| p.1 * 0.05).sum();
        // 0.000 … 0.500 inclusive: 501 of 1 000 values.
        assert!((integral - 0.501).abs() < 1e-12, "{integral}");
        assert!((h[0].0 - 0.025).abs() < 1e-15);
        assert!(density_histogram(&values, 1.0, 1.0, 10).is_empty());
    }
}
