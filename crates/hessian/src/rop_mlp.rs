//! The R-operator of a fully connected network ([`Mlp`]), with its fused kernels: per chunk
//! of samples the forward pass, loss derivatives and back-propagated signals are cached; the
//! k vectors of a block are stacked horizontally (nc × k·n_out).
use crate::rop::{ChunkedCurvature, CurvatureKind};
use crate::scratch::{recycle, scratch, zeroed};
use faer::{Accum, Mat, MatMut, MatRef};
use hesslab_data::Split;
use hesslab_model::{Forward, LayerLayout, Mlp, chunks, eval_loss, loss_hess_apply, mm, weight_t};
use rayon::prelude::*;

struct ChunkCache {
    r0: usize,
    r1: usize,
    fwd: Forward,
    probs: Mat<f64>,
    /// Back-propagated signals ∂L/∂z_l (already divided by N).
    sig: Vec<Mat<f64>>,
    /// σ'(z_l), and (G_{l+1} W_{l+1}) ⊙ σ''(z_l), for hidden layers.
    d1: Vec<Mat<f64>>,
    gw_d2: Vec<Option<Mat<f64>>>,
    loss_sum: f64,
    correct: usize,
}

/// Cached passes of an MLP over every chunk of samples.
pub(crate) struct MlpChunks {
    model: Mlp,
    layers: Vec<LayerLayout>,
    cache: Vec<ChunkCache>,
}

/// One chunk's cached passes (forward, loss derivatives, back-propagated signals, σ' and the
/// σ''-term) and, with `with_gradient`, its share of the mean gradient.
fn chunk_cache(model: &Mlp, layers: &[LayerLayout], data: &Split, r0: usize, r1: usize, with_gradient: bool) -> (ChunkCache, Vec<f64>) {
    let n = data.len();
    let act = model.arch.activation;
    let second_order = act.has_second_derivative();
    let x = data.x.as_ref().subrows(r0, r1 - r0);
    let fwd = model.forward(x);
    let le = eval_loss(model.arch.loss, fwd.output(), &data.y[r0..r1]);
    let mut g = le.dz;
    g.as_mut().col_iter_mut().for_each(|c| c.iter_mut().for_each(|v| *v /= n as f64));
    let sig = model.backprop(&model.params, &fwd, g);
    let nl = layers.len();
    let mut d1 = Vec::new();
    let mut gw_d2 = Vec::new();
    for l in 0..nl - 1 {
        let (z, a) = (&fwd.z[l], &fwd.a[l]);
        let mut d = Mat::<f64>::zeros(z.nrows(), z.ncols());
        for j in 0..z.ncols() {
            act.d1_slice(z.col_as_slice(j), a.col_as_slice(j), d.col_as_slice_mut(j));
        }
        d1.push(d);
        if second_order {
            // G_{l+1} W_{l+1} (before multiplying by σ'), times σ''.
            let mut gw = Mat::<f64>::zeros(z.nrows(), z.ncols());
            mm(gw.as_mut(), Accum::Replace, sig[l + 1].as_ref(), weight_t(&model.params, &layers[l + 1]).transpose());
            for j in 0..z.ncols() {
                act.mul_d2_slice(gw.col_as_slice_mut(j), z.col_as_slice(j), a.col_as_slice(j));
            }
            gw_d2.push(Some(gw));
        } else {
            gw_d2.push(None);
        }
    }
    // The chunk's share of the mean gradient (the signals are already divided by N).
    let mut part = vec![0.0; if with_gradient { model.num_params() } else { 0 }];
    if with_gradient {
        model.accumulate(x, &fwd, &sig, &mut part);
    }
    (ChunkCache { r0, r1, fwd, probs: le.probs, sig, d1, gw_d2, loss_sum: le.loss_sum, correct: le.correct }, part)
}

impl MlpChunks {
    /// The cached passes; with `with_gradient` also the mean gradient (summed in chunk order),
    /// else an empty one (a single product does not need it: a third of the build's FLOPs).
    pub(crate) fn new(model: Mlp, data: &Split, with_gradient: bool) -> (Self, f64, Vec<f64>, f64) {
        let layers = model.arch.layers();
        let n = data.len();
        let parts: Vec<(ChunkCache, Vec<f64>)> =
            chunks(n).into_par_iter().map(|(r0, r1)| chunk_cache(&model, &layers, data, r0, r1, with_gradient)).collect();
        // Loss and mean gradient summed in chunk order like `Mlp::loss_grad_accuracy_at`, so
        // both are bit-identical to it.
        let mut mean_grad = vec![0.0; if with_gradient { model.num_params() } else { 0 }];
        let mut loss = 0.0;
        let mut cache = Vec::with_capacity(parts.len());
        for (c, part) in parts {
            mean_grad.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
            loss += c.loss_sum;
            cache.push(c);
        }
        let correct: usize = cache.iter().map(|c| c.correct).sum();
        if n > 0 {
            loss /= n as f64;
        }
        (MlpChunks { model, layers, cache }, loss, mean_grad, correct as f64 / n as f64)
    }

    /// dst_j (+)= src_j · m for every block j of horizontally stacked matrices
    /// (src: nc × k·a, dst: nc × k·b, m: a × b). The k small products become one tall product
    /// (k·nc × a)·(a × b) on a vertically stacked copy, which faer runs much faster.
    fn blockwise_product(dst: &mut Mat<f64>, acc: Accum, src: &Mat<f64>, m: MatRef<'_, f64>, k: usize) {
        let (nc, a, b) = (src.nrows(), m.nrows(), m.ncols());
        let mut tall = scratch(k * nc, a);
        for j in 0..k {
            for i in 0..a {
                tall.col_as_slice_mut(i)[j * nc..(j + 1) * nc].copy_from_slice(src.col_as_slice(j * a + i));
            }
        }
        let mut prod = scratch(k * nc, b);
        mm(prod.as_mut(), Accum::Replace, tall.as_ref(), m);
        for j in 0..k {
            for i in 0..b {
                let (d, s) = (dst.col_as_slice_mut(j * b + i), &prod.col_as_slice(i)[j * nc..(j + 1) * nc]);
                match acc {
                    Accum::Replace => d.copy_from_slice(s),
                    Accum::Add => d.iter_mut().zip(s).for_each(|(x, y)| *x += y),
                }
            }
        }
        recycle(tall);
        recycle(prod);
    }

    /// V's layer-l weights for every vector, as n_in × (k·n_out): [Vᵀ⁽¹⁾ | … | Vᵀ⁽ᵏ⁾].
    fn stack_wt(v: MatRef<'_, f64>, ly: &LayerLayout) -> Mat<f64> {
        let (ni, no) = (ly.n_in, ly.n_out);
        let k = v.ncols();
        let mut m = scratch(ni, k * no);
        for j in 0..k {
            match v.col(j).try_as_col_major() {
                // Row o of W⁽ʲ⁾ is contiguous in column j of V: copy it whole.
                Some(vc) => {
                    let vc = vc.as_slice();
                    for o in 0..no {
                        m.col_as_slice_mut(j * no + o).copy_from_slice(&vc[ly.w + o * ni..ly.w + (o + 1) * ni]);
                    }
                }
                None => {
                    for o in 0..no {
                        let col = m.col_as_slice_mut(j * no + o);
                        for (i, x) in col.iter_mut().enumerate() {
                            *x = v[(ly.w + o * ni + i, j)];
                        }
                    }
                }
            }
        }
        m
    }
    /// [V⁽¹⁾ | … | V⁽ᵏ⁾] as n_out × (k·n_in).
    fn stack_w(v: MatRef<'_, f64>, ly: &LayerLayout) -> Mat<f64> {
        let (ni, no) = (ly.n_in, ly.n_out);
        let k = v.ncols();
        let mut m = scratch(no, k * ni);
        for j in 0..k {
            for i in 0..ni {
                let col = m.col_as_slice_mut(j * ni + i);
                for (o, x) in col.iter_mut().enumerate() {
                    *x = v[(ly.w + o * ni + i, j)];
                }
            }
        }
        m
    }

    /// Per layer: whether any of the k vectors has a nonzero weight or bias entry there. The
    /// unit vectors of a dense materialization touch one layer (rarely two), so the R-forward
    /// below it is exactly zero and is skipped rather than computed.
    fn touched(v: MatRef<'_, f64>, layers: &[LayerLayout]) -> Vec<bool> {
        layers
            .iter()
            .map(|ly| {
                let weights = ly.w..ly.w + ly.n_in * ly.n_out;
                let bias = ly.b.map_or(0..0, |b| b..b + ly.n_out);
                (0..v.ncols()).any(|j| match v.col(j).try_as_col_major() {
                    // Contiguous ranges (the usual case): a scan the compiler vectorizes.
                    Some(c) => {
                        let c = c.as_slice();
                        c[weights.clone()].iter().chain(&c[bias.clone()]).any(|x| *x != 0.0)
                    }
                    None => weights.clone().chain(bias.clone()).any(|i| v[(i, j)] != 0.0),
                })
            })
            .collect()
    }

    fn rop_chunk(&self, data: &Split, kind: CurvatureKind, c: &ChunkCache, v: MatRef<'_, f64>, out: &mut Mat<f64>) {
        let with_loss = kind != CurvatureKind::Residual;
        let with_second = kind != CurvatureKind::GaussNewton;
        let w = &self.model.params;
        let x = data.x.as_ref().subrows(c.r0, c.r1 - c.r0);
        let nc = c.r1 - c.r0;
        let k = v.ncols();
        let inv_n = 1.0 / data.len() as f64;
        let nl = self.layers.len();
        let touched = Self::touched(v, &self.layers);
        let Some(lowest) = touched.iter().position(|&t| t) else { return };
        // R-forward: RZ_l and RA_l, horizontally stacked over the k vectors (nc × k·n_out);
        // `None` below the lowest touched layer, where both are exactly zero.
        let mut rz: Vec<Option<Mat<f64>>> = Vec::with_capacity(nl);
        let mut ra: Vec<Option<Mat<f64>>> = Vec::with_capacity(nl);
        for (l, ly) in self.layers.iter().enumerate() {
            if l < lowest {
                rz.push(None);
                ra.push(None);
                continue;
            }
            let no = ly.n_out;
            let mut rzl = scratch(nc, k * no);
            let prev = if l > 0 { ra[l - 1].as_ref() } else { None };
            if touched[l] {
                let vt = Self::stack_wt(v, ly);
                product(rzl.as_mut(), Accum::Replace, c.fwd.input(x, l), vt.as_ref());
                recycle(vt);
                if let Some(prev) = prev {
                    Self::blockwise_product(&mut rzl, Accum::Add, prev, weight_t(w, ly), k);
                }
                if let Some(b) = ly.b {
                    for j in 0..k {
                        for o in 0..no {
                            let vb = v[(b + o, j)];
                            if vb != 0.0 {
                                rzl.col_as_slice_mut(j * no + o).iter_mut().for_each(|x| *x += vb);
                            }
                        }
                    }
                }
            } else {
                // Above the lowest touched layer every RA is present.
                let prev = prev.expect("RA below a layer above the lowest touched one");
                Self::blockwise_product(&mut rzl, Accum::Replace, prev, weight_t(w, ly), k);
            }
            if l + 1 < nl {
                let d1 = &c.d1[l];
                let mut ral = scratch(nc, k * no);
                for col in 0..k * no {
                    let (dst, src, d) = (ral.col_as_slice_mut(col), rzl.col_as_slice(col), d1.col_as_slice(col % no));
                    for ((a, b), e) in dst.iter_mut().zip(src).zip(d) {
                        *a = b * e;
                    }
                }
                ra.push(Some(ral));
            }
            rz.push(Some(rzl));
        }
        // R-backward.
        let cdim = self.layers[nl - 1].n_out;
        let mut rg = if with_loss { scratch(nc, k * cdim) } else { zeroed(nc, k * cdim) };
        if with_loss {
            let rz_out = rz[nl - 1].as_ref().expect("the output layer is at or above the lowest touched layer");
            for j in 0..k {
                loss_hess_apply(
                    self.model.arch.loss,
                    c.probs.as_ref(),
                    rz_out.as_ref().subcols(j * cdim, cdim),
                    rg.as_mut().subcols_mut(j * cdim, cdim),
                );
            }
            for col in 0..k * cdim {
                rg.col_as_slice_mut(col).iter_mut().for_each(|x| *x *= inv_n);
            }
        }

        for l in (0..nl).rev() {
            let ly = &self.layers[l];
            let (ni, no) = (ly.n_in, ly.n_out);
            let input = c.fwd.input(x, l);
            // Weights: A_{l-1}ᵀ RG_l (+ RA_{l-1}ᵀ G_l), scattered into column j of out.
            let mut gw = scratch(ni, k * no);
            mm(gw.as_mut(), Accum::Replace, input.transpose(), rg.as_ref());
            let ra_prev = if with_second && l > 0 { ra[l - 1].as_ref() } else { None };
            let mut t2 = scratch(if ra_prev.is_some() { k * ni } else { 0 }, no);
            if let Some(ra_prev) = ra_prev {
                mm(t2.as_mut(), Accum::Replace, ra_prev.as_ref().transpose(), c.sig[l].as_ref());
            }
            for j in 0..k {
                let oc = out.col_as_slice_mut(j);
                for o in 0..no {
                    let dst = &mut oc[ly.w + o * ni..ly.w + (o + 1) * ni];
                    for (d, s) in dst.iter_mut().zip(gw.col_as_slice(j * no + o)) {
                        *d += s;
                    }
                    if ra_prev.is_some() {
                        for (d, s) in dst.iter_mut().zip(&t2.col_as_slice(o)[j * ni..(j + 1) * ni]) {
                            *d += s;
                        }
                    }
                }
                if let Some(b) = ly.b {
                    for o in 0..no {
                        oc[b + o] += rg.col_as_slice(j * no + o).iter().sum::<f64>();
                    }
                }
            }
            recycle(gw);
            recycle(t2);
            if l == 0 {
                break;
            }
            // RG_{l-1} = (RG_l W_l + G_l V_l) ⊙ σ' + (G_l W_l) ⊙ σ'' ⊙ RZ_{l-1}.
            let mut t = scratch(nc, k * ni);
            Self::blockwise_product(&mut t, Accum::Replace, &rg, weight_t(w, ly).transpose(), k);
            if with_second && touched[l] {
                let vs = Self::stack_w(v, ly);
                product(t.as_mut(), Accum::Add, c.sig[l].as_ref(), vs.as_ref());
                recycle(vs);
            }
            let d1 = &c.d1[l - 1];
            let gwd2 = if with_second { c.gw_d2[l - 1].as_ref() } else { None };
            let rzp = rz[l - 1].as_ref();
            for col in 0..k * ni {
                let u = col % ni;
                let dcol = d1.col_as_slice(u);
                let tc = t.col_as_slice_mut(col);
                for (a, d) in tc.iter_mut().zip(dcol) {
                    *a *= d;
                }
                if let (Some(g2), Some(rzp)) = (gwd2, rzp) {
                    for ((a, g), r) in tc.iter_mut().zip(g2.col_as_slice(u)).zip(rzp.col_as_slice(col)) {
                        *a += g * r;
                    }
                }
            }
            recycle(std::mem::replace(&mut rg, t));
        }
        recycle(rg);
        rz.into_iter().chain(ra).flatten().for_each(recycle);
    }

    /// Empirical Fisher block product: (1/N) Σᵢ gᵢ (gᵢᵀ v).
    fn fisher_chunk(&self, data: &Split, c: &ChunkCache, v: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        let x = data.x.as_ref().subrows(c.r0, c.r1 - c.r0);
        let nc = c.r1 - c.r0;
        let n = data.len() as f64;
        let k = v.ncols();
        // Per-sample signals Δ_l = N · sig_l; s = gᵢᵀ v (nc × k).
        let mut s = Mat::<f64>::zeros(nc, k);
        for (l, ly) in self.layers.iter().enumerate() {
            let no = ly.n_out;
            let input = c.fwd.input(x, l);
            let mut av = Mat::<f64>::zeros(nc, k * no);
            mm(av.as_mut(), Accum::Replace, input, Self::stack_wt(v, ly).as_ref());
            if let Some(b) = ly.b {
                for j in 0..k {
                    for o in 0..no {
                        let vb = v[(b + o, j)];
                        av.col_mut(j * no + o).iter_mut().for_each(|x| *x += vb);
                    }
                }
            }
            let sig = &c.sig[l];
            for j in 0..k {
                for o in 0..no {
                    for i in 0..nc {
                        s[(i, j)] += n * sig[(i, o)] * av[(i, j * no + o)];
                    }
                }
            }
        }
        // out_j = Σᵢ s_ij gᵢ / N = Σᵢ (s_ij/N) · N·sig_i ⊗ a_i = Σᵢ s_ij sig_i ⊗ a_i.
        for j in 0..k {
            let scaled: Vec<Mat<f64>> = c.sig.iter().map(|sg| Mat::from_fn(nc, sg.ncols(), |i, o| sg[(i, o)] * s[(i, j)])).collect();
            let mut col = vec![0.0; self.model.num_params()];
            self.model.accumulate(x, &c.fwd, &scaled, &mut col);
            for (i, val) in col.iter().enumerate() {
                out[(i, j)] += val;
            }
        }
    }
}

impl MlpChunks {
    /// One product A·v without keeping an operator: each chunk's passes are built and used at
    /// once in a single parallel pass (no mean gradient, no caches held across chunks), and the
    /// chunks' shares are summed in chunk order — the operator's product bit for bit.
    pub(crate) fn one_product(model: &Mlp, data: &Split, kind: CurvatureKind, v: MatRef<'_, f64>) -> Mat<f64> {
        let this = MlpChunks { model: model.clone(), layers: model.arch.layers(), cache: Vec::new() };
        let p = model.num_params();
        let parts: Vec<Mat<f64>> = chunks(data.len())
            .into_par_iter()
            .map(|(r0, r1)| {
                let (c, _) = chunk_cache(&this.model, &this.layers, data, r0, r1, false);
                let mut o = zeroed(p, v.ncols());
                this.part_of(data, kind, &c, v, &mut o);
                o
            })
            .collect();
        let mut out = Mat::<f64>::zeros(p, v.ncols());
        for pm in parts {
            out += &pm;
            recycle(pm);
        }
        out
    }

    /// The mean loss, gradient and accuracy with one product A·v, in one parallel pass that
    /// builds each chunk's passes, takes its share of the gradient and of the product, and
    /// drops them: the results of [`MlpChunks::new`] followed by a product, bit for bit (the
    /// same per-chunk work, summed in chunk order), without an operator's caches held between
    /// the two (sharpness tracking takes one product per measurement).
    pub(crate) fn gradient_and_product(
        model: &Mlp,
        data: &Split,
        kind: CurvatureKind,
        v: MatRef<'_, f64>,
    ) -> (f64, Vec<f64>, f64, Mat<f64>) {
        let this = MlpChunks { model: model.clone(), layers: model.arch.layers(), cache: Vec::new() };
        let p = model.num_params();
        let n = data.len();
        let parts: Vec<(f64, usize, Vec<f64>, Mat<f64>)> = chunks(n)
            .into_par_iter()
            .map(|(r0, r1)| {
                let (c, grad) = chunk_cache(&this.model, &this.layers, data, r0, r1, true);
                let mut o = zeroed(p, v.ncols());
                this.part_of(data, kind, &c, v, &mut o);
                (c.loss_sum, c.correct, grad, o)
            })
            .collect();
        let (mut loss, mut correct) = (0.0, 0);
        let mut mean_grad = vec![0.0; p];
        let mut out = Mat::<f64>::zeros(p, v.ncols());
        for (l, c, g, pm) in parts {
            mean_grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            loss += l;
            correct += c;
            out += &pm;
            recycle(pm);
        }
        if n > 0 {
            loss /= n as f64;
        }
        (loss, mean_grad, correct as f64 / n as f64, out)
    }

    fn part_of(&self, data: &Split, kind: CurvatureKind, c: &ChunkCache, v: MatRef<'_, f64>, out: &mut Mat<f64>) {
        match kind {
            CurvatureKind::EmpiricalFisher | CurvatureKind::GradientCovariance => self.fisher_chunk(data, c, v, out.as_mut()),
            _ => self.rop_chunk(data, kind, c, v, out),
        }
    }
}

impl ChunkedCurvature for MlpChunks {
    fn num_chunks(&self) -> usize {
        self.cache.len()
    }
    fn scratch_per_column(&self) -> usize {
        // Tangents of z and a per layer (a few copies each) and two weight-shaped products.
        let acts: usize = self.cache.first().map_or(0, |c| c.fwd.z.iter().chain(&c.fwd.a).map(|m| m.nrows() * m.ncols()).sum());
        4 * acts + 2 * self.model.params.len()
    }
    fn part(&self, data: &Split, kind: CurvatureKind, i: usize, v: MatRef<'_, f64>, out: &mut Mat<f64>) {
        self.part_of(data, kind, &self.cache[i], v, out)
    }
}

/// dst (+)= lhs · rhs. When rhs is mostly zeros (the stacked unit vectors of a dense
/// materialization: one nonzero among n_in·k·n_out entries), each column of dst is the sum of
/// the few columns of lhs that rhs scales, in row order; otherwise the matrix product.
fn product(mut dst: MatMut<'_, f64>, acc: Accum, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) {
    // Sparse pays when it reads far fewer columns of lhs than the product would.
    let limit = rhs.nrows() * rhs.ncols() / 32;
    let mut nonzeros = 0;
    for j in 0..rhs.ncols() {
        nonzeros += rhs.col(j).iter().filter(|x| **x != 0.0).count();
        if nonzeros > limit {
            return mm(dst, acc, lhs, rhs);
        }
    }
    for j in 0..rhs.ncols() {
        let mut d = dst.as_mut().col_mut(j);
        if matches!(acc, Accum::Replace) {
            d.fill(0.0);
        }
        for (r, &s) in rhs.col(j).iter().enumerate() {
            if s != 0.0 {
                d.as_mut().iter_mut().zip(lhs.col(r).iter()).for_each(|(x, y)| *x += s * y);
            }
        }
    }
}
