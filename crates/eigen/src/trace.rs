//! Hutchinson and Hutch++ (Meyer, Musco, Musco, Woodruff 2021) trace estimates.
use crate::{EigenError, Result};
use faer::Mat;
use hesslab_data::rng::Rng;
use hesslab_linop::LinearOperator;

/// Parameters of a trace estimator.
#[derive(Debug, Clone)]
pub struct TraceParams {
    /// Operator-vector products to spend (Hutch++ splits them: a third sketches, the rest probe).
    pub probes: usize,
    /// Seed of the Rademacher probes.
    pub seed: u64,
}

impl Default for TraceParams {
    fn default() -> Self {
        TraceParams { probes: 99, seed: 0 }
    }
}

/// A trace estimate and what it cost (the estimators' `Info`).
#[derive(Debug, Clone)]
pub struct TraceEstimate {
    /// hutchinson, hutch++ or exact.
    pub estimator: &'static str,
    /// The estimate.
    pub value: f64,
    /// Its standard error.
    pub stderr: f64,
    /// Operator-vector products used.
    pub probes: usize,
}

fn rademacher(n: usize, k: usize, rng: &mut Rng) -> Mat<f64> {
    let mut m = Mat::<f64>::zeros(n, k);
    for j in 0..k {
        for i in 0..n {
            m[(i, j)] = rng.sign();
        }
    }
    m
}

fn mean_stderr(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    if x.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

fn check(op: &dyn LinearOperator, p: &TraceParams, least: usize, name: &str) -> Result<()> {
    if p.probes < least {
        return Err(EigenError::Invalid(format!("{name} needs at least {least} probes, got {}", p.probes)));
    }
    if op.dim() == 0 {
        return Err(EigenError::Invalid(format!("{name}: the operator is empty")));
    }
    Ok(())
}

/// Hutchinson's estimator: tr(A) ≈ the mean of zᵀAz over `probes` Rademacher vectors z.
pub struct Hutchinson;

impl Hutchinson {
    /// The estimate and its standard error (NaN with one probe); at least one probe.
    pub fn estimate(op: &dyn LinearOperator, p: &TraceParams) -> Result<TraceEstimate> {
        check(op, p, 1, "Hutchinson")?;
        Ok(hutchinson(op, p.probes, p.seed))
    }
}

/// Hutch++ (Meyer et al. 2021): the top subspace sketched by a third of the products and traced
/// exactly, Hutchinson on the deflated remainder.
pub struct HutchPlusPlus;

impl HutchPlusPlus {
    /// The estimate and the standard error of its Hutchinson part; at least three probes.
    pub fn estimate(op: &dyn LinearOperator, p: &TraceParams) -> Result<TraceEstimate> {
        check(op, p, 3, "Hutch++")?;
        Ok(hutch_plus_plus(op, p.probes, p.seed))
    }
}

fn hutchinson(op: &dyn LinearOperator, probes: usize, seed: u64) -> TraceEstimate {
    let n = op.dim();
    let mut rng = Rng::new(seed);
    let z = rademacher(n, probes, &mut rng);
    let mut az = Mat::<f64>::zeros(n, probes);
    op.apply_block(z.as_ref(), az.as_mut());
    let samples: Vec<f64> = (0..probes).map(|j| (0..n).map(|i| z[(i, j)] * az[(i, j)]).sum()).collect();
    let (value, stderr) = mean_stderr(&samples);
    TraceEstimate { estimator: "hutchinson", value, stderr, probes }
}

fn hutch_plus_plus(op: &dyn LinearOperator, probes: usize, seed: u64) -> TraceEstimate {
    let n = op.dim();
    let s = (probes / 3).max(1).min(n);
    let g = probes.saturating_sub(2 * s).max(2);
    let mut rng = Rng::new(seed);
    let sk = rademacher(n, s, &mut rng);
    let mut as_ = Mat::<f64>::zeros(n, s);
    op.apply_block(sk.as_ref(), as_.as_mut());
    let q = as_.qr().compute_thin_Q();
    let mut aq = Mat::<f64>::zeros(n, q.ncols());
    op.apply_block(q.as_ref(), aq.as_mut());
    let top: f64 = (0..q.ncols()).map(|j| (0..n).map(|i| q[(i, j)] * aq[(i, j)]).sum::<f64>()).sum();
    let mut z = rademacher(n, g, &mut rng);
    // z ← (I − QQᵀ) z
    let qtz = q.transpose() * &z;
    z -= &q * &qtz;
    let mut az = Mat::<f64>::zeros(n, g);
    op.apply_block(z.as_ref(), az.as_mut());
    let samples: Vec<f64> = (0..g).map(|j| (0..n).map(|i| z[(i, j)] * az[(i, j)]).sum()).collect();
    let (rest, stderr) = mean_stderr(&samples);
    TraceEstimate { estimator: "hutch++", value: top + rest, stderr, probes: 2 * s + g }
}
