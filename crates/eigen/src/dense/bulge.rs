//! Stage 2 of the two-stage reduction: a symmetric band matrix to tridiagonal by bulge chasing
//! (Householder variant, the schedule of LAPACK's `dsytrd_sb2st`). Sweep k annihilates column
//! k below the subdiagonal with one reflector of length ≤ b; applying it from the right to the
//! block below creates a bulge, whose first column the next reflector of the same sweep
//! annihilates, and so on down the band. The rest of each bulge is annihilated by the
//! following sweeps, so nothing ever lies more than 2b − 1 below the diagonal.
//!
//! Every step touches the columns [r₁ − b, r₁ + b) of a few b × b blocks, stored column by
//! column with the diagonal first, so all loops run over contiguous memory in cache.
//!
//! Sweeps run on several threads in a pipeline: step l of sweep k waits until sweep k − 1 has
//! finished step l + 3 (from then on their columns are at least b apart). Each step therefore
//! sees exactly the data it would see in the sequential order, and the result is bit-identical
//! for any number of threads. The band is split into tiles of b columns behind mutexes (a step
//! locks the ≤ 3 tiles it touches, in order), which makes the sharing safe without `unsafe`;
//! with the lag above two steps never want the same tile.
use super::vector::{axpy, axpy2, dot};
use pulp::Simd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// How many steps sweep k − 1 must be ahead of sweep k.
const LAG: usize = 4;
/// `progress` value of a finished sweep.
const FINISHED: usize = usize::MAX;

/// The lower band of a symmetric matrix with room for the bulges: column j holds
/// A[j..j + 2b, j], diagonal first, in tiles of b columns.
pub(crate) struct Band {
    n: usize,
    b: usize,
    ld: usize,
    tiles: Vec<Mutex<Vec<f64>>>,
    /// When eigenvectors are wanted: each sweep's reflectors, stored when the sweep ends.
    reflectors: Option<Vec<Mutex<SweepReflectors>>>,
}

/// The reflectors of one sweep: step s is H = I − τₛ vₛ vₛᵀ on rows k + 1 + s·b .. (≤ b of
/// them), vₛ = `v[s·b..(s + 1)·b]` (v₀ = 1, zero-padded), τₛ = `tau[s]` (0: identity).
#[derive(Default, Clone)]
pub(crate) struct SweepReflectors {
    pub(crate) v: Vec<f64>,
    pub(crate) tau: Vec<f64>,
}

/// Every reflector of the chase, Q₂ = Π over sweeps k = 0, 1, … of Π over steps s of H(k, s):
/// the band matrix is Q₂ T Q₂ᵀ.
#[derive(Clone)]
pub(crate) struct ChaseReflectors {
    pub(crate) n: usize,
    pub(crate) b: usize,
    pub(crate) sweeps: Vec<SweepReflectors>,
}

/// The (≤ 3) locked tiles one step works on.
struct Window<'a> {
    b: usize,
    ld: usize,
    first_tile: usize,
    guards: Vec<MutexGuard<'a, Vec<f64>>>,
}

impl Window<'_> {
    /// Rows `rows` of column `col` (all at or below the diagonal, within 2b of it), contiguous.
    #[inline]
    fn col(&mut self, col: usize, rows: std::ops::Range<usize>) -> &mut [f64] {
        let tile = &mut self.guards[col / self.b - self.first_tile];
        let base = (col % self.b) * self.ld;
        &mut tile[base + rows.start - col..base + rows.end - col]
    }
}

impl Band {
    /// Copies the band of half-width `b` from the lower triangle of `a`.
    pub(crate) fn from_lower(a: faer::MatRef<'_, f64>, b: usize) -> Band {
        let n = a.nrows();
        let b = b.max(1);
        let ld = 2 * b;
        let tiles = (0..n.div_ceil(b))
            .map(|t| {
                let mut data = vec![0.0; ld * b];
                for j in t * b..((t + 1) * b).min(n) {
                    for d in 0..=b.min(n - 1 - j) {
                        data[(j - t * b) * ld + d] = a[(j + d, j)];
                    }
                }
                Mutex::new(data)
            })
            .collect();
        Band { n, b, ld, tiles, reflectors: None }
    }

    /// Keep every reflector of the chase (for eigenvectors): n²/2 values.
    pub(crate) fn recording_reflectors(mut self) -> Band {
        self.reflectors = Some((0..self.n.saturating_sub(2)).map(|_| Mutex::new(SweepReflectors::default())).collect());
        self
    }

    fn lock(&self, cols: std::ops::Range<usize>) -> Window<'_> {
        let first_tile = cols.start / self.b;
        let last_tile = (cols.end - 1) / self.b;
        let guards = (first_tile..=last_tile).map(|t| self.tiles[t].lock().unwrap_or_else(|p| p.into_inner())).collect();
        Window { b: self.b, ld: self.ld, first_tile, guards }
    }

    /// Reduces to tridiagonal on `threads` threads; returns (diagonal, subdiagonal) and the
    /// chase's reflectors if they were recorded. `on_sweep(done, total)` is called about a
    /// hundred times.
    pub(crate) fn into_tridiagonal_and_reflectors(
        self,
        threads: usize,
        on_sweep: impl Fn(usize, usize) + Sync,
    ) -> ((Vec<f64>, Vec<f64>), Option<ChaseReflectors>) {
        let n = self.n;
        if self.b > 1 && n > 2 {
            let sweeps = n - 2;
            let progress: Vec<AtomicUsize> = (0..sweeps).map(|_| AtomicUsize::new(0)).collect();
            let next = AtomicUsize::new(0);
            let report_every = (sweeps / 100).max(1);
            let sweeps_job = Sweeps { band: &self, progress: &progress, next: &next, report_every, on_sweep: &on_sweep };
            let worker = || pulp::Arch::new().dispatch(sweeps_job);
            let threads = threads.clamp(1, sweeps);
            if threads == 1 {
                worker();
            } else {
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(worker);
                    }
                });
            }
        }
        let value = |j: usize, d: usize| self.tiles[j / self.b].lock().unwrap_or_else(|p| p.into_inner())[(j % self.b) * self.ld + d];
        let diag = (0..n).map(|j| value(j, 0)).collect();
        let sub = (0..n.saturating_sub(1)).map(|j| value(j, 1)).collect();
        let reflectors = self.reflectors.as_ref().map(|sweeps| ChaseReflectors {
            n,
            b: self.b,
            sweeps: sweeps.iter().map(|m| std::mem::take(&mut *m.lock().unwrap_or_else(|p| p.into_inner()))).collect(),
        });
        ((diag, sub), reflectors)
    }

    /// Sweep k: annihilate column k below the subdiagonal and chase the bulge to the end.
    #[inline(always)]
    fn sweep<S: Simd>(&self, simd: S, k: usize, progress: &[AtomicUsize], scratch: &mut [f64]) {
        let (n, b) = (self.n, self.b);
        let (v, rest) = scratch.split_at_mut(b);
        let (w, y) = rest.split_at_mut(b);
        let mut col = k; // the column whose entries rows r1..r2 are annihilated
        let mut r1 = k + 1;
        let mut step = 0;
        let steps = (n - k - 1).div_ceil(b);
        let mut kept =
            self.reflectors.as_ref().map(|_| SweepReflectors { v: Vec::with_capacity(steps * b), tau: Vec::with_capacity(steps) });
        while r1 < n {
            if k > 0 {
                // Wait for sweep k − 1 to be LAG steps ahead (or done).
                let mut spins = 0u32;
                while progress[k - 1].load(Ordering::Acquire) < step + LAG {
                    // Spin briefly (the usual wait is one step, microseconds), then yield, then
                    // sleep: with more threads than free cores the sweep ahead must get a core.
                    spins += 1;
                    if spins < 128 {
                        std::hint::spin_loop();
                    } else if spins < 256 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(20));
                    }
                }
            }
            let r2 = (r1 + b).min(n);
            let re = (r2 + b).min(n);
            let mut win = self.lock(col..r2);
            let tau = chase_step(simd, &mut win, col, r1, r2, re, v, w, y);
            drop(win);
            if let Some(kept) = kept.as_mut() {
                kept.v.extend_from_slice(&v[..b]);
                kept.tau.push(tau);
            }
            progress[k].store(step + 1, Ordering::Release);
            step += 1;
            col = r1;
            r1 = r2;
        }
        if let (Some(kept), Some(all)) = (kept, self.reflectors.as_ref()) {
            *all[k].lock().unwrap_or_else(|p| p.into_inner()) = kept;
        }
        progress[k].store(FINISHED, Ordering::Release);
    }
}

/// One step: annihilate A[r1..r2, col] below its first entry with H = I − τ v vᵀ, then apply H
/// to the rest of the old bulge (from the left), the diagonal block (both sides) and the block
/// below (from the right: the new bulge, rows r2..re). Returns τ; v holds the reflector,
/// zero-padded to its full length (all zero when τ = 0).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn chase_step<S: Simd>(
    simd: S,
    win: &mut Window<'_>,
    col: usize,
    r1: usize,
    r2: usize,
    re: usize,
    v: &mut [f64],
    w: &mut [f64],
    y: &mut [f64],
) -> f64 {
    let len = r2 - r1;
    v[len..].fill(0.0);
    let tau = householder(win.col(col, r1..r2), &mut v[..len]);
    if tau == 0.0 {
        return 0.0;
    }
    let v = &v[..len];
    for c in col + 1..r1 {
        let x = win.col(c, r1..r2);
        let s = tau * dot(simd, v, x);
        axpy(simd, -s, v, x);
    }
    symmetric_update(simd, win, r1, v, tau, &mut w[..len]);
    if re > r2 {
        let y = &mut y[..re - r2];
        y.fill(0.0);
        for (i, c) in (r1..r2).enumerate() {
            axpy(simd, v[i], win.col(c, r2..re), y);
        }
        for (i, c) in (r1..r2).enumerate() {
            axpy(simd, -tau * v[i], y, win.col(c, r2..re));
        }
    }
    tau
}

/// D ← H D H on the diagonal block D = A[r1.., r1..] of side v.len(), H = I − τ v vᵀ:
/// w = τ D v, w ← w − ½ τ (wᵀv) v, D ← D − v wᵀ − w vᵀ (lower triangle).
#[inline(always)]
fn symmetric_update<S: Simd>(simd: S, win: &mut Window<'_>, r1: usize, v: &[f64], tau: f64, w: &mut [f64]) {
    let len = v.len();
    w.fill(0.0);
    for c in 0..len {
        let d = win.col(r1 + c, r1 + c..r1 + len);
        w[c] += dot(simd, d, &v[c..]);
        axpy(simd, v[c], &d[1..], &mut w[c + 1..]);
    }
    w.iter_mut().for_each(|e| *e *= tau);
    let alpha = -0.5 * tau * dot(simd, w, v);
    axpy(simd, alpha, v, w);
    for c in 0..len {
        axpy2(simd, -w[c], &v[c..], -v[c], &w[c..], win.col(r1 + c, r1 + c..r1 + len));
    }
}

/// Householder reflector for `x`: x ← (β, 0, …, 0), v ← (1, …), returns τ (0 when x[1..] is 0).
fn householder(x: &mut [f64], v: &mut [f64]) -> f64 {
    let tau = super::band::householder(x);
    v.fill(0.0);
    if tau != 0.0 {
        v[0] = 1.0;
        v[1..].copy_from_slice(&x[1..]);
        x[1..].fill(0.0);
    }
    tau
}

/// The sweeps' worker loop under pulp's runtime dispatch: the chase's short vector loops (length
/// ≤ b) run on the widest vector unit the CPU has (they compiled to 2-lane SSE2 in a portable
/// build). Sweeps are taken from `next` in order; the sweep ahead of each is tracked in `progress`.
struct Sweeps<'a, F> {
    band: &'a Band,
    progress: &'a [AtomicUsize],
    next: &'a AtomicUsize,
    report_every: usize,
    on_sweep: &'a F,
}

impl<F> Clone for Sweeps<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F> Copy for Sweeps<'_, F> {}

impl<F: Fn(usize, usize) + Sync> pulp::WithSimd for Sweeps<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let sweeps = self.progress.len();
        let mut scratch = vec![0.0; 3 * self.band.b];
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            if k >= sweeps {
                break;
            }
            self.band.sweep(simd, k, self.progress, &mut scratch);
            if (k + 1).is_multiple_of(self.report_every) {
                (self.on_sweep)(k + 1, sweeps);
            }
        }
    }
}
