//! Batched kernels of the sequential network's layers, shared by the gradient (here) and the
//! R-operator (`hesslab-hessian`).
//!
//! A batch of images is stored channels-last: an (n·H·W) × C matrix whose row s·H·W + h·W + w
//! holds the C channels of pixel (h, w) of sample s; a batch of vectors is n × d. A
//! convolution is then one matrix product of the unfolded input (im2col, n·Ho·Wo × C·kh·kw)
//! with Wᵀ, which is PyTorch's [out, in, kh, kw] weight read column-major, in place.
//! Several blocks of samples may be stacked vertically (the k tangents of the R-operator):
//! every kernel works on any number of samples, read from the row count.
use crate::direct_conv;
use crate::layers::Window;
use crate::mlp::mm;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef};

/// Samples in a batch of `rows` rows of `per` rows each.
#[inline]
fn samples(rows: usize, per: usize) -> usize {
    debug_assert_eq!(rows % per.max(1), 0);
    rows / per.max(1)
}

/// PyTorch's flat C, H, W sample order (n × C·H·W) to channels-last (n·H·W × C).
pub fn unflatten(x: MatRef<'_, f64>, c: usize, hw: usize) -> Mat<f64> {
    let n = x.nrows();
    let mut out = Mat::<f64>::zeros(n * hw, c);
    for ch in 0..c {
        let dst = out.col_as_slice_mut(ch);
        for p in 0..hw {
            let src = x.col(ch * hw + p);
            for s in 0..n {
                dst[s * hw + p] = src[s];
            }
        }
    }
    out
}

/// Channels-last (n·H·W × C) to PyTorch's flat order (n × C·H·W): `nn.Flatten`.
pub fn flatten(t: MatRef<'_, f64>, c: usize, hw: usize) -> Mat<f64> {
    let n = samples(t.nrows(), hw);
    let mut out = Mat::<f64>::zeros(n, c * hw);
    for ch in 0..c {
        let src = t.col(ch);
        for p in 0..hw {
            let dst = out.col_as_slice_mut(ch * hw + p);
            for (s, d) in dst.iter_mut().enumerate() {
                *d = src[s * hw + p];
            }
        }
    }
    out
}

thread_local! {
    /// Unfolded inputs, reused by shape: they are the largest temporaries of a convolution
    /// (C·kh·kw values per output position), and fresh ones cost page faults and zeroing.
    static UNFOLDED: std::cell::RefCell<Vec<Mat<f64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A matrix of this shape with unspecified contents, from the pool of unfolded inputs when
/// one is there (give it back with [`recycle_unfolded`]).
pub fn pooled(r: usize, c: usize) -> Mat<f64> {
    UNFOLDED
        .with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().position(|m| m.nrows() == r && m.ncols() == c)?;
            Some(p.swap_remove(i))
        })
        .unwrap_or_else(|| Mat::zeros(r, c))
}

/// Give a matrix from [`im2col`] back to the pool (a few are kept per thread).
pub fn recycle_unfolded(m: Mat<f64>) {
    UNFOLDED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < 8 {
            p.push(m);
        }
    });
}

/// `input` itself when every column is contiguous, else a contiguous copy held in `owned`.
fn contiguous_columns<'a>(input: MatRef<'a, f64>, owned: &'a mut Option<Mat<f64>>) -> MatRef<'a, f64> {
    if (0..input.ncols()).all(|c| input.col(c).try_as_col_major().is_some()) { input } else { owned.insert(input.to_owned()).as_ref() }
}

/// The unfolded input of a convolution: row (s, oh, ow), column (c, i, j) holds
/// input(s, oh·sh + i − ph, ow·sw + j − pw, c), zero outside the image.
pub fn im2col(input: MatRef<'_, f64>, win: &Window) -> Mat<f64> {
    let (ih, iw) = (win.input[0], win.input[1]);
    let (oh, ow) = (win.output[0], win.output[1]);
    let n = samples(input.nrows(), win.in_hw());
    let (kh, kw) = (win.kernel[0], win.kernel[1]);
    let (sh, sw, ph, pw) = (win.stride[0], win.stride[1], win.padding[0] as isize, win.padding[1] as isize);
    let mut cols = pooled(n * win.out_hw(), win.patch());
    let mut owned = None;
    let input = contiguous_columns(input, &mut owned);
    for c in 0..win.c {
        let src = input.col(c).try_as_col_major().expect("contiguous").as_slice();
        for i in 0..kh {
            for j in 0..kw {
                let dst = cols.col_as_slice_mut((c * kh + i) * kw + j);
                // Output columns x whose input column x·sw + j − pw is inside the image.
                let x0 = (0..ow).find(|&x| (x * sw + j) as isize - pw >= 0).unwrap_or(ow);
                let x1 = (x0..ow).find(|&x| (x * sw + j) as isize - pw >= iw as isize).unwrap_or(ow);
                for s in 0..n {
                    for y in 0..oh {
                        let out = &mut dst[(s * oh + y) * ow..(s * oh + y + 1) * ow];
                        let r = (y * sh + i) as isize - ph;
                        if r < 0 || r >= ih as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let row = &src[s * ih * iw + r as usize * iw..s * ih * iw + (r as usize + 1) * iw];
                        out[..x0].fill(0.0);
                        out[x1..].fill(0.0);
                        let q0 = (x0 * sw + j) as isize - pw;
                        if sw == 1 {
                            out[x0..x1].copy_from_slice(&row[q0 as usize..q0 as usize + (x1 - x0)]);
                        } else {
                            for (k, o) in out[x0..x1].iter_mut().enumerate() {
                                *o = row[q0 as usize + k * sw];
                            }
                        }
                    }
                }
            }
        }
    }
    cols
}

/// The adjoint of [`im2col`]: out(s, h, w, c) += Σ over the patches that read it.
pub fn col2im_add(cols: MatRef<'_, f64>, win: &Window, out: &mut Mat<f64>) {
    col2im_add_at(cols, win, out.as_mut(), 0)
}

/// [`col2im_add`] for the samples from `first` on: row s of `cols`' samples is sample first + s
/// of `out`.
pub fn col2im_add_at(cols: MatRef<'_, f64>, win: &Window, mut out: MatMut<'_, f64>, first: usize) {
    let (ih, iw) = (win.input[0], win.input[1]);
    let (oh, ow) = (win.output[0], win.output[1]);
    let n = samples(cols.nrows(), win.out_hw());
    let (kh, kw) = (win.kernel[0], win.kernel[1]);
    for c in 0..win.c {
        let dst = out.rb_mut().col_mut(c).try_as_col_major_mut().expect("contiguous columns").as_slice_mut();
        for i in 0..kh {
            for j in 0..kw {
                let col = cols.col((c * kh + i) * kw + j);
                let owned;
                let src = match col.try_as_col_major() {
                    Some(s) => s.as_slice(),
                    None => {
                        owned = col.iter().copied().collect::<Vec<f64>>();
                        &owned[..]
                    }
                };
                // Output columns x whose input column x·sw + j − pw is inside the image (as im2col).
                let (sw, pw) = (win.stride[1], win.padding[1] as isize);
                let x0 = (0..ow).find(|&x| (x * sw + j) as isize - pw >= 0).unwrap_or(ow);
                let x1 = (x0..ow).find(|&x| (x * sw + j) as isize - pw >= iw as isize).unwrap_or(ow);
                let q0 = ((x0 * sw + j) as isize - pw).max(0) as usize;
                for s in 0..n {
                    for y in 0..oh {
                        let r = (y * win.stride[0] + i) as isize - win.padding[0] as isize;
                        if r < 0 || r >= ih as isize || x0 == x1 {
                            continue;
                        }
                        let row0 = (first + s) * ih * iw + r as usize * iw;
                        let from = &src[(s * oh + y) * ow + x0..(s * oh + y) * ow + x1];
                        if sw == 1 {
                            dst[row0 + q0..row0 + q0 + (x1 - x0)].iter_mut().zip(from).for_each(|(d, v)| *d += v);
                        } else {
                            for (k, v) in from.iter().enumerate() {
                                dst[row0 + q0 + k * sw] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Wᵀ of a layer whose weight is `rows × cols` row-major at `off`: a cols × rows view.
#[inline]
pub fn weight_view(w: &[f64], off: usize, out: usize, inp: usize) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(&w[off..off + out * inp], inp, out)
}

/// Mutable Wᵀ view.
#[inline]
pub fn weight_view_mut(w: &mut [f64], off: usize, out: usize, inp: usize) -> MatMut<'_, f64> {
    MatMut::from_column_major_slice_mut(&mut w[off..off + out * inp], inp, out)
}

/// Add the bias at `b` (one value per column) to every row of `dst`.
pub fn add_bias(dst: &mut Mat<f64>, w: &[f64], b: Option<usize>) {
    if let Some(b) = b {
        for o in 0..dst.ncols() {
            let bo = w[b + o];
            dst.col_as_slice_mut(o).iter_mut().for_each(|v| *v += bo);
        }
    }
}

/// Σ of each column of `g` added to the bias gradient at `b`.
pub fn bias_grad(g: MatRef<'_, f64>, grad: &mut [f64], b: usize) {
    for o in 0..g.ncols() {
        grad[b + o] += g.col(o).iter().sum::<f64>();
    }
}

/// Max pooling: the output and, per (channel, output row), the input row of the maximum (the
/// first one on ties, as PyTorch).
pub fn max_pool(input: MatRef<'_, f64>, win: &Window) -> (Mat<f64>, Vec<usize>) {
    let rows = samples(input.nrows(), win.in_hw()) * win.out_hw();
    let mut arg = vec![0usize; rows * win.c];
    let out = pool_max::<true>(input, win, &mut arg);
    (out, arg)
}

/// [`max_pool`]'s values alone (evaluation keeps no routing).
pub fn max_pool_values(input: MatRef<'_, f64>, win: &Window) -> Mat<f64> {
    pool_max::<false>(input, win, &mut [])
}

/// Window maxima, and with `ARG` their input rows in `arg` (channel-major): the first of equal
/// values wins, and a NaN only when it comes first (the comparison is `v > best`). Branch-free
/// selects: the data-dependent branch of a running maximum mispredicts half the time.
fn pool_max<const ARG: bool>(input: MatRef<'_, f64>, win: &Window, arg: &mut [usize]) -> Mat<f64> {
    let rows = samples(input.nrows(), win.in_hw()) * win.out_hw();
    let mut out = Mat::<f64>::zeros(rows, win.c);
    let mut owned = None;
    let input = contiguous_columns(input, &mut owned);
    pulp::Arch::new().dispatch(PoolMax::<ARG> { input, win, out: out.as_mut(), arg });
    out
}

/// [`pool_max`] as one unit of runtime dispatch, so its select loops vectorize with the
/// machine's instruction set.
struct PoolMax<'a, const ARG: bool> {
    input: MatRef<'a, f64>,
    win: &'a Window,
    out: MatMut<'a, f64>,
    arg: &'a mut [usize],
}

impl<const ARG: bool> pulp::WithSimd for PoolMax<'_, ARG> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let PoolMax { input, win, mut out, arg } = self;
        let (ih, iw) = (win.input[0], win.input[1]);
        let (oh, ow) = (win.output[0], win.output[1]);
        let (kh, kw, sh, sw) = (win.kernel[0], win.kernel[1], win.stride[0], win.stride[1]);
        let rows = out.nrows();
        // One input row split by column phase (phase p holds columns p, p + sw, …), so the
        // window column j of every output is the contiguous run phase[j % sw][j / sw..][..ow]:
        // the strided reads were scalar gathers.
        let per_phase = ow + (kw - 1) / sw;
        let mut phases = vec![0.0; sw * per_phase];
        for c in 0..win.c {
            let src = input.col(c).try_as_col_major().expect("contiguous").as_slice();
            let dst = out.rb_mut().col_mut(c).try_as_col_major_mut().expect("contiguous").as_slice_mut();
            for s in 0..rows / win.out_hw().max(1) {
                for y in 0..oh {
                    let r = (s * oh + y) * ow;
                    let best = &mut dst[r..r + ow];
                    let at: &mut [usize] = if ARG { &mut arg[c * rows + r..c * rows + r + ow] } else { &mut [] };
                    for i in 0..kh {
                        let row = s * ih * iw + (y * sh + i) * iw;
                        if kw == 2 && sw == 2 {
                            // Side-by-side windows of two columns (the common 2×2/2 pooling):
                            // pairs of a contiguous row, which vectorizes without the split.
                            let pairs = src[row..row + 2 * ow].chunks_exact(2);
                            let pick = |cand: f64, v: f64| if v > cand { v } else { cand };
                            match (ARG, i) {
                                (false, 0) => best.iter_mut().zip(pairs).for_each(|(b, p)| *b = pick(p[0], p[1])),
                                (false, _) => best.iter_mut().zip(pairs).for_each(|(b, p)| *b = pick(pick(*b, p[0]), p[1])),
                                (true, _) => {
                                    for (x, ((b, a), p)) in best.iter_mut().zip(at.iter_mut()).zip(pairs).enumerate() {
                                        let (mut cand, mut from) = if i == 0 { (p[0], row + 2 * x) } else { (*b, *a) };
                                        for (j, &v) in p.iter().enumerate().skip(usize::from(i == 0)) {
                                            let take = v > cand;
                                            cand = if take { v } else { cand };
                                            from = if take { row + 2 * x + j } else { from };
                                        }
                                        *b = cand;
                                        *a = from;
                                    }
                                }
                            }
                            continue;
                        }
                        for (p, phase) in phases.chunks_exact_mut(per_phase).enumerate() {
                            for (x, v) in phase.iter_mut().enumerate() {
                                // Columns past the last window's reach are never read.
                                *v = src.get(row + x * sw + p).copied().unwrap_or(0.0);
                            }
                        }
                        for j in 0..kw {
                            let vals = &phases[(j % sw) * per_phase + j / sw..][..ow];
                            let first = row + j; // input row of output 0's candidate
                            if i == 0 && j == 0 {
                                best.copy_from_slice(vals);
                                for (x, a) in at.iter_mut().enumerate() {
                                    *a = first + x * sw;
                                }
                                continue;
                            }
                            if ARG {
                                for (x, ((b, a), &v)) in best.iter_mut().zip(at.iter_mut()).zip(vals).enumerate() {
                                    let take = v > *b;
                                    *b = if take { v } else { *b };
                                    *a = if take { first + x * sw } else { *a };
                                }
                            } else {
                                for (b, &v) in best.iter_mut().zip(vals) {
                                    *b = if v > *b { v } else { *b };
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Route `k` stacked blocks through the argmax: out(j·R + r, c) = t(j·Rin + arg(c, r), c).
pub fn gather_argmax(t: MatRef<'_, f64>, arg: &[usize], win: &Window, k: usize) -> Mat<f64> {
    let rows_in = t.nrows() / k.max(1);
    let rows = arg.len() / win.c.max(1);
    debug_assert_eq!(rows_in / win.in_hw(), rows / win.out_hw());
    let mut out = Mat::<f64>::zeros(k * rows, win.c);
    for c in 0..win.c {
        let (src, am) = (t.col(c), &arg[c * rows..(c + 1) * rows]);
        let dst = out.col_as_slice_mut(c);
        for j in 0..k {
            for (r, &a) in am.iter().enumerate() {
                dst[j * rows + r] = src[j * rows_in + a];
            }
        }
    }
    out
}

/// The adjoint of [`gather_argmax`]: the signal of each output goes to its argmax.
pub fn scatter_argmax(g: MatRef<'_, f64>, arg: &[usize], win: &Window, k: usize) -> Mat<f64> {
    let rows = arg.len() / win.c.max(1);
    let n = rows / win.out_hw().max(1);
    let rows_in = n * win.in_hw();
    let mut out = Mat::<f64>::zeros(k * rows_in, win.c);
    for c in 0..win.c {
        let (src, am) = (g.col(c), &arg[c * rows..(c + 1) * rows]);
        let dst = out.col_as_slice_mut(c);
        for j in 0..k {
            for (r, &a) in am.iter().enumerate() {
                dst[j * rows_in + a] += src[j * rows + r];
            }
        }
    }
    out
}

/// Average pooling (the mean over each window, padding-free).
pub fn avg_pool(input: MatRef<'_, f64>, win: &Window) -> Mat<f64> {
    let (ih, iw) = (win.input[0], win.input[1]);
    let (oh, ow) = (win.output[0], win.output[1]);
    let n = samples(input.nrows(), win.in_hw());
    let scale = 1.0 / (win.kernel[0] * win.kernel[1]) as f64;
    let mut out = Mat::<f64>::zeros(n * oh * ow, win.c);
    for c in 0..win.c {
        let src = input.col(c);
        let dst = out.col_as_slice_mut(c);
        for s in 0..n {
            for y in 0..oh {
                for x in 0..ow {
                    let mut acc = 0.0;
                    for i in 0..win.kernel[0] {
                        let row0 = s * ih * iw + (y * win.stride[0] + i) * iw + x * win.stride[1];
                        for j in 0..win.kernel[1] {
                            acc += src[row0 + j];
                        }
                    }
                    dst[(s * oh + y) * ow + x] = acc * scale;
                }
            }
        }
    }
    out
}

/// The adjoint of [`avg_pool`].
pub fn avg_pool_adjoint(g: MatRef<'_, f64>, win: &Window) -> Mat<f64> {
    let (ih, iw) = (win.input[0], win.input[1]);
    let (oh, ow) = (win.output[0], win.output[1]);
    let n = samples(g.nrows(), win.out_hw());
    let scale = 1.0 / (win.kernel[0] * win.kernel[1]) as f64;
    let mut out = Mat::<f64>::zeros(n * ih * iw, win.c);
    for c in 0..win.c {
        let src = g.col(c);
        let dst = out.col_as_slice_mut(c);
        for s in 0..n {
            for y in 0..oh {
                for x in 0..ow {
                    let v = src[(s * oh + y) * ow + x] * scale;
                    for i in 0..win.kernel[0] {
                        let row0 = s * ih * iw + (y * win.stride[0] + i) * iw + x * win.stride[1];
                        for j in 0..win.kernel[1] {
                            dst[row0 + j] += v;
                        }
                    }
                }
            }
        }
    }
    out
}

/// Bytes of unfolded input per tile of samples. The unfolding of a whole chunk (C·kh·kw values
/// per output position: ~115 MB per 1 000 28×28 images for a 5×5 kernel) was written to memory
/// and read back by the product; a tile this small is read back from cache.
const TILE_BYTES: usize = 256 << 10;

/// The tiles of samples of a convolution's batch: (first sample, samples).
pub fn tiles(n: usize, win: &Window) -> impl Iterator<Item = (usize, usize)> {
    let per = (TILE_BYTES / (8 * win.out_hw() * win.patch()).max(1)).max(1);
    (0..n).step_by(per).map(move |s0| (s0, per.min(n - s0)))
}

/// dst = (or +=) the convolution of `input` with the weight at `w_off`, plus the bias at `b`
/// when given: directly for unit column stride ([`direct_conv`]), else as input · Wᵀ unfolding
/// the input tile by tile.
#[allow(clippy::too_many_arguments)]
pub fn conv_forward(
    input: MatRef<'_, f64>,
    win: &Window,
    c_out: usize,
    w: &[f64],
    w_off: usize,
    b: Option<usize>,
    mut dst: MatMut<'_, f64>,
    acc: Accum,
) {
    let bias = b.map(|b| &w[b..b + c_out]);
    if direct_conv::handles(win) && (0..dst.ncols()).all(|c| dst.rb().col(c).try_as_col_major().is_some()) {
        let mut owned = None;
        let input = contiguous_columns(input, &mut owned);
        direct_conv::conv_direct(input, win, c_out, w, w_off, bias, dst, acc);
        return;
    }
    let wt = weight_view(w, w_off, c_out, win.patch());
    for (s0, ns) in tiles(samples(input.nrows(), win.in_hw()), win) {
        let cols = im2col(input.subrows(s0 * win.in_hw(), ns * win.in_hw()), win);
        mm(dst.as_mut().subrows_mut(s0 * win.out_hw(), ns * win.out_hw()), acc, cols.as_ref(), wt);
        recycle_unfolded(cols);
    }
    if let Some(bias) = bias {
        for (o, &bo) in bias.iter().enumerate() {
            dst.as_mut().col_mut(o).iter_mut().for_each(|v| *v += bo);
        }
    }
}

/// dst block j += the convolution of `input` with the weight in column j of `v` at `off`, for
/// the k = v.ncols() blocks of `rows` rows stacked in `dst` (the R-operator's parameter term).
/// Unfolding shares each tile's unfolded input among the k weights.
pub fn conv_forward_each(input: MatRef<'_, f64>, win: &Window, c_out: usize, v: MatRef<'_, f64>, off: usize, mut dst: MatMut<'_, f64>) {
    let (k, rows) = (v.ncols(), dst.nrows() / v.ncols().max(1));
    let weight = |j: usize| v.col(j).try_as_col_major().expect("contiguous vector columns").as_slice();
    if direct_conv::handles(win) {
        for j in 0..k {
            conv_forward(input, win, c_out, weight(j), off, None, dst.rb_mut().subrows_mut(j * rows, rows), Accum::Add);
        }
        return;
    }
    for (s0, ns) in tiles(samples(input.nrows(), win.in_hw()), win) {
        let cols = im2col(input.subrows(s0 * win.in_hw(), ns * win.in_hw()), win);
        for j in 0..k {
            let d = dst.rb_mut().subrows_mut(j * rows + s0 * win.out_hw(), ns * win.out_hw());
            mm(d, Accum::Add, cols.as_ref(), weight_view(weight(j), off, c_out, win.patch()));
        }
        recycle_unfolded(cols);
    }
}

/// Column j of `out` += the weight gradient of `input` with block j of the k stacked signals
/// `g` (k = out.ncols()); unfolding shares each tile's unfolded input among the k signals.
pub fn conv_weight_grad_each(input: MatRef<'_, f64>, g: MatRef<'_, f64>, win: &Window, c_out: usize, out: &mut Mat<f64>, off: usize) {
    let (k, rows) = (out.ncols(), g.nrows() / out.ncols().max(1));
    if weight_grad_is_direct(win, c_out) {
        for j in 0..k {
            conv_weight_grad(input, g.subrows(j * rows, rows), win, c_out, out.col_as_slice_mut(j), off);
        }
        return;
    }
    for (s0, ns) in tiles(samples(input.nrows(), win.in_hw()), win) {
        let cols = im2col(input.subrows(s0 * win.in_hw(), ns * win.in_hw()), win);
        for j in 0..k {
            let g_j = g.subrows(j * rows + s0 * win.out_hw(), ns * win.out_hw());
            mm(weight_view_mut(out.col_as_slice_mut(j), off, c_out, win.patch()), Accum::Add, cols.as_ref().transpose(), g_j);
        }
        recycle_unfolded(cols);
    }
}

/// Whether [`conv_weight_grad`] runs the direct kernel: it keeps a vector of partial sums per
/// weight (8 lanes with AVX-512), so it is taken up to 256 Ki weights (16 MB of sums); wider
/// layers accumulate into the gradient through the unfolding.
fn weight_grad_is_direct(win: &Window, c_out: usize) -> bool {
    direct_conv::handles(win) && c_out * win.patch() <= 1 << 18
}

/// The signal at a convolution's input, added to `out`: col2im(g · W) (tile by tile), at unit
/// stride as a direct convolution.
pub fn conv_input_signal(g: MatRef<'_, f64>, win: &Window, c_out: usize, w: &[f64], w_off: usize, mut out: MatMut<'_, f64>) {
    let ([kh, kw], [ph, pw]) = (win.kernel, win.padding);
    // At unit stride the adjoint is itself a convolution: of the signal, padded by the kernel
    // size less the padding, with the kernel flipped and its channels swapped. It multiplies
    // every input position by every tap, also where the tap falls on that padding: (H·W)/(Ho·Wo)
    // times the product's work (2.25 for E4's second convolution, whose signal then ran at
    // half the product's speed), so it is taken only where that waste is small.
    if signal_is_direct(win) {
        let back = Window {
            c: c_out,
            input: win.output,
            output: win.input,
            kernel: win.kernel,
            stride: [1, 1],
            padding: [kh - 1 - ph, kw - 1 - pw],
        };
        let mut flipped = vec![0.0; win.c * c_out * kh * kw];
        for o in 0..c_out {
            for c in 0..win.c {
                for i in 0..kh {
                    for j in 0..kw {
                        flipped[((c * c_out + o) * kh + kh - 1 - i) * kw + kw - 1 - j] = w[w_off + ((o * win.c + c) * kh + i) * kw + j];
                    }
                }
            }
        }
        conv_forward(g, &back, win.c, &flipped, 0, None, out, Accum::Add);
        return;
    }
    let wt = weight_view(w, w_off, c_out, win.patch());
    for (s0, ns) in tiles(samples(g.nrows(), win.out_hw()), win) {
        let mut cols = pooled(ns * win.out_hw(), win.patch());
        mm(cols.as_mut(), Accum::Replace, g.subrows(s0 * win.out_hw(), ns * win.out_hw()), wt.transpose());
        col2im_add_at(cols.as_ref(), win, out.rb_mut(), s0);
        recycle_unfolded(cols);
    }
}

/// Whether [`conv_input_signal`] runs as a direct convolution (see there).
fn signal_is_direct(win: &Window) -> bool {
    let ([kh, kw], [ph, pw]) = (win.kernel, win.padding);
    win.stride == [1, 1] && ph < kh && pw < kw && 4 * win.in_hw() <= 5 * win.out_hw()
}

/// The sum of the input signals of several (signal, weight) pairs through one convolution
/// window, added to `out` (the R-operator's J_xᵀ R{g} + (∂²y/∂x∂θ v)ᵀ g). On the unfolding
/// path the pairs are one product, [g₁ g₂ …] · [W₁ W₂ …]ᵀ, per tile and one col2im: two
/// products of C_out columns each and two col2im passes took twice the scatter's time.
pub fn conv_input_signal_sum(terms: &[(MatRef<'_, f64>, &[f64], usize)], win: &Window, c_out: usize, mut out: MatMut<'_, f64>) {
    if terms.len() < 2 || signal_is_direct(win) {
        for &(g, w, off) in terms {
            conv_input_signal(g, win, c_out, w, off, out.rb_mut());
        }
        return;
    }
    let m = terms.len();
    let mut wt = Mat::<f64>::zeros(win.patch(), m * c_out);
    for (t, &(_, w, off)) in terms.iter().enumerate() {
        wt.as_mut().subcols_mut(t * c_out, c_out).copy_from(weight_view(w, off, c_out, win.patch()));
    }
    for (s0, ns) in tiles(samples(terms[0].0.nrows(), win.out_hw()), win) {
        let rows = ns * win.out_hw();
        let mut g = pooled(rows, m * c_out);
        for (t, &(gt, _, _)) in terms.iter().enumerate() {
            g.as_mut().subcols_mut(t * c_out, c_out).copy_from(gt.subrows(s0 * win.out_hw(), rows));
        }
        let mut cols = pooled(rows, win.patch());
        mm(cols.as_mut(), Accum::Replace, g.as_ref(), wt.transpose());
        col2im_add_at(cols.as_ref(), win, out.rb_mut(), s0);
        recycle_unfolded(cols);
        recycle_unfolded(g);
    }
}

/// Weight gradient of a convolution: ∂Wᵀ += im2col(input)ᵀ · g — directly for unit column
/// stride ([`direct_conv::weight_grad_direct`]), else summed tile by tile in sample order.
pub fn conv_weight_grad(input: MatRef<'_, f64>, g: MatRef<'_, f64>, win: &Window, c_out: usize, grad: &mut [f64], w_off: usize) {
    if weight_grad_is_direct(win, c_out) {
        let (mut own_in, mut own_g) = (None, None);
        let (input, g) = (contiguous_columns(input, &mut own_in), contiguous_columns(g, &mut own_g));
        direct_conv::weight_grad_direct(input, g, win, c_out, grad, w_off);
        return;
    }
    for (s0, ns) in tiles(samples(input.nrows(), win.in_hw()), win) {
        let cols = im2col(input.subrows(s0 * win.in_hw(), ns * win.in_hw()), win);
        let g_tile = g.subrows(s0 * win.out_hw(), ns * win.out_hw());
        mm(weight_view_mut(grad, w_off, c_out, win.patch()), Accum::Add, cols.as_ref().transpose(), g_tile);
        recycle_unfolded(cols);
    }
}
