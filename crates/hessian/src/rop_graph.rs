//! The R-operator of a [`GraphNet`]: every layer's `tangent` forward and `r_backward`
//! backward, composed over the graph. The k vectors of a block are stacked vertically: the
//! tangent of a value holds k blocks of the chunk's samples (block j = vector j), so every
//! layer kernel runs once on all of them.
//!
//! R-forward:  R{y} = J_x R{x} + (∂y/∂θ) v   (the second term for layers with parameters);
//! R-backward: R{g_x} = J_xᵀ R{g_y} + [second order] (∂²y/∂x∂θ v)ᵀ g_y + (∂²y/∂x² R{x})ᵀ g_y,
//! and the parameter part ∂θ += (∂y/∂θ)ᵀ R{g_y} + [second order] (∂²y/∂θ∂x R{x})ᵀ g_y.
//! The Gauss-Newton part starts R{g} at the output from the loss Hessian and drops the
//! second-order terms; the residual part starts at zero and keeps only them. Where a value is
//! read by several nodes its signal is the sum of theirs, added in reverse node order.
use crate::rop::{ChunkedCurvature, CurvatureKind};
use faer::{Mat, MatRef};
use hesslab_data::Split;
use hesslab_model::graph::accumulate;
use hesslab_model::layer::aux;
use hesslab_model::{GraphForward, GraphNet, Io, PooledDerivatives, SecondOrder, eval_loss, loss_hess_apply};
use rayon::prelude::*;

struct ChunkCache {
    r0: usize,
    r1: usize,
    fwd: GraphForward,
    probs: Mat<f64>,
    /// Signals ∂L/∂(output of node i), already divided by N.
    sig: Vec<Mat<f64>>,
    /// At an activation that a max pooling follows: its derivatives at the pooling's argmax.
    pooled: Vec<Option<PooledDerivatives>>,
    loss_sum: f64,
}

/// Cached passes of a graph network over every chunk of samples.
pub(crate) struct GraphChunks {
    model: GraphNet,
    cache: Vec<ChunkCache>,
}

impl GraphChunks {
    /// The forward pass, loss derivatives and signals of every chunk, with the mean loss and
    /// gradient (summed in chunk order, as `GraphNet::loss_grad_accuracy_at`).
    pub(crate) fn new(model: GraphNet, data: &Split) -> (Self, f64, Vec<f64>, f64) {
        let n = data.len();
        let p = model.params.len();
        let fused = model.arch.fused_pairs();
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
                let pooled = fused
                    .iter()
                    .enumerate()
                    .map(|(i, pair)| {
                        pair.map(|(act, win)| {
                            let z = fwd.vals[model.arch.nodes[i].inputs[0]].as_ref();
                            PooledDerivatives::new(act, win, z, fwd.vals[i + 2].as_ref(), aux::<Vec<usize>>(&fwd.aux[i + 1]), true)
                        })
                    })
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
        (GraphChunks { model, cache }, loss, mean_grad, correct as f64 / n as f64)
    }

    /// R{·} of every value for the k vectors of `v`; `None` where it is zero.
    fn r_forward(&self, c: &ChunkCache, v: MatRef<'_, f64>) -> Vec<Option<Mat<f64>>> {
        let (w, k) = (&self.model.params, v.ncols());
        let arch = &self.model.arch;
        let mut rt: Vec<Option<Mat<f64>>> = vec![None];
        for (i, node) in arch.nodes.iter().enumerate() {
            if c.pooled[i].is_some() {
                // Never read: the pooling after it takes its tangent from the activation's input.
                rt.push(None);
                continue;
            }
            if let Some(pd) = i.checked_sub(1).and_then(|a| c.pooled[a].as_ref()) {
                let x = arch.nodes[i - 1].inputs[0];
                let arg = aux::<Vec<usize>>(&c.fwd.aux[i]);
                rt.push(rt[x].as_ref().map(|t| pd.forward(t.as_ref(), arg, k)));
                continue;
            }
            let inputs = c.fwd.inputs_of(arch, i);
            let io = Io { w, inputs: &inputs, output: c.fwd.vals[i + 1].as_ref(), aux: &c.fwd.aux[i] };
            let t: Vec<Option<&Mat<f64>>> = node.inputs.iter().map(|&x| rt[x].as_ref()).collect();
            let next = node.layer.tangent(&io, &t, v, k);
            rt.push(next);
        }
        rt
    }

    /// Back-propagate the stacked output tangent `rg` (k blocks), adding each block's
    /// parameter part to column j of `out`; `second` adds the second-order terms.
    fn r_backward(&self, c: &ChunkCache, v: MatRef<'_, f64>, rt: &[Option<Mat<f64>>], rg: Mat<f64>, second: bool, out: &mut Mat<f64>) {
        let (w, k) = (&self.model.params, v.ncols());
        let arch = &self.model.arch;
        let nn = arch.nodes.len();
        let mut acc: Vec<Option<Mat<f64>>> = (0..=nn).map(|_| None).collect();
        acc[nn] = Some(rg);
        let mut i = nn;
        while i > 0 {
            i -= 1;
            let rg = acc[i + 1].take().expect("every value but the output has a reader");
            let sig = c.sig[i].as_ref();
            if let Some(pd) = i.checked_sub(1).and_then(|a| c.pooled[a].as_ref()) {
                // Through the pooling and the activation before it at once.
                let x = arch.nodes[i - 1].inputs[0];
                if x != 0 {
                    let arg = aux::<Vec<usize>>(&c.fwd.aux[i]);
                    let r_act = if second { rt[x].as_ref() } else { None };
                    accumulate(&mut acc[x], pd.backward(rg, arg, r_act.map(|r| (r, sig)), k));
                }
                i -= 1;
                continue;
            }
            let node = &arch.nodes[i];
            let inputs = c.fwd.inputs_of(arch, i);
            let io = Io { w, inputs: &inputs, output: c.fwd.vals[i + 1].as_ref(), aux: &c.fwd.aux[i] };
            let r_inputs: Vec<Option<&Mat<f64>>> = node.inputs.iter().map(|&x| rt[x].as_ref()).collect();
            let so = SecondOrder { r_inputs: &r_inputs, sig };
            let need = node.inputs.iter().any(|&x| x != 0);
            let g_in = node.layer.r_backward(&io, rg.as_ref(), v, k, second.then_some(&so), out, need);
            for (&x, m) in node.inputs.iter().zip(g_in) {
                if x != 0 {
                    accumulate(&mut acc[x], m);
                }
            }
        }
    }
}

impl ChunkedCurvature for GraphChunks {
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
