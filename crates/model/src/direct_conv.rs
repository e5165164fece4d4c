//! Direct convolution for unit column stride: a register tile of two SIMD vectors of
//! neighbouring output positions of one output row × up to 12 output channels accumulates over
//! every (input channel, kernel row, kernel column) tap with one fused multiply-add per value.
//!
//! Why not im2col + GEMM here: the layers of the papers' convnets are thin (E4: C·kh·kw = 25
//! and 250, 10 and 20 output channels), so the product of the unfolded input runs far below
//! the GEMM rate and the unfolding itself (C·kh·kw copies of every input value) costs as much
//! as the product. Here each input value is loaded once per tap and used by every output
//! channel of the tile.
//!
//! Numbers: every output is its sum over the taps in (c, i, j) order, one fused multiply-add
//! each, started from the bias (or 0, plus the destination when accumulating) — the same
//! operations whichever instruction set (AVX-512, AVX2+FMA, scalar) and tile shape runs it, so
//! results do not depend on the machine's SIMD width or on the thread count.
use crate::layers::Window;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, MatMut, MatRef};

/// Channels of a register tile at most (with two vectors each: 24 of AVX-512's 32 registers).
const MAX_BLOCK: usize = 12;

/// Whether [`conv_direct`] handles this window: unit column stride (row stride, padding and
/// kernel sizes are free).
pub fn handles(win: &Window) -> bool {
    win.stride[1] == 1
}

/// dst (n·Ho·Wo × c_out, contiguous columns) = or += the convolution of `input` (n·H·W × C,
/// contiguous columns) with the weight at `w_off` ([out, in, kh, kw] row-major), plus `bias`
/// (the sums start from it).
#[allow(clippy::too_many_arguments)]
pub fn conv_direct(
    input: MatRef<'_, f64>,
    win: &Window,
    c_out: usize,
    w: &[f64],
    w_off: usize,
    bias: Option<&[f64]>,
    dst: MatMut<'_, f64>,
    acc: Accum,
) {
    debug_assert!(handles(win));
    if input.nrows() < win.in_hw() || c_out == 0 || win.out_hw() == 0 {
        return;
    }
    let taps = win.patch();
    // Weights tap-major: wt[tap · c_out + o], so a tile's channels are contiguous per tap.
    let mut wt = vec![0.0; taps * c_out];
    for o in 0..c_out {
        for t in 0..taps {
            wt[t * c_out + o] = w[w_off + o * taps + t];
        }
    }
    pulp::Arch::new().dispatch(Job { input, win, c_out, wt: &wt, bias, dst, acc });
}

/// The whole convolution as one unit of runtime dispatch: `with_simd` is compiled once per
/// instruction set with everything it calls inlined (a closure is not reliably inlined, and
/// outside the dispatch `mul_add` would be a libm call).
struct Job<'a> {
    input: MatRef<'a, f64>,
    win: &'a Window,
    c_out: usize,
    wt: &'a [f64],
    bias: Option<&'a [f64]>,
    dst: MatMut<'a, f64>,
    acc: Accum,
}

/// Geometry of the zero-padded input planes of one sample and of the kernel.
struct Planes {
    c: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    /// Padded row length and plane size.
    wp: usize,
    plane: usize,
}

impl Planes {
    /// Planes in which every row a tile reads (up to its last vector's last lane plus the
    /// kernel width) lies inside, so the tile loops have no bounds cases.
    #[inline(always)]
    fn new(win: &Window, lanes: usize) -> Planes {
        let (ih, iw, ow) = (win.input[0], win.input[1], win.output[1]);
        let wp = (iw + 2 * win.padding[1]).max(ow.div_ceil(lanes) * lanes + win.kernel[1] - 1);
        Planes { c: win.c, kh: win.kernel[0], kw: win.kernel[1], sh: win.stride[0], wp, plane: (ih + 2 * win.padding[0]) * wp }
    }

    /// Copy sample `s` of `input` into the planes' interior (the border stays zero).
    #[inline(always)]
    fn fill(&self, input: MatRef<'_, f64>, win: &Window, s: usize, padded: &mut [f64]) {
        let (ih, iw, ph, pw) = (win.input[0], win.input[1], win.padding[0], win.padding[1]);
        for c in 0..win.c {
            let src = input.col(c).try_as_col_major().expect("contiguous input columns").as_slice();
            for (r, row) in src[s * ih * iw..(s + 1) * ih * iw].chunks_exact(iw).enumerate() {
                let at = c * self.plane + (r + ph) * self.wp + pw;
                padded[at..at + iw].copy_from_slice(row);
            }
        }
    }
}

/// A tile's (up to two) vectors of positions: vector b reads the padded planes from
/// `base + input[b]` and writes `count[b]` positions to destination rows from `row + output[b]`;
/// channels from `o0`.
#[derive(Clone, Copy)]
struct Out {
    base: usize,
    row: usize,
    input: [usize; 2],
    output: [usize; 2],
    count: [usize; 2],
    o0: usize,
}

impl pulp::WithSimd for Job<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Job { input, win, c_out, wt, bias, mut dst, acc } = self;
        let lanes = S::F64_LANES;
        let (oh, ow) = (win.output[0], win.output[1]);
        let g = Planes::new(win, lanes);
        let mut padded = vec![0.0; win.c * g.plane];
        let max_block = ((S::REGISTER_COUNT.saturating_sub(4)) / 2).clamp(1, MAX_BLOCK);
        let cb = c_out.div_ceil(c_out.div_ceil(max_block));
        // Rows of at most one vector go two at a time (the second vector is the next row): a
        // tile of one vector loaded every weight once per input vector.
        let tiles = tile_positions(oh, ow, lanes, g.sh * g.wp);
        for s in 0..input.nrows() / win.in_hw() {
            g.fill(input, win, s, &mut padded);
            let mut o0 = 0;
            while o0 < c_out {
                let width = cb.min(c_out - o0);
                for &(y, x0, two, vectors) in &tiles {
                    let out = Out { base: y * g.sh * g.wp + x0, row: (s * oh + y) * ow + x0, o0, ..vectors };
                    macro_rules! widths {
                        ($($cb:literal)*) => {
                            match (width, two) {
                                $(($cb, false) => tile::<S, $cb, 1>(simd, &padded, wt, bias, c_out, &g, &out, dst.rb_mut(), acc),
                                  ($cb, true) => tile::<S, $cb, 2>(simd, &padded, wt, bias, c_out, &g, &out, dst.rb_mut(), acc),)*
                                _ => unreachable!("channel blocks hold 1 to MAX_BLOCK channels"),
                            }
                        };
                    }
                    widths!(1 2 3 4 5 6 7 8 9 10 11 12);
                }
                o0 += width;
            }
        }
    }
}

/// The tiles of one channel block over a sample's Ho × Wo outputs: (row, first column, two
/// vectors?, their offsets and counts). Rows wider than a vector take two vectors of that row
/// at a time; narrower rows go in pairs, the second vector being the next row (`row_step`
/// apart in the padded planes).
fn tile_positions(oh: usize, ow: usize, lanes: usize, row_step: usize) -> Vec<(usize, usize, bool, Out)> {
    let blank = |input, output, count| Out { base: 0, row: 0, input, output, count, o0: 0 };
    let mut tiles = Vec::new();
    if ow <= lanes {
        for y in (0..oh).step_by(2) {
            let two = y + 1 < oh;
            tiles.push((y, 0, two, blank([0, row_step], [0, ow], [ow, if two { ow } else { 0 }])));
        }
        return tiles;
    }
    for y in 0..oh {
        let mut x0 = 0;
        while x0 < ow {
            let n = (ow - x0).min(2 * lanes);
            let two = n > lanes;
            tiles.push((y, x0, two, blank([0, lanes], [0, lanes], [n.min(lanes), n - n.min(lanes)])));
            x0 += n;
        }
    }
    tiles
}

/// One register tile: CB channels × XB vectors of positions, starting at `base` of each padded
/// plane.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile<S: pulp::Simd, const CB: usize, const XB: usize>(
    simd: S,
    padded: &[f64],
    wt: &[f64],
    bias: Option<&[f64]>,
    c_out: usize,
    g: &Planes,
    out: &Out,
    mut dst: MatMut<'_, f64>,
    acc: Accum,
) {
    let lanes = S::F64_LANES;
    let mut sum = [[simd.splat_f64s(0.0); XB]; CB];
    if let Some(bias) = bias {
        for (k, s) in sum.iter_mut().enumerate() {
            *s = [simd.splat_f64s(bias[out.o0 + k]); XB];
        }
    }
    let part = |b: usize| out.output[b]..out.output[b] + out.count[b];
    if acc == Accum::Add {
        for (k, s) in sum.iter_mut().enumerate() {
            let col = dst.rb().col(out.o0 + k).try_as_col_major().expect("contiguous output columns").as_slice();
            for (b, v) in s.iter_mut().enumerate() {
                let r = part(b);
                *v = simd.add_f64s(*v, simd.partial_load_f64s(&col[out.row + r.start..out.row + r.end]));
            }
        }
    }
    let mut tap = 0;
    for c in 0..g.c {
        for i in 0..g.kh {
            let row = c * g.plane + out.base + i * g.wp;
            for j in 0..g.kw {
                let w = &wt[tap * c_out + out.o0..][..CB];
                let mut v = [simd.splat_f64s(0.0); XB];
                for (b, vb) in v.iter_mut().enumerate() {
                    let at = row + j + out.input[b];
                    *vb = pulp::bytemuck::pod_read_unaligned(pulp::bytemuck::cast_slice(&padded[at..at + lanes]));
                }
                for k in 0..CB {
                    let wk = simd.splat_f64s(w[k]);
                    for b in 0..XB {
                        sum[k][b] = simd.mul_add_e_f64s(wk, v[b], sum[k][b]);
                    }
                }
                tap += 1;
            }
        }
    }
    for (k, s) in sum.iter().enumerate() {
        let col = dst.rb_mut().col_mut(out.o0 + k).try_as_col_major_mut().expect("contiguous output columns").as_slice_mut();
        for (b, &v) in s.iter().enumerate() {
            let r = part(b);
            simd.partial_store_f64s(&mut col[out.row + r.start..out.row + r.end], v);
        }
    }
}

/// Weight gradient for unit column stride: grad[w_off + (o, c, i, j)] += Σ over samples and
/// output positions of g[o] · input[c] at the tap's offset. A register tile holds up to 4
/// output channels × 5 neighbouring taps of one kernel row, each a vector of partial sums over
/// output positions, so every loaded input vector serves 4 channels and every signal vector 5
/// taps; the lanes are summed once at the end.
///
/// Numbers: each weight's sum runs over samples, rows and vectors of positions in that order,
/// lane by lane, then across the lanes — fixed for a given instruction set and independent of
/// the thread count (the lane count, 8 with AVX-512 and 4 with AVX2, groups the sums).
pub fn weight_grad_direct(input: MatRef<'_, f64>, g: MatRef<'_, f64>, win: &Window, c_out: usize, grad: &mut [f64], w_off: usize) {
    debug_assert!(handles(win));
    if input.nrows() < win.in_hw() || c_out == 0 || win.out_hw() == 0 {
        return;
    }
    pulp::Arch::new().dispatch(GradJob { input, g, win, c_out, grad: &mut grad[w_off..w_off + c_out * win.patch()] });
}

struct GradJob<'a> {
    input: MatRef<'a, f64>,
    g: MatRef<'a, f64>,
    win: &'a Window,
    c_out: usize,
    grad: &'a mut [f64],
}

impl pulp::WithSimd for GradJob<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let GradJob { input, g, win, c_out, grad } = self;
        let lanes = S::F64_LANES;
        let (oh, ow) = (win.output[0], win.output[1]);
        let (kh, kw) = (win.kernel[0], win.kernel[1]);
        let p = Planes::new(win, lanes);
        let mut padded = vec![0.0; win.c * p.plane];
        let taps = win.patch();
        let mut sums = vec![simd.splat_f64s(0.0); c_out * taps];
        let wide = S::REGISTER_COUNT >= 32;
        let (max_cb, max_t) = if wide { (4, 5) } else { (2, 4) };
        let cols: Vec<&[f64]> = (0..c_out).map(|o| g.col(o).try_as_col_major().expect("contiguous signal columns").as_slice()).collect();
        for s in 0..input.nrows() / win.in_hw() {
            p.fill(input, win, s, &mut padded);
            let first_row = s * oh * ow;
            let mut o0 = 0;
            while o0 < c_out {
                let cb = max_cb.min(c_out - o0);
                for c in 0..win.c {
                    for i in 0..kh {
                        let mut j0 = 0;
                        while j0 < kw {
                            let t = max_t.min(kw - j0);
                            let at = Taps { o0, tap0: (c * kh + i) * kw + j0, base: c * p.plane + i * p.wp + j0, first_row, ow, oh };
                            macro_rules! with_t {
                                ($cb:literal) => {
                                    match t {
                                        1 => grad_tile::<S, $cb, 1>(simd, &padded, &cols, &p, &at, taps, &mut sums),
                                        2 => grad_tile::<S, $cb, 2>(simd, &padded, &cols, &p, &at, taps, &mut sums),
                                        3 => grad_tile::<S, $cb, 3>(simd, &padded, &cols, &p, &at, taps, &mut sums),
                                        4 => grad_tile::<S, $cb, 4>(simd, &padded, &cols, &p, &at, taps, &mut sums),
                                        5 => grad_tile::<S, $cb, 5>(simd, &padded, &cols, &p, &at, taps, &mut sums),
                                        _ => unreachable!("tiles hold 1 to 5 taps"),
                                    }
                                };
                            }
                            match cb {
                                1 => with_t!(1),
                                2 => with_t!(2),
                                3 => with_t!(3),
                                4 => with_t!(4),
                                _ => unreachable!("tiles hold 1 to 4 channels"),
                            }
                            j0 += t;
                        }
                    }
                }
                o0 += cb;
            }
        }
        for (gr, &v) in grad.iter_mut().zip(&sums) {
            *gr += simd.reduce_sum_f64s(v);
        }
    }
}

/// A gradient tile's place: channels from `o0`, taps from `tap0` (one kernel row), whose first
/// input value for output (0, 0) is at `base` of the padded planes; the sample's signal rows
/// start at `first_row`.
struct Taps {
    o0: usize,
    tap0: usize,
    base: usize,
    first_row: usize,
    ow: usize,
    oh: usize,
}

/// CB channels × T taps of partial sums over one sample's output positions.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn grad_tile<S: pulp::Simd, const CB: usize, const T: usize>(
    simd: S,
    padded: &[f64],
    cols: &[&[f64]],
    p: &Planes,
    at: &Taps,
    taps: usize,
    sums: &mut [S::f64s],
) {
    let lanes = S::F64_LANES;
    let mut acc = [[simd.splat_f64s(0.0); T]; CB];
    for (k, a) in acc.iter_mut().enumerate() {
        a.copy_from_slice(&sums[(at.o0 + k) * taps + at.tap0..][..T]);
    }
    for y in 0..at.oh {
        let row_in = at.base + y * p.sh * p.wp;
        let row_out = at.first_row + y * at.ow;
        let mut x0 = 0;
        while x0 < at.ow {
            let n = lanes.min(at.ow - x0);
            let mut gv = [simd.splat_f64s(0.0); CB];
            for (k, v) in gv.iter_mut().enumerate() {
                let src = &cols[at.o0 + k][row_out + x0..row_out + x0 + n];
                // Lanes past the row's end load as 0, so they add nothing.
                *v = if n == lanes {
                    pulp::bytemuck::pod_read_unaligned(pulp::bytemuck::cast_slice(src))
                } else {
                    simd.partial_load_f64s(src)
                };
            }
            for t in 0..T {
                let from = row_in + x0 + t;
                let v: S::f64s = pulp::bytemuck::pod_read_unaligned(pulp::bytemuck::cast_slice(&padded[from..from + lanes]));
                for k in 0..CB {
                    acc[k][t] = simd.mul_add_e_f64s(gv[k], v, acc[k][t]);
                }
            }
            x0 += lanes;
        }
    }
    for (k, a) in acc.iter().enumerate() {
        sums[(at.o0 + k) * taps + at.tap0..][..T].copy_from_slice(a);
    }
}
