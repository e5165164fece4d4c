//! Statistics of spectra: S18 Table 1 summaries, subspace overlaps, the Marchenko–Pastur law.
use crate::outliers::count_outliers;
use faer::Mat;
use hesslab_artifacts::SummaryRow;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `spectrum_summary`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SummaryParams {
    /// |λ| ≤ zero_tol · max|λ| counts as zero.
    pub zero_tol: f64,
    /// How many of the largest eigenvalues the gap/ratio/elbow counters look at.
    pub top: usize,
    /// Fixed heuristic threshold (S18 used 0.002–0.015); null = elbow of the top curve.
    pub cutoff: Option<f64>,
    /// Also count the eigenvalues above this fixed threshold (S18 Table 1 used 0.002–0.015),
    /// reported beside the elbow count as `outliers_fixed`; null = skip.
    pub fixed_cutoff: Option<f64>,
    /// Write PNG and SVG plots next to the table.
    pub plots: bool,
}

impl Default for SummaryParams {
    fn default() -> Self {
        SummaryParams { zero_tol: 1e-6, top: 120, cutoff: None, fixed_cutoff: None, plots: true }
    }
}

/// The statistics of a spectrum given in descending order, for an operator of side `dim`.
pub fn summarize(desc: &[f64], dim: usize, p: &SummaryParams) -> SummaryRow {
    let n = desc.len();
    let maxabs = desc.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let tol = p.zero_tol * maxabs;
    let near_zero = desc.iter().filter(|x| x.abs() <= tol).count();
    let positive = desc.iter().filter(|&&x| x > tol).count();
    let negative = desc.iter().filter(|&&x| x < -tol).count();
    let mean = desc.iter().sum::<f64>() / n.max(1) as f64;
    let std = (desc.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
    let oc = count_outliers(desc, p.top, p.cutoff);
    SummaryRow {
        num_eigenvalues: n as u64,
        dim: dim as u64,
        positive: positive as u64,
        negative: negative as u64,
        near_zero: near_zero as u64,
        zero_tol: tol,
        mean,
        std,
        min: desc.last().copied().unwrap_or(f64::NAN),
        max: desc.first().copied().unwrap_or(f64::NAN),
        fraction_negative: negative as f64 / n.max(1) as f64,
        sum: desc.iter().sum(),
        outliers_gap: oc.gap as u64,
        outliers_ratio: oc.ratio as u64,
        outliers_heuristic: oc.heuristic as u64,
        heuristic_cutoff: oc.cutoff,
        outliers_fixed: p.fixed_cutoff.map(|c| desc.iter().filter(|&&x| x > c).count() as u64),
        fixed_cutoff: p.fixed_cutoff,
    }
}

/// ‖UᵀV‖²_F / k: 1 when the two k-dimensional subspaces coincide, k/n for random ones.
pub fn subspace_overlap(u: &Mat<f64>, v: &Mat<f64>) -> f64 {
    let m = u.transpose() * v;
    let k = u.ncols().min(v.ncols()).max(1);
    (0..m.ncols()).map(|j| (0..m.nrows()).map(|i| m[(i, j)].powi(2)).sum::<f64>()).sum::<f64>() / k as f64
}

/// Marchenko–Pastur density of the eigenvalues of (1/N) XᵀX, X N×M with i.i.d. entries of
/// variance σ², ratio α = M/N (continuous part; mass 1 − 1/α sits at 0 when α > 1).
pub fn marchenko_pastur_density(x: f64, alpha: f64, sigma2: f64) -> f64 {
    let (lm, lp) = (sigma2 * (1.0 - alpha.sqrt()).powi(2), sigma2 * (1.0 + alpha.sqrt()).powi(2));
    if x <= lm || x >= lp || x <= 0.0 {
        return 0.0;
    }
    ((lp - x) * (x - lm)).sqrt() / (2.0 * std::f64::consts::PI * sigma2 * alpha * x)
}

#[cfg(test)]
mod tests {
    #[test]
    fn marchenko_pastur_density_integrates_to_the_continuous_mass() {
        for alpha in [0.2f64, 0.5, 2.0] {
            let steps = 200_000;
            let hi = (1.0 + alpha.sqrt()).powi(2);
            let s: f64 = (0..steps)
                .map(|i| super::marchenko_pastur_density((i as f64 + 0.5) * hi / steps as f64, alpha, 1.0) * hi / steps as f64)
                .sum();
            let mass = if alpha > 1.0 { 1.0 / alpha } else { 1.0 };
            assert!((s - mass).abs() < 2e-3, "alpha {alpha}: {s} vs {mass}");
        }
    }
}
