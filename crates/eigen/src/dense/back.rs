//! Eigenvectors of the dense matrix from the tridiagonal matrix's: with A = Q₁ B Q₁ᵀ (stage 1,
//! [`super::band`]) and B = Q₂ T Q₂ᵀ (stage 2, [`super::bulge`]), the eigenvectors of A are
//! X = Q₁ Q₂ X_T. Q₂ is applied by [`super::back_chase`]; Q₁ here, its panels' reflectors
//! gathered into block reflectors I − V T Vᵀ applied by GEMMs.
//!
//! Columns of X are independent: the product runs on fixed blocks of columns, each block a
//! sequence of sequential products, so the result does not depend on the thread count.
use super::band::{PanelReflectors, block_reflector_factor, column_blocks, for_each_block};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{
    self,
    BlockStructure::{Rectangular, TriangularUpper},
};
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// Columns of X per block.
const COLUMNS: usize = 512;

/// Panels of stage 1 per block reflector (b = 32: 128 columns, the GEMMs' inner size).
const PANELS_PER_GROUP: usize = 4;

/// X ← Q₁ X, the panels gathered PANELS_PER_GROUP at a time into one block reflector;
/// `done(fraction)` after each.
pub(crate) fn apply_band_reflectors(panels: &[PanelReflectors], mut x: MatMut<'_, f64>, par: Par, done: &(dyn Fn(f64) + Sync)) {
    let n = x.nrows();
    let groups: Vec<&[PanelReflectors]> = panels.chunks(PANELS_PER_GROUP).collect();
    // A group costs ∝ its rows (n − first row), so after the groups from row r down the
    // work done is ((n − r) / n)².
    for group in groups.into_iter().rev() {
        // The group's reflectors, column c of panel p at row offset (its first row − the
        // group's first row): one unit lower trapezoidal V.
        let row0 = group[0].first_row;
        let m = n - row0;
        let k: usize = group.iter().map(|p| p.v.ncols()).sum();
        let mut v = Mat::<f64>::zeros(m, k);
        let mut tau = Vec::with_capacity(k);
        let mut c0 = 0;
        for p in group {
            let off = p.first_row - row0;
            v.as_mut().submatrix_mut(off, c0, p.v.nrows(), p.v.ncols()).copy_from(&p.v);
            tau.extend_from_slice(&p.tau);
            c0 += p.v.ncols();
        }
        let t = block_reflector_factor(v.as_ref(), &tau, Par::Seq);
        for_each_column_block(x.rb_mut().subrows_mut(row0, m), par, |x| {
            let w = x.ncols();
            let mut prod = Mat::<f64>::zeros(k, w);
            let mut tprod = Mat::<f64>::zeros(k, w);
            apply_with_factor(v.as_ref(), t.as_ref(), x, prod.as_mut(), tprod.as_mut());
        });
        let fraction = m as f64 / n.max(1) as f64;
        done(fraction * fraction);
    }
}

/// X ← X − V (T (Vᵀ X)), sequential.
fn apply_with_factor(
    v: MatRef<'_, f64>,
    t: MatRef<'_, f64>,
    mut x: MatMut<'_, f64>,
    mut prod: MatMut<'_, f64>,
    mut tprod: MatMut<'_, f64>,
) {
    matmul(prod.rb_mut(), Accum::Replace, v.transpose(), x.rb(), 1.0, Par::Seq);
    triangular::matmul(tprod.rb_mut(), Rectangular, Accum::Replace, t, TriangularUpper, prod.rb(), Rectangular, 1.0, Par::Seq);
    matmul(x.rb_mut(), Accum::Add, v, tprod.rb(), -1.0, Par::Seq);
}

/// `f` on fixed blocks of COLUMNS columns of `x`, in parallel on `par`'s threads.
fn for_each_column_block(x: MatMut<'_, f64>, par: Par, f: impl Fn(MatMut<'_, f64>) + Sync + Send) {
    for_each_block(column_blocks(x, COLUMNS), par, |(_, block)| f(block));
}
