//! Dense materialization of curvature operators.
use crate::{LinearOperator, ModelCurvature, symmetrize};
use faer::Mat;
use hesslab_progress::Progress;
use rayon::prelude::*;
use std::sync::Arc;

/// A dense symmetric matrix with what it is.
#[derive(Debug, Clone)]
pub struct DenseMatrix {
    /// The symmetric matrix.
    pub matrix: Arc<Mat<f64>>,
    /// What it is (hessian, gauss_newton, …).
    pub operator: String,
    /// max|A − Aᵀ| / max|A| before symmetrization.
    pub symmetry_error: f64,
}

/// Materialize `A` column by column. For a network operator the column blocks run in
/// parallel (each block's products are sequential inside), otherwise blocks use the
/// operator's own parallelism. Returns the matrix and its relative symmetry error, after
/// symmetrizing it.
pub fn materialize(
    op: &dyn LinearOperator,
    curvature: Option<(&ModelCurvature, Option<&[usize]>)>,
    block: usize,
    progress: &Progress,
) -> (Mat<f64>, f64) {
    let p = op.dim();
    let block = block.max(1);
    let mut a = Mat::<f64>::zeros(p, p);
    let bar = progress.bar(p as u64, "Hessian columns");
    let fill = |c0: usize, mut cols: faer::MatMut<'_, f64>| {
        let k = cols.ncols();
        match curvature {
            Some((cv, index)) => {
                let full = cv.dim();
                let mut e = Mat::<f64>::zeros(full, k);
                for j in 0..k {
                    let i = index.map(|ix| ix[c0 + j]).unwrap_or(c0 + j);
                    e[(i, j)] = 1.0;
                }
                match index {
                    // All parameters: the products land directly in the destination columns.
                    None => cv.apply_block_sequential(e.as_ref(), cols.as_mut()),
                    Some(ix) => {
                        let mut r = Mat::<f64>::zeros(full, k);
                        cv.apply_block_sequential(e.as_ref(), r.as_mut());
                        for j in 0..k {
                            for (row, &i) in ix.iter().enumerate() {
                                cols[(row, j)] = r[(i, j)];
                            }
                        }
                    }
                }
            }
            None => {
                let mut e = Mat::<f64>::zeros(p, k);
                for j in 0..k {
                    e[(c0 + j, j)] = 1.0;
                }
                op.apply_block(e.as_ref(), cols);
            }
        }
        bar.inc(k as u64);
    };
    if curvature.is_some() {
        a.as_mut().par_col_chunks_mut(block).enumerate().for_each(|(b, cols)| fill(b * block, cols));
    } else {
        let mut c0 = 0;
        while c0 < p {
            let k = block.min(p - c0);
            fill(c0, a.as_mut().subcols_mut(c0, k));
            c0 += k;
        }
    }
    bar.finish_and_clear();
    let sym = symmetrize(&mut a);
    (a, sym)
}
