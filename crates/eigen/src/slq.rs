//! Stochastic Lanczos quadrature (Golub & Meurant; Ghorbani et al. 2019): a spectral density
//! from m Lanczos steps on each of n random probes, with full reorthogonalization.
use crate::{EigenError, Result, norm, reorthogonalize};
use faer::Mat;
use hesslab_data::rng::Rng;
use hesslab_linop::LinearOperator;
use hesslab_progress::Progress;

/// Parameters of stochastic Lanczos quadrature.
#[derive(Debug, Clone)]
pub struct SlqParams {
    /// Lanczos steps per probe.
    pub steps: usize,
    /// Random probe vectors.
    pub probes: usize,
    /// Seed of the probes.
    pub seed: u64,
}

impl Default for SlqParams {
    /// The `spectral_density` stage's defaults: 10 probes of 80 steps.
    fn default() -> Self {
        SlqParams { steps: 80, probes: 10, seed: 0 }
    }
}

/// Quadrature nodes and weights of every probe, and what they cost (SLQ's `Info`).
#[derive(Debug, Clone, Default)]
pub struct SlqResult {
    /// Per probe: Ritz values (nodes) and weights (squared first components), weights sum to 1.
    pub nodes: Vec<Vec<(f64, f64)>>,
    /// Side of the operator.
    pub dim: usize,
    /// Operator applications used.
    pub applications: u64,
}

/// Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani et al. 2019).
pub struct StochasticLanczosQuadrature;

impl StochasticLanczosQuadrature {
    /// Run `p.probes` Lanczos processes of `p.steps` steps from Rademacher probes.
    pub fn run(op: &dyn LinearOperator, p: &SlqParams, progress: &Progress) -> Result<SlqResult> {
        let n = op.dim();
        if p.steps == 0 || p.probes == 0 {
            return Err(EigenError::Invalid("steps and probes must be ≥ 1".into()));
        }
        let m = p.steps.min(n);
        let apps0 = op.applications();
        let mut rng = Rng::new(p.seed);
        let mut out = Vec::new();
        let bar = progress.bar((p.probes * m) as u64, "SLQ Lanczos steps");
        // O(n·m) memory: the basis of one probe at a time.
        let mut v = Mat::<f64>::zeros(n, m);
        for _ in 0..p.probes {
            let mut q: Vec<f64> = (0..n).map(|_| rng.sign()).collect();
            let s = norm(&q);
            q.iter_mut().for_each(|x| *x /= s);
            let mut alpha = Vec::with_capacity(m);
            let mut beta: Vec<f64> = Vec::with_capacity(m);
            let mut steps = 0;
            for j in 0..m {
                v.col_mut(j).iter_mut().zip(&q).for_each(|(a, b)| *a = *b);
                let mut w = op.apply_vec(&q);
                let h = reorthogonalize(v.as_ref(), j + 1, &mut w);
                alpha.push(h[j]);
                steps = j + 1;
                bar.inc(1);
                let b = norm(&w);
                if j + 1 == m || b < 1e-10 * alpha.iter().fold(0.0f64, |a, x| a.max(x.abs())).max(1e-300) {
                    break;
                }
                beta.push(b);
                q = w.into_iter().map(|x| x / b).collect();
            }
            let t = Mat::from_fn(steps, steps, |i, j| {
                if i == j {
                    alpha[i]
                } else if i + 1 == j {
                    beta[i]
                } else if j + 1 == i {
                    beta[j]
                } else {
                    0.0
                }
            });
            let evd = crate::SmallEvd::new(t.as_ref())?;
            out.push((0..steps).map(|i| (evd.S()[i], evd.U()[(0, i)].powi(2))).collect());
        }
        bar.finish_and_clear();
        Ok(SlqResult { nodes: out, dim: n, applications: op.applications() - apps0 })
    }
}

impl SlqResult {
    /// Gaussian-broadened density on `grid` (integrates to 1).
    pub fn density(&self, grid: &[f64], sigma: f64) -> Vec<f64> {
        let np = self.nodes.len() as f64;
        let c = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        grid.iter()
            .map(|&x| self.nodes.iter().flatten().map(|&(t, w)| w * c * (-(x - t).powi(2) / (2.0 * sigma * sigma)).exp()).sum::<f64>() / np)
            .collect()
    }
    /// Estimated number of eigenvalues above `threshold`: n · E[Σ wᵢ 1(θᵢ > threshold)].
    pub fn count_above(&self, threshold: f64) -> f64 {
        let np = self.nodes.len() as f64;
        self.dim as f64 * self.nodes.iter().flatten().filter(|(t, _)| *t > threshold).map(|(_, w)| w).sum::<f64>() / np
    }
    /// The smallest and largest node over all probes.
    pub fn range(&self) -> (f64, f64) {
        let it = self.nodes.iter().flatten().map(|x| x.0);
        (it.clone().fold(f64::INFINITY, f64::min), it.fold(f64::NEG_INFINITY, f64::max))
    }
}
