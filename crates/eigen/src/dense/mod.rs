//! Every eigenvalue of a dense symmetric matrix.
//!
//! Eigenvalues only (the common case: a Hessian's whole spectrum) go through a two-stage
//! reduction — dense → band by blocked Householder panels with GEMM updates ([`band`]), band →
//! tridiagonal by bulge chasing ([`bulge`]) — and the root-free QL/QR iteration on the
//! tridiagonal ([`tridiagonal`]); Q is never formed. With eigenvectors, the same reduction
//! keeps its reflectors, the tridiagonal matrix's eigenpairs come from divide and conquer
//! ([`divide`]), and only the requested eigenvectors are carried back through both stages
//! ([`back_chase`] for the chase's reflectors, [`back`] for the band stage's). Below
//! `two_stage_from` (with eigenvectors `vectors_two_stage_from`), faer's one-stage solver,
//! which also remains the reference the tests hold the two-stage path to.
mod back;
mod back_chase;
mod band;
mod bulge;
mod divide;
mod inverse;
mod secular;
mod tridiagonal;
mod vector;

use crate::{EigenError, Eigenpairs, Which};
use faer::{Mat, MatRef, Par, Side};
use hesslab_progress::Progress;
use std::borrow::Cow;

/// Parameters of the dense solver.
#[derive(Debug, Clone)]
pub struct DenseParams {
    /// Also return eigenvectors of the `top_vectors` largest eigenvalues.
    pub top_vectors: usize,
    /// Also return eigenvectors of the `bottom_vectors` smallest eigenvalues.
    pub bottom_vectors: usize,
    /// Half-bandwidth of the intermediate band matrix (eigenvalues-only path); 0 = automatic.
    pub band_width: usize,
    /// Below this side, faer's one-stage solver (faster there: no GEMM to gain).
    pub two_stage_from: usize,
    /// With more than n/8 eigenvectors, the two-stage path from this side on; below it faer's
    /// one-stage path is as fast or faster (one thread, every vector: 4.4 s both at n = 3000,
    /// 1.61 vs 1.46 s at 2000, 12.0 vs 12.3–13.7 s at 4270 — the back-transformation through
    /// the chase costs about what faer's memory-bound tridiagonalization loses until the
    /// matrix is beyond the caches). Fewer vectors always take the two-stage path (inverse
    /// iteration on the tridiagonal matrix: about the eigenvalues-only time).
    pub vectors_two_stage_from: usize,
    /// Only the k eigenvalues `which` selects (by bisection on the tridiagonal matrix, when
    /// no eigenvectors are asked); None = every eigenvalue.
    pub select: Option<(Which, usize)>,
}

impl Default for DenseParams {
    fn default() -> Self {
        DenseParams { top_vectors: 0, bottom_vectors: 0, band_width: 0, two_stage_from: 256, vectors_two_stage_from: 3000, select: None }
    }
}

/// Which path computed the eigenvalues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseMethod {
    /// dense → band → tridiagonal → QR iteration.
    TwoStage,
    /// faer's self-adjoint eigendecomposition (one-stage tridiagonalization).
    Faer,
}

/// What the dense solver did.
#[derive(Debug, Clone)]
pub struct DenseInfo {
    /// Side of the matrix.
    pub dim: usize,
    /// Wall time.
    pub seconds: f64,
    /// The path taken.
    pub method: DenseMethod,
    /// Two-stage: half-bandwidth of the band matrix.
    pub band_width: usize,
    /// Two-stage: seconds in dense → band, band → tridiagonal, tridiagonal eigenvalues.
    pub stage_seconds: [f64; 3],
    /// Two-stage with eigenvectors: the tridiagonal matrix's came from inverse iteration (few
    /// wanted) rather than divide and conquer.
    pub inverse_iteration: bool,
}

/// Dense symmetric eigensolver: every eigenvalue, and the extreme eigenvectors on request.
pub struct DenseSolver;

impl DenseSolver {
    /// Eigenvalues in descending order; residuals are None (exact up to rounding).
    pub fn solve(a: &Mat<f64>, p: &DenseParams) -> Result<(Eigenpairs, DenseInfo), EigenError> {
        Self::solve_with_progress(a, p, &Progress::hidden())
    }

    /// As [`DenseSolver::solve`], with a progress bar for the reduction.
    pub fn solve_with_progress(a: &Mat<f64>, p: &DenseParams, progress: &Progress) -> Result<(Eigenpairs, DenseInfo), EigenError> {
        Self::solve_matrix(Cow::Borrowed(a), p, progress)
    }

    /// As [`DenseSolver::solve_with_progress`], consuming `a`: the eigenvalues-only reduction
    /// works in `a` itself instead of a copy (as LAPACK's `dsyevd` overwrites A), so a caller
    /// that has no further use for the matrix — a stage that materialized it — saves 8n² bytes.
    pub fn solve_owned(a: Mat<f64>, p: &DenseParams, progress: &Progress) -> Result<(Eigenpairs, DenseInfo), EigenError> {
        Self::solve_matrix(Cow::Owned(a), p, progress)
    }

    /// `a` borrowed is copied before the in-place reduction; owned, it is reduced itself.
    fn solve_matrix(a: Cow<'_, Mat<f64>>, p: &DenseParams, progress: &Progress) -> Result<(Eigenpairs, DenseInfo), EigenError> {
        let t0 = std::time::Instant::now();
        let n = a.nrows();
        if a.ncols() != n {
            return Err(EigenError::Invalid(format!("matrix is {}×{}, not square", n, a.ncols())));
        }
        if let Some((i, j)) = first_non_finite(Mat::as_ref(&a)) {
            return Err(EigenError::Invalid(format!("matrix entry ({i}, {j}) is {} (not finite)", a[(i, j)])));
        }
        let want_vectors = p.top_vectors > 0 || p.bottom_vectors > 0;
        let mut info =
            DenseInfo { dim: n, seconds: 0.0, method: DenseMethod::Faer, band_width: 0, stage_seconds: [0.0; 3], inverse_iteration: false };
        let two_stage = n >= p.two_stage_from.max(3);
        let b = if p.band_width == 0 { default_band_width(n) } else { p.band_width };
        // A few vectors (inverse iteration) cost about the eigenvalues-only time plus their
        // back-transformation, at any size; many follow `vectors_two_stage_from`.
        let few = few_vectors(wanted_columns(p, n).len(), n);
        let (values, vectors) = if want_vectors && two_stage && (few || n >= p.vectors_two_stage_from) {
            info.method = DenseMethod::TwoStage;
            info.band_width = b;
            two_stage_eigenpairs(a.into_owned(), b, p, progress, &mut info)?
        } else if want_vectors {
            let evd = a.self_adjoint_eigen(Side::Lower).map_err(EigenError::Dense)?;
            let s = evd.S();
            let u = evd.U();
            let vals: Vec<f64> = (0..n).map(|i| s[i]).collect();
            let cols = wanted_columns(p, n).into_iter().map(|(rank, c)| (rank, u.col(c).iter().copied().collect())).collect();
            (vals, cols)
        } else if !two_stage {
            (a.self_adjoint_eigenvalues(Side::Lower).map_err(EigenError::Dense)?, vec![])
        } else {
            info.method = DenseMethod::TwoStage;
            info.band_width = b;
            let par = faer::get_global_parallelism();
            let (mut diag, mut sub) = two_stage_tridiagonal(a.into_owned(), b, par, progress, &mut info.stage_seconds);
            let t = std::time::Instant::now();
            // Bisection for a few extreme values; a selection covering the whole spectrum is
            // cheaper by the QL/QR iteration (O(n²) in all, not O(n²) per 55 steps).
            let (bottom, top) = match p.select {
                Some((Which::Largest, k)) => (0, k.min(n)),
                Some((Which::Smallest, k)) => (k.min(n), 0),
                Some((Which::Magnitude, k)) => (k.min(n), k.min(n)),
                None => (n, n),
            };
            let values = if bottom + top < n {
                let mut v = tridiagonal::tridiagonal_eigenvalues_by_index(&diag, &sub, 0..bottom);
                v.extend(tridiagonal::tridiagonal_eigenvalues_by_index(&diag, &sub, n - top..n));
                v
            } else {
                tridiagonal::tridiagonal_eigenvalues(&mut diag, &mut sub).map_err(|unconverged| EigenError::NoConvergence {
                    solver: "tridiagonal QL/QR",
                    detail: format!(
                        "{unconverged} off-diagonal entries of the {n}×{n} tridiagonal matrix did not converge in 30·n iterations"
                    ),
                    info: crate::PartialInfo::Dense,
                })?;
                diag
            };
            info.stage_seconds[2] = t.elapsed().as_secs_f64();
            (values, vec![])
        };
        info.seconds = t0.elapsed().as_secs_f64();
        Ok((select(values, vectors, n, p.select), info))
    }
}

/// Descending values with their ranks (0 = largest of all n); with `select`, only the chosen k
/// (for `Magnitude`, the k of largest |λ| among the k smallest and k largest).
fn select(mut values: Vec<f64>, vectors: Vec<(u32, Vec<f64>)>, n: usize, select: Option<(Which, usize)>) -> Eigenpairs {
    values.sort_by(|x, y| y.total_cmp(x));
    let ranked: Vec<(u32, f64)> = if values.len() == n {
        values.into_iter().enumerate().map(|(r, v)| (r as u32, v)).collect()
    } else {
        // Partial: the first `top` (descending) came from the top end of the spectrum.
        let (top, bottom) = match select {
            Some((Which::Largest, _)) => (values.len(), 0),
            Some((Which::Smallest, _)) => (0, values.len()),
            _ => (values.len() / 2, values.len() - values.len() / 2),
        };
        let mut r: Vec<(u32, f64)> = values[..top].iter().enumerate().map(|(i, v)| (i as u32, *v)).collect();
        r.extend(values[top..].iter().enumerate().map(|(j, v)| ((n - bottom + j) as u32, *v)));
        r
    };
    let chosen: Vec<(u32, f64)> = match select {
        None => ranked,
        Some((which, k)) => {
            let k = k.min(n);
            match which {
                Which::Largest => ranked.into_iter().take(k).collect(),
                Which::Smallest => {
                    let len = ranked.len();
                    ranked.into_iter().skip(len.saturating_sub(k)).collect()
                }
                Which::Magnitude => {
                    let mut by_size = ranked;
                    by_size.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()).then(x.0.cmp(&y.0)));
                    by_size.truncate(k);
                    by_size.sort_by_key(|x| x.0);
                    by_size
                }
            }
        }
    };
    let (ranks, values): (Vec<u32>, Vec<f64>) = chosen.into_iter().unzip();
    Eigenpairs { ranks, residuals: vec![None; values.len()], values, vectors }
}

/// Below this side the bulge chase runs on one thread (its steps are too short to hand over).
const PARALLEL_CHASE_FROM: usize = 1500;

/// The band width that balances stage 1 (GEMMs of inner size b) against stage 2 (O(n²·b)).
fn default_band_width(n: usize) -> usize {
    if n < 1024 { 16 } else { 32 }
}

/// The symmetric tridiagonal matrix (diagonal, off-diagonal) orthogonally similar to the lower
/// triangle of `work` (overwritten, then freed before the bulge chase), by the two-stage
/// reduction with half-bandwidth `b`; `seconds[0..2]` get the stages' wall times.
pub(crate) fn two_stage_tridiagonal(
    work: Mat<f64>,
    b: usize,
    par: Par,
    progress: &Progress,
    seconds: &mut [f64; 3],
) -> (Vec<f64>, Vec<f64>) {
    let n = work.nrows();
    let bar = progress.bar(100, &format!("dense eigenvalues {n}×{n}"));
    let (tridiagonal, _) = reduce(work, b, par, false, &|x| bar.set_position((99.0 * x) as u64), seconds);
    bar.finish_and_clear();
    tridiagonal
}

/// The reflectors of both stages, A = Q₁ Q₂ T Q₂ᵀ Q₁ᵀ, and the finished working copy (for the
/// next step's scratch).
type Reflectors = (Vec<band::PanelReflectors>, bulge::ChaseReflectors, Mat<f64>);

/// The two-stage reduction, keeping its reflectors when `keep`; `done(fraction)` reports
/// progress.
fn reduce(
    mut work: Mat<f64>,
    b: usize,
    par: Par,
    keep: bool,
    done: &(dyn Fn(f64) + Sync),
    seconds: &mut [f64; 3],
) -> ((Vec<f64>, Vec<f64>), Option<Reflectors>) {
    let n = work.nrows();
    let b = b.clamp(1, n.max(1));
    let mut t = std::time::Instant::now();
    // Stage 1 is most of the work; 85 % of the bar follows its panels, each costing
    // ∝ (n − j)², so the done fraction is 1 − (panels left / panels)³.
    let on_panel = |finished: usize, total: usize| {
        let rest = (total - finished) as f64 / total.max(1) as f64;
        done(0.85 * (1.0 - rest * rest * rest));
    };
    let panels = if keep {
        band::reduce_to_band_with_reflectors(work.as_mut(), b, par, on_panel)
    } else {
        band::reduce_to_band(work.as_mut(), b, par, on_panel);
        vec![]
    };
    seconds[0] = t.elapsed().as_secs_f64();
    t = std::time::Instant::now();
    let mut band = bulge::Band::from_lower(work.as_ref(), b);
    if keep {
        band = band.recording_reflectors();
    }
    let work = keep.then_some(work);
    let threads = if n >= PARALLEL_CHASE_FROM { par.degree() } else { 1 };
    let (tridiagonal, chase) =
        band.into_tridiagonal_and_reflectors(threads, |finished, total| done(0.85 + 0.15 * finished as f64 / total.max(1) as f64));
    seconds[1] = t.elapsed().as_secs_f64();
    (tridiagonal, chase.zip(work).map(|(chase, work)| (panels, chase, work)))
}

/// Every eigenvalue and the requested eigenvectors by the two-stage reduction, the tridiagonal
/// matrix's eigenvectors (inverse iteration for few, else divide and conquer), and the
/// back-transformation of only the requested columns. `info.stage_seconds`: reduction (both
/// stages), tridiagonal eigenpairs, back-transformation.
#[allow(clippy::type_complexity)]
fn two_stage_eigenpairs(
    work: Mat<f64>,
    b: usize,
    p: &DenseParams,
    progress: &Progress,
    info: &mut DenseInfo,
) -> Result<(Vec<f64>, Vec<(u32, Vec<f64>)>), EigenError> {
    let n = work.nrows();
    let par = faer::get_global_parallelism();
    let bar = progress.bar(100, &format!("dense eigenvectors {n}×{n}"));
    // The bar's shares follow the time at n = 11 274 with every vector: reduction 22 %,
    // divide and conquer 16 %, Q₂ 42 %, Q₁ 20 %.
    let mut stage = [0.0; 3];
    let ((diag, sub), reflectors) = reduce(work, b, par, true, &|x| bar.set_position((22.0 * x) as u64), &mut stage);
    let Some((panels, chase, scratch)) = reflectors else { unreachable!("reduce keeps the reflectors when asked") };
    info.stage_seconds[0] = stage[0] + stage[1];
    let t = std::time::Instant::now();
    let wanted = wanted_columns(p, n);
    // The requested columns in ascending order.
    let mut columns: Vec<usize> = wanted.iter().map(|w| w.1).collect();
    columns.sort_unstable();
    let by_inverse_iteration = few_vectors(columns.len(), n).then(|| few_tridiagonal_eigenpairs(&diag, &sub, &columns)).flatten();
    info.inverse_iteration = by_inverse_iteration.is_some();
    let (values, mut x) = match by_inverse_iteration {
        Some(pairs) => {
            // Divide and conquer's scratch (the reduction's working copy, n²) is not needed.
            drop(scratch);
            pairs
        }
        None => {
            let (values, xt) = divide::tridiagonal_eigenpairs(&diag, &sub, par, Some(scratch)).map_err(|detail| {
                EigenError::NoConvergence { solver: "tridiagonal divide and conquer", detail, info: crate::PartialInfo::Dense }
            })?;
            // All of them: X_T itself, no copy.
            let x = if columns.len() == n { xt } else { Mat::<f64>::from_fn(n, columns.len(), |i, c| xt[(i, columns[c])]) };
            (values, x)
        }
    };
    bar.set_position(38);
    info.stage_seconds[1] = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    back_chase::apply_chase_reflectors(chase, x.as_mut(), par, &|f| bar.set_position(38 + (42.0 * f) as u64));
    back::apply_band_reflectors(&panels, x.as_mut(), par, &|f| bar.set_position(80 + (20.0 * f) as u64));
    info.stage_seconds[2] = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let vectors = wanted
        .iter()
        .map(|&(rank, index)| {
            let c = columns.partition_point(|&i| i < index);
            (rank, x.col(c).iter().copied().collect())
        })
        .collect();
    Ok((values, vectors))
}

/// Inverse iteration when at most n/8 of the n vectors are wanted (divide and conquer computes
/// all n at once; inverse iteration costs O(n) per vector plus reorthogonalization within
/// clusters).
fn few_vectors(wanted: usize, n: usize) -> bool {
    wanted <= n / 8
}

/// Every eigenvalue (the QL/QR iteration, as without vectors: the same values) and the
/// eigenvectors at the ascending positions `columns` by inverse iteration; None when it cannot
/// vouch for them (see [`inverse`]).
fn few_tridiagonal_eigenpairs(diag: &[f64], sub: &[f64], columns: &[usize]) -> Option<(Vec<f64>, Mat<f64>)> {
    let (mut values, mut e) = (diag.to_vec(), sub.to_vec());
    tridiagonal::tridiagonal_eigenvalues(&mut values, &mut e).ok()?;
    values.sort_by(f64::total_cmp);
    let x = inverse::tridiagonal_eigenvectors(diag, sub, &values, columns)?;
    Some((values, x))
}

/// The requested eigenvectors as (rank, column): rank 0 = largest of all n, column in the
/// ascending order both solvers return (the top ones are the last).
fn wanted_columns(p: &DenseParams, n: usize) -> Vec<(u32, usize)> {
    let mut wanted: Vec<(u32, usize)> = (0..p.top_vectors.min(n)).map(|r| (r as u32, n - 1 - r)).collect();
    for r in 0..p.bottom_vectors.min(n) {
        let rank = n - 1 - r;
        if rank >= p.top_vectors {
            wanted.push((rank as u32, r));
        }
    }
    wanted
}

fn first_non_finite(a: MatRef<'_, f64>) -> Option<(usize, usize)> {
    for j in 0..a.ncols() {
        for i in j..a.nrows() {
            if !a[(i, j)].is_finite() {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_vectors;
