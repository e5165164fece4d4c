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
use hesslab_model::graph::{accumulate, synced};
use hesslab_model::layer::aux;
use hesslab_model::layers::BatchTotals;
use hesslab_model::{GraphForward, GraphNet, Io, PassMode, PooledDerivatives, RBackward, SecondOrder, eval_loss, loss_hess_apply};
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
    /// Whether the passes meet at BatchNorm nodes (batch statistics): then a product runs over
    /// all chunks at once ([`GraphChunks::apply_coupled`]), not chunk by chunk.
    coupled: bool,
    /// Per node, the batch's totals of the primal backward pass (BatchNorm nodes when coupled).
    primal_totals: Vec<Vec<Vec<f64>>>,
}

/// One chunk's state in a coupled curvature product.
struct Product<'a> {
    c: &'a ChunkCache,
    rt: Vec<Option<Mat<f64>>>,
    acc: Vec<Option<Mat<f64>>>,
    out: Mat<f64>,
}

impl GraphChunks {
    /// The forward pass (in `mode`), loss derivatives and signals of every chunk of `rows`
    /// samples (default: the network's chunking), with the mean loss and gradient (summed in
    /// chunk order, as `GraphNet::loss_grad_accuracy_mode`).
    pub(crate) fn new(model: GraphNet, data: &Split, mode: PassMode, rows: Option<usize>) -> (Self, f64, Vec<f64>, f64) {
        let n = data.len();
        let p = model.params.len();
        let fused = model.arch.fused_pairs();
        let chunks = match rows {
            Some(r) => hesslab_model::graph::chunks_of(n, r),
            None => model.arch.chunks(n),
        };
        let coupled = model.arch.coupled(mode);
        let scale = |mut g: Mat<f64>| {
            g.as_mut().col_iter_mut().for_each(|c| c.iter_mut().for_each(|v| *v /= n as f64));
            g
        };
        let pooled_of = |fwd: &GraphForward| -> Vec<Option<PooledDerivatives>> {
            fused
                .iter()
                .enumerate()
                .map(|(i, pair)| {
                    pair.map(|(act, win)| {
                        let z = fwd.vals[model.arch.nodes[i].inputs[0]].as_ref();
                        PooledDerivatives::new(act, win, z, fwd.vals[i + 2].as_ref(), aux::<Vec<usize>>(&fwd.aux[i + 1]), true)
                    })
                })
                .collect()
        };
        let (parts, primal_totals): (Vec<(ChunkCache, Vec<f64>, usize)>, _) = if coupled {
            let fwds = model.forward_chunks(&model.params, data.x.as_ref(), &chunks, mode);
            let les: Vec<_> =
                fwds.iter().zip(&chunks).map(|(f, &(r0, r1))| eval_loss(model.arch.loss, f.output(), &data.y[r0..r1])).collect();
            let (back, totals) = model.backward_chunks(&model.params, &fwds, les.iter().map(|le| scale(le.dz.clone())).collect(), true);
            let parts = fwds
                .into_iter()
                .zip(les)
                .zip(back)
                .zip(&chunks)
                .map(|(((fwd, le), (grad, sig)), &(r0, r1))| {
                    let pooled = pooled_of(&fwd);
                    (ChunkCache { r0, r1, fwd, probs: le.probs, sig, pooled, loss_sum: le.loss_sum }, grad, le.correct)
                })
                .collect();
            (parts, totals)
        } else {
            let parts = chunks
                .into_par_iter()
                .map(|(r0, r1)| {
                    let fwd = model.forward_mode(&model.params, data.x.as_ref().subrows(r0, r1 - r0), mode, r0);
                    let le = eval_loss(model.arch.loss, fwd.output(), &data.y[r0..r1]);
                    let mut grad = vec![0.0; p];
                    let sig = model.backward(&model.params, &fwd, scale(le.dz), &mut grad, true);
                    let pooled = pooled_of(&fwd);
                    (ChunkCache { r0, r1, fwd, probs: le.probs, sig, pooled, loss_sum: le.loss_sum }, grad, le.correct)
                })
                .collect();
            (parts, Vec::new())
        };
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
        (GraphChunks { model, cache, coupled, primal_totals }, loss, mean_grad, correct as f64 / n as f64)
    }

    /// The BatchNorm of node i when the passes are coupled.
    fn coupled_bn(&self, i: usize) -> Option<&hesslab_model::layers::BatchNorm> {
        self.model.arch.nodes[i].layer.as_batch_norm().filter(|_| self.coupled)
    }

    /// Node i's R-forward step on chunk `c`: pushes R{output} onto `rt` (`None` where zero);
    /// `totals` are the batch's tangent sums at a coupled BatchNorm.
    fn tangent_step(&self, c: &ChunkCache, rt: &mut Vec<Option<Mat<f64>>>, i: usize, v: MatRef<'_, f64>, totals: Option<&[f64]>) {
        let (w, k) = (&self.model.params, v.ncols());
        let arch = &self.model.arch;
        let node = &arch.nodes[i];
        if c.pooled[i].is_some() {
            // Never read: the pooling after it takes its tangent from the activation's input.
            rt.push(None);
            return;
        }
        if let Some(pd) = i.checked_sub(1).and_then(|a| c.pooled[a].as_ref()) {
            let x = arch.nodes[i - 1].inputs[0];
            let arg = aux::<Vec<usize>>(&c.fwd.aux[i]);
            let next = rt[x].as_ref().map(|t| pd.forward(t.as_ref(), arg, k));
            rt.push(next);
            return;
        }
        let inputs = c.fwd.inputs_of(arch, i);
        let io = Io { w, inputs: &inputs, output: c.fwd.vals[i + 1].as_ref(), aux: &c.fwd.aux[i] };
        let t: Vec<Option<&Mat<f64>>> = node.inputs.iter().map(|&x| rt[x].as_ref()).collect();
        let next = match (totals, self.coupled_bn(i)) {
            (Some(tot), Some(bn)) => bn.tangent_with(&io, &t, v, k, Some(tot)),
            _ => node.layer.tangent(&io, &t, v, k),
        };
        rt.push(next);
    }

    /// R{·} of every value for the k vectors of `v`; `None` where it is zero.
    fn r_forward(&self, c: &ChunkCache, v: MatRef<'_, f64>) -> Vec<Option<Mat<f64>>> {
        let mut rt: Vec<Option<Mat<f64>>> = vec![None];
        for i in 0..self.model.arch.nodes.len() {
            self.tangent_step(c, &mut rt, i, v, None);
        }
        rt
    }

    /// Node i's R-backward step on chunk `c` (its signal taken from `acc`, passed on to its
    /// inputs' slots); `totals` are the batch's (primal, tangent, R-backward) sums at a
    /// coupled BatchNorm.
    #[allow(clippy::too_many_arguments)]
    fn r_backward_step(
        &self,
        c: &ChunkCache,
        acc: &mut [Option<Mat<f64>>],
        i: usize,
        v: MatRef<'_, f64>,
        rt: &[Option<Mat<f64>>],
        second: bool,
        out: &mut Mat<f64>,
        totals: Option<&BatchTotals<'_>>,
    ) {
        let (w, k) = (&self.model.params, v.ncols());
        let arch = &self.model.arch;
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
            return;
        }
        let node = &arch.nodes[i];
        let inputs = c.fwd.inputs_of(arch, i);
        let io = Io { w, inputs: &inputs, output: c.fwd.vals[i + 1].as_ref(), aux: &c.fwd.aux[i] };
        let r_inputs: Vec<Option<&Mat<f64>>> = node.inputs.iter().map(|&x| rt[x].as_ref()).collect();
        let so = SecondOrder { r_inputs: &r_inputs, sig };
        let need = node.inputs.iter().any(|&x| x != 0);
        let step = RBackward { io: &io, rg: rg.as_ref(), v, k, second: second.then_some(&so), need_inputs: need };
        let g_in = match (totals, self.coupled_bn(i)) {
            (Some(t), Some(bn)) => bn.r_backward_with(&step, Some(t), out),
            _ => node.layer.r_backward(&step, out),
        };
        for (&x, m) in node.inputs.iter().zip(g_in) {
            if x != 0 {
                accumulate(&mut acc[x], m);
            }
        }
    }

    /// Nodes an R-backward pass visits, in order (an activation fused with the max pooling
    /// after it is visited with the pooling).
    fn r_backward_order(&self, c: &ChunkCache) -> Vec<usize> {
        (0..self.model.arch.nodes.len()).rev().filter(|&i| c.pooled[i].is_none()).collect()
    }

    /// Back-propagate the stacked output tangent `rg` (k blocks), adding each block's
    /// parameter part to column j of `out`; `second` adds the second-order terms.
    fn r_backward(&self, c: &ChunkCache, v: MatRef<'_, f64>, rt: &[Option<Mat<f64>>], rg: Mat<f64>, second: bool, out: &mut Mat<f64>) {
        let nn = self.model.arch.nodes.len();
        let mut acc: Vec<Option<Mat<f64>>> = (0..=nn).map(|_| None).collect();
        acc[nn] = Some(rg);
        for i in self.r_backward_order(c) {
            self.r_backward_step(c, &mut acc, i, v, rt, second, out, None);
        }
    }

    /// The R-backward pass's starting signal at the output of chunk `c` for `kind`, and whether
    /// the second-order terms are kept.
    fn start(&self, c: &ChunkCache, data: &Split, kind: CurvatureKind, rf: &Mat<f64>, k: usize) -> (Mat<f64>, bool) {
        let nc = c.r1 - c.r0;
        let sig_out = c.sig.last().expect("layers");
        let cdim = rf.ncols();
        match kind {
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
        }
    }

    /// A coupled product: the R-forward and R-backward passes of every chunk at once, meeting
    /// at every BatchNorm node for the batch's sums; the chunks' parts added in chunk order.
    fn product_coupled(&self, data: &Split, kind: CurvatureKind, v: MatRef<'_, f64>, out: &mut Mat<f64>) {
        let nn = self.model.arch.nodes.len();
        let k = v.ncols();
        let w = &self.model.params;
        let mut states: Vec<Product<'_>> =
            self.cache.iter().map(|c| Product { c, rt: vec![None], acc: Vec::new(), out: Mat::zeros(out.nrows(), k) }).collect();
        let forward: Vec<usize> = (0..nn).collect();
        let bn_rounds = |i: usize| usize::from(self.coupled_bn(i).is_some());
        let tangent_totals = synced(
            &mut states,
            &forward,
            bn_rounds,
            |s, i, _| {
                let inputs = s.c.fwd.inputs_of(&self.model.arch, i);
                let io = Io { w, inputs: &inputs, output: s.c.fwd.vals[i + 1].as_ref(), aux: &s.c.fwd.aux[i] };
                let t: Vec<Option<&Mat<f64>>> = self.model.arch.nodes[i].inputs.iter().map(|&x| s.rt[x].as_ref()).collect();
                self.coupled_bn(i).expect("a batch norm").tangent_sums(&io, &t, k)
            },
            |s, i, t| self.tangent_step(s.c, &mut s.rt, i, v, t.first().map(Vec::as_slice)),
        );
        let mut second = false;
        for s in &mut states {
            let rf = s.rt.last().and_then(|r| r.as_ref()).expect("a network with parameters has an output tangent");
            let (start, sec) = self.start(s.c, data, kind, rf, k);
            second = sec;
            s.acc = (0..=nn).map(|_| None).collect();
            s.acc[nn] = Some(start);
        }
        let order = self.cache.first().map(|c| self.r_backward_order(c)).unwrap_or_default();
        synced(
            &mut states,
            &order,
            bn_rounds,
            |s, i, _| {
                let inputs = s.c.fwd.inputs_of(&self.model.arch, i);
                let io = Io { w, inputs: &inputs, output: s.c.fwd.vals[i + 1].as_ref(), aux: &s.c.fwd.aux[i] };
                let r_inputs: Vec<Option<&Mat<f64>>> = self.model.arch.nodes[i].inputs.iter().map(|&x| s.rt[x].as_ref()).collect();
                let so = SecondOrder { r_inputs: &r_inputs, sig: s.c.sig[i].as_ref() };
                let rg = s.acc[i + 1].as_ref().expect("its signal");
                self.coupled_bn(i).expect("a batch norm").r_backward_sums(
                    &io,
                    rg.as_ref(),
                    k,
                    second.then_some(&so),
                    Some(&tangent_totals[i][0]),
                )
            },
            |s, i, t| {
                let totals =
                    t.first().map(|r| BatchTotals { primal: &self.primal_totals[i][0], tangent: &tangent_totals[i][0], r_backward: r });
                let Product { c, acc, rt, out, .. } = s;
                self.r_backward_step(c, acc, i, v, rt, second, out, totals.as_ref());
            },
        );
        for s in states {
            *out += &s.out;
        }
    }
}

impl ChunkedCurvature for GraphChunks {
    fn num_chunks(&self) -> usize {
        self.cache.len()
    }
    fn apply_coupled(&self, data: &Split, kind: CurvatureKind, v: MatRef<'_, f64>, out: &mut Mat<f64>) -> bool {
        if self.coupled {
            let v = v.to_owned();
            self.product_coupled(data, kind, v.as_ref(), out);
        }
        self.coupled
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
        let rt = self.r_forward(c, v);
        let rf = rt.last().and_then(|r| r.as_ref()).expect("a network with parameters has an output tangent");
        let (start, second) = self.start(c, data, kind, rf, k);
        self.r_backward(c, v, &rt, start, second, out);
    }
}
