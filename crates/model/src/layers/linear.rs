//! A fully connected layer y = x Wᵀ + b (PyTorch's `nn.Linear`; W is out × in, row-major).
use super::{Config, Entry, Shape, as_bias, as_usize, check_torch_input, needs_arguments, one_input, table};
use crate::LayerLayout;
use crate::kernels::{add_bias, bias_grad, weight_view, weight_view_mut};
use crate::layer::{Aux, DefaultInit, Io, Layer, LayerConfig, ParamCursor, RBackward, Tensor, add_bias_parts, col};
use crate::mlp::{mm, weight_t};
use faer::{Accum, Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct LinearConfig {
    in_features: Option<usize>,
    out_features: usize,
    bias: bool,
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "linear",
    torch: "Linear",
    parse: |arg| {
        let arg = needs_arguments("linear", arg)?;
        if !arg.is_object() {
            return Ok(Arc::new(LinearConfig { in_features: None, out_features: as_usize(arg, "linear width")?, bias: true }) as Config);
        }
        let t = table("linear", arg, &["in_features", "out_features", "bias"])?;
        Ok(Arc::new(LinearConfig {
            in_features: t.get("in_features").map(|v| as_usize(v, "in_features")).transpose()?,
            out_features: as_usize(t.get("out_features").ok_or("linear needs out_features")?, "out_features")?,
            bias: as_bias(t)?,
        }) as Config)
    },
    from_torch: |m, inputs| {
        let input = one_input("Linear", inputs)?;
        let features = if let Shape::Seq { d, .. } = input { d } else { input.size() };
        check_torch_input(m, "Linear", "in_features", features)?;
        let t = m.as_object().ok_or("Linear entry is not an object")?;
        let out = as_usize(m.get("out_features").ok_or("Linear entry lacks `out_features`")?, "out_features")?;
        Ok(Arc::new(LinearConfig { in_features: None, out_features: out, bias: as_bias(t).map_err(|e| format!("Linear: {e}"))? }) as Config)
    },
};

impl LayerConfig for LinearConfig {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn to_value(&self) -> Value {
        let mut t = json!({"out_features": self.out_features, "bias": self.bias});
        if let Some(i) = self.in_features {
            t["in_features"] = json!(i);
        }
        json!({ "linear": t })
    }
    fn build(&self, inputs: &[Shape], params: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        // On a sequence it applies to each position's features (PyTorch's Linear on (N, T, d)).
        let input = one_input("linear", inputs)?;
        let (n_in, positions) = match input {
            Shape::Flat(n) => (n, None),
            Shape::Seq { t, d } => (d, Some(t)),
            Shape::Image { .. } => return Err("linear needs a flat input; insert \"flatten\" before it".into()),
        };
        if let Some(d) = self.in_features.filter(|&d| d != n_in) {
            return Err(format!("linear declares in_features = {d}, but its input has {n_in}"));
        }
        if self.out_features == 0 {
            return Err("linear has 0 outputs".into());
        }
        let n_out = self.out_features;
        let w = params.take((n_in as u64).saturating_mul(n_out as u64))?;
        let b = if self.bias { Some(params.take(n_out as u64)?) } else { None };
        Ok(Box::new(Linear { n_in, n_out, w, b, positions }))
    }
}

/// y = x Wᵀ + b.
#[derive(Debug)]
pub struct Linear {
    n_in: usize,
    n_out: usize,
    /// Offset of W (n_out × n_in, row-major).
    w: usize,
    /// Offset of b.
    b: Option<usize>,
    /// On a sequence: its positions (the layer applies to each).
    positions: Option<usize>,
}

impl Linear {
    fn layout(&self) -> LayerLayout {
        LayerLayout { n_in: self.n_in, n_out: self.n_out, w: self.w, b: self.b }
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }
    fn output_shape(&self) -> Shape {
        match self.positions {
            Some(t) => Shape::Seq { t, d: self.n_out },
            None => Shape::Flat(self.n_out),
        }
    }
    fn tensors(&self) -> Vec<Tensor> {
        let mut v = vec![Tensor {
            name: "weight",
            shape: vec![self.n_out, self.n_in],
            range: self.w..self.w + self.n_out * self.n_in,
            default_init: DefaultInit::FanInUniform { fan_in: self.n_in },
        }];
        if let Some(b) = self.b {
            v.push(Tensor {
                name: "bias",
                shape: vec![self.n_out],
                range: b..b + self.n_out,
                default_init: DefaultInit::FanInUniform { fan_in: self.n_in },
            });
        }
        v
    }
    fn torch_module(&self) -> Value {
        json!({"module": "Linear", "in_features": self.n_in, "out_features": self.n_out, "bias": self.b.is_some()})
    }
    fn describe(&self) -> String {
        format!("linear→{}", self.n_out)
    }
    fn flops_per_sample(&self) -> f64 {
        2.0 * (self.n_in * self.n_out * self.positions.unwrap_or(1)) as f64
    }
    fn as_linear(&self) -> Option<(usize, usize, bool)> {
        // A per-position layer is not one of the fused MLP kernels' layers.
        self.positions.is_none().then_some((self.n_in, self.n_out, self.b.is_some()))
    }

    fn forward(&self, w: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let mut z = Mat::<f64>::zeros(inputs[0].nrows(), self.n_out);
        mm(z.as_mut(), Accum::Replace, inputs[0], weight_t(w, &self.layout()));
        add_bias(&mut z, w, self.b);
        (z, None)
    }
    fn backward(&self, io: &Io<'_>, g: MatRef<'_, f64>, grad: &mut [f64], need_inputs: bool) -> Vec<Mat<f64>> {
        mm(weight_view_mut(grad, self.w, self.n_out, self.n_in), Accum::Add, io.inputs[0].transpose(), g);
        if let Some(b) = self.b {
            bias_grad(g, grad, b);
        }
        if need_inputs { self.adjoint(io, g, 1) } else { vec![] }
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        let mut out = Mat::<f64>::zeros(g.nrows(), self.n_in);
        mm(out.as_mut(), Accum::Replace, g, weight_t(io.w, &self.layout()).transpose());
        vec![out]
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], v: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>> {
        let input = io.inputs[0];
        let rows = input.nrows();
        let mut z = t[0].map(|t| {
            let mut z = Mat::<f64>::zeros(t.nrows(), self.n_out);
            mm(z.as_mut(), Accum::Replace, t.as_ref(), weight_t(io.w, &self.layout()));
            z
        });
        // The parameter term (∂y/∂θ) v_j = x V_jᵀ + b_j, block by block.
        let z_ref = z.get_or_insert_with(|| Mat::zeros(k * rows, self.n_out));
        for j in 0..k {
            mm(z_ref.as_mut().subrows_mut(j * rows, rows), Accum::Add, input, weight_view(col(v, j), self.w, self.n_out, self.n_in));
        }
        if let Some(b) = self.b {
            for j in 0..k {
                let vj = col(v, j);
                for o in 0..self.n_out {
                    let vb = vj[b + o];
                    z_ref.col_as_slice_mut(o)[j * rows..(j + 1) * rows].iter_mut().for_each(|x| *x += vb);
                }
            }
        }
        z
    }
    fn r_backward(&self, r: &RBackward<'_>, out: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let RBackward { io, rg, v, k, second, need_inputs } = *r;
        let input = io.inputs[0];
        let rows = input.nrows();
        let r_in = second.and_then(|s| s.r_inputs[0]);
        for j in 0..k {
            let oc = out.col_as_slice_mut(j);
            let g_j = rg.subrows(j * rows, rows);
            mm(weight_view_mut(oc, self.w, self.n_out, self.n_in), Accum::Add, input.transpose(), g_j);
            if let (Some(r), Some(s)) = (r_in, second) {
                mm(weight_view_mut(oc, self.w, self.n_out, self.n_in), Accum::Add, r.as_ref().subrows(j * rows, rows).transpose(), s.sig);
            }
        }
        if let Some(b) = self.b {
            add_bias_parts(rg, k, b, out);
        }
        if !need_inputs {
            return vec![];
        }
        let mut g_in = self.adjoint(io, rg, k).remove(0);
        if let Some(s) = second {
            // + (∂²y/∂x∂θ v)ᵀ g = g V_j, block by block.
            for j in 0..k {
                let vt = weight_view(col(v, j), self.w, self.n_out, self.n_in);
                mm(g_in.as_mut().subrows_mut(j * rows, rows), Accum::Add, s.sig, vt.transpose());
            }
        }
        vec![g_in]
    }
}
