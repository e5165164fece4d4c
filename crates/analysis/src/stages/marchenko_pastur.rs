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
    /// 2: the histogram is bars over the range that holds the largest eigenvalue.
    const VERSION: u32 = 2;
    const DOC: &'static str = "Fit a Marchenko–Pastur law (ratio α = P/N from the spectrum and the training set) to the bulk of a spectrum and count eigenvalues above its right edge (S18 App. B); plot histogram and density.";
    const INPUTS: &'static [PortSpec] = &[port::<Eigenvalues>(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Fit>()];
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let desc = ctx.read::<Eigenvalues>(Eigenvalues::NAME)?.values;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let fit_row = fit(&desc, ds.train().len(), p.outliers).map_err(StageError::msg)?;
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
    let mut plot = Plot::new(&format!("Bulk vs Marchenko–Pastur (α = {alpha:.2}, {above} above λ₊{off})"), "eigenvalue", "density")
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
        let e = super::fit(&[1.0, -0.5, -0.7, -1.0], 10, 1).unwrap_err();
        assert!(e.contains("≤ 0") && e.contains("positive semidefinite"), "{e}");
        assert!(super::fit(&[], 10, 0).is_err() && super::fit(&[1.0], 0, 0).is_err());
        let f = super::fit(&[4.0, 1.0, 1.0, 1.0], 16, 1).unwrap();
        assert_eq!((f.sigma2, f.alpha, f.above_edge), (1.0, 0.25, 1));
    }

    /// #44: bars (empty bins draw nothing), not dots along zero, and the eigenvalue the title
    /// counts above λ₊ on the axis when it is near, said when it is not.
    #[test]
    fn the_figure_is_a_bar_histogram_that_shows_the_outlier_above_the_edge() {
        let mut desc: Vec<f64> = (0..120).map(|i| 0.1 + 0.3 * (i as f64 / 119.0)).collect();
        desc.push(0.9);
        desc.sort_by(|a, b| b.total_cmp(a));
        let fit = super::fit(&desc, 600, 1).unwrap();
        assert_eq!(fit.above_edge, 1);
        let p = super::mp_figure(&desc, &fit);
        assert_eq!(p.series[0].mark, crate::plots::Mark::Bars);
        let (_, hi) = p.series[1].points.iter().fold((0.0, 0.0f64), |a, q| (0.0, a.1.max(q.0)));
        assert!(hi >= 0.9 && !p.title.contains("beyond the axis"), "x reaches {hi}: {}", p.title);
        assert_eq!(p.series[2].points.iter().map(|q| q.0).collect::<Vec<_>>(), [0.9], "the outlier is marked");
        desc[0] = 30.0;
        let fit = super::fit(&desc, 600, 1).unwrap();
        let p = super::mp_figure(&desc, &fit);
        assert!(p.title.contains("the largest, 30.000, lies beyond the axis"), "{}", p.title);
    }
}
