//! Thick-restart Lanczos (Wu & Simon 2000) with full reorthogonalization, for a few extreme
//! eigenpairs of a symmetric operator.
//!
//! Why not faer's `partial_self_adjoint_eigen`: in faer 0.24.4 its restart compaction copies
//! Ritz vectors forward instead of permuting them, so it can return duplicated eigenpairs or
//! spin forever (faer-rs #262). This solver keeps the whole (small) projected matrix, solves it
//! with faer's dense self-adjoint eigensolver, and checks what it returns: explicit residuals
//! ‖Av − λv‖ of every pair, orthogonality of the returned vectors, and restart/time caps that
//! turn a stall into an error.
use crate::{EigenError, Eigenpairs, PartialInfo, Result, SmallEvd, norm, reorthogonalize, tall_times_small};
use faer::{Mat, Side};
use hesslab_data::rng::Rng;
use hesslab_linop::LinearOperator;
use hesslab_progress::Progress;
use std::time::Instant;

/// Which end of the spectrum a solver targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// k largest (algebraic): the outliers.
    Largest,
    /// k smallest (algebraic): the negative tail.
    Smallest,
    /// k largest in magnitude.
    Magnitude,
}

/// Parameters of thick-restart Lanczos.
#[derive(Debug, Clone)]
pub struct LanczosParams {
    /// Number of eigenpairs.
    pub k: usize,
    /// Which end of the spectrum.
    pub which: Which,
    /// Krylov subspace size before a restart (0 = max(2k + 20, 40), capped at n − 1).
    pub max_dim: usize,
    /// Convergence: ‖Av − λv‖ ≤ tol · max|θ| for every wanted pair.
    pub tol: f64,
    /// Restarts before giving up.
    pub max_restarts: usize,
    /// Wall-clock cap in seconds.
    pub max_seconds: f64,
    /// Seed of the start vector.
    pub seed: u64,
    /// Operators of at most this dimension are solved densely (materialized).
    pub dense_below: usize,
    /// Also test convergence every this many new Krylov vectors, not only when the basis is
    /// full (0 = only when full, as before). A start close to the answer (`warm_start`) then
    /// stops as soon as its pairs converge instead of filling the basis first.
    pub check_every: usize,
}

impl Default for LanczosParams {
    fn default() -> Self {
        LanczosParams {
            k: 20,
            which: Which::Largest,
            max_dim: 0,
            tol: 1e-10,
            max_restarts: 2000,
            max_seconds: 3600.0,
            seed: 0,
            dense_below: 64,
            check_every: 0,
        }
    }
}

/// What Lanczos did.
#[derive(Debug, Clone, Default)]
pub struct LanczosInfo {
    /// Restarts used.
    pub restarts: usize,
    /// Operator applications used.
    pub applications: u64,
    /// Largest residual ‖Av − λv‖ of the returned pairs.
    pub max_residual: f64,
    /// max|VᵀV − I| of the returned vectors.
    pub orthogonality_error: f64,
    /// Wall time.
    pub seconds: f64,
    /// The operator was small enough to solve densely instead.
    pub dense_fallback: bool,
}

/// Thick-restart Lanczos with full reorthogonalization (matrix-free).
pub struct LanczosSolver;

/// A start vector for the next solve of a slowly changing operator (consecutive training
/// snapshots): the sum of the previous Ritz vectors, so the first Krylov vectors already lie
/// near the wanted invariant subspace and every wanted direction has weight. `None` for no
/// vectors (or a zero sum).
pub fn warm_start(vectors: &[&[f64]]) -> Option<Vec<f64>> {
    let n = vectors.first()?.len();
    let mut s = vec![0.0; n];
    for v in vectors.iter().filter(|v| v.len() == n) {
        s.iter_mut().zip(v.iter()).for_each(|(a, b)| *a += b);
    }
    let nrm = norm(&s);
    (nrm.is_finite() && nrm > 0.0).then(|| s.into_iter().map(|x| x / nrm).collect())
}

fn select(theta: &[f64], which: Which, count: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..theta.len()).collect();
    match which {
        Which::Largest => idx.sort_by(|&a, &b| theta[b].total_cmp(&theta[a])),
        Which::Smallest => idx.sort_by(|&a, &b| theta[a].total_cmp(&theta[b])),
        Which::Magnitude => idx.sort_by(|&a, &b| theta[b].abs().total_cmp(&theta[a].abs())),
    }
    idx.truncate(count);
    idx
}

impl LanczosSolver {
    /// The k eigenpairs `p.which` asks for, each verified by its residual.
    pub fn solve(op: &dyn LinearOperator, p: &LanczosParams, progress: &Progress) -> Result<(Eigenpairs, LanczosInfo)> {
        Self::solve_from(op, p, None, progress)
    }

    /// As `solve`, from a given start vector instead of a random one (`None` = random from
    /// `p.seed`). A start inside (or near) the wanted invariant subspace — the previous
    /// snapshot's Ritz vectors, see `warm_start` — needs fewer operator applications; the
    /// answer is verified by the same residuals either way.
    pub fn solve_from(
        op: &dyn LinearOperator,
        p: &LanczosParams,
        start: Option<&[f64]>,
        progress: &Progress,
    ) -> Result<(Eigenpairs, LanczosInfo)> {
        let t0 = Instant::now();
        let n = op.dim();
        let apps0 = op.applications();
        if p.k == 0 || p.k > n {
            return Err(EigenError::Invalid(format!("k = {} must be in 1..={n}", p.k)));
        }
        if n <= p.dense_below.max(2 * p.k + 2) {
            return Self::dense_fallback(op, p, t0, apps0);
        }
        let m = if p.max_dim == 0 { (2 * p.k + 20).max(40) } else { p.max_dim.max(p.k + 2) }.min(n - 1);
        let mut rng = Rng::new(p.seed);
        let mut v = Mat::<f64>::zeros(n, m + 1);
        let mut t = Mat::<f64>::zeros(m, m);
        let mut start: Vec<f64> = match start {
            Some(s) if s.len() != n => {
                return Err(EigenError::Invalid(format!("start vector has {} entries; the operator's side is {n}", s.len())));
            }
            Some(s) => s.to_vec(),
            None => (0..n).map(|_| rng.normal()).collect(),
        };
        let s = norm(&start);
        if !(s.is_finite() && s > 0.0) {
            return Err(EigenError::Invalid(format!("start vector has norm {s}; it must be finite and non-zero")));
        }
        start.iter_mut().for_each(|x| *x /= s);
        v.col_mut(0).iter_mut().zip(&start).for_each(|(a, b)| *a = *b);
        let mut j0 = 0;
        let mut restarts = 0;
        let mut w = Mat::<f64>::zeros(n, 1);
        let bar = progress.bar(p.max_restarts as u64, "Lanczos restarts");
        loop {
            let mut beta = 0.0;
            for j in j0..m {
                op.apply_block(v.as_ref().subcols(j, 1), w.as_mut());
                let wv = w.col_as_slice_mut(0);
                let h = reorthogonalize(v.as_ref(), j + 1, wv);
                for (i, hi) in h.iter().enumerate() {
                    t[(i, j)] = *hi;
                    t[(j, i)] = *hi;
                }
                beta = norm(wv);
                let scale = h.iter().fold(0.0f64, |a, b| a.max(b.abs())).max(1e-300);
                if beta <= 1e-12 * scale {
                    // Invariant subspace: continue from a fresh random direction.
                    let mut r: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
                    reorthogonalize(v.as_ref(), j + 1, &mut r);
                    let rn = norm(&r);
                    wv.iter_mut().zip(&r).for_each(|(a, b)| *a = b / rn);
                    beta = 0.0;
                } else {
                    wv.iter_mut().for_each(|x| *x /= beta);
                }
                v.col_mut(j + 1).copy_from(w.col(0));
                if j + 1 < m {
                    t[(j + 1, j)] = beta;
                    t[(j, j + 1)] = beta;
                }
                let size = j + 1;
                if p.check_every > 0 && size < m && size > p.k && (size - j0) % p.check_every == 0 {
                    // The leading size × size block is the Rayleigh quotient of the first
                    // `size` vectors, with residual β·|last component| per Ritz pair.
                    let lead = t.as_ref().submatrix(0, 0, size, size).to_owned();
                    let evd = SmallEvd::new(lead.as_ref())?;
                    let theta: Vec<f64> = (0..size).map(|i| evd.S()[i]).collect();
                    let scale = theta.iter().fold(0.0f64, |a, b| a.max(b.abs())).max(f64::MIN_POSITIVE);
                    let wanted = select(&theta, p.which, p.k);
                    if wanted.iter().all(|&i| (beta * evd.U()[(size - 1, i)]).abs() <= p.tol * scale) {
                        bar.finish_and_clear();
                        return Self::finish(op, &v, evd.U(), &theta, &wanted, size, p, restarts, t0, apps0);
                    }
                }
            }
            let evd = SmallEvd::new(t.as_ref())?;
            let theta: Vec<f64> = (0..m).map(|i| evd.S()[i]).collect();
            let s = evd.U();
            let scale = theta.iter().fold(0.0f64, |a, b| a.max(b.abs())).max(f64::MIN_POSITIVE);
            let wanted = select(&theta, p.which, p.k);
            let res: Vec<f64> = wanted.iter().map(|&i| (beta * s[(m - 1, i)]).abs()).collect();
            let worst = res.iter().fold(0.0f64, |a, &b| a.max(b));
            let converged = res.iter().filter(|&&r| r <= p.tol * scale).count();
            bar.set_message(format!("{converged}/{} converged, worst residual {:.1e}", p.k, worst / scale));
            bar.inc(1);
            if converged == p.k {
                bar.finish_and_clear();
                return Self::finish(op, &v, s, &theta, &wanted, m, p, restarts, t0, apps0);
            }
            restarts += 1;
            if restarts > p.max_restarts || t0.elapsed().as_secs_f64() > p.max_seconds {
                bar.finish_and_clear();
                let info = LanczosInfo {
                    restarts,
                    applications: op.applications() - apps0,
                    max_residual: worst,
                    orthogonality_error: f64::NAN,
                    seconds: t0.elapsed().as_secs_f64(),
                    dense_fallback: false,
                };
                return Err(EigenError::NoConvergence {
                    solver: "lanczos",
                    detail: format!(
                        "{converged} of {} eigenpairs converged after {restarts} restarts, {} operator applications, {:.1} s; worst relative residual {:.2e} (tol {:.1e}); raise max_restarts/max_dim or loosen tol",
                        p.k,
                        info.applications,
                        info.seconds,
                        worst / scale,
                        p.tol
                    ),
                    info: PartialInfo::Lanczos(info),
                });
            }
            // Thick restart: keep the best `keep` Ritz vectors plus the residual direction.
            let keep = (p.k + (m - p.k) / 2).min(m - 1).max(p.k);
            let kept = select(&theta, p.which, keep);
            let sk = Mat::from_fn(m, keep, |i, c| s[(i, kept[c])]);
            let mut vk = Mat::<f64>::zeros(n, keep);
            tall_times_small(vk.as_mut(), v.as_ref().subcols(0, m), sk.as_ref());
            let resid = v.col(m).to_owned();
            v.as_mut().subcols_mut(0, keep).copy_from(&vk);
            v.col_mut(keep).copy_from(&resid);
            t.fill(0.0);
            for (c, &i) in kept.iter().enumerate() {
                t[(c, c)] = theta[i];
                let b = beta * s[(m - 1, i)];
                t[(c, keep)] = b;
                t[(keep, c)] = b;
            }
            j0 = keep;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        op: &dyn LinearOperator,
        v: &Mat<f64>,
        s: faer::MatRef<'_, f64>,
        theta: &[f64],
        wanted: &[usize],
        m: usize,
        p: &LanczosParams,
        restarts: usize,
        t0: Instant,
        apps0: u64,
    ) -> Result<(Eigenpairs, LanczosInfo)> {
        let n = v.nrows();
        let k = wanted.len();
        let sk = Mat::from_fn(m, k, |i, c| s[(i, wanted[c])]);
        let mut x = Mat::<f64>::zeros(n, k);
        tall_times_small(x.as_mut(), v.as_ref().subcols(0, m), sk.as_ref());
        let vals: Vec<f64> = wanted.iter().map(|&i| theta[i]).collect();
        Self::verify_and_pack(op, x, vals, p, restarts, t0, apps0, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn verify_and_pack(
        op: &dyn LinearOperator,
        x: Mat<f64>,
        vals: Vec<f64>,
        p: &LanczosParams,
        restarts: usize,
        t0: Instant,
        apps0: u64,
        dense_fallback: bool,
    ) -> Result<(Eigenpairs, LanczosInfo)> {
        let n = x.nrows();
        let k = x.ncols();
        let mut ax = Mat::<f64>::zeros(n, k);
        op.apply_block(x.as_ref(), ax.as_mut());
        let residuals: Vec<f64> = (0..k).map(|c| (0..n).map(|i| (ax[(i, c)] - vals[c] * x[(i, c)]).powi(2)).sum::<f64>().sqrt()).collect();
        let mut orth = 0.0f64;
        for a in 0..k {
            for b in 0..=a {
                let d: f64 = (0..n).map(|i| x[(i, a)] * x[(i, b)]).sum();
                orth = orth.max((d - if a == b { 1.0 } else { 0.0 }).abs());
            }
        }
        let info = LanczosInfo {
            restarts,
            applications: op.applications() - apps0,
            max_residual: residuals.iter().fold(0.0f64, |a, &b| a.max(b)),
            orthogonality_error: orth,
            seconds: t0.elapsed().as_secs_f64(),
            dense_fallback,
        };
        if orth > 1e-8 {
            return Err(EigenError::NoConvergence {
                solver: "lanczos",
                detail: format!("returned vectors are not orthonormal (max|VᵀV − I| = {orth:.2e}); refusing duplicated eigenpairs"),
                info: PartialInfo::Lanczos(info),
            });
        }
        // Descending order, with global ranks where they are known.
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
        let ranks: Vec<u32> = match p.which {
            Which::Largest | Which::Magnitude => (0..k as u32).collect(),
            Which::Smallest => ((n - k) as u32..n as u32).collect(),
        };
        let pairs = Eigenpairs {
            ranks: ranks.clone(),
            values: order.iter().map(|&i| vals[i]).collect(),
            residuals: order.iter().map(|&i| Some(residuals[i])).collect(),
            vectors: order.iter().zip(&ranks).map(|(&i, &r)| (r, x.col(i).iter().copied().collect())).collect(),
        };
        Ok((pairs, info))
    }

    /// Small operators: materialize and use the dense solver (faer's Krylov–Schur panics when
    /// n ≤ its subspace size; a dense solve is exact and cheap there).
    fn dense_fallback(op: &dyn LinearOperator, p: &LanczosParams, t0: Instant, apps0: u64) -> Result<(Eigenpairs, LanczosInfo)> {
        let n = op.dim();
        let mut a = Mat::<f64>::zeros(n, n);
        op.apply_block(Mat::<f64>::identity(n, n).as_ref(), a.as_mut());
        hesslab_linop::symmetrize(&mut a);
        let evd = a.self_adjoint_eigen(Side::Lower).map_err(EigenError::Dense)?;
        let theta: Vec<f64> = (0..n).map(|i| evd.S()[i]).collect();
        let wanted = select(&theta, p.which, p.k);
        let x = Mat::from_fn(n, wanted.len(), |i, c| evd.U()[(i, wanted[c])]);
        let vals = wanted.iter().map(|&i| theta[i]).collect();
        Self::verify_and_pack(op, x, vals, p, 0, t0, apps0, true)
    }
}
