//! X ← Q₂ X: the chase's reflectors (stage 2, [`super::bulge`]) applied to eigenvectors.
//!
//! Stage 2's reflectors are short (b rows each) and many (n²/2b): one at a time they would be
//! level-2 work. Reflectors of G consecutive sweeps at the same step s overlap by all but one
//! row each, so they form one block reflector I − V T Vᵀ of b + G − 1 rows (a parallelogram V).
//! Its product order is legal: within a sweep the steps act on disjoint rows (they commute),
//! and sweep k's step s + 1 precedes sweep k + 1's step s, so the groups of one band of G
//! sweeps are applied in ascending s, and the bands from the last to the first.
//!
//! Bands advance BANDS_IN_FLIGHT at a time, each one step behind the band before it (band
//! j + 1 at step s − 1 while band j is at step s): a group of the earlier band then only
//! follows groups of the later band it must follow, and the rows the wave works on stay in
//! cache instead of streaming all of X once per band.
//!
//! The groups are packed (V row by row, T) — once for all blocks of columns, or each just
//! before use when there is one block — and applied on transposed blocks of columns by
//! a register kernel: for a tile of columns, G accumulators per vector of columns hold Xᵀ V,
//! are multiplied by Tᵀ in place, and one more pass adds them times Vᵀ. As two GEMMs per group
//! (products of inner size G on a zero-padded V) the same work ran at ~60 % of faer's rate for
//! a large product. Each column's arithmetic is the same fused multiply-adds in the same order
//! on every vector width and tile, so the bits depend neither on the CPU nor the thread count.
use super::band::{column_blocks, for_each_block, triangular_factor_from_gram};
use super::bulge::ChaseReflectors;
use faer::prelude::Reborrow;
use faer::{MatMut, MatRef, Par};
use pulp::Simd;

/// Reflectors per group (G = 4: 35 rows for b = 32, 9 % padding; with 6 vectors of columns
/// per tile, 24 accumulators and 6 loaded vectors fill AVX-512's 32 registers).
const G: usize = 4;

/// Bands of G sweeps applied together (8: ~8 × 36 rows of a 480-column block, ~1.1 MB).
const BANDS_IN_FLIGHT: usize = 8;

/// Columns per block: 10 tiles of 6 AVX-512 vectors, 40 of 3 AVX2 vectors.
const COLUMNS: usize = 480;

/// Column stride of a transposed block: a multiple of every vector width.
const LANE_MULTIPLE: usize = 8;

/// One group: step `step` of the `count` sweeps from `first`, on rows `row0..row0 + rows` of
/// X.
struct Group {
    first: usize,
    step: usize,
    count: usize,
    row0: usize,
    rows: usize,
}

/// Values per packed group: `v[i·G + k]` = V[i, k] for its rows (zero outside the
/// parallelogram and in columns past the group's reflectors), then `t[k·G + l]` = T[k, l]
/// (upper triangular; zero past the group's reflectors).
fn stride(b: usize) -> usize {
    v_values(b) + G * G
}

/// Values of a packed group's V: b + G − 1 rows of G.
fn v_values(b: usize) -> usize {
    (b + G - 1) * G
}

/// X ← Q₂ X; `done(fraction)` after each block of columns. With more than one block of
/// columns the groups are packed once (~0.6 n² values) for all blocks and the reflectors
/// dropped (n²/2); with one block (a few vectors wanted) each group is prepared just before
/// it is applied.
pub(crate) fn apply_chase_reflectors(r: ChaseReflectors, x: MatMut<'_, f64>, par: Par, done: &(dyn Fn(f64) + Sync)) {
    let (n, b) = (r.n, r.b);
    let groups = schedule(&r);
    let stride = stride(b);
    if x.ncols() <= COLUMNS {
        let mut chunk = vec![0.0; stride];
        with_transposed(x, n, |xt, ld| {
            for group in &groups {
                chunk.fill(0.0);
                fill(&r, group, &mut chunk);
                apply_group(&chunk, group, b, xt, ld);
            }
        });
        done(1.0);
        return;
    }
    let mut packed = vec![0.0; groups.len() * stride];
    use rayon::prelude::*;
    match par {
        Par::Seq => packed.chunks_mut(stride).zip(&groups).for_each(|(chunk, group)| fill(&r, group, chunk)),
        Par::Rayon(_) => packed.par_chunks_mut(stride).zip(&groups).for_each(|(chunk, group)| fill(&r, group, chunk)),
    }
    drop(r);
    let blocks = x.ncols().div_ceil(COLUMNS);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    for_each_block(column_blocks(x, COLUMNS), par, |(_, x)| {
        with_transposed(x, n, |xt, ld| {
            for (group, chunk) in groups.iter().zip(packed.chunks(stride)) {
                apply_group(chunk, group, b, xt, ld);
            }
        });
        done((finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1) as f64 / blocks as f64);
    });
}

/// `f(xt, ld)` on Xᵀ of the block, row r of X at `xt[r·ld..]`: the rows a group touches are
/// then one contiguous piece (in X they are short pieces of w columns a whole column apart,
/// one TLB entry each).
fn with_transposed(mut x: MatMut<'_, f64>, n: usize, f: impl FnOnce(&mut [f64], usize)) {
    let w = x.ncols();
    let ld = w.next_multiple_of(LANE_MULTIPLE);
    let mut xt = vec![0.0; n * ld];
    MatMut::from_column_major_slice_with_stride_mut(&mut xt, w, n, ld).copy_from(x.rb().transpose());
    f(&mut xt, ld);
    x.copy_from(MatRef::from_column_major_slice_with_stride(&xt, w, n, ld).transpose());
}

/// One packed group (`chunk`, see [`stride`]) on the transposed block.
fn apply_group(chunk: &[f64], group: &Group, b: usize, xt: &mut [f64], ld: usize) {
    let (v, t) = chunk.split_at(v_values(b));
    let t: &[f64; G * G] = t.try_into().expect("G × G entries of T");
    let rows = &mut xt[group.row0 * ld..(group.row0 + group.rows) * ld];
    pulp::Arch::new().dispatch(Job { v: &v[..group.rows * G], t, rows, ld });
}

/// The groups in a legal order (module doc).
fn schedule(r: &ChaseReflectors) -> Vec<Group> {
    let (n, b) = (r.n, r.b);
    let sweeps = r.sweeps.len();
    let steps = |i: usize| r.sweeps[i].tau.len();
    let mut groups = Vec::new();
    let bands: Vec<usize> = (0..sweeps).step_by(G).rev().collect();
    for wave in bands.chunks(BANDS_IN_FLIGHT) {
        let longest = wave.iter().enumerate().map(|(lag, &first)| lag + steps(first)).max().unwrap_or(0);
        for time in 0..longest {
            for (lag, &first) in wave.iter().enumerate() {
                let Some(step) = time.checked_sub(lag).filter(|&s| s < steps(first)) else { continue };
                // Sweeps first..first + count have this step (sweeps' step counts do not
                // increase).
                let count = (first..(first + G).min(sweeps)).take_while(|&i| step < steps(i)).count();
                let row0 = first + 1 + step * b;
                let rows = (first + count + step * b + b).min(n) - row0;
                groups.push(Group { first, step, count, row0, rows });
            }
        }
    }
    groups
}

/// Packs a group into a zeroed `chunk` (see [`stride`]).
fn fill(r: &ChaseReflectors, group: &Group, chunk: &mut [f64]) {
    let b = r.b;
    let (v, t) = chunk.split_at_mut(v_values(b));
    let s = group.step;
    let mut tau = [0.0; G];
    for c in 0..group.count {
        let sweep = &r.sweeps[group.first + c];
        let len = b.min(group.rows - c);
        for (i, &x) in sweep.v[s * b..s * b + len].iter().enumerate() {
            v[(c + i) * G + c] = x;
        }
        tau[c] = sweep.tau[s];
    }
    triangular_factor(v, &tau[..group.count], t);
}

/// T (row by row into `t`, see [`stride`]) for V packed row by row: the Gram matrix of the
/// parallelogram, then the band stage's recurrence.
fn triangular_factor(v: &[f64], tau: &[f64], t: &mut [f64]) {
    let mut gram = [0.0; G * G];
    for row in v.chunks_exact(G) {
        for i in 0..G {
            for k in 0..=i {
                gram[k * G + i] += row[k] * row[i];
            }
        }
    }
    let gram = MatRef::from_row_major_slice(&gram, G, G);
    triangular_factor_from_gram(gram, tau, MatMut::from_row_major_slice_mut(t, G, G));
}

/// One group on the rows it touches of a transposed block (row r of X at `rows[r·ld..]`).
struct Job<'a> {
    v: &'a [f64],
    t: &'a [f64; G * G],
    rows: &'a mut [f64],
    ld: usize,
}

impl pulp::WithSimd for Job<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Job { v, t, rows, ld } = self;
        let (xv, _) = S::as_mut_simd_f64s(rows);
        let ldv = ld / S::F64_LANES;
        // G × 6 accumulators and 6 loaded vectors fit 32 registers, G × 3 + 3 fit 16.
        let wide = if S::REGISTER_COUNT >= 32 { 6 } else { 3 };
        let mut c = 0;
        while c + wide <= ldv {
            if wide == 6 {
                tile::<S, 6>(simd, v, t, xv, ldv, c);
            } else {
                tile::<S, 3>(simd, v, t, xv, ldv, c);
            }
            c += wide;
        }
        while c < ldv {
            tile::<S, 1>(simd, v, t, xv, ldv, c);
            c += 1;
        }
    }
}

/// The group on XB column vectors from vector `c` of every row.
#[inline(always)]
fn tile<S: Simd, const XB: usize>(simd: S, v: &[f64], t: &[f64; G * G], xv: &mut [S::f64s], ldv: usize, c: usize) {
    let zero = simd.splat_f64s(0.0);
    // P = Xᵀ V: every row's vectors times its G entries of V.
    let mut p = [[zero; XB]; G];
    for (i, vi) in v.chunks_exact(G).enumerate() {
        let x: [S::f64s; XB] = xv[i * ldv + c..][..XB].try_into().expect("XB vectors");
        for k in 0..G {
            let s = simd.splat_f64s(vi[k]);
            for j in 0..XB {
                p[k][j] = simd.mul_add_f64s(s, x[j], p[k][j]);
            }
        }
    }
    // R = −P Tᵀ, over every l (T[k, l] = 0 for l < k): loops of fixed length keep P and R in
    // registers.
    let mut r = [[zero; XB]; G];
    for k in 0..G {
        for j in 0..XB {
            let mut acc = simd.mul_f64s(simd.splat_f64s(t[k * G]), p[0][j]);
            for l in 1..G {
                acc = simd.mul_add_f64s(simd.splat_f64s(t[k * G + l]), p[l][j], acc);
            }
            r[k][j] = simd.neg_f64s(acc);
        }
    }
    // Xᵀ ← Xᵀ + R Vᵀ, each row's vectors updated in registers and stored once.
    for (i, vi) in v.chunks_exact(G).enumerate() {
        let row: &mut [S::f64s; XB] = (&mut xv[i * ldv + c..][..XB]).try_into().expect("XB vectors");
        let mut x = *row;
        for k in 0..G {
            let s = simd.splat_f64s(vi[k]);
            for j in 0..XB {
                x[j] = simd.mul_add_f64s(s, r[k][j], x[j]);
            }
        }
        *row = x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::bulge::SweepReflectors;
    use faer::Mat;
    use hesslab_data::rng::Rng;

    /// Random reflectors with the chase's layout: sweep k, step s on rows k + 1 + s·b, v₀ = 1,
    /// τ = 2 / ‖v‖² (orthogonal), some τ = 0 as the chase leaves them.
    fn chase(n: usize, b: usize, rng: &mut Rng) -> ChaseReflectors {
        let sweeps = (0..n.saturating_sub(2))
            .map(|k| {
                let steps = (n - k - 1).div_ceil(b);
                let mut v = vec![0.0; steps * b];
                let mut tau = vec![0.0; steps];
                for s in 0..steps {
                    let len = b.min(n - (k + 1 + s * b));
                    let piece = &mut v[s * b..s * b + len];
                    piece[0] = 1.0;
                    piece[1..].iter_mut().for_each(|x| *x = rng.normal());
                    let norm2: f64 = piece.iter().map(|x| x * x).sum();
                    tau[s] = if rng.uniform() < 0.1 { 0.0 } else { 2.0 / norm2 };
                }
                SweepReflectors { v, tau }
            })
            .collect();
        ChaseReflectors { n, b, sweeps }
    }

    /// Q₂ X one reflector at a time: the last sweep first (within a sweep the steps commute).
    fn reference(r: &ChaseReflectors, x: &mut Mat<f64>) {
        for (k, sweep) in r.sweeps.iter().enumerate().rev() {
            for (s, &tau) in sweep.tau.iter().enumerate() {
                let row0 = k + 1 + s * r.b;
                let v = &sweep.v[s * r.b..s * r.b + r.b.min(r.n - row0)];
                for c in 0..x.ncols() {
                    let dot: f64 = v.iter().enumerate().map(|(i, vi)| vi * x[(row0 + i, c)]).sum();
                    v.iter().enumerate().for_each(|(i, vi)| x[(row0 + i, c)] -= tau * vi * dot);
                }
            }
        }
    }

    #[test]
    fn packed_groups_apply_q2_as_one_reflector_at_a_time() {
        let mut rng = Rng::new(5);
        for (n, b, cols) in [(2usize, 1usize, 3usize), (10, 2, 5), (37, 3, 17), (60, 8, 61), (130, 32, 500), (200, 16, 9)] {
            let r = chase(n, b, &mut rng);
            let x0 = Mat::<f64>::from_fn(n, cols, |_, _| rng.normal());
            let mut expected = x0.clone();
            reference(&r, &mut expected);
            for par in [Par::Seq, Par::rayon(2)] {
                let mut x = x0.clone();
                apply_chase_reflectors(r.clone(), x.as_mut(), par, &|_| {});
                let err = (&x - &expected).norm_max();
                assert!(err <= 1e-12 * expected.norm_max(), "n = {n}, b = {b}: {err:e}");
            }
        }
    }

    /// Every vector width gives the bits of the scalar backend.
    #[test]
    fn kernel_bits_do_not_depend_on_the_cpu() {
        let mut rng = Rng::new(8);
        let (n, b, w) = (90, 8, 37usize);
        let r = chase(n, b, &mut rng);
        let groups = schedule(&r);
        let chunks: Vec<Vec<f64>> = groups
            .iter()
            .map(|group| {
                let mut chunk = vec![0.0; stride(b)];
                fill(&r, group, &mut chunk);
                chunk
            })
            .collect();
        let ld = w.next_multiple_of(LANE_MULTIPLE);
        let x0: Vec<f64> = (0..n * ld).map(|_| rng.normal()).collect();
        let run = |simd: &dyn Fn(Job<'_>)| {
            let mut xt = x0.clone();
            for (group, chunk) in groups.iter().zip(&chunks) {
                let (v, t) = chunk.split_at(v_values(b));
                let rows = &mut xt[group.row0 * ld..(group.row0 + group.rows) * ld];
                simd(Job { v: &v[..group.rows * G], t: t.try_into().unwrap(), rows, ld });
            }
            xt
        };
        let scalar = run(&|job| pulp::WithSimd::with_simd(job, pulp::Scalar::new()));
        let native = run(&|job| pulp::Arch::new().dispatch(job));
        assert!(scalar.iter().zip(&native).all(|(a, b)| a.to_bits() == b.to_bits()));
        #[cfg(target_arch = "x86_64")]
        if let Some(v3) = pulp::x86::V3::try_new() {
            let avx2 = run(&|job| v3.vectorize(|| pulp::WithSimd::with_simd(job, v3)));
            assert!(scalar.iter().zip(&avx2).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
