//! Batch normalization per channel of an image (PyTorch's `nn.BatchNorm2d`) or per feature of
//! a vector (`nn.BatchNorm1d`): y = γ (x − μ)/√(σ² + ε) + β; `"batch_norm"` or
//! `{ batch_norm = { eps = 1e-5, momentum = 0.1, affine = true } }`.
//!
//! A batch is a matrix whose column c holds every value of channel c (all samples and
//! positions), so every statistic below is a sum down a column. Two sources of μ, σ²:
//! - **running** (`model.eval()`): the buffers `running_mean`/`running_var`; the layer is then
//!   an affine map per sample and derivatives do not pass through the statistics;
//! - **batch** (`model.train()`, and the curvature stages' `batch_norm = "batch"`): the biased
//!   statistics of the whole batch of the pass, with the derivatives through μ and σ², which
//!   couple the samples. A pass split into chunks adds the chunks' column sums (the `*_sums`
//!   methods) in chunk order and hands the totals to the `*_with` methods; this type's `Layer`
//!   methods take its input as the whole batch (one chunk).
//!
//! With x̂ = (x − μ)ρ, ρ = 1/√(σ² + ε), s = γρ and means over the M values of a channel:
//! signal at the input  s (g − mean g − x̂ mean(g x̂));
//! R-forward            R{x̂} = ρ (r − mean r − x̂ mean(x̂ r)), R{y} = γ R{x̂} + v_γ x̂ + v_β;
//! R-backward           s (ĝ − mean ĝ − x̂ mean(ĝ x̂ + g R{x̂})) + (v_γ ρ + γ R{ρ})(g − mean g −
//!                      x̂ mean(g x̂)) − s R{x̂} mean(g x̂), R{ρ} = −ρ² mean(x̂ r), ĝ = R{g};
//! (eval: s g, R{x̂} = ρ r, R-backward s ĝ + v_γ ρ g.) Only the ĝ terms are the Gauss-Newton
//! part; the rest are the second-order terms.
use super::{Config, Entry, Shape, one_input, table};
use crate::layer::{Aux, DefaultInit, Io, Layer, LayerConfig, ParamCursor, RBackward, SecondOrder, Tensor, aux, col};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct BatchNormConfig {
    eps: f64,
    momentum: f64,
    affine: bool,
}

const DEFAULT: BatchNormConfig = BatchNormConfig { eps: 1e-5, momentum: 0.1, affine: true };

fn args(v: &Value) -> Result<BatchNormConfig, String> {
    let t = table("batch_norm", v, &["eps", "momentum", "affine"])?;
    let num = |k: &str, ok: fn(f64) -> bool, what: &str| {
        t.get(k).map(|e| e.as_f64().filter(|e| ok(*e)).ok_or(format!("{k} must be {what}, got {e}"))).transpose()
    };
    let eps = num("eps", |e| e > 0.0 && e.is_finite(), "a positive number")?.unwrap_or(DEFAULT.eps);
    let momentum = num("momentum", |m| (0.0..=1.0).contains(&m), "a number in [0, 1]")?.unwrap_or(DEFAULT.momentum);
    let affine = t.get("affine").map(|b| b.as_bool().ok_or(format!("affine must be true or false, got {b}"))).transpose()?;
    Ok(BatchNormConfig { eps, momentum, affine: affine.unwrap_or(true) })
}

fn from_torch(m: &Value, inputs: &[Shape]) -> Result<Config, String> {
    let shape = one_input("BatchNorm", inputs)?;
    super::check_torch_input(m, "BatchNorm", "num_features", shape.columns())?;
    if m.get("momentum").is_some_and(Value::is_null) {
        return Err("BatchNorm with momentum = None (a cumulative average) is not supported; give a number".into());
    }
    if m.get("track_running_stats").and_then(Value::as_bool) == Some(false) {
        return Err("BatchNorm with track_running_stats = False is not supported".into());
    }
    let mut t = m.as_object().cloned().unwrap_or_default();
    t.retain(|k, _| k == "eps" || k == "momentum" || k == "affine");
    Ok(Arc::new(args(&Value::Object(t))?) as Config)
}

fn parse(arg: Option<&Value>) -> Result<Config, String> {
    Ok(Arc::new(match arg {
        None => DEFAULT,
        Some(v) => args(v)?,
    }) as Config)
}

/// Registry entry on images (the TOML name is shared with [`ENTRY_1D`]).
pub const ENTRY_2D: Entry = Entry { name: "batch_norm", torch: "BatchNorm2d", parse, from_torch };
/// Registry entry on vectors.
pub const ENTRY_1D: Entry = Entry { name: "batch_norm", torch: "BatchNorm1d", parse, from_torch };

impl LayerConfig for BatchNormConfig {
    fn name(&self) -> &'static str {
        "batch_norm"
    }
    fn to_value(&self) -> Value {
        json!({"batch_norm": {"eps": self.eps, "momentum": self.momentum, "affine": self.affine}})
    }
    fn build(&self, inputs: &[Shape], params: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        let shape = one_input("batch_norm", inputs)?;
        if matches!(shape, Shape::Seq { .. }) {
            return Err("batch_norm on a sequence is not supported (PyTorch's BatchNorm1d takes (N, C, L), not a transformer's (N, T, d)); use layer_norm".into());
        }
        let c = shape.columns();
        let affine = if self.affine { Some((params.take(c as u64)?, params.take(c as u64)?)) } else { None };
        let buffers = params.take_buffers(2 * c as u64 + 1)?;
        Ok(Box::new(BatchNorm { shape, c, eps: self.eps, momentum: self.momentum, affine, buffers }))
    }
}

/// Normalization of each channel (feature) with batch or running statistics.
#[derive(Debug)]
pub struct BatchNorm {
    shape: Shape,
    c: usize,
    eps: f64,
    momentum: f64,
    /// Offsets of γ and β, when affine.
    affine: Option<(usize, usize)>,
    /// Offset of `running_mean` (C), then `running_var` (C) and `num_batches_tracked` (1) in
    /// the network's buffers.
    buffers: usize,
}

/// The statistics a forward pass normalized with, per channel.
#[derive(Debug, Clone)]
pub struct Stats {
    /// μ.
    pub mean: Vec<f64>,
    /// The biased variance σ².
    pub var: Vec<f64>,
    /// ρ = 1/√(σ² + ε).
    pub rho: Vec<f64>,
    /// Values per channel in the whole batch (M); 0 for running statistics.
    pub count: usize,
    /// Whether they are the batch's (derivatives pass through them) or the running ones.
    pub batch: bool,
}

/// Batch totals of a BatchNorm node's sums in one curvature product (see the module doc).
pub struct Totals<'a> {
    /// Σ g, Σ g x̂ of the primal signal (2C).
    pub primal: &'a [f64],
    /// Σ r, Σ x̂ r of the input tangents, per vector (2C · k).
    pub tangent: &'a [f64],
    /// Σ ĝ, Σ (ĝ x̂ + g R{x̂}) of the R-backward signals, per vector (2C · k).
    pub r_backward: &'a [f64],
}

impl BatchNorm {
    /// Channels (features).
    pub fn channels(&self) -> usize {
        self.c
    }
    fn gamma(&self, w: &[f64], c: usize) -> f64 {
        self.affine.map_or(1.0, |(g, _)| w[g + c])
    }
    fn x_hat<'a>(x: &'a [f64], st: &Stats, c: usize) -> impl Iterator<Item = f64> + 'a {
        let (m, r) = (st.mean[c], st.rho[c]);
        x.iter().map(move |v| (v - m) * r)
    }

    /// Σ x of each channel of this chunk (the first sums of the batch statistics).
    pub fn sums_x(&self, x: MatRef<'_, f64>) -> Vec<f64> {
        (0..self.c).map(|c| col(x, c).iter().sum()).collect()
    }
    /// Σ (x − μ)² of each channel of this chunk, for the batch mean μ (the second sums).
    pub fn sums_dev(&self, x: MatRef<'_, f64>, mean: &[f64]) -> Vec<f64> {
        (0..self.c).map(|c| col(x, c).iter().map(|v| (v - mean[c]) * (v - mean[c])).sum()).collect()
    }
    /// Batch statistics from the batch's totals of [`Self::sums_x`] (first) and
    /// [`Self::sums_dev`] over `count` values per channel.
    pub fn batch_stats(&self, sum_x: &[f64], sum_dev: Option<&[f64]>, count: usize) -> Stats {
        let m = count.max(1) as f64;
        let mean: Vec<f64> = sum_x.iter().map(|s| s / m).collect();
        let var: Vec<f64> = sum_dev.map_or_else(|| vec![0.0; self.c], |d| d.iter().map(|s| s / m).collect());
        let rho = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        Stats { mean, var, rho, count, batch: true }
    }
    /// The running statistics in the network's buffers.
    pub fn running_stats(&self, buffers: &[f64]) -> Stats {
        let (mean, var) =
            (buffers[self.buffers..self.buffers + self.c].to_vec(), buffers[self.buffers + self.c..self.buffers + 2 * self.c].to_vec());
        let rho = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        Stats { mean, var, rho, count: 0, batch: false }
    }
    /// PyTorch's update of the running statistics from a training batch's: an exponential
    /// average with `momentum`, the variance unbiased (× M/(M − 1)); counts the batch.
    pub fn update_running(&self, buffers: &mut [f64], st: &Stats) {
        let (b, c, m) = (self.buffers, self.c, self.momentum);
        let unbias = if st.count > 1 { st.count as f64 / (st.count - 1) as f64 } else { 1.0 };
        for i in 0..c {
            buffers[b + i] = (1.0 - m) * buffers[b + i] + m * st.mean[i];
            buffers[b + c + i] = (1.0 - m) * buffers[b + c + i] + m * st.var[i] * unbias;
        }
        buffers[b + 2 * c] += 1.0;
    }
    /// The forward pass with these statistics.
    pub fn normalize(&self, w: &[f64], x: MatRef<'_, f64>, st: Stats) -> (Mat<f64>, Aux) {
        let mut y = Mat::<f64>::zeros(x.nrows(), self.c);
        for c in 0..self.c {
            let (g, b) = self.affine.map_or((1.0, 0.0), |(gi, bi)| (w[gi + c], w[bi + c]));
            y.col_as_slice_mut(c).iter_mut().zip(Self::x_hat(col(x, c), &st, c)).for_each(|(o, xh)| *o = g * xh + b);
        }
        (y, Some(Box::new(st)))
    }

    /// Σ g, Σ g x̂ of each channel of each of the k blocks of `g` (2C per block).
    pub fn backward_sums(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<f64> {
        let st = aux::<Stats>(io.aux);
        let x = io.inputs[0];
        let rows = x.nrows();
        let mut s = vec![0.0; 2 * self.c * k];
        for j in 0..k {
            for c in 0..self.c {
                let gc = &col(g, c)[j * rows..(j + 1) * rows];
                s[j * 2 * self.c + c] = gc.iter().sum();
                s[j * 2 * self.c + self.c + c] = gc.iter().zip(Self::x_hat(col(x, c), st, c)).map(|(a, b)| a * b).sum();
            }
        }
        s
    }
    /// The signal at the input from `g` (k blocks), with the batch terms from `totals` (the
    /// batch's [`Self::backward_sums`]) under batch statistics.
    pub fn input_signal(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize, totals: Option<&[f64]>) -> Mat<f64> {
        let st = aux::<Stats>(io.aux);
        let x = io.inputs[0];
        let rows = x.nrows();
        let m = st.count.max(1) as f64;
        let mut out = Mat::<f64>::zeros(g.nrows(), self.c);
        for c in 0..self.c {
            let s = self.gamma(io.w, c) * st.rho[c];
            let (gc, oc) = (col(g, c), out.col_as_slice_mut(c));
            for j in 0..k {
                let (a, b) = totals.map_or((0.0, 0.0), |t| (t[j * 2 * self.c + c] / m, t[j * 2 * self.c + self.c + c] / m));
                let rg = j * rows..(j + 1) * rows;
                for ((o, gv), xh) in oc[rg.clone()].iter_mut().zip(&gc[rg]).zip(Self::x_hat(col(x, c), st, c)) {
                    *o = s * (gv - a - xh * b);
                }
            }
        }
        out
    }
    /// [`Layer::backward`] with the batch's totals of [`Self::backward_sums`].
    pub fn backward_with(&self, io: &Io<'_>, g: MatRef<'_, f64>, totals: Option<&[f64]>, grad: &mut [f64], need: bool) -> Vec<Mat<f64>> {
        if let Some((gi, bi)) = self.affine {
            let st = aux::<Stats>(io.aux);
            for c in 0..self.c {
                let gc = col(g, c);
                grad[gi + c] += gc.iter().zip(Self::x_hat(col(io.inputs[0], c), st, c)).map(|(a, b)| a * b).sum::<f64>();
                grad[bi + c] += gc.iter().sum::<f64>();
            }
        }
        if need { vec![self.input_signal(io, g, 1, totals)] } else { vec![] }
    }

    /// Σ r, Σ x̂ r of each channel of each block of the input tangent (2C per block).
    pub fn tangent_sums(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], k: usize) -> Vec<f64> {
        match t[0] {
            Some(t) => self.backward_sums(io, t.as_ref(), k),
            None => vec![0.0; 2 * self.c * k],
        }
    }
    /// R{x̂} of block j of channel c into `out` (zero without an input tangent).
    fn r_x_hat(&self, io: &Io<'_>, t: Option<&Mat<f64>>, j: usize, c: usize, tangent: Option<&[f64]>, out: &mut [f64]) {
        let st = aux::<Stats>(io.aux);
        let x = col(io.inputs[0], c);
        let Some(t) = t else {
            out.fill(0.0);
            return;
        };
        let m = st.count.max(1) as f64;
        let (a, b) = tangent.map_or((0.0, 0.0), |s| (s[j * 2 * self.c + c] / m, s[j * 2 * self.c + self.c + c] / m));
        let rho = st.rho[c];
        let tc = &col(t.as_ref(), c)[j * x.len()..(j + 1) * x.len()];
        for ((o, r), xh) in out.iter_mut().zip(tc).zip(Self::x_hat(x, st, c)) {
            *o = rho * (r - a - xh * b);
        }
    }
    /// [`Layer::tangent`] with the batch's totals of [`Self::tangent_sums`].
    pub fn tangent_with(
        &self,
        io: &Io<'_>,
        t: &[Option<&Mat<f64>>],
        v: MatRef<'_, f64>,
        k: usize,
        totals: Option<&[f64]>,
    ) -> Option<Mat<f64>> {
        if t[0].is_none() && self.affine.is_none() {
            return None;
        }
        let st = aux::<Stats>(io.aux);
        let x = io.inputs[0];
        let rows = x.nrows();
        let mut out = Mat::<f64>::zeros(k * rows, self.c);
        let mut rx = vec![0.0; rows];
        for c in 0..self.c {
            let g = self.gamma(io.w, c);
            for j in 0..k {
                self.r_x_hat(io, t[0], j, c, totals, &mut rx);
                let (vg, vb) = self.affine.map_or((0.0, 0.0), |(gi, bi)| (v[(gi + c, j)], v[(bi + c, j)]));
                let oc = &mut out.col_as_slice_mut(c)[j * rows..(j + 1) * rows];
                for ((o, r), xh) in oc.iter_mut().zip(&rx).zip(Self::x_hat(col(x, c), st, c)) {
                    *o = g * r + vg * xh + vb;
                }
            }
        }
        Some(out)
    }

    /// Σ ĝ, Σ (ĝ x̂ + g R{x̂}) of each channel of each block (2C per block; the g term with
    /// the second-order terms only), R{x̂} from the batch's `tangent` totals.
    pub fn r_backward_sums(
        &self,
        io: &Io<'_>,
        rg: MatRef<'_, f64>,
        k: usize,
        second: Option<&SecondOrder<'_>>,
        tangent: Option<&[f64]>,
    ) -> Vec<f64> {
        let mut s = self.backward_sums(io, rg, k);
        if let Some(sec) = second.filter(|s| s.r_inputs[0].is_some()) {
            let rows = io.inputs[0].nrows();
            let mut rx = vec![0.0; rows];
            for j in 0..k {
                for c in 0..self.c {
                    self.r_x_hat(io, sec.r_inputs[0], j, c, tangent, &mut rx);
                    s[j * 2 * self.c + self.c + c] += col(sec.sig, c).iter().zip(&rx).map(|(a, b)| a * b).sum::<f64>();
                }
            }
        }
        s
    }
    /// [`Layer::r_backward`] with the batch's totals (`None` under running statistics).
    pub fn r_backward_with(&self, r: &RBackward<'_>, totals: Option<&Totals<'_>>, out: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let RBackward { io, rg, v, k, second, need_inputs: need } = *r;
        let st = aux::<Stats>(io.aux);
        let x = io.inputs[0];
        let rows = x.nrows();
        let (c_n, m) = (self.c, st.count.max(1) as f64);
        let r_in = second.and_then(|s| s.r_inputs[0]);
        let mut rx = vec![0.0; rows];
        // Parameter part: (∂y/∂θ)ᵀ ĝ, and the second-order Σ g R{x̂} for γ.
        if let Some((gi, bi)) = self.affine {
            for j in 0..k {
                let oc = out.col_as_slice_mut(j);
                for c in 0..c_n {
                    let rgc = &col(rg, c)[j * rows..(j + 1) * rows];
                    oc[gi + c] += rgc.iter().zip(Self::x_hat(col(x, c), st, c)).map(|(a, b)| a * b).sum::<f64>();
                    oc[bi + c] += rgc.iter().sum::<f64>();
                    if let (Some(sec), Some(_)) = (second, r_in) {
                        self.r_x_hat(io, r_in, j, c, totals.map(|t| t.tangent), &mut rx);
                        oc[gi + c] += col(sec.sig, c).iter().zip(&rx).map(|(a, b)| a * b).sum::<f64>();
                    }
                }
            }
        }
        if !need {
            return vec![];
        }
        let mut g_in = self.input_signal(io, rg, k, totals.map(|t| t.r_backward));
        let Some(sec) = second else { return vec![g_in] };
        for c in 0..c_n {
            let (gam, rho) = (self.gamma(io.w, c), st.rho[c]);
            let gc = col(sec.sig, c);
            for j in 0..k {
                let vg = self.affine.map_or(0.0, |(gi, _)| v[(gi + c, j)]);
                let oc = &mut g_in.col_as_slice_mut(c)[j * rows..(j + 1) * rows];
                match totals {
                    None => oc.iter_mut().zip(gc).for_each(|(o, g)| *o += vg * rho * g),
                    Some(t) => {
                        self.r_x_hat(io, r_in, j, c, Some(t.tangent), &mut rx);
                        let (a, b) = (t.primal[c] / m, t.primal[c_n + c] / m);
                        let r_rho = -rho * rho * t.tangent[j * 2 * c_n + c_n + c] / m;
                        let ds = vg * rho + gam * r_rho;
                        for (((o, g), xh), r) in oc.iter_mut().zip(gc).zip(Self::x_hat(col(x, c), st, c)).zip(&rx) {
                            *o += ds * (g - a - xh * b) - gam * rho * r * b;
                        }
                    }
                }
            }
        }
        vec![g_in]
    }
}

impl Layer for BatchNorm {
    fn kind(&self) -> &'static str {
        "batch_norm"
    }
    fn output_shape(&self) -> Shape {
        self.shape
    }
    fn tensors(&self) -> Vec<Tensor> {
        let Some((g, b)) = self.affine else { return vec![] };
        let c = self.c;
        vec![
            Tensor { name: "weight", shape: vec![c], range: g..g + c, default_init: DefaultInit::Constant(1.0) },
            Tensor { name: "bias", shape: vec![c], range: b..b + c, default_init: DefaultInit::Constant(0.0) },
        ]
    }
    fn buffers(&self) -> Vec<Tensor> {
        let (b, c) = (self.buffers, self.c);
        vec![
            Tensor { name: "running_mean", shape: vec![c], range: b..b + c, default_init: DefaultInit::Constant(0.0) },
            Tensor { name: "running_var", shape: vec![c], range: b + c..b + 2 * c, default_init: DefaultInit::Constant(1.0) },
            Tensor {
                name: "num_batches_tracked",
                shape: vec![],
                range: b + 2 * c..b + 2 * c + 1,
                default_init: DefaultInit::Constant(0.0),
            },
        ]
    }
    fn torch_module(&self) -> Value {
        let module = if matches!(self.shape, Shape::Image { .. }) { "BatchNorm2d" } else { "BatchNorm1d" };
        json!({"module": module, "num_features": self.c, "eps": self.eps, "momentum": self.momentum, "affine": self.affine.is_some()})
    }
    fn describe(&self) -> String {
        "batch_norm".into()
    }
    fn as_batch_norm(&self) -> Option<&BatchNorm> {
        Some(self)
    }
    /// Batch statistics of `inputs[0]` as the whole batch.
    fn forward(&self, w: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let x = inputs[0];
        let sx = self.sums_x(x);
        let first = self.batch_stats(&sx, None, x.nrows());
        let st = self.batch_stats(&sx, Some(&self.sums_dev(x, &first.mean)), x.nrows());
        self.normalize(w, x, st)
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>> {
        let totals = aux::<Stats>(io.aux).batch.then(|| self.backward_sums(io, g, k));
        vec![self.input_signal(io, g, k, totals.as_deref())]
    }
    fn backward(&self, io: &Io<'_>, g: MatRef<'_, f64>, grad: &mut [f64], need_inputs: bool) -> Vec<Mat<f64>> {
        let totals = (need_inputs && aux::<Stats>(io.aux).batch).then(|| self.backward_sums(io, g, 1));
        self.backward_with(io, g, totals.as_deref(), grad, need_inputs)
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], v: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>> {
        let totals = aux::<Stats>(io.aux).batch.then(|| self.tangent_sums(io, t, k));
        self.tangent_with(io, t, v, k, totals.as_deref())
    }
    fn r_backward(&self, r: &RBackward<'_>, out: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let RBackward { io, rg, k, second, .. } = *r;
        if !aux::<Stats>(io.aux).batch {
            return self.r_backward_with(r, None, out);
        }
        let primal = second.map_or_else(|| vec![0.0; 2 * self.c], |s| self.backward_sums(io, s.sig, 1));
        let tangent = self.tangent_sums(io, second.map_or(&[None][..], |s| s.r_inputs), k);
        let r_backward = self.r_backward_sums(io, rg, k, second, Some(&tangent));
        let totals = Totals { primal: &primal, tangent: &tangent, r_backward: &r_backward };
        self.r_backward_with(r, Some(&totals), out)
    }
}
