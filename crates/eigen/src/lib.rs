//! Eigensolvers for curvature operators: dense (faer), thick-restart Lanczos, power iteration
//! with deflation, stochastic Lanczos quadrature densities, and Hutchinson / Hutch++ traces;
//! plus the stages that make them swappable in a pipeline.
mod dense;
mod lanczos;
mod power;
mod slq;
mod stages;
mod trace;

pub use dense::{DenseInfo, DenseParams, DenseSolver};
pub use lanczos::{LanczosInfo, LanczosParams, LanczosSolver, Which};
pub use power::{PowerInfo, PowerIteration, PowerParams};
pub use slq::{SlqParams, SlqResult, StochasticLanczosQuadrature};
pub use stages::{
    EigenStage, SlqStage, TraceStage, density_port, eigenvalues_port, eigenvectors_port, nodes_port, read_eigenvalues, trace_port,
};
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

#[derive(Debug, thiserror::Error)]
pub enum EigenError {
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("dense eigendecomposition failed: {0}")]
    Dense(String),
    #[error("{solver} did not converge: {detail}")]
    NoConvergence { solver: &'static str, detail: String },
}

pub type Result<T, E = EigenError> = std::result::Result<T, E>;

pub fn register(r: &mut hesslab_pipeline::Registry) {
    r.add::<EigenStage>();
    r.add::<SlqStage>();
    r.add::<TraceStage>();
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
