//! All eigenvalues of a dense symmetric matrix (faer's self-adjoint eigendecomposition).
use crate::{EigenError, Eigenpairs};
use faer::{Mat, Side};

/// Parameters of the dense solver.
#[derive(Debug, Clone, Default)]
pub struct DenseParams {
    /// Also return eigenvectors of the `top` largest and `bottom` smallest eigenvalues.
    pub top_vectors: usize,
    /// Also return eigenvectors of the `bottom_vectors` smallest eigenvalues.
    pub bottom_vectors: usize,
}

/// What the dense solver did.
#[derive(Debug, Clone)]
pub struct DenseInfo {
    /// Side of the matrix.
    pub dim: usize,
    /// Wall time.
    pub seconds: f64,
}

/// faer's dense self-adjoint eigendecomposition: every eigenvalue.
pub struct DenseSolver;

impl DenseSolver {
    /// Eigenvalues in descending order; residuals are None (exact up to rounding).
    pub fn solve(a: &Mat<f64>, p: &DenseParams) -> Result<(Eigenpairs, DenseInfo), EigenError> {
        let t0 = std::time::Instant::now();
        let n = a.nrows();
        if a.ncols() != n {
            return Err(EigenError::Invalid(format!("matrix is {}×{}, not square", n, a.ncols())));
        }
        let want_vectors = p.top_vectors + p.bottom_vectors > 0;
        let (mut values, vectors) = if want_vectors {
            let evd = a.self_adjoint_eigen(Side::Lower).map_err(EigenError::Dense)?;
            let s = evd.S();
            let u = evd.U();
            let vals: Vec<f64> = (0..n).map(|i| s[i]).collect();
            // Ascending from faer; keep requested columns, in descending order of eigenvalue.
            let mut cols: Vec<(u32, Vec<f64>)> = Vec::new();
            for r in 0..p.top_vectors.min(n) {
                let c = n - 1 - r;
                cols.push((r as u32, u.col(c).iter().copied().collect()));
            }
            for r in 0..p.bottom_vectors.min(n) {
                let rank = n - 1 - r;
                if rank >= p.top_vectors {
                    cols.push((rank as u32, u.col(r).iter().copied().collect()));
                }
            }
            (vals, cols)
        } else {
            (a.self_adjoint_eigenvalues(Side::Lower).map_err(EigenError::Dense)?, vec![])
        };
        values.reverse();
        let ranks: Vec<u32> = (0..n as u32).collect();
        Ok((
            Eigenpairs { ranks, residuals: vec![None; values.len()], values, vectors },
            DenseInfo { dim: n, seconds: t0.elapsed().as_secs_f64() },
        ))
    }
}
