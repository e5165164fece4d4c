//! The R-operator of a [`Sequential`] network (convolution, pooling, flatten, linear,
//! activations). The k vectors of a block are stacked vertically: the tangent of a layer
//! holds k blocks of the chunk's samples (block j = vector j), so every layer kernel runs once
//! on all of them, and the products with a vector's own weights V_j are one product per block.
//!
//! R-forward:  R{y} = J_x R{x} + (∂y/∂θ) v   (the second term for layers with parameters);
//! R-backward: R{g_x} = J_xᵀ R{g_y} + [second order] (∂²y/∂x∂θ v)ᵀ g_y + (∂²y/∂x² R{x})ᵀ g_y,
//! and the parameter part ∂θ += (∂y/∂θ)ᵀ R{g_y} + [second order] (∂²y/∂θ∂x R{x})ᵀ g_y.
//! The Gauss-Newton part starts R{g} at the output from the loss Hessian and drops the
//! second-order terms; the residual part starts at zero and keeps only them.
use crate::rop::{ChunkedCurvature, CurvatureKind};
use faer::{Accum, Mat, MatRef};
use hesslab_data::Split;
use hesslab_model::kernels::{
    conv_forward_each, conv_input_signal_sum, conv_weight_grad, conv_weight_grad_each, weight_view, weight_view_mut,
};
use hesslab_model::{
    Layer, PooledDerivatives, SeqForward, Sequential, eval_loss, fused_pairs, layer_forward_tangent, layer_input_signal, loss_hess_apply,
    mm,
};
use rayon::prelude::*;

struct ChunkCache {
    r0: usize,
    r1: usize,
    fwd: SeqForward,
    probs: Mat<f64>,
    /// Signals ∂L/∂(output of layer i), already divided by N.
    sig: Vec<Mat<f64>>,
    /// At an activation that a max pooling follows: its derivatives at the pooling's argmax.
    pooled: Vec<Option<PooledDerivatives>>,
    loss_sum: f64,
}

/// Cached passes of a sequential network over every chunk of samples.
pub(crate) struct SeqChunks {
    model: Sequential,
    cache: Vec<ChunkCache>,
}

impl SeqChunks {
    /// The forward pass, loss derivatives and signals of every chunk, with the mean loss and
    /// gradient (summed in chunk order, as `Sequential::loss_grad_accuracy_at`).
    pub(crate) fn new(model: Sequential, data: &Split) -> (Self, f64, Vec<f64>, f64) {
        let n = data.len();
        let p = model.params.len();
        let parts: Vec<(ChunkCache, Vec<f64>, usize)> = model
            .arch
            .chunks(n)
            .into_par_iter()
            .map(|(r0, r1)| {
                let fwd = model.forward_with(&model.params, data.x.as_ref().subrows(r0, r1 - r0));
                let le = eval_loss(model.arch.loss, fwd.output(), &data.y[r0..r1]);
                let mut g = le.dz;
                g.as_mut().col_iter_mut().for_each(|c| c.iter_mut().for_each(|v| *v /= n as f64));
                let mut grad = vec![0.0; p];
                let sig = model.backward(&model.params, &fwd, g, &mut grad, true);
                let pooled = fused_pairs(&model.arch.layers)
                    .into_iter()
                    .enumerate()
                    .map(|(i, pair)| pair.map(|(act, win)| PooledDerivatives::new(act, win, &fwd, i, true)))
                    .collect();
                (ChunkCache { r0, r1, fwd, probs: le.probs, sig, pooled, loss_sum: le.loss_sum }, grad, le.correct)
            })
            .collect();
        let (mut loss, mut mean_grad, mut correct) = (0.0, vec![0.0; p], 0);
        let mut cache = Vec::with_capacity(parts.len());
        for (c, g, k) in parts {
            loss += c.loss_sum;
            correct += k;
            mean_grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            cache.push(c);
        }
        if n > 0 {
            loss /= n as f64;
        }
        (SeqChunks { model, cache }, loss, mean_grad, correct as f64 / n as f64)
    }
}

impl ChunkCache {
    fn input(&self, i: usize) -> MatRef<'_, f64> {
        self.fwd.vals[i].as_ref()
    }
}

/// Column j as a slice (`v` is contiguous by construction in `part`, the cached passes always).
fn col(v: MatRef<'_, f64>, j: usize) -> &[f64] {
    v.col(j).try_as_col_major().expect("contiguous columns").as_slice()
}

impl SeqChunks {
    /// R{·} of every layer's output for the k vectors of `v`; `None` where it is zero.
    fn r_forward(&self, c: &ChunkCache, v: MatRef<'_, f64>) -> Vec<Option<Mat<f64>>> {
        let w = &self.model.params;
        let k = v.ncols();
        let layers = &self.model.arch.layers;
        let mut rt: Vec<Option<Mat<f64>>> = vec![None];
        for (i, l) in layers.iter().enumerate() {
            if c.pooled[i].is_some() {
                // Never read: the pooling after it takes its tangent from the activation's input.
                rt.push(None);
                continue;
            }
            if let Some(pd) = i.checked_sub(1).and_then(|a| c.pooled[a].as_ref()) {
                rt.push(rt[i - 1].as_ref().map(|t| pd.forward(t.as_ref(), c.fwd.argmax[i].as_deref().expect("argmax"), k)));
                continue;
            }
            let input = c.input(i);
            let mut next = layer_forward_tangent(l, w, input, c.fwd.vals[i + 1].as_ref(), c.fwd.argmax[i].as_deref(), rt[i].as_ref(), k);
            // The parameter term (∂y/∂θ) v_j, block by block.
            let (rows, n_out, off, len_in, b) = match *l {
                Layer::Linear { n_in, n_out, w, b } => (input.nrows(), n_out, w, n_in, b),
                Layer::Conv2d { win, c_out, w, b } => (input.nrows() / win.in_hw() * win.out_hw(), c_out, w, win.patch(), b),
                _ => {
                    rt.push(next);
                    continue;
                }
            };
            let t = next.get_or_insert_with(|| Mat::zeros(k * rows, n_out));
            match *l {
                // The convolution of the input with each vector's weight part (its bias below).
                Layer::Conv2d { win, .. } => conv_forward_each(input, &win, n_out, v, off, t.as_mut()),
                _ => {
                    for j in 0..k {
                        mm(t.as_mut().subrows_mut(j * rows, rows), Accum::Add, input, weight_view(col(v, j), off, n_out, len_in));
                    }
                }
            }
            for j in 0..k {
                let vj = col(v, j);
                if let Some(b) = b {
                    for o in 0..n_out {
                        let vb = vj[b + o];
                        t.col_as_slice_mut(o)[j * rows..(j + 1) * rows].iter_mut().for_each(|x| *x += vb);
                    }
                }
            }
            rt.push(next);
        }
        rt
    }

    /// Back-propagate the stacked output tangent `rg` (k blocks), adding each block's
    /// parameter part to column j of `out`; `second` adds the second-order terms.
    #[allow(clippy::too_many_arguments)]
    fn r_backward(&self, c: &ChunkCache, v: MatRef<'_, f64>, rt: &[Option<Mat<f64>>], mut rg: Mat<f64>, second: bool, out: &mut Mat<f64>) {
        let w = &self.model.params;
        let k = v.ncols();
        let layers = &self.model.arch.layers;
        let mut i = layers.len();
        while i > 0 {
            i -= 1;
            let l = &layers[i];
            let input = c.input(i);
            let sig = c.sig[i].as_ref();
            let r_in = if second { rt[i].as_ref() } else { None };
            // Parameter part.
            match *l {
                Layer::Linear { n_in, n_out, w: off, b } => {
                    let rows = input.nrows();
                    for j in 0..k {
                        let oc = out.col_as_slice_mut(j);
                        let g_j = rg.as_ref().subrows(j * rows, rows);
                        mm(weight_view_mut(oc, off, n_out, n_in), Accum::Add, input.transpose(), g_j);
                        if let Some(r) = r_in {
                            mm(weight_view_mut(oc, off, n_out, n_in), Accum::Add, r.as_ref().subrows(j * rows, rows).transpose(), sig);
                        }
                        if let Some(b) = b {
                            for o in 0..n_out {
                                oc[b + o] += g_j.col(o).iter().sum::<f64>();
                            }
                        }
                    }
                }
                Layer::Conv2d { win, c_out, w: off, b } => {
                    let samples = input.nrows() / win.in_hw();
                    let rows = samples * win.out_hw();
                    // Σ unfold(A)ᵀ RG_j (+ unfold(RA_j)ᵀ G), by the convolution's weight gradient.
                    conv_weight_grad_each(input, rg.as_ref(), &win, c_out, out, off);
                    if let Some(r) = r_in {
                        for j in 0..k {
                            let r_j = r.as_ref().subrows(j * samples * win.in_hw(), samples * win.in_hw());
                            conv_weight_grad(r_j, sig, &win, c_out, out.col_as_slice_mut(j), off);
                        }
                    }
                    if let Some(b) = b {
                        for j in 0..k {
                            let g_j = rg.as_ref().subrows(j * rows, rows);
                            let oc = out.col_as_slice_mut(j);
                            for o in 0..c_out {
                                oc[b + o] += g_j.col(o).iter().sum::<f64>();
                            }
                        }
                    }
                }
                _ => {}
            }
            if i == 0 {
                break;
            }
            if let Some(pd) = c.pooled[i - 1].as_ref() {
                // Through the pooling and the activation before it at once.
                let arg = c.fwd.argmax[i].as_deref().expect("argmax of a max pooling");
                let r_act = if second { rt[i - 1].as_ref() } else { None };
                rg = pd.backward(rg, arg, r_act.map(|r| (r, sig)), k);
                i -= 1;
                if i == 0 {
                    break;
                }
                continue;
            }
            if let (true, Layer::Conv2d { win, c_out, w: off, .. }) = (second, l) {
                // J_xᵀ R{g} + (∂²y/∂x∂θ v)ᵀ g block by block, as one sum of two signals.
                let (block, rows) = (sig.nrows() / win.out_hw() * win.in_hw(), sig.nrows());
                let mut g_in = Mat::<f64>::zeros(k * block, win.c);
                for j in 0..k {
                    let terms = [(rg.as_ref().subrows(j * rows, rows), &w[..], *off), (sig, col(v, j), *off)];
                    conv_input_signal_sum(&terms, win, *c_out, g_in.as_mut().subrows_mut(j * block, block));
                }
                rg = g_in;
                continue;
            }
            let output = c.fwd.vals[i + 1].as_ref();
            let mut g_in = layer_input_signal(l, w, input, output, c.fwd.argmax[i].as_deref(), rg.as_ref(), k);
            if second {
                match *l {
                    Layer::Linear { n_in, n_out, w: off, .. } => {
                        let rows = input.nrows();
                        for j in 0..k {
                            let vt = weight_view(col(v, j), off, n_out, n_in);
                            mm(g_in.as_mut().subrows_mut(j * rows, rows), Accum::Add, sig, vt.transpose());
                        }
                    }
                    Layer::Activation(a) if a.has_second_derivative() => {
                        if let Some(r) = &rt[i] {
                            let n = input.nrows();
                            for cc in 0..g_in.ncols() {
                                let (z, y, s, rz) = (col(input, cc), col(output, cc), col(sig, cc), col(r.as_ref(), cc));
                                for (gj, rj) in g_in.col_as_slice_mut(cc).chunks_exact_mut(n).zip(rz.chunks_exact(n)) {
                                    for q in 0..n {
                                        gj[q] += a.d2(z[q], y[q]) * rj[q] * s[q];
                                    }
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            rg = g_in;
        }
    }
}

impl ChunkedCurvature for SeqChunks {
    fn num_chunks(&self) -> usize {
        self.cache.len()
    }
    fn scratch_per_column(&self) -> usize {
        // Tangent activations and signals (a few copies each), im2col buffers of the same order,
        // and two weight-shaped products.
        let acts: usize = self.cache.first().map_or(0, |c| c.fwd.vals.iter().map(|m| m.nrows() * m.ncols()).sum());
        6 * acts + 2 * self.model.params.len()
    }
    fn part(&self, data: &Split, kind: CurvatureKind, i: usize, v: MatRef<'_, f64>, out: &mut Mat<f64>) {
        let c = &self.cache[i];
        let owned;
        let v = if (0..v.ncols()).all(|j| v.col(j).try_as_col_major().is_some()) {
            v
        } else {
            owned = v.to_owned();
            owned.as_ref()
        };
        let k = v.ncols();
        let nc = c.r1 - c.r0;
        let rt = self.r_forward(c, v);
        let rf = rt.last().and_then(|r| r.as_ref()).expect("a network with parameters has an output tangent");
        let sig_out = c.sig.last().expect("layers");
        let cdim = rf.ncols();
        let (start, second) = match kind {
            CurvatureKind::EmpiricalFisher | CurvatureKind::GradientCovariance => {
                // gᵢᵀ v_j = N · sigᵢ · R{f}ᵢⱼ; the block product Σᵢ gᵢ gᵢᵀ v_j / N back-propagates
                // the output signal (gᵢᵀ v_j) · sigᵢ.
                let nn = data.len() as f64;
                let mut start = Mat::<f64>::zeros(k * nc, cdim);
                for j in 0..k {
                    for r in 0..nc {
                        let s: f64 = (0..cdim).map(|o| sig_out[(r, o)] * rf[(j * nc + r, o)]).sum::<f64>() * nn;
                        for o in 0..cdim {
                            start[(j * nc + r, o)] = s * sig_out[(r, o)];
                        }
                    }
                }
                (start, false)
            }
            _ => {
                let mut start = Mat::<f64>::zeros(k * nc, cdim);
                if kind != CurvatureKind::Residual {
                    let inv_n = 1.0 / data.len() as f64;
                    for j in 0..k {
                        let blk = start.as_mut().subrows_mut(j * nc, nc);
                        loss_hess_apply(self.model.arch.loss, c.probs.as_ref(), rf.as_ref().subrows(j * nc, nc), blk);
                    }
                    for o in 0..cdim {
                        start.col_as_slice_mut(o).iter_mut().for_each(|x| *x *= inv_n);
                    }
                }
                (start, kind != CurvatureKind::GaussNewton)
            }
        };
        self.r_backward(c, v, &rt, start, second, out);
    }
}
