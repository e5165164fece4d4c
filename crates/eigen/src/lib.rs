//! Eigensolvers for curvature operators: dense (a two-stage band reduction on faer's kernels;
//! faer's one-stage solver for small matrices), thick-restart Lanczos, power iteration
//! with deflation, stochastic Lanczos quadrature densities, and Hutchinson / Hutch++ traces.
//! Each solver has a `Params` (with `Default`), an `Info`, and returns [`EigenError`] — which
//! keeps what the solver had done — on failure. The stages that wrap them are in
//! `hesslab-stages`.
//!
//! What this crate may depend on: `hesslab-linop` (the operator interface), `hesslab-data`
//! (its seeded RNG only), `hesslab-progress`; no network, operator or pipeline crate.
#![warn(missing_docs)]
mod dense;
mod lanczos;
mod power;
mod slq;
mod trace;

pub use dense::{DenseInfo, DenseMethod, DenseParams, DenseSolver};
pub use lanczos::{LanczosInfo, LanczosParams, LanczosSolver, Which, warm_start};
pub use power::{PowerInfo, PowerIteration, PowerParams};
pub use slq::{SlqParams, SlqResult, StochasticLanczosQuadrature};
pub use trace::{HutchPlusPlus, Hutchinson, TraceEstimate, TraceParams};

/// Eigenvalues (and optionally eigenvectors) as a solver returns them.
#[derive(Debug, Clone, Default)]
pub struct Eigenpairs {
    /// Rank of each value: 0 = largest eigenvalue of the operator (where known).
    pub ranks: Vec<u32>,
    /// Descending.
    pub values: Vec<f64>,
    /// ‖Av − λv‖ where computed; None where exact (dense).
    pub residuals: Vec<Option<f64>>,
    /// (rank, vector).
    pub vectors: Vec<(u32, Vec<f64>)>,
}

/// Why a solver failed.
#[derive(Debug, thiserror::Error)]
pub enum EigenError {
    /// Parameters that do not fit the operator (k larger than its side, …).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// faer's dense self-adjoint eigendecomposition failed (it does not implement
    /// `std::error::Error`, so it is kept as a value, not a source).
    #[error("dense eigendecomposition failed: {0:?}")]
    Dense(faer::linalg::evd::EvdError),
    /// An iterative solver stopped before its eigenpairs met the tolerance.
    #[error("{solver} did not converge: {detail}")]
    NoConvergence {
        /// lanczos or power.
        solver: &'static str,
        /// What converged and what to change.
        detail: String,
        /// What the solver had done when it stopped.
        info: PartialInfo,
    },
}

/// The `Info` of a solver that stopped early.
#[derive(Debug, Clone)]
pub enum PartialInfo {
    /// Lanczos: restarts, applications, worst residual so far.
    Lanczos(LanczosInfo),
    /// Power iteration: iterations per eigenvalue found so far.
    Power(PowerInfo),
    /// The dense solver's tridiagonal iteration (nothing partial to keep).
    Dense,
}

/// `Result` with [`EigenError`].
pub type Result<T, E = EigenError> = std::result::Result<T, E>;

/// The eigendecomposition of a small symmetric matrix (lower triangle), on this thread: faer's
/// `self_adjoint_eigen` takes the global parallelism, whose blocking follows the thread count,
/// so the Ritz values of the same run differed in the last bits between 1 and 2 threads.
pub(crate) struct SmallEvd {
    values: Vec<f64>,
    vectors: faer::Mat<f64>,
}

impl SmallEvd {
    pub(crate) fn new(a: faer::MatRef<'_, f64>) -> Result<SmallEvd> {
        use faer::dyn_stack::{MemBuffer, MemStack};
        use faer::linalg::evd;
        let n = a.nrows();
        let mut vectors = faer::Mat::<f64>::zeros(n, n);
        let mut s = faer::diag::Diag::<f64>::zeros(n);
        let par = faer::Par::Seq;
        let mut buf = MemBuffer::new(evd::self_adjoint_evd_scratch::<f64>(n, evd::ComputeEigenvectors::Yes, par, Default::default()));
        evd::self_adjoint_evd(a, s.as_mut(), Some(vectors.as_mut()), par, MemStack::new(&mut buf), Default::default())
            .map_err(EigenError::Dense)?;
        Ok(SmallEvd { values: (0..n).map(|i| s[i]).collect(), vectors })
    }
    /// Eigenvalues, ascending.
    #[allow(non_snake_case)]
    pub(crate) fn S(&self) -> &[f64] {
        &self.values
    }
    /// Eigenvectors, column i for `S()[i]`.
    #[allow(non_snake_case)]
    pub(crate) fn U(&self) -> faer::MatRef<'_, f64> {
        self.vectors.as_ref()
    }
}

/// dst = lhs · rhs for a tall lhs (a Krylov basis times a small matrix), in fixed blocks of
/// rows on the rayon pool, each block one sequential product: the blocks do not depend on the
/// thread count, so neither do the results (faer's parallel product splits by thread count).
pub(crate) fn tall_times_small(dst: faer::MatMut<'_, f64>, lhs: faer::MatRef<'_, f64>, rhs: faer::MatRef<'_, f64>) {
    use rayon::prelude::*;
    const ROWS: usize = 2048;
    let mut blocks = Vec::new();
    let mut rest = dst;
    let mut r0 = 0;
    while rest.nrows() > 0 {
        let h = ROWS.min(rest.nrows());
        let (block, tail) = rest.split_at_row_mut(h);
        blocks.push((r0, block));
        r0 += h;
        rest = tail;
    }
    blocks.into_par_iter().for_each(|(r0, block)| {
        let h = block.nrows();
        faer::linalg::matmul::matmul(block, faer::Accum::Replace, lhs.subrows(r0, h), rhs, 1.0, faer::Par::Seq);
    });
}

/// Orthonormalize `w` against the first `m` columns of `basis` (classical Gram–Schmidt, twice);
/// returns the projection coefficients.
pub(crate) fn reorthogonalize(basis: faer::MatRef<'_, f64>, m: usize, w: &mut [f64]) -> Vec<f64> {
    let mut h = vec![0.0; m];
    for _ in 0..2 {
        let mut c = vec![0.0; m];
        for (i, ci) in c.iter_mut().enumerate() {
            let col = basis.col(i);
            *ci = col.iter().zip(w.iter()).map(|(a, b)| a * b).sum();
        }
        for (i, ci) in c.iter().enumerate() {
            let col = basis.col(i);
            for (wv, b) in w.iter_mut().zip(col.iter()) {
                *wv -= ci * b;
            }
            h[i] += ci;
        }
    }
    h
}

pub(crate) fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}
