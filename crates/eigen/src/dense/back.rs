//! Eigenvectors of the dense matrix from the tridiagonal matrix's: with A = Q₁ B Q₁ᵀ (stage 1,
//! [`super::band`]) and B = Q₂ T Q₂ᵀ (stage 2, [`super::bulge`]), the eigenvectors of A are
//! X = Q₁ Q₂ X_T. Both products are applied as block reflectors, I − V T Vᵀ, by GEMMs.
//!
//! Stage 2's reflectors are short (b rows each) and many (n²/2b): one at a time they would be
//! level-2 work. Reflectors of g consecutive sweeps at the same step s overlap by all but one
//! row each, so they form one block reflector of b + g − 1 rows (a parallelogram V). Its
//! product order is legal: within a sweep the steps act on disjoint rows (they commute), and
//! sweep k's step s + 1 precedes sweep k + 1's step s, so the groups of one band of g sweeps
//! are applied in ascending s, and the bands from the last to the first.
//!
//! Columns of X are independent: both products run on fixed blocks of columns, each block a
//! sequence of sequential products, so the result does not depend on the thread count.
use super::band::{PanelReflectors, block_reflector_factor, column_blocks, for_each_block};
use super::bulge::ChaseReflectors;
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

/// X ← Q₂ X, the reflectors of b/2 sweeps at a time (at 4270, one thread: 6.0 s against
/// 7.3 s for b sweeps — b + g − 1 rows per group, so smaller groups pad less); `done(fraction)`
/// after each block of columns.
pub(crate) fn apply_chase_reflectors(r: &ChaseReflectors, x: MatMut<'_, f64>, par: Par, done: &(dyn Fn(f64) + Sync)) {
    let (n, b) = (r.n, r.b);
    let blocks = x.ncols().div_ceil(COLUMNS).max(1);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let g = (b / 2).max(1);
    let sweeps = r.sweeps.len();
    let steps = |i: usize| r.sweeps[i].tau.len();
    for_each_column_block(x, par, |mut x| {
        let w = x.ncols();
        // Xᵀ of the block: the rows a group touches are then one contiguous piece (in X they
        // are short pieces of w columns a whole column apart, one TLB entry each).
        let mut xt = x.rb().transpose().to_owned();
        let mut v = Mat::<f64>::zeros(b + g - 1, g);
        let mut vt = Mat::<f64>::zeros(b + g - 1, g);
        let mut prod = Mat::<f64>::zeros(w, g);
        let mut tau = Vec::with_capacity(g);
        for first in (0..sweeps).step_by(g).rev() {
            for s in 0..steps(first) {
                // Sweeps first..first + gc have a step s (sweeps' step counts do not increase).
                let gc = (first..(first + g).min(sweeps)).take_while(|&i| s < steps(i)).count();
                let row0 = first + 1 + s * b;
                let row_end = (first + gc + s * b + b).min(n);
                let h = row_end - row0;
                let mut vg = v.as_mut().submatrix_mut(0, 0, h, gc);
                vg.fill(0.0);
                tau.clear();
                for c in 0..gc {
                    let sweep = &r.sweeps[first + c];
                    let len = b.min(h - c);
                    let col = vg.rb_mut().col_mut(c).try_as_col_major_mut().expect("column-major V").as_slice_mut();
                    col[c..c + len].copy_from_slice(&sweep.v[s * b..s * b + len]);
                    tau.push(sweep.tau[s]);
                }
                let t = block_reflector_factor(vg.rb(), &tau, Par::Seq);
                // Xᵀ ← Xᵀ − (Xᵀ V)(V T)ᵀ: V T (h × g) costs less than T (Vᵀ X) (g × w).
                let mut vtg = vt.as_mut().submatrix_mut(0, 0, h, gc);
                times_upper(vg.rb(), t.as_ref(), vtg.rb_mut());
                let mut p = prod.as_mut().submatrix_mut(0, 0, w, gc);
                let mut xs = xt.as_mut().subcols_mut(row0, h);
                matmul(p.rb_mut(), Accum::Replace, xs.rb(), vg.rb(), 1.0, Par::Seq);
                matmul(xs.rb_mut(), Accum::Add, p.rb(), vtg.rb().transpose(), -1.0, Par::Seq);
            }
        }
        x.copy_from(xt.transpose());
        done((finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1) as f64 / blocks as f64);
    });
}

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

/// out = V T for upper triangular T (small: plain loops, by columns).
fn times_upper(v: MatRef<'_, f64>, t: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
    let g = v.ncols();
    for c in 0..g {
        let o = out.rb_mut().col_mut(c).try_as_col_major_mut().expect("column-major V T").as_slice_mut();
        o.fill(0.0);
        for k in 0..=c {
            let tk = t[(k, c)];
            let vk = v.col(k).try_as_col_major().expect("column-major V").as_slice();
            o.iter_mut().zip(vk).for_each(|(x, y)| *x += y * tk);
        }
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
