//! `marchenko_pastur`: a Marchenko–Pastur law fitted to the bulk of a spectrum.
use crate::marchenko_pastur_density;
use crate::plots::Plot;
use hesslab_artifacts::{Dataset, Eigenvalues, Fit, FitRow};
use hesslab_pipeline::{Port, PortSpec, StageContext, StageError, StageKind, port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `marchenko_pastur`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MarchenkoPasturParams {
    /// Largest eigenvalues left out of the variance fit (the expected outliers).
    pub outliers: usize,
}
impl Default for MarchenkoPasturParams {
    fn default() -> Self {
        MarchenkoPasturParams { outliers: 1 }
    }
}

/// The `marchenko_pastur` stage kind.
pub struct MarchenkoPastur;

/// The Marchenko–Pastur law of ratio α = M/N whose σ² is the mean of the bulk (the spectrum
/// without its `outliers` largest values), with its edges and the count above λ₊. Refused when
/// the bulk's mean is not positive: the law describes a positive semidefinite (Wishart)
/// spectrum, and σ² ≤ 0 fits nothing.
pub fn fit(desc: &[f64], n: usize, outliers: usize) -> Result<FitRow, String> {
    let m = desc.len();
    if n == 0 || m == 0 {
        return Err(format!("Marchenko–Pastur needs eigenvalues and training examples ({m} eigenvalues, {n} examples)"));
    }
    let alpha = m as f64 / n as f64;
    // E[λ] of the continuous part times its mass equals σ²: trace/M = σ² for a Wishart matrix.
    let skip = outliers.min(m);
    let bulk: f64 = desc[skip..].iter().sum::<f64>() / (m - skip).max(1) as f64;
    if bulk.is_nan() || bulk <= 0.0 {
        return Err(format!(
            "the bulk's mean eigenvalue is {bulk:e} ≤ 0 (after {skip} outliers): the Marchenko–Pastur law describes a positive semidefinite (Wishart) spectrum; fit it to a Gauss–Newton or covariance spectrum, not one with a negative bulk"
        ));
    }
    let sigma2 = bulk;
    let (lm, lp) = (sigma2 * (1.0 - alpha.sqrt()).powi(2), sigma2 * (1.0 + alpha.sqrt()).powi(2));
    let above = desc.iter().filter(|&&x| x > lp).count();
    Ok(FitRow { alpha, sigma2, lambda_minus: lm, lambda_plus: lp, above_edge: above as u64 })
}

impl StageKind for MarchenkoPastur {
    type Params = MarchenkoPasturParams;
    const KIND: &'static str = "marchenko_pastur";
    const DOC: &'static str = "Fit a Marchenko–Pastur law (ratio α = P/N from the spectrum and the training set) to the bulk of a spectrum and count eigenvalues above its right edge (S18 App. B); plot histogram and density.";
    const INPUTS: &'static [PortSpec] = &[port::<Eigenvalues>(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Fit>()];
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let desc = ctx.read::<Eigenvalues>(Eigenvalues::NAME)?.values;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let m = desc.len();
        let fit = fit(&desc, ds.train().len(), p.outliers).map_err(StageError::msg)?;
        let FitRow { alpha, sigma2, lambda_plus: lp, above_edge: above, .. } = fit;
        ctx.write::<Fit>(Fit::NAME, &Fit(fit))?;
        // Histogram of the positive bulk (normalized over all M eigenvalues) vs the MP density.
        let hi = lp * 1.3;
        let bins = 60;
        let w = hi / bins as f64;
        let c = crate::plots::bin_counts(desc.iter().copied().filter(|&v| v > 1e-12 * desc[0].abs() && v < hi), 0.0, w, bins);
        let hist: Vec<(f64, f64)> = c.iter().enumerate().map(|(i, k)| ((i as f64 + 0.5) * w, *k as f64 / (m as f64 * w))).collect();
        let curve: Vec<(f64, f64)> =
            (1..400).map(|i| hi * i as f64 / 400.0).map(|x| (x, marchenko_pastur_density(x, alpha, sigma2))).collect();
        Plot::new(&format!("Bulk vs Marchenko–Pastur (α = {alpha:.2}, {above} above λ₊)"), "eigenvalue", "density")
            .points("eigenvalues (histogram)", hist)
            .line("Marchenko–Pastur", curve)
            .vline(lp, "λ₊")
            .write(ctx, "marchenko_pastur")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_negative_bulk_is_refused_and_a_positive_one_fitted() {
        let e = super::fit(&[1.0, -0.5, -0.7, -1.0], 10, 1).unwrap_err();
        assert!(e.contains("≤ 0") && e.contains("positive semidefinite"), "{e}");
        assert!(super::fit(&[], 10, 0).is_err() && super::fit(&[1.0], 0, 0).is_err());
        let f = super::fit(&[4.0, 1.0, 1.0, 1.0], 16, 1).unwrap();
        assert_eq!((f.sigma2, f.alpha, f.above_edge), (1.0, 0.25, 1));
    }
}
