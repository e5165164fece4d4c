//! Every eigenpair of a symmetric tridiagonal matrix by Cuppen's divide and conquer (the
//! algorithm of LAPACK's `dstedc`): cut T at m into T₁ ⊕ T₂ plus the rank-one ρ v vᵀ that
//! holds the cut's off-diagonal β, solve both halves, and merge: with Tᵢ = Qᵢ Λᵢ Qᵢᵀ,
//!
//!   T = diag(Q₁, Q₂) (Λ + ρ z zᵀ) diag(Q₁, Q₂)ᵀ,   z = diag(Q₁, Q₂)ᵀ v,
//!
//! so the merge is the rank-one problem of [`super::secular`] and one matrix product.
//!
//! Why not the QR iteration with vectors: it applies O(n²) rotations to n-long columns, 6n³
//! flops of level-1 work; here the work is GEMMs of size at most n³ and usually much less,
//! because of deflation — a zᵢ below rounding (or two poles closer than rounding, rotated
//! until one zᵢ vanishes) gives its eigenpair unchanged. Hessian spectra, with thousands of
//! eigenvalues at zero, deflate heavily.
//!
//! The merge product exploits the block structure: columns from Q₁ are zero below row m,
//! columns from Q₂ above it; only pairs rotated together in deflation are full, so the top
//! rows multiply [Q₁-only, mixed] columns and the bottom rows [mixed, Q₂-only] columns.
//!
//! Bit-identical for any thread count: each product's columns are split into fixed blocks of
//! sequential products, the roots are independent, and the halves do not share data.
use super::band::{column_blocks, for_each_block};
use super::secular::{secular_root, secular_vectors};
use super::tridiagonal::tridiagonal_matrix;
use faer::linalg::matmul::matmul;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

/// Problems up to this side are solved directly (faer's dense solver on the tiny tridiagonal).
const LEAF: usize = 32;

/// Columns per block of the merge products (each block one sequential product).
const COLUMN_BLOCK: usize = 128;

/// Eigenvalues (ascending) and orthonormal eigenvectors (columns) of the tridiagonal matrix
/// with diagonal `diag` and off-diagonal `sub`. `scratch`: an n × n matrix to work in (any
/// contents; the dense stage hands over its finished working copy, so no fresh n² pages are
/// faulted in — 0.45 s per 146 MB here). Err(message) only if a leaf's dense solver fails.
pub(crate) fn tridiagonal_eigenpairs(
    diag: &[f64],
    sub: &[f64],
    par: Par,
    scratch: Option<Mat<f64>>,
) -> Result<(Vec<f64>, Mat<f64>), String> {
    let n = diag.len();
    assert!(n == 0 || sub.len() + 1 == n);
    // Scale to unit max entry (the deflation tolerances are absolute).
    let scale = diag.iter().chain(sub).fold(0.0f64, |m, x| m.max(x.abs()));
    let mut q = Mat::<f64>::zeros(n, n);
    if n == 0 {
        return Ok((vec![], q));
    }
    if scale == 0.0 {
        q.as_mut().diagonal_mut().fill(1.0);
        return Ok((vec![0.0; n], q));
    }
    let mut d: Vec<f64> = diag.iter().map(|x| x / scale).collect();
    let e: Vec<f64> = sub.iter().map(|x| x / scale).collect();
    let mut work = match scratch {
        Some(w) if w.nrows() == n && w.ncols() == n => w,
        _ => Mat::<f64>::zeros(n, n),
    };
    // The merges' rank-one eigenvectors: one buffer, split between the halves down the tree.
    let mut u = vec![0.0; n * n];
    solve(&mut d, &e, q.as_mut(), work.as_mut(), &mut u, par)?;
    d.iter_mut().for_each(|x| *x *= scale);
    Ok((d, q))
}

/// Solves the block with diagonal `d` (overwritten by the ascending eigenvalues) and
/// off-diagonal `e`, eigenvectors into `q` (its own diagonal block of the whole Q; `work` the
/// same block of a scratch matrix).
fn solve(d: &mut [f64], e: &[f64], mut q: MatMut<'_, f64>, mut work: MatMut<'_, f64>, u: &mut [f64], par: Par) -> Result<(), String> {
    let n = d.len();
    if n <= LEAF {
        return leaf(d, e, q);
    }
    let m = n / 2;
    let beta = e[m - 1];
    d[m - 1] -= beta.abs();
    d[m] -= beta.abs();
    {
        let (d1, d2) = d.split_at_mut(m);
        let (q1, _, _, q2) = q.rb_mut().split_at_mut(m, m);
        let (w1, _, _, w2) = work.rb_mut().split_at_mut(m, m);
        let (e1, e2) = (&e[..m - 1], &e[m..]);
        let (u1, u2) = u.split_at_mut(m * m);
        let (r1, r2) = match par {
            Par::Seq => (solve(d1, e1, q1, w1, u1, par), solve(d2, e2, q2, w2, u2, par)),
            Par::Rayon(_) => rayon::join(|| solve(d1, e1, q1, w1, u1, par), || solve(d2, e2, q2, w2, u2, par)),
        };
        r1?;
        r2?;
    }
    merge(d, m, beta, q, work, u, par);
    Ok(())
}

/// The dense eigensolver on a leaf (at most LEAF × LEAF).
fn leaf(d: &mut [f64], e: &[f64], mut q: MatMut<'_, f64>) -> Result<(), String> {
    let t = tridiagonal_matrix(d, e);
    let evd = t.self_adjoint_eigen(Side::Lower).map_err(|err| format!("{err:?}"))?;
    for (i, x) in d.iter_mut().enumerate() {
        *x = evd.S()[i];
    }
    q.copy_from(evd.U());
    Ok(())
}

/// Where a column of diag(Q₁, Q₂) has its nonzeros.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Support {
    Top,
    Both,
    Bottom,
}

/// Merges two solved halves (`d[..m]`, `d[m..]` ascending, `q` = diag(Q₁, Q₂)) across the
/// cut's off-diagonal `beta`.
fn merge(d: &mut [f64], m: usize, beta: f64, mut q: MatMut<'_, f64>, mut work: MatMut<'_, f64>, u: &mut [f64], par: Par) {
    let n = d.len();
    // T = diag(T₁ − |β| e_m e_mᵀ, T₂ − |β| e₁e₁ᵀ) + |β| v vᵀ with v = (e_m, sign(β) e₁);
    // normalized: ρ = 2|β|, z = diag(Q₁, Q₂)ᵀ v / √2.
    let rho = 2.0 * beta.abs();
    let sign = if beta < 0.0 { -1.0 } else { 1.0 };
    let mut z: Vec<f64> = (0..n).map(|c| if c < m { q[(m - 1, c)] } else { sign * q[(m, c)] } * std::f64::consts::FRAC_1_SQRT_2).collect();
    let mut support: Vec<Support> = (0..n).map(|c| if c < m { Support::Top } else { Support::Bottom }).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)));
    let dmax = d.iter().fold(0.0f64, |x, y| x.max(y.abs()));
    let tol = 8.0 * f64::EPSILON * dmax.max(rho);

    // Deflation, in ascending order of d: tiny zᵢ, then near-equal poles by a rotation.
    let mut deflated: Vec<usize> = Vec::new();
    let mut kept: Vec<usize> = Vec::new();
    let mut prev: Option<usize> = None;
    for &j in &order {
        if rho * z[j].abs() <= tol {
            deflated.push(j);
            continue;
        }
        if let Some(p) = prev {
            let r = z[p].hypot(z[j]);
            let (c, s) = (z[j] / r, -z[p] / r);
            if ((d[j] - d[p]) * c * s).abs() <= tol {
                // Rotate columns p, j so that z[p] = 0: p deflates with the rotated value.
                rotate(q.rb_mut(), p, j, c, s);
                z[j] = r;
                z[p] = 0.0;
                let (dp, dj) = (d[p], d[j]);
                d[p] = dp * c * c + dj * s * s;
                d[j] = dp * s * s + dj * c * c;
                if support[p] != support[j] {
                    support[p] = Support::Both;
                    support[j] = Support::Both;
                }
                deflated.push(p);
                prev = Some(j);
                continue;
            }
            kept.push(p);
        }
        prev = Some(j);
    }
    if let Some(p) = prev {
        kept.push(p);
    }
    // The rotations moved poles by rounding; the secular solver wants them increasing.
    kept.sort_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)));
    let k = kept.len();

    // Roots and vectors of the rank-one problem on the kept poles.
    let dk: Vec<f64> = kept.iter().map(|&i| d[i]).collect();
    let z2: Vec<f64> = kept.iter().map(|&i| z[i] * z[i]).collect();
    let z_sign: Vec<f64> = kept.iter().map(|&i| z[i].signum()).collect();
    let u = &mut u[..k * k];
    let mut roots = vec![0.0; k];
    let solve_root = |(j, (col, root)): (usize, (&mut [f64], &mut f64))| {
        let (o, tau) = secular_root(&dk, &z2, rho, j, col);
        *root = dk[o] + tau;
    };
    {
        use rayon::prelude::*;
        let cols = u.chunks_exact_mut(k.max(1)).zip(roots.iter_mut());
        match par {
            Par::Seq => cols.enumerate().for_each(solve_root),
            Par::Rayon(_) => cols.collect::<Vec<_>>().into_par_iter().enumerate().with_min_len(16).for_each(solve_root),
        }
    }
    secular_vectors(&dk, &z_sign, u, par);

    // Q_new = Q_kept · U, rows split by support: the kept columns, grouped as [top, both,
    // bottom], and then the deflated ones are gathered in `work`; U's rows follow the grouping.
    let mut grouped: Vec<usize> = (0..k).collect();
    grouped.sort_by_key(|&r| (support[kept[r]], r));
    let n_top = grouped.iter().filter(|&&r| support[kept[r]] == Support::Top).count();
    let n_bottom = grouped.iter().filter(|&&r| support[kept[r]] == Support::Bottom).count();
    for (c, &r) in grouped.iter().enumerate() {
        work.rb_mut().col_mut(c).copy_from(q.rb().col(kept[r]));
    }
    for (c, &i) in deflated.iter().enumerate() {
        work.rb_mut().col_mut(k + c).copy_from(q.rb().col(i));
    }
    let mut row = vec![0.0; k];
    for col in u.chunks_exact_mut(k.max(1)) {
        row.iter_mut().zip(&grouped).for_each(|(x, &r)| *x = col[r]);
        col.copy_from_slice(&row);
    }
    let ug = MatRef::from_column_major_slice(&*u, k, k);
    let (top, bottom) = (k - n_bottom, n_top);
    products(q.rb_mut().get_mut(..m, ..k), work.rb().get(..m, ..top), ug.get(..top, ..), par);
    products(q.rb_mut().get_mut(m.., ..k), work.rb().get(m.., bottom..k), ug.get(bottom.., ..), par);
    q.rb_mut().get_mut(.., k..).copy_from(work.rb().get(.., k..));

    // Now q = [roots' vectors | deflated]; sort all pairs ascending (a column permutation in
    // place, one cycle at a time).
    let mut pairs: Vec<(f64, usize)> = roots.iter().copied().zip(0..k).collect();
    pairs.extend(deflated.iter().enumerate().map(|(c, &i)| (d[i], k + c)));
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (c, &(value, _)) in pairs.iter().enumerate() {
        d[c] = value;
    }
    let mut placed = vec![false; n];
    let mut tmp = vec![0.0; n];
    for start in 0..n {
        if placed[start] || pairs[start].1 == start {
            continue;
        }
        tmp.iter_mut().zip(q.rb().col(start).iter()).for_each(|(t, x)| *t = *x);
        let mut cur = start;
        loop {
            placed[cur] = true;
            let src = pairs[cur].1;
            if src == start {
                q.rb_mut().col_mut(cur).iter_mut().zip(&tmp).for_each(|(x, t)| *x = *t);
                break;
            }
            let (mut dst_col, src_col) = two_columns(q.rb_mut(), cur, src);
            dst_col.copy_from(src_col);
            cur = src;
        }
    }
}

/// Column `dst` mutable and column `src` read, of the same matrix (dst ≠ src).
fn two_columns<'a>(q: MatMut<'a, f64>, dst: usize, src: usize) -> (faer::ColMut<'a, f64>, faer::ColRef<'a, f64>) {
    if dst < src {
        let (left, right) = q.split_at_col_mut(src);
        (left.col_mut(dst), right.col(0))
    } else {
        let (left, right) = q.split_at_col_mut(dst);
        (right.col_mut(0), left.col(src))
    }
}

/// Columns (p, j) ← (c·p + s·j, c·j − s·p).
fn rotate(mut q: MatMut<'_, f64>, p: usize, j: usize, c: f64, s: f64) {
    for i in 0..q.nrows() {
        let (x, y) = (q[(i, p)], q[(i, j)]);
        q[(i, p)] = c * x + s * y;
        q[(i, j)] = c * y - s * x;
    }
}

/// out = a · b by fixed column blocks of sequential products, the blocks in parallel.
fn products(out: MatMut<'_, f64>, a: MatRef<'_, f64>, b: MatRef<'_, f64>, par: Par) {
    for_each_block(column_blocks(out, COLUMN_BLOCK), par, |(c0, block)| {
        let w = block.ncols();
        matmul(block, Accum::Replace, a, b.subcols(c0, w), 1.0, Par::Seq);
    });
}
