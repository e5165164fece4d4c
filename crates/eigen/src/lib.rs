//! Eigensolvers for curvature operators: dense (faer), thick-restart Lanczos, power iteration
//! with deflation, stochastic Lanczos quadrature densities, and Hutchinson / Hutch++ traces.
//! Each solver has a `Params` (with `Default`), an `Info`, and returns [`EigenError`] — which
//! keeps what the solver had done — on failure. The stages that wrap them are in
//! `hesslab-stages`.
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
pub use trace::{TraceEstimate, hutch_plus_plus, hutchinson};

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
