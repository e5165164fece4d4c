//! Power iteration with deflation, as PyHessian computes top eigenvalues: the baseline users
//! know. Each new vector is kept orthogonal to the eigenvectors already found.
use crate::{EigenError, Eigenpairs, PartialInfo, Result, norm, reorthogonalize};
use faer::Mat;
use hesslab_data::rng::Rng;
use hesslab_linop::LinearOperator;

/// Parameters of power iteration.
#[derive(Debug, Clone)]
pub struct PowerParams {
    /// Number of eigenpairs.
    pub k: usize,
    /// Stop when |λ − λ_prev| / (|λ_prev| + 1e-6) < tol (PyHessian's rule).
    pub tol: f64,
    /// Iterations per eigenvalue before giving up.
    pub max_iter: usize,
    /// Seed of the start vectors.
    pub seed: u64,
}

impl Default for PowerParams {
    fn default() -> Self {
        PowerParams { k: 20, tol: 1e-3, max_iter: 1000, seed: 0 }
    }
}

/// What power iteration did.
#[derive(Debug, Clone, Default)]
pub struct PowerInfo {
    /// Iterations spent on each eigenvalue.
    pub iterations: Vec<usize>,
    /// Operator applications used.
    pub applications: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Power iteration with deflation (PyHessian's method).
pub struct PowerIteration;

impl PowerIteration {
    /// The k eigenvalues of largest magnitude (in the order found), with residuals.
    pub fn solve(op: &dyn LinearOperator, p: &PowerParams) -> Result<(Eigenpairs, PowerInfo)> {
        let t0 = std::time::Instant::now();
        let n = op.dim();
        if p.k == 0 || p.k > n {
            return Err(EigenError::Invalid(format!("k = {} must be in 1..={n}", p.k)));
        }
        let apps0 = op.applications();
        let mut rng = Rng::new(p.seed);
        let mut basis = Mat::<f64>::zeros(n, p.k);
        let mut vals = Vec::new();
        let mut res = Vec::new();
        let mut iters = Vec::new();
        for e in 0..p.k {
            let mut v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            reorthogonalize(basis.as_ref(), e, &mut v);
            let s = norm(&v);
            v.iter_mut().for_each(|x| *x /= s);
            let mut lambda: Option<f64> = None;
            let mut it = 0;
            let mut av;
            loop {
                it += 1;
                av = op.apply_vec(&v);
                let l: f64 = av.iter().zip(&v).map(|(a, b)| a * b).sum();
                let mut next = av.clone();
                reorthogonalize(basis.as_ref(), e, &mut next);
                let nn = norm(&next);
                if nn == 0.0 {
                    lambda = Some(l);
                    break;
                }
                next.iter_mut().for_each(|x| *x /= nn);
                let done = lambda.is_some_and(|prev| (l - prev).abs() / (prev.abs() + 1e-6) < p.tol);
                lambda = Some(l);
                if done {
                    break;
                }
                if it >= p.max_iter {
                    iters.push(it);
                    let info =
                        PowerInfo { iterations: iters, applications: op.applications() - apps0, seconds: t0.elapsed().as_secs_f64() };
                    return Err(EigenError::NoConvergence {
                        solver: "power",
                        detail: format!("eigenvalue {e} not converged after {it} iterations (last estimate {l:.6e})"),
                        info: PartialInfo::Power(info),
                    });
                }
                v = next;
            }
            let l = lambda.unwrap();
            let r = av.iter().zip(&v).map(|(a, b)| (a - l * b).powi(2)).sum::<f64>().sqrt();
            basis.col_mut(e).iter_mut().zip(&v).for_each(|(a, b)| *a = *b);
            vals.push(l);
            res.push(Some(r));
            iters.push(it);
        }
        let vectors = (0..p.k).map(|e| (e as u32, basis.col(e).iter().copied().collect())).collect();
        Ok((
            Eigenpairs { ranks: (0..p.k as u32).collect(), values: vals, residuals: res, vectors },
            PowerInfo { iterations: iters, applications: op.applications() - apps0, seconds: t0.elapsed().as_secs_f64() },
        ))
    }
}
