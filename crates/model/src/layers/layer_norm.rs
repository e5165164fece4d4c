//! Layer normalization over all of a sample's values — the feature axis of a vector, all of
//! [C, H, W] of an image, and the feature axis of each position of a sequence (a transformer's
//! `LayerNorm(d)` on (N, T, d)) — as PyTorch's `nn.LayerNorm(normalized_shape)` with that shape:
//! y = γ ⊙ (x − μ)/√(σ² + ε) + β, μ and σ² (biased) per sample; `"layer_norm"` or
//! `{ layer_norm = { eps = 1e-5, elementwise_affine = true } }`.
//!
//! With x̂ = (x − μ)·ρ (ρ = 1/√(σ² + ε)) and ĝ = γ ⊙ g, the signal at the input is
//! ρ (ĝ − mean ĝ − x̂ mean(ĝ x̂)); its derivative along (R{x} = r, R{γ} = v_γ), for the exact
//! Hessian, is −ρ mean(x̂ r) g_x + ρ (δĝ − mean δĝ − δx̂ mean(ĝ x̂) − x̂ mean(δĝ x̂ + ĝ δx̂))
//! with δx̂ = ρ (r − mean r − x̂ mean(x̂ r)) and δĝ = v_γ ⊙ g.
use super::{Config, Entry, Shape, one_input, table};
use crate::layer::{Aux, DefaultInit, Io, Layer, LayerConfig, ParamCursor, RBackward, Tensor, aux, col};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct LayerNormConfig {
    eps: f64,
    affine: bool,
}

fn args(v: &Value) -> Result<LayerNormConfig, String> {
    let t = table("layer_norm", v, &["eps", "elementwise_affine"])?;
    let eps =
        t.get("eps").map(|e| e.as_f64().filter(|e| *e > 0.0 && e.is_finite()).ok_or(format!("eps must be a positive number, got {e}")));
    let affine = t.get("elementwise_affine").map(|b| b.as_bool().ok_or(format!("elementwise_affine must be true or false, got {b}")));
    Ok(LayerNormConfig { eps: eps.transpose()?.unwrap_or(1e-5), affine: affine.transpose()?.unwrap_or(true) })
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "layer_norm",
    torch: "LayerNorm",
    parse: |arg| Ok(Arc::new(arg.map(args).transpose()?.unwrap_or(LayerNormConfig { eps: 1e-5, affine: true })) as Config),
    from_torch: |m, inputs| {
        let dims = unit(one_input("LayerNorm", inputs)?).dims();
        let shape: Vec<usize> = serde_json::from_value(m.get("normalized_shape").cloned().unwrap_or(Value::Null))
            .map_err(|_| "LayerNorm entry lacks `normalized_shape` (a list)".to_string())?;
        if shape != dims {
            return Err(format!(
                "LayerNorm normalizes over {shape:?}; hesslab normalizes {dims:?} here (a sample's whole shape, or a sequence position's features)"
            ));
        }
        let mut t = m.as_object().cloned().unwrap_or_default();
        t.retain(|k, _| k == "eps" || k == "elementwise_affine");
        Ok(Arc::new(args(&Value::Object(t))?) as Config)
    },
};

impl LayerConfig for LayerNormConfig {
    fn name(&self) -> &'static str {
        "layer_norm"
    }
    fn to_value(&self) -> Value {
        json!({"layer_norm": {"eps": self.eps, "elementwise_affine": self.affine}})
    }
    fn build(&self, inputs: &[Shape], params: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        let shape = one_input("layer_norm", inputs)?;
        let d = unit(shape).size();
        let gamma = if self.affine { Some((params.take(d as u64)?, params.take(d as u64)?)) } else { None };
        Ok(Box::new(LayerNorm { shape, unit: unit(shape), eps: self.eps, params: gamma }))
    }
}

/// What one normalization covers: a sample's whole shape, or one position of a sequence.
fn unit(shape: Shape) -> Shape {
    match shape {
        Shape::Seq { d, .. } => Shape::Flat(d),
        other => other,
    }
}

/// Normalization of each sample's C·H·W (or d) values.
#[derive(Debug)]
pub struct LayerNorm {
    shape: Shape,
    /// The values one mean and variance are over (`shape`, or a position's features).
    unit: Shape,
    eps: f64,
    /// Offsets of γ and β (PyTorch's C, H, W order), when affine.
    params: Option<(usize, usize)>,
}

/// Per sample: μ and ρ = 1/√(σ² + ε).
struct Stats(Vec<(f64, f64)>);

/// One sample's values (k blocks of `m`'s rows: block j, sample s) in PyTorch's C, H, W order.
fn gather(m: MatRef<'_, f64>, hw: usize, row0: usize, out: &mut [f64]) {
    for c in 0..m.ncols() {
        out[c * hw..(c + 1) * hw].copy_from_slice(&col(m, c)[row0..row0 + hw]);
    }
}

fn scatter(v: &[f64], hw: usize, row0: usize, m: &mut Mat<f64>) {
    for c in 0..m.ncols() {
        m.col_as_slice_mut(c)[row0..row0 + hw].copy_from_slice(&v[c * hw..(c + 1) * hw]);
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn dot_mean(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / a.len() as f64
}

impl LayerNorm {
    fn hw(&self) -> usize {
        self.unit.rows_per_sample()
    }
    fn d(&self) -> usize {
        self.unit.size()
    }
    fn gamma<'a>(&self, w: &'a [f64]) -> Option<&'a [f64]> {
        self.params.map(|(g, _)| &w[g..g + self.d()])
    }
    /// x̂ of sample s of the primal input.
    fn x_hat(&self, x: MatRef<'_, f64>, st: &Stats, s: usize, out: &mut [f64]) {
        gather(x, self.hw(), s * self.hw(), out);
        let (mu, rho) = st.0[s];
        out.iter_mut().for_each(|v| *v = (*v - mu) * rho);
    }
    /// ρ (ĝ − mean ĝ − x̂ mean(ĝ x̂)) for ĝ = γ ⊙ g, and mean(ĝ x̂).
    fn input_signal(gamma: Option<&[f64]>, g: &[f64], xh: &[f64], rho: f64, out: &mut [f64]) -> f64 {
        out.copy_from_slice(g);
        if let Some(gm) = gamma {
            out.iter_mut().zip(gm).for_each(|(o, y)| *o *= y);
        }
        let (m1, m2) = (mean(out), dot_mean(out, xh));
        out.iter_mut().zip(xh).for_each(|(o, x)| *o = rho * (*o - m1 - x * m2));
        m2
    }
    /// δx̂ = ρ (r − mean r − x̂ mean(x̂ r)), and mean(x̂ r).
    fn dx_hat(r: &[f64], xh: &[f64], rho: f64, out: &mut [f64]) -> f64 {
        let (mr, mxr) = (mean(r), dot_mean(xh, r));
        out.iter_mut().zip(r.iter().zip(xh)).for_each(|(o, (r, x))| *o = rho * (r - mr - x * mxr));
        mxr
    }
}

impl Layer for LayerNorm {
    fn kind(&self) -> &'static str {
        "layer_norm"
    }
    fn output_shape(&self) -> Shape {
        self.shape
    }
    fn tensors(&self) -> Vec<Tensor> {
        let Some((g, b)) = self.params else { return vec![] };
        let (d, dims) = (self.d(), self.unit.dims());
        vec![
            Tensor { name: "weight", shape: dims.clone(), range: g..g + d, default_init: DefaultInit::Constant(1.0) },
            Tensor { name: "bias", shape: dims, range: b..b + d, default_init: DefaultInit::Constant(0.0) },
        ]
    }
    fn torch_module(&self) -> Value {
        json!({"module": "LayerNorm", "normalized_shape": self.unit.dims(), "eps": self.eps, "elementwise_affine": self.params.is_some()})
    }
    fn describe(&self) -> String {
        "layer_norm".into()
    }
    fn forward(&self, w: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let x = inputs[0];
        let (hw, d) = (self.hw(), self.d());
        let n = x.nrows() / hw;
        let mut y = Mat::<f64>::zeros(x.nrows(), x.ncols());
        let mut v = vec![0.0; d];
        let mut stats = Vec::with_capacity(n);
        for s in 0..n {
            gather(x, hw, s * hw, &mut v);
            let mu = mean(&v);
            let var = v.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / d as f64;
            let rho = 1.0 / (var + self.eps).sqrt();
            v.iter_mut().for_each(|x| *x = (*x - mu) * rho);
            if let Some((g, b)) = self.params {
                v.iter_mut().enumerate().for_each(|(i, x)| *x = w[g + i] * *x + w[b + i]);
            }
            scatter(&v, hw, s * hw, &mut y);
            stats.push((mu, rho));
        }
        (y, Some(Box::new(Stats(stats))))
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        let (x, st) = (io.inputs[0], aux::<Stats>(io.aux));
        let (hw, d, n) = (self.hw(), self.d(), st.0.len());
        let mut out = Mat::<f64>::zeros(g.nrows(), g.ncols());
        let (mut xh, mut gs, mut o) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        for b in 0..g.nrows() / hw {
            let s = b % n.max(1);
            self.x_hat(x, st, s, &mut xh);
            gather(g, hw, b * hw, &mut gs);
            Self::input_signal(self.gamma(io.w), &gs, &xh, st.0[s].1, &mut o);
            scatter(&o, hw, b * hw, &mut out);
        }
        vec![out]
    }
    fn backward(&self, io: &Io<'_>, g: MatRef<'_, f64>, grad: &mut [f64], need_inputs: bool) -> Vec<Mat<f64>> {
        if let Some((gi, bi)) = self.params {
            let (x, st) = (io.inputs[0], aux::<Stats>(io.aux));
            let (hw, d) = (self.hw(), self.d());
            let (mut xh, mut gs) = (vec![0.0; d], vec![0.0; d]);
            for s in 0..st.0.len() {
                self.x_hat(x, st, s, &mut xh);
                gather(g, hw, s * hw, &mut gs);
                for i in 0..d {
                    grad[gi + i] += gs[i] * xh[i];
                    grad[bi + i] += gs[i];
                }
            }
        }
        if need_inputs { self.adjoint(io, g, 1) } else { vec![] }
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], v: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>> {
        let (x, st) = (io.inputs[0], aux::<Stats>(io.aux));
        let (hw, d, n) = (self.hw(), self.d(), st.0.len());
        if t[0].is_none() && self.params.is_none() {
            return None;
        }
        let mut out = Mat::<f64>::zeros(k * x.nrows(), x.ncols());
        let (mut xh, mut r, mut dx, mut o) = (vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        for j in 0..k {
            for s in 0..n {
                let row0 = (j * n + s) * hw;
                self.x_hat(x, st, s, &mut xh);
                o.fill(0.0);
                if let Some(t) = t[0] {
                    gather(t.as_ref(), hw, row0, &mut r);
                    Self::dx_hat(&r, &xh, st.0[s].1, &mut dx);
                    match self.gamma(io.w) {
                        Some(gm) => o.iter_mut().zip(dx.iter().zip(gm)).for_each(|(o, (a, b))| *o = a * b),
                        None => o.copy_from_slice(&dx),
                    }
                }
                if let Some((gi, bi)) = self.params {
                    let vj = col(v, j);
                    o.iter_mut().enumerate().for_each(|(i, o)| *o += vj[gi + i] * xh[i] + vj[bi + i]);
                }
                scatter(&o, hw, row0, &mut out);
            }
        }
        Some(out)
    }
    fn r_backward(&self, r: &RBackward<'_>, out: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let RBackward { io, rg, v, k, second, need_inputs } = *r;
        let (x, st) = (io.inputs[0], aux::<Stats>(io.aux));
        let (hw, d, n) = (self.hw(), self.d(), st.0.len());
        let gamma = self.gamma(io.w);
        let r_in = second.and_then(|s| s.r_inputs[0]);
        let mut g_in = if need_inputs { Some(Mat::<f64>::zeros(rg.nrows(), rg.ncols())) } else { None };
        let (mut xh, mut rgs, mut gs, mut r, mut dx, mut o, mut gx) =
            (vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        // δĝ and ĝ, reused across samples and blocks (this runs inside every HVP).
        let (mut dgh, mut ghat) = (vec![0.0; d], vec![0.0; d]);
        for j in 0..k {
            for s in 0..n {
                let row0 = (j * n + s) * hw;
                let rho = st.0[s].1;
                self.x_hat(x, st, s, &mut xh);
                gather(rg, hw, row0, &mut rgs);
                let has_r = if let Some(r_mat) = r_in {
                    gather(r_mat.as_ref(), hw, row0, &mut r);
                    true
                } else {
                    false
                };
                let mxr = if has_r { Self::dx_hat(&r, &xh, rho, &mut dx) } else { 0.0 };
                if let Some(sec) = second {
                    gather(sec.sig, hw, s * hw, &mut gs);
                }
                // Parameter part: (∂y/∂θ)ᵀ R{g} (+ (∂²y/∂γ∂x r)ᵀ g = g ⊙ δx̂).
                if let Some((gi, bi)) = self.params {
                    let oc = out.col_as_slice_mut(j);
                    for i in 0..d {
                        oc[gi + i] += rgs[i] * xh[i];
                        oc[bi + i] += rgs[i];
                    }
                    if second.is_some() && has_r {
                        for i in 0..d {
                            oc[gi + i] += gs[i] * dx[i];
                        }
                    }
                }
                let Some(g_in) = g_in.as_mut() else { continue };
                Self::input_signal(gamma, &rgs, &xh, rho, &mut o);
                if second.is_some() {
                    // δ(signal) along (r, v_γ) with the primal g fixed.
                    let m2 = Self::input_signal(gamma, &gs, &xh, rho, &mut gx);
                    dgh.fill(0.0);
                    if let Some((gi, _)) = self.params {
                        let vj = col(v, j);
                        dgh.iter_mut().enumerate().for_each(|(i, a)| *a = vj[gi + i] * gs[i]);
                    }
                    match gamma {
                        Some(gm) => ghat.iter_mut().zip(gs.iter().zip(gm)).for_each(|(h, (a, b))| *h = a * b),
                        None => ghat.copy_from_slice(&gs),
                    }
                    let mdg = mean(&dgh);
                    let dm2 = dot_mean(&dgh, &xh) + if has_r { dot_mean(&ghat, &dx) } else { 0.0 };
                    for i in 0..d {
                        let ddx = if has_r { dx[i] } else { 0.0 };
                        o[i] += -rho * mxr * gx[i] + rho * (dgh[i] - mdg - ddx * m2 - xh[i] * dm2);
                    }
                }
                scatter(&o, hw, row0, g_in);
            }
        }
        g_in.into_iter().collect()
    }
}
