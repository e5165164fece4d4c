//! A sequential network of any layers (convolution, pooling, linear, activations) evaluated in
//! batches; the same fixed chunks and chunk-order sums as [`Mlp`](crate::Mlp), so results are
//! bit-identical for any thread count.
use crate::kernels::*;
use crate::layers::{Layer, LayerSpec, MAX_PARAMS, Shape, resolve, torch_module};
use crate::mlp::{CHUNK_ROWS, eval_loss, mm, weight_t};
use crate::{LayerLayout, LossKind, ModelError, PooledDerivatives, fused_pairs};
use faer::{Accum, Mat, MatRef};
use rayon::prelude::*;

/// The layers of a sequential network with the shapes between them.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqArch {
    /// Shape of one input sample.
    pub input: Shape,
    /// The layers as declared.
    pub specs: Vec<LayerSpec>,
    /// The layers with shapes and parameter offsets.
    pub layers: Vec<Layer>,
    /// Shape after each layer (`shapes[i]` is the output of layer i).
    pub shapes: Vec<Shape>,
    /// Number of parameters.
    pub num_params: usize,
    /// The loss on the outputs.
    pub loss: LossKind,
}

impl SeqArch {
    /// Resolve `specs` on inputs of shape `input`; the output must be a vector.
    pub fn new(input: Shape, specs: Vec<LayerSpec>, loss: LossKind) -> Result<Self, ModelError> {
        let (layers, shapes, num_params) = resolve(input, &specs)?;
        let out = shapes.last().copied().unwrap_or(input);
        if !matches!(out, Shape::Flat(_)) {
            return Err(ModelError::Invalid(format!(
                "the network ends with an image of shape {:?}; end with \"flatten\" and a linear layer",
                out.dims()
            )));
        }
        if (num_params as u64) > MAX_PARAMS {
            return Err(ModelError::Invalid("more than 2^36 parameters".into()));
        }
        Ok(SeqArch { input, specs, layers, shapes, num_params, loss })
    }
    /// Outputs of the network.
    pub fn output_dim(&self) -> usize {
        self.shapes.last().unwrap_or(&self.input).size()
    }
    /// Values per sample at the input and after every layer, added up.
    pub fn units(&self) -> u64 {
        self.shapes.iter().fold(self.input.size() as u64, |a, s| a.saturating_add(s.size() as u64))
    }
    /// Row ranges of the chunks that the gradient, evaluation and curvature passes split the
    /// samples into (each chunk one task, results summed in chunk order): at most CHUNK_ROWS
    /// rows, fewer when the widest layer's values would pass ~2 MB per chunk. Why: a chunk's
    /// layer values are allocated per pass, and a convnet's at 256 samples (12 MB per layer for
    /// S18 E4's) neither stayed in L2 nor were reused by the allocator (fresh zeroed pages were
    /// 11 % of a curvature product's time); at ~2 MB E4's gradient took 62–68 ms, not 80–83.
    pub fn chunks(&self, n: usize) -> Vec<(usize, usize)> {
        let rows = (CHUNK_BYTES / (8 * self.widest()).max(1)).clamp(1, CHUNK_ROWS);
        (0..n.div_ceil(rows)).map(|c| (c * rows, ((c + 1) * rows).min(n))).collect()
    }
    /// The rows of `x` (PyTorch's flat sample order) as the first layer reads them:
    /// channels-last for images.
    pub fn input_values(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        match self.input {
            Shape::Image { c, h, w } => unflatten(x, c, h * w),
            Shape::Flat(_) => x.to_owned(),
        }
    }
    /// The most values per sample at the input or after any layer.
    pub fn widest(&self) -> usize {
        (0..=self.layers.len()).map(|i| self.input_of(i).size()).max().unwrap_or(1)
    }
    /// Shape of the input of layer `i`.
    pub fn input_of(&self, i: usize) -> Shape {
        if i == 0 { self.input } else { self.shapes[i - 1] }
    }
    /// PyTorch-style tensor names (`layers.K.weight`, K counting layers with parameters),
    /// PyTorch shapes and ranges, in `parameters()` order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, std::ops::Range<usize>)> {
        let mut v = Vec::new();
        let mut k = 0;
        for l in &self.layers {
            let (shape, w, b, n_out) = match *l {
                Layer::Linear { n_in, n_out, w, b } => (vec![n_out, n_in], w, b, n_out),
                Layer::Conv2d { win, c_out, w, b } => (vec![c_out, win.c, win.kernel[0], win.kernel[1]], w, b, c_out),
                _ => continue,
            };
            let len: usize = shape.iter().product();
            v.push((format!("layers.{k}.weight"), shape, w..w + len));
            if let Some(b) = b {
                v.push((format!("layers.{k}.bias"), vec![n_out], b..b + n_out));
            }
            k += 1;
        }
        v
    }
    /// The PyTorch modules, in order.
    pub fn torch_modules(&self) -> Vec<serde_json::Value> {
        self.specs.iter().enumerate().map(|(i, s)| torch_module(s, self.input_of(i))).collect()
    }
    /// Short description, e.g. "1×28×28 conv5×5→10 relu maxpool2 … →10".
    pub fn describe(&self) -> String {
        let mut s = self.input.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
        for (spec, shape) in self.specs.iter().zip(&self.shapes) {
            let part = match spec {
                LayerSpec::Activation(a) => a.name().to_string(),
                LayerSpec::Flatten => "flatten".into(),
                LayerSpec::Linear { .. } => format!("linear→{}", shape.size()),
                LayerSpec::Conv2d { kernel_size: k, stride, padding, .. } => {
                    let mut t = format!("conv{}×{}", k[0], k[1]);
                    if *stride != [1, 1] {
                        t.push_str(&format!("/s{}", stride[0]));
                    }
                    if *padding != [0, 0] {
                        t.push_str(&format!("/p{}", padding[0]));
                    }
                    format!("{t}→{}", shape.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×"))
                }
                LayerSpec::MaxPool2d { kernel_size: k, .. } => format!("maxpool{}", k[0]),
                LayerSpec::AvgPool2d { kernel_size: k, .. } => format!("avgpool{}", k[0]),
            };
            s.push(' ');
            s.push_str(&part);
        }
        s
    }
}

/// A sequential network and its flat parameters in PyTorch order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequential {
    /// The layers.
    pub arch: SeqArch,
    /// Parameters, PyTorch `parameters()` order, row-major weights.
    pub params: Vec<f64>,
}

/// Values of a forward pass: `vals[0]` is the input (channels-last for images), `vals[i + 1]`
/// the output of layer i; `argmax[i]` the routing of a max-pooling layer i.
#[derive(Debug, Clone)]
pub struct SeqForward {
    /// Input and layer outputs.
    pub vals: Vec<Mat<f64>>,
    /// Argmax of each max-pooling layer.
    pub argmax: Vec<Option<Vec<usize>>>,
}

impl SeqForward {
    /// The network's outputs (n × C).
    pub fn output(&self) -> MatRef<'_, f64> {
        self.vals.last().expect("input").as_ref()
    }
}

/// The layout of a linear layer as the MLP kernels see it.
pub fn linear_layout(l: &Layer) -> Option<LayerLayout> {
    match *l {
        Layer::Linear { n_in, n_out, w, b } => Some(LayerLayout { n_in, n_out, w, b }),
        _ => None,
    }
}

/// The output of layer `l` on `input` with parameters `w` (and the argmax of a max pooling).
pub fn layer_forward(l: &Layer, w: &[f64], input: MatRef<'_, f64>) -> (Mat<f64>, Option<Vec<usize>>) {
    match *l {
        Layer::Linear { n_in, n_out, w: wo, b } => {
            let mut z = Mat::<f64>::zeros(input.nrows(), n_out);
            mm(z.as_mut(), Accum::Replace, input, weight_t(w, &LayerLayout { n_in, n_out, w: wo, b }));
            add_bias(&mut z, w, b);
            (z, None)
        }
        Layer::Conv2d { win, c_out, w: wo, b } => {
            let mut z = Mat::<f64>::zeros(input.nrows() / win.in_hw() * win.out_hw(), c_out);
            conv_forward(input, &win, c_out, w, wo, b, z.as_mut(), Accum::Replace);
            (z, None)
        }
        Layer::MaxPool2d(win) => {
            let (o, a) = max_pool(input, &win);
            (o, Some(a))
        }
        Layer::AvgPool2d(win) => (avg_pool(input, &win), None),
        Layer::Flatten { c, hw } => (flatten(input, c, hw), None),
        Layer::Activation(a) => {
            let mut out = input.to_owned();
            for c in 0..out.ncols() {
                a.f_in_place(out.col_as_slice_mut(c));
            }
            (out, None)
        }
    }
}

/// The signal at the input of layer `l` from the signal `g` at its output (parameters not
/// included); `k` stacked blocks of samples share the primal `input`/`output`/`argmax`.
pub fn layer_input_signal(
    l: &Layer,
    w: &[f64],
    input: MatRef<'_, f64>,
    output: MatRef<'_, f64>,
    argmax: Option<&[usize]>,
    g: MatRef<'_, f64>,
    k: usize,
) -> Mat<f64> {
    match *l {
        Layer::Linear { n_in, n_out, w: wo, b } => {
            let mut out = Mat::<f64>::zeros(g.nrows(), n_in);
            mm(out.as_mut(), Accum::Replace, g, weight_t(w, &LayerLayout { n_in, n_out, w: wo, b }).transpose());
            out
        }
        Layer::Conv2d { win, c_out, w: wo, .. } => {
            let mut out = Mat::<f64>::zeros(g.nrows() / win.out_hw() * win.in_hw(), win.c);
            conv_input_signal(g, &win, c_out, w, wo, out.as_mut());
            out
        }
        Layer::MaxPool2d(win) => scatter_argmax(g, argmax.expect("argmax of a max pooling"), &win, k),
        Layer::AvgPool2d(win) => avg_pool_adjoint(g, &win),
        Layer::Flatten { c, hw } => unflatten(g, c, hw),
        Layer::Activation(a) => times_derivative(a, input, output, g),
    }
}

/// σ'(z) ⊙ t for k stacked blocks t (the signal back through an activation, or the tangent
/// forward: the same diagonal Jacobian); z and σ(z) are the primal input and output.
fn times_derivative(a: crate::Activation, z: MatRef<'_, f64>, y: MatRef<'_, f64>, t: MatRef<'_, f64>) -> Mat<f64> {
    let n = z.nrows();
    // Written straight into a zeroed matrix: a copy of `t` first (`to_owned`) ran element by
    // element, at a third of the speed of this pass.
    let mut out = Mat::<f64>::zeros(t.nrows(), t.ncols());
    for col in 0..out.ncols() {
        let (zc, yc, tc) = (z.col(col), y.col(col), t.col(col));
        match (zc.try_as_col_major(), yc.try_as_col_major(), tc.try_as_col_major()) {
            // Block by block over the column slices: one dispatch per block, not per element.
            (Some(zs), Some(ys), Some(ts)) if n > 0 => {
                for (block, tb) in out.col_as_slice_mut(col).chunks_mut(n).zip(ts.as_slice().chunks(n)) {
                    a.mul_d1_into(block, tb, zs.as_slice(), ys.as_slice());
                }
            }
            _ => {
                for (r, v) in out.col_as_slice_mut(col).iter_mut().enumerate() {
                    *v = tc[r] * a.d1(zc[r % n], yc[r % n]);
                }
            }
        }
    }
    out
}

/// The tangent of layer `l`'s output from its input tangent `t` (k stacked blocks; `None`
/// for zero): the Jacobian with respect to the input only, without the parameter term.
pub fn layer_forward_tangent(
    l: &Layer,
    w: &[f64],
    input: MatRef<'_, f64>,
    output: MatRef<'_, f64>,
    argmax: Option<&[usize]>,
    t: Option<&Mat<f64>>,
    k: usize,
) -> Option<Mat<f64>> {
    let t = t?.as_ref();
    Some(match *l {
        Layer::Linear { n_in, n_out, w: wo, b } => {
            let mut z = Mat::<f64>::zeros(t.nrows(), n_out);
            mm(z.as_mut(), Accum::Replace, t, weight_t(w, &LayerLayout { n_in, n_out, w: wo, b }));
            z
        }
        Layer::Conv2d { win, c_out, w: wo, .. } => {
            let mut z = Mat::<f64>::zeros(t.nrows() / win.in_hw() * win.out_hw(), c_out);
            conv_forward(t, &win, c_out, w, wo, None, z.as_mut(), Accum::Replace);
            z
        }
        Layer::MaxPool2d(win) => gather_argmax(t, argmax.expect("argmax of a max pooling"), &win, k),
        Layer::AvgPool2d(win) => avg_pool(t, &win),
        Layer::Flatten { c, hw } => flatten(t, c, hw),
        Layer::Activation(a) => times_derivative(a, input, output, t),
    })
}

/// Parameter gradient of layer `l` from its input and output signal, added to `grad`.
pub fn layer_param_grad(l: &Layer, input: MatRef<'_, f64>, g: MatRef<'_, f64>, grad: &mut [f64]) {
    match *l {
        Layer::Linear { n_in, n_out, w, b } => {
            mm(weight_view_mut(grad, w, n_out, n_in), Accum::Add, input.transpose(), g);
            if let Some(b) = b {
                bias_grad(g, grad, b);
            }
        }
        Layer::Conv2d { win, c_out, w, b } => {
            conv_weight_grad(input, g, &win, c_out, grad, w);
            if let Some(b) = b {
                bias_grad(g, grad, b);
            }
        }
        _ => {}
    }
}

/// Bytes of the widest layer's values in one chunk of samples (see [`SeqArch::chunks`]).
const CHUNK_BYTES: usize = 2 << 20;

/// Bytes of the widest layer's values in one evaluation tile (kept within a core's L2).
const EVAL_TILE_BYTES: usize = 256 << 10;

impl Sequential {
    /// A network with these parameters.
    pub fn new(arch: SeqArch, params: Vec<f64>) -> Self {
        assert_eq!(params.len(), arch.num_params);
        Sequential { arch, params }
    }

    /// Forward pass of the rows of `x` (PyTorch's flat sample order) at parameters `w`.
    pub fn forward_with(&self, w: &[f64], x: MatRef<'_, f64>) -> SeqForward {
        let input = self.arch.input_values(x);
        let mut vals = Vec::with_capacity(self.arch.layers.len() + 1);
        let mut argmax = Vec::with_capacity(self.arch.layers.len());
        vals.push(input);
        for l in &self.arch.layers {
            let (o, a) = layer_forward(l, w, vals.last().expect("input").as_ref());
            vals.push(o);
            argmax.push(a);
        }
        SeqForward { vals, argmax }
    }

    /// Back-propagate the output signal `g_out`: the signal at every layer's output
    /// (`sig[i]` for layer i) when `keep`, and the parameter gradient added to `grad`.
    pub fn backward(&self, w: &[f64], fwd: &SeqForward, g_out: Mat<f64>, grad: &mut [f64], keep: bool) -> Vec<Mat<f64>> {
        let nl = self.arch.layers.len();
        let mut sig: Vec<Mat<f64>> = Vec::with_capacity(if keep { nl } else { 0 });
        let mut g = g_out;
        // Without the signals kept, an activation and the max pooling after it are one step.
        let fused = if keep { vec![None; nl] } else { fused_pairs(&self.arch.layers) };
        let mut i = nl;
        while i > 0 {
            i -= 1;
            let l = &self.arch.layers[i];
            let input = fwd.vals[i].as_ref();
            if let Some((act, win)) = i.checked_sub(1).and_then(|a| fused[a]) {
                let arg = fwd.argmax[i].as_deref().expect("argmax of a max pooling");
                g = PooledDerivatives::new(act, win, fwd, i - 1, false).backward(g, arg, None, 1);
                i -= 1;
                if i == 0 {
                    break;
                }
                continue;
            }
            layer_param_grad(l, input, g.as_ref(), grad);
            let next = (i > 0).then(|| layer_input_signal(l, w, input, fwd.vals[i + 1].as_ref(), fwd.argmax[i].as_deref(), g.as_ref(), 1));
            if keep {
                sig.push(g);
            }
            match next {
                Some(n) => g = n,
                None => break,
            }
        }
        sig.reverse();
        sig
    }

    /// Mean loss, gradient and accuracy over the rows of `x` at parameters `w`, in fixed
    /// chunks summed in chunk order.
    pub fn loss_grad_accuracy_at(&self, w: &[f64], x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>, f64) {
        let n = x.nrows();
        let parts: Vec<(f64, Vec<f64>, usize)> = self
            .arch
            .chunks(n)
            .into_par_iter()
            .map(|(r0, r1)| {
                let fwd = self.forward_with(w, x.subrows(r0, r1 - r0));
                let le = eval_loss(self.arch.loss, fwd.output(), &y[r0..r1]);
                let mut g = le.dz;
                g.as_mut().col_iter_mut().for_each(|c| c.iter_mut().for_each(|v| *v /= n as f64));
                let mut out = vec![0.0; w.len()];
                self.backward(w, &fwd, g, &mut out, false);
                (le.loss_sum, out, le.correct)
            })
            .collect();
        let (mut loss, mut correct, mut grad) = (0.0, 0, vec![0.0; w.len()]);
        for (l, g, c) in parts {
            loss += l;
            correct += c;
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        }
        (loss / n as f64, grad, correct as f64 / n as f64)
    }

    /// The network's outputs on the rows of `x` at parameters `w`, keeping no intermediate
    /// values: a few samples at a time through every layer, activations in place, so each
    /// tile's values stay in cache (an evaluation pass streamed every layer's output of a whole
    /// chunk through memory, and that was most of its time). Per sample the same operations as
    /// [`Sequential::forward_with`].
    pub fn outputs(&self, w: &[f64], x: MatRef<'_, f64>) -> Mat<f64> {
        let n = x.nrows();
        let per_tile = (EVAL_TILE_BYTES / (8 * self.arch.widest()).max(1)).clamp(1, n.max(1));
        let mut out = Mat::<f64>::zeros(n, self.arch.output_dim());
        for s0 in (0..n).step_by(per_tile) {
            let ns = per_tile.min(n - s0);
            let mut v = self.arch.input_values(x.subrows(s0, ns));
            for l in &self.arch.layers {
                v = match *l {
                    Layer::Activation(a) => {
                        for c in 0..v.ncols() {
                            a.f_in_place(v.col_as_slice_mut(c));
                        }
                        v
                    }
                    Layer::MaxPool2d(win) => max_pool_values(v.as_ref(), &win),
                    _ => layer_forward(l, w, v.as_ref()).0,
                };
            }
            out.as_mut().subrows_mut(s0, ns).copy_from(&v);
        }
        out
    }

    /// Mean loss and accuracy (no gradient).
    pub fn evaluate(&self, x: MatRef<'_, f64>, y: &[u32]) -> (f64, f64) {
        let n = x.nrows();
        if n == 0 {
            return (f64::NAN, f64::NAN);
        }
        let parts: Vec<(f64, usize)> = self
            .arch
            .chunks(n)
            .into_par_iter()
            .map(|(r0, r1)| {
                let out = self.outputs(&self.params, x.subrows(r0, r1 - r0));
                let le = eval_loss(self.arch.loss, out.as_ref(), &y[r0..r1]);
                (le.loss_sum, le.correct)
            })
            .collect();
        let (l, c) = parts.iter().fold((0.0, 0), |(a, b), (l, c)| (a + l, b + c));
        (l / n as f64, c as f64 / n as f64)
    }
}
