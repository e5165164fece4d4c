//! Stage 1 of the two-stage reduction: a dense symmetric matrix to a symmetric band matrix of
//! half-bandwidth `b` (LAPACK's `dsytrd_sy2sb`). Each panel of `b` columns is reduced by a
//! Householder QR of the part below the band, Q = I − V T Vᵀ, and the trailing matrix gets the
//! two-sided update Qᵀ A Q as two matrix products:
//!
//!   W = A V T,   Z = W − ½ V (Tᵀ Vᵀ W),   A ← A − Z Vᵀ − V Zᵀ.
//!
//! Why: the one-stage tridiagonalization spends half its flops in matrix–vector products over
//! the whole trailing matrix (memory bound); here all O(n³) work is in GEMMs, and what remains
//! (band → tridiagonal) is O(n²·b) on a band that fits in cache.
//!
//! Only the lower triangle is read (the upper triangle of the working copy is stale: the
//! update writes over the upper halves of its diagonal blocks, and nothing reads them).
use super::vector::{axpy, dot};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{
    self,
    BlockStructure::{Rectangular, StrictTriangularUpper, TriangularLower, TriangularUpper},
};
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// Reduces the lower triangle of `a` in place so that `a[i, j] = 0` for `i − j > b` (the band
/// is what stage 2 reads); `on_panel(done, total)` is called after every panel.
///
/// Each panel's trailing update A −= Z Vᵀ + V Zᵀ is applied lazily, in the same pass through
/// memory as the next panel's Vᵀ A: a tile is updated and then read by the products while it
/// is in cache (they were two passes, each reading the whole trailing matrix from memory). Only
/// the next panel's own columns are updated before its QR.
pub(crate) fn reduce_to_band(a: MatMut<'_, f64>, b: usize, par: Par, on_panel: impl FnMut(usize, usize)) {
    reduce(a, b, par, on_panel, None);
}

/// One panel's Q = H₁⋯H_k = I − V T Vᵀ acting on rows `first_row..` (V is m × k, unit lower
/// trapezoidal, explicit).
pub(crate) struct PanelReflectors {
    pub(crate) first_row: usize,
    pub(crate) v: Mat<f64>,
    pub(crate) tau: Vec<f64>,
}

/// As [`reduce_to_band`], also returning the panels' reflectors in order: A = Q₁ B Q₁ᵀ with
/// Q₁ = Q_panel₀ Q_panel₁ ⋯ (n²/2 values).
pub(crate) fn reduce_to_band_with_reflectors(
    a: MatMut<'_, f64>,
    b: usize,
    par: Par,
    on_panel: impl FnMut(usize, usize),
) -> Vec<PanelReflectors> {
    let mut kept = Vec::new();
    reduce(a, b, par, on_panel, Some(&mut kept));
    kept
}

fn reduce(mut a: MatMut<'_, f64>, b: usize, par: Par, mut on_panel: impl FnMut(usize, usize), mut keep: Option<&mut Vec<PanelReflectors>>) {
    let n = a.nrows();
    assert!(b >= 1 && a.ncols() == n);
    let starts: Vec<usize> = (0..n.saturating_sub(b + 1)).step_by(b).collect();
    let mut scratch = Scratch::new(n, b);
    // Columns of the pending update [Z V] / [V Z] in `scratch.zv` / `scratch.vz` (2k of the
    // previous panel; 0 = none), rows in the coordinates of that panel's trailing matrix.
    let mut pending = 0;
    for (done, &j) in starts.iter().enumerate() {
        // j < n − b − 1, so the panel is b wide and its trailing matrix starts b rows below
        // the previous panel's.
        let r0 = j + b;
        let m = n - r0;
        let k = m.min(b);
        if pending > 0 {
            matmul(
                a.rb_mut().submatrix_mut(j, j, n - j, b),
                Accum::Add,
                scratch.zv.as_ref().submatrix(0, 0, n - j, pending),
                scratch.vz.as_ref().submatrix(0, 0, b, pending).transpose(),
                -1.0,
                par,
            );
        }
        let mut v = scratch.v.as_mut().submatrix_mut(0, 0, m, k);
        let tau = panel_qr(a.rb_mut().submatrix_mut(r0, j, m, b), v.rb_mut());
        let t = block_reflector_factor(v.rb(), &tau, par);
        if let Some(kept) = keep.as_deref_mut() {
            kept.push(PanelReflectors { first_row: r0, v: v.rb().to_owned(), tau: tau.clone() });
        }
        let v = scratch.v.as_ref().submatrix(0, 0, m, k);
        let mut avt = scratch.update.avt.as_mut().submatrix_mut(0, 0, k, m);
        let update =
            (pending > 0).then(|| (scratch.zv.as_ref().submatrix(b, 0, m, pending), scratch.vz.as_ref().submatrix(b, 0, m, pending)));
        transpose_times_symmetric(avt.rb_mut(), v, a.rb_mut().submatrix_mut(r0, r0, m, m), update, par, scratch.update.below.as_mut());
        reflector_update(
            avt.rb(),
            v,
            t.as_ref(),
            par,
            scratch.zv.as_mut().submatrix_mut(0, 0, m, 2 * k),
            scratch.vz.as_mut().submatrix_mut(0, 0, m, 2 * k),
        );
        pending = 2 * k;
        on_panel(done + 1, starts.len());
    }
    if let Some(&j) = starts.last() {
        // The last panel's update, on the whole of its trailing matrix.
        let (r0, m) = (j + b, n - j - b);
        apply_update(
            a.submatrix_mut(r0, r0, m, m),
            scratch.zv.as_ref().submatrix(0, 0, m, pending),
            scratch.vz.as_ref().submatrix(0, 0, m, pending),
            par,
        );
    }
}

/// The panels' temporaries at their largest size, allocated once and used as views (they were
/// allocated afresh, at a shrinking size, for every panel: a few MB each time). This did not
/// change the peak memory measured at n = 4270 (see the README's dense eigenvalues section).
struct Scratch {
    /// Reflectors V (m × k of n × b).
    v: Mat<f64>,
    update: UpdateScratch,
    /// The pending update's [Z V] and [V Z] (m × 2k of n × 2b).
    zv: Mat<f64>,
    vz: Mat<f64>,
}

/// The products' temporaries.
struct UpdateScratch {
    /// (A V)ᵀ (k × m of b × n).
    avt: Mat<f64>,
    /// The column blocks' Y_J of [`transpose_times_symmetric`], one under the other.
    below: Mat<f64>,
}

impl Scratch {
    fn new(n: usize, b: usize) -> Self {
        let update = UpdateScratch { avt: Mat::zeros(b, n), below: Mat::zeros(below_rows(n), b) };
        Scratch { v: Mat::zeros(n, b), update, zv: Mat::zeros(n, 2 * b), vz: Mat::zeros(n, 2 * b) }
    }
}

/// Householder QR of the m × pb panel in place: R is left on and above the diagonal, zeros
/// below it. Returns the scalars τᵢ and writes the reflectors into `v` (unit lower
/// trapezoidal, m × k with k = min(m, pb)), Hᵢ = I − τᵢ vᵢ vᵢᵀ, H₁⋯H_k = Q.
fn panel_qr(p: MatMut<'_, f64>, v: MatMut<'_, f64>) -> Vec<f64> {
    pulp::Arch::new().dispatch(PanelQr { p, v })
}

/// [`panel_qr`] under pulp's runtime dispatch (its column loops are the vector kernels').
struct PanelQr<'a> {
    p: MatMut<'a, f64>,
    v: MatMut<'a, f64>,
}

impl pulp::WithSimd for PanelQr<'_> {
    type Output = Vec<f64>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> Vec<f64> {
        let PanelQr { p, v } = self;
        panel_qr_with(simd, p, v)
    }
}

#[inline(always)]
fn panel_qr_with<S: pulp::Simd>(simd: S, mut p: MatMut<'_, f64>, mut v: MatMut<'_, f64>) -> Vec<f64> {
    let (m, pb) = (p.nrows(), p.ncols());
    let k = m.min(pb);
    assert_eq!((v.nrows(), v.ncols()), (m, k));
    let mut tau = vec![0.0; k];
    v.fill(0.0);
    for c in 0..k {
        let (left, mut right) = p.rb_mut().split_at_col_mut(c + 1);
        let col = left.col_mut(c).try_as_col_major_mut().expect("column-major panel").as_slice_mut();
        let x = &mut col[c..];
        tau[c] = householder(x);
        let (head, tail) = x.split_at_mut(1);
        let vc = v.rb_mut().col_mut(c).try_as_col_major_mut().expect("column-major reflectors").as_slice_mut();
        vc[c] = 1.0;
        vc[c + 1..].copy_from_slice(tail);
        tail.fill(0.0);
        let _ = head;
        if tau[c] == 0.0 {
            continue;
        }
        let vtail = &vc[c + 1..];
        for k2 in 0..right.ncols() {
            let y = &mut right.rb_mut().col_mut(k2).try_as_col_major_mut().expect("column-major panel").as_slice_mut()[c..];
            let s = y[0] + dot(simd, vtail, &y[1..]);
            let ts = tau[c] * s;
            y[0] -= ts;
            axpy(simd, -ts, vtail, &mut y[1..]);
        }
    }
    tau
}

/// The upper triangular T with H₁⋯H_k = I − V T Vᵀ (LAPACK's `dlarft`, forward, columnwise),
/// from the Gram matrix VᵀV computed as one matrix product.
pub(crate) fn block_reflector_factor(v: MatRef<'_, f64>, tau: &[f64], par: Par) -> Mat<f64> {
    let k = tau.len();
    let mut gram = Mat::<f64>::zeros(k, k);
    matmul(gram.as_mut(), Accum::Replace, v.transpose(), v, 1.0, par);
    let mut t = Mat::<f64>::zeros(k, k);
    triangular_factor_from_gram(gram.as_ref(), tau, t.as_mut());
    t
}

/// The upper triangle of T (k × k, k = τ's length) from the Gram matrix VᵀV (its upper
/// triangle is read): T[0..i, i] = −τᵢ T[0..i, 0..i] (VᵀV)[0..i, i], each entry summed in
/// ascending order.
pub(crate) fn triangular_factor_from_gram(gram: MatRef<'_, f64>, tau: &[f64], mut t: MatMut<'_, f64>) {
    for i in 0..tau.len() {
        for r in 0..i {
            let s: f64 = (r..i).map(|c| t[(r, c)] * gram[(c, i)]).sum();
            t[(r, i)] = -tau[i] * s;
        }
        t[(i, i)] = tau[i];
    }
}

/// The update of Q = I − V T Vᵀ as A ← Qᵀ A Q = A − Z Vᵀ − V Zᵀ, from W = A V (given
/// transposed): Z = W T − ½ V (Tᵀ Vᵀ W T). Writes [Z V] to `zv` and [V Z] to `vz` (m × 2k).
fn reflector_update(
    avt: MatRef<'_, f64>,
    v: MatRef<'_, f64>,
    t: MatRef<'_, f64>,
    par: Par,
    mut zv: MatMut<'_, f64>,
    mut vz: MatMut<'_, f64>,
) {
    let k = v.ncols();
    let av = avt.transpose();
    {
        let (mut z, mut v2) = zv.rb_mut().split_at_col_mut(k);
        triangular::matmul(z.rb_mut(), Rectangular, Accum::Replace, av, Rectangular, t, TriangularUpper, 1.0, par);
        v2.copy_from(v);
        let mut vtw = Mat::<f64>::zeros(k, k);
        matmul(vtw.as_mut(), Accum::Replace, v.transpose(), z.rb(), 1.0, par);
        let mut half_m = Mat::<f64>::zeros(k, k);
        triangular::matmul(
            half_m.as_mut(),
            Rectangular,
            Accum::Replace,
            t.transpose(),
            TriangularLower,
            vtw.as_ref(),
            Rectangular,
            0.5,
            par,
        );
        matmul(z.rb_mut(), Accum::Add, v, half_m.as_ref(), -1.0, par);
    }
    let (mut v1, mut z1) = vz.rb_mut().split_at_col_mut(k);
    v1.copy_from(v);
    z1.copy_from(zv.rb().get(.., ..k));
}

/// A −= ZV · VZᵀ on the lower triangle, per column block J: `A[J.., J] −= ZV[J..] · VZ[J]ᵀ`.
/// Each block's diagonal block is updated whole (its upper part is stale and never read), the
/// blocks in parallel.
fn apply_update(a: MatMut<'_, f64>, zv: MatRef<'_, f64>, vz: MatRef<'_, f64>, par: Par) {
    let m = a.nrows();
    for_each_block(column_blocks(a, NB), par, |(j0, a_j)| {
        let w = a_j.ncols();
        matmul(a_j.subrows_mut(j0, m - j0), Accum::Add, zv.get(j0.., ..), vz.get(j0..j0 + w, ..).transpose(), -1.0, Par::Seq);
    });
}

/// Columns per block of the parallel products: the work is split into blocks of this many
/// columns whatever the thread count.
const NB: usize = 256;

/// Rows per chunk of a column block in [`transpose_times_symmetric`]: NB × ROWS values (512 KB)
/// stay in a core's L2 cache between the chunk's two products.
const ROWS: usize = 256;

/// Vᵀ A for symmetric A of which only the lower triangle is valid, by column blocks J of NB
/// columns, each block's two products on one of `par`'s threads:
///
///   (Vᵀ A)[:, J] = V_Jᵀ A_JJ + V_belowᵀ A[below, J]   +   Σ_{I < J} Y_Iᵀ (rows of J),
///   Y_J = A[below, J] V_J   (what block J's columns give the later blocks' columns),
///
/// so every product reads a block of whole lower-triangle columns. Why not the later blocks'
/// part as V_leftᵀ A[J, left]ᵀ: that reads 256-value pieces of thousands of columns, a page
/// apart, and ran at a quarter of the rate of the same flops read down the columns (11–12 s
/// against 2.8 s at n = 8000 on one thread). The diagonal block's two triangles are two
/// triangular products (no mirrored copy). Why blocks in parallel rather than faer's threads
/// inside each product: the products are small (k = b rows) and many, and splitting each
/// across threads cost a barrier per call. The blocks, each block's order of operations and
/// the order of the Y sums do not depend on the thread count, so neither do the results.
///
/// With `update = Some((ZV, VZ))` the previous panel's pending update A −= ZV · VZᵀ is applied
/// to each piece of A (lower triangle, diagonal blocks whole) just before the products read it.
#[allow(clippy::type_complexity)]
fn transpose_times_symmetric(
    mut out: MatMut<'_, f64>,
    v: MatRef<'_, f64>,
    a: MatMut<'_, f64>,
    update: Option<(MatRef<'_, f64>, MatRef<'_, f64>)>,
    par: Par,
    mut below: MatMut<'_, f64>,
) {
    use rayon::prelude::*;
    let (m, k) = (a.nrows(), v.ncols());
    // Block J's Y_J: the next m − j1 rows of `below` (one buffer for the whole reduction:
    // per-panel matrices of shrinking sizes made the allocator keep ~0.6 × 8n² more resident).
    let blocks = column_blocks(out.rb_mut(), NB);
    let mut tasks = Vec::with_capacity(blocks.len());
    let mut rest = below.rb_mut().subcols_mut(0, k);
    for ((j0, out_j), (_, a_j)) in blocks.into_iter().zip(column_blocks(a, NB)) {
        let rows = m - (j0 + out_j.ncols());
        let (w_j, tail) = rest.split_at_row_mut(rows);
        rest = tail;
        tasks.push((j0, out_j, w_j, a_j));
    }
    // The pending update of rows i0..i0 + h of block J, just before the products read them.
    let update_rows = |mut a_j: MatMut<'_, f64>, j0: usize, i0: usize, h: usize| {
        if let Some((zv, vz)) = update {
            let w = a_j.ncols();
            matmul(a_j.rb_mut().subrows_mut(i0, h), Accum::Add, zv.subrows(i0, h), vz.subrows(j0, w).transpose(), -1.0, Par::Seq);
        }
    };
    let one_block = |(j0, mut out_j, mut w_j, mut a_j): (usize, MatMut<'_, f64>, MatMut<'_, f64>, MatMut<'_, f64>)| {
        let j1 = j0 + out_j.ncols();
        update_rows(a_j.rb_mut(), j0, j0, j1 - j0);
        let (v_j, d) = (v.get(j0..j1, ..).transpose(), a_j.rb().get(j0..j1, ..));
        triangular::matmul(out_j.rb_mut(), Rectangular, Accum::Replace, v_j, Rectangular, d, TriangularLower, 1.0, Par::Seq);
        triangular::matmul(out_j.rb_mut(), Rectangular, Accum::Add, v_j, Rectangular, d.transpose(), StrictTriangularUpper, 1.0, Par::Seq);
        // Both products a chunk of ROWS rows at a time, while it is in cache: as two products
        // over the whole block, the second read the block again from memory (A[below, J] V_J
        // ran at half the rate of V_belowᵀ A[below, J]).
        for i0 in (j1..m).step_by(ROWS) {
            let h = ROWS.min(m - i0);
            update_rows(a_j.rb_mut(), j0, i0, h);
            let a_c = a_j.rb().get(i0..i0 + h, ..);
            matmul(out_j.rb_mut(), Accum::Add, v.get(i0..i0 + h, ..).transpose(), a_c, 1.0, Par::Seq);
            matmul(w_j.rb_mut().subrows_mut(i0 - j1, h), Accum::Replace, a_c, v.get(j0..j1, ..), 1.0, Par::Seq);
        }
    };
    match par {
        Par::Seq => tasks.into_iter().for_each(one_block),
        Par::Rayon(_) => tasks.into_par_iter().with_max_len(1).for_each(one_block),
    }
    // Each column block adds the earlier blocks' Y rows for its columns, in block order.
    let below = below.rb();
    for_each_block(column_blocks(out, NB), par, |(i0, mut out_i)| {
        let w = out_i.ncols();
        let mut first = 0;
        for j0 in (0..i0).step_by(NB) {
            let j1 = (j0 + NB).min(m);
            let wj = below.subrows(first, m - j1);
            first += m - j1;
            let src: Vec<&[f64]> =
                (0..k).map(|r| &wj.col(r).try_as_col_major().expect("column-major Y").as_slice()[i0 - j1..i0 - j1 + w]).collect();
            for c in 0..w {
                let oc = out_i.rb_mut().col_mut(c).try_as_col_major_mut().expect("column-major output").as_slice_mut();
                for (o, s) in oc.iter_mut().zip(&src) {
                    *o += s[c];
                }
            }
        }
    });
}

/// Rows of the Y_J of every column block of an n × n trailing matrix (the first panel's, the
/// most).
fn below_rows(n: usize) -> usize {
    (0..n).step_by(NB).map(|j0| n - (j0 + NB).min(n)).sum()
}

/// Column blocks of `width` columns of `out`, each with its first column's index.
pub(crate) fn column_blocks(out: MatMut<'_, f64>, width: usize) -> Vec<(usize, MatMut<'_, f64>)> {
    let mut blocks = Vec::with_capacity(out.ncols().div_ceil(NB));
    let mut rest = out;
    let mut j0 = 0;
    while rest.ncols() > 0 {
        let w = width.min(rest.ncols());
        let (block, tail) = rest.split_at_col_mut(w);
        j0 += block.ncols();
        blocks.push((j0 - block.ncols(), block));
        rest = tail;
    }
    blocks
}

/// `f` on every block: in order on one thread for `Par::Seq`, else on the current rayon pool.
pub(crate) fn for_each_block<'a>(blocks: Vec<(usize, MatMut<'a, f64>)>, par: Par, f: impl Fn((usize, MatMut<'a, f64>)) + Sync + Send) {
    use rayon::prelude::*;
    match par {
        Par::Seq => blocks.into_iter().for_each(f),
        Par::Rayon(_) => blocks.into_par_iter().with_max_len(1).for_each(f),
    }
}

/// Overwrites `x` with (β, 0, …, 0) = H x and returns τ, H = I − τ v vᵀ, v = (1, x[1..]) left
/// in `x[1..]` before the caller zeroes it (LAPACK's `dlarfg`: τ = 0 when x[1..] is zero).
pub(crate) fn householder(x: &mut [f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let alpha = x[0];
    let xnorm = norm(&x[1..]);
    if xnorm == 0.0 {
        return 0.0;
    }
    let beta = -alpha.signum() * alpha.hypot(xnorm);
    let tau = (beta - alpha) / beta;
    let scale = 1.0 / (alpha - beta);
    x[1..].iter_mut().for_each(|e| *e *= scale);
    x[0] = beta;
    tau
}

/// Euclidean norm without overflow or underflow (scaled by the largest magnitude).
fn norm(x: &[f64]) -> f64 {
    let amax = x.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    if amax == 0.0 || !amax.is_finite() {
        return amax;
    }
    let inv = 1.0 / amax;
    amax * x.iter().map(|e| (e * inv) * (e * inv)).sum::<f64>().sqrt()
}
