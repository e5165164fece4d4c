//! A 2-d convolution (cross-correlation, zero padding: PyTorch's `nn.Conv2d`); weight
//! [out, in, kh, kw] row-major.
use super::{Config, Entry, Pair, Shape, Window, as_bias, as_pair, as_usize, check_torch_input, needs_arguments, one_input, table};
use crate::kernels::{
    bias_grad, conv_forward, conv_forward_each, conv_input_signal, conv_input_signal_sum, conv_weight_grad, conv_weight_grad_each,
};
use crate::layer::{Aux, DefaultInit, Io, Layer, LayerConfig, ParamCursor, RBackward, Tensor, add_bias_parts, col};
use faer::{Accum, Mat, MatRef};
use serde_json::{Map, Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct Conv2dConfig {
    in_channels: Option<usize>,
    out_channels: usize,
    kernel_size: Pair,
    stride: Pair,
    padding: Pair,
    bias: bool,
}

fn from_table(t: &Map<String, Value>, what: &str) -> Result<Conv2dConfig, String> {
    let need = |k: &str| t.get(k).ok_or_else(|| format!("{what} needs {k}"));
    let pair_or = |k: &str, d: usize| t.get(k).map(|x| as_pair(x, k)).transpose().map(|p| p.unwrap_or([d, d]));
    Ok(Conv2dConfig {
        in_channels: None,
        out_channels: as_usize(need("out_channels")?, "out_channels")?,
        kernel_size: as_pair(need("kernel_size")?, "kernel_size")?,
        stride: pair_or("stride", 1)?,
        padding: pair_or("padding", 0)?,
        bias: as_bias(t)?,
    })
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "conv2d",
    torch: "Conv2d",
    parse: |arg| {
        let t =
            table("conv2d", needs_arguments("conv2d", arg)?, &["in_channels", "out_channels", "kernel_size", "stride", "padding", "bias"])?;
        let mut c = from_table(t, "conv2d")?;
        c.in_channels = t.get("in_channels").map(|v| as_usize(v, "in_channels")).transpose()?;
        Ok(Arc::new(c) as Config)
    },
    from_torch: |m, inputs| {
        if let Shape::Image { c, .. } = one_input("Conv2d", inputs)? {
            check_torch_input(m, "Conv2d", "in_channels", c)?;
        }
        let t = m.as_object().ok_or("Conv2d entry is not an object")?;
        if t.get("padding").is_some_and(Value::is_string) {
            return Err("Conv2d with padding given as a string (\"same\", \"valid\") is not supported; give the numbers".into());
        }
        super::refuse_other_torch_args(m, "Conv2d", &[("dilation", json!(1)), ("groups", json!(1)), ("padding_mode", json!("zeros"))])?;
        Ok(Arc::new(from_table(t, "Conv2d entry")?) as Config)
    },
};

impl LayerConfig for Conv2dConfig {
    fn name(&self) -> &'static str {
        "conv2d"
    }
    fn to_value(&self) -> Value {
        let mut t = json!({"out_channels": self.out_channels, "kernel_size": self.kernel_size, "stride": self.stride,
                           "padding": self.padding, "bias": self.bias});
        if let Some(i) = self.in_channels {
            t["in_channels"] = json!(i);
        }
        json!({ "conv2d": t })
    }
    fn build(&self, inputs: &[Shape], params: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        let input = one_input("conv2d", inputs)?;
        let Shape::Image { c, .. } = input else {
            return Err("conv2d needs an image input [C, H, W]".into());
        };
        if let Some(d) = self.in_channels.filter(|&d| d != c) {
            return Err(format!("conv2d declares in_channels = {d}, but its input has {c} channels"));
        }
        if self.out_channels == 0 || self.kernel_size.contains(&0) || self.stride.contains(&0) {
            return Err("out_channels, kernel_size and stride must be ≥ 1".into());
        }
        let win = Window::over(input, self.kernel_size, self.stride, self.padding, "conv2d")?;
        // In u64 with checks: channels × kernel area × outputs can exceed any usize.
        let weights =
            [c, self.kernel_size[0], self.kernel_size[1], self.out_channels].iter().try_fold(1u64, |a, &b| a.checked_mul(b as u64));
        let w = params.take(weights.unwrap_or(u64::MAX))?;
        let b = if self.bias { Some(params.take(self.out_channels as u64)?) } else { None };
        Ok(Box::new(Conv2d { win, c_out: self.out_channels, w, b }))
    }
}

/// The convolution of a channels-last image batch.
#[derive(Debug)]
pub struct Conv2d {
    win: Window,
    c_out: usize,
    /// Offset of the weight.
    w: usize,
    /// Offset of the bias.
    b: Option<usize>,
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }
    fn output_shape(&self) -> Shape {
        self.win.output_shape(self.c_out)
    }
    fn tensors(&self) -> Vec<Tensor> {
        let shape = vec![self.c_out, self.win.c, self.win.kernel[0], self.win.kernel[1]];
        let len: usize = shape.iter().product();
        let mut v = vec![Tensor {
            name: "weight",
            shape,
            range: self.w..self.w + len,
            default_init: DefaultInit::FanInUniform { fan_in: self.win.patch() },
        }];
        if let Some(b) = self.b {
            v.push(Tensor {
                name: "bias",
                shape: vec![self.c_out],
                range: b..b + self.c_out,
                default_init: DefaultInit::FanInUniform { fan_in: self.win.patch() },
            });
        }
        v
    }
    fn torch_module(&self) -> Value {
        json!({"module": "Conv2d", "in_channels": self.win.c, "out_channels": self.c_out, "kernel_size": self.win.kernel,
               "stride": self.win.stride, "padding": self.win.padding, "bias": self.b.is_some()})
    }
    fn describe(&self) -> String {
        let k = self.win.kernel;
        let mut t = format!("conv{}×{}", k[0], k[1]);
        if self.win.stride != [1, 1] {
            t.push_str(&format!("/s{}", self.win.stride[0]));
        }
        if self.win.padding != [0, 0] {
            t.push_str(&format!("/p{}", self.win.padding[0]));
        }
        format!("{t}→{}", self.output_shape().times())
    }
    fn flops_per_sample(&self) -> f64 {
        2.0 * (self.win.out_hw() * self.win.patch() * self.c_out) as f64
    }

    fn forward(&self, w: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let input = inputs[0];
        let mut z = Mat::<f64>::zeros(input.nrows() / self.win.in_hw() * self.win.out_hw(), self.c_out);
        conv_forward(input, &self.win, self.c_out, w, self.w, self.b, z.as_mut(), Accum::Replace);
        (z, None)
    }
    fn backward(&self, io: &Io<'_>, g: MatRef<'_, f64>, grad: &mut [f64], need_inputs: bool) -> Vec<Mat<f64>> {
        conv_weight_grad(io.inputs[0], g, &self.win, self.c_out, grad, self.w);
        if let Some(b) = self.b {
            bias_grad(g, grad, b);
        }
        if need_inputs { self.adjoint(io, g, 1) } else { vec![] }
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        let mut out = Mat::<f64>::zeros(g.nrows() / self.win.out_hw() * self.win.in_hw(), self.win.c);
        conv_input_signal(g, &self.win, self.c_out, io.w, self.w, out.as_mut());
        vec![out]
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], v: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>> {
        let input = io.inputs[0];
        let rows = input.nrows() / self.win.in_hw() * self.win.out_hw();
        let mut z = t[0].map(|t| {
            let mut z = Mat::<f64>::zeros(t.nrows() / self.win.in_hw() * self.win.out_hw(), self.c_out);
            conv_forward(t.as_ref(), &self.win, self.c_out, io.w, self.w, None, z.as_mut(), Accum::Replace);
            z
        });
        // The convolution of the input with each vector's weight part, then its bias part.
        let zr = z.get_or_insert_with(|| Mat::zeros(k * rows, self.c_out));
        conv_forward_each(input, &self.win, self.c_out, v, self.w, zr.as_mut());
        if let Some(b) = self.b {
            for j in 0..k {
                let vj = col(v, j);
                for o in 0..self.c_out {
                    let vb = vj[b + o];
                    zr.col_as_slice_mut(o)[j * rows..(j + 1) * rows].iter_mut().for_each(|x| *x += vb);
                }
            }
        }
        z
    }
    fn r_backward(&self, r: &RBackward<'_>, out: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let RBackward { io, rg, v, k, second, need_inputs } = *r;
        let (input, win) = (io.inputs[0], &self.win);
        let samples = input.nrows() / win.in_hw();
        // Σ unfold(A)ᵀ RG_j (+ unfold(RA_j)ᵀ G), by the convolution's weight gradient.
        conv_weight_grad_each(input, rg, win, self.c_out, out, self.w);
        if let Some(s) = second
            && let Some(r) = s.r_inputs[0]
        {
            for j in 0..k {
                let r_j = r.as_ref().subrows(j * samples * win.in_hw(), samples * win.in_hw());
                conv_weight_grad(r_j, s.sig, win, self.c_out, out.col_as_slice_mut(j), self.w);
            }
        }
        if let Some(b) = self.b {
            add_bias_parts(rg, k, b, out);
        }
        if !need_inputs {
            return vec![];
        }
        let Some(s) = second else { return self.adjoint(io, rg, k) };
        // J_xᵀ R{g} + (∂²y/∂x∂θ v)ᵀ g block by block, as one sum of two signals.
        let (block, rows) = (samples * win.in_hw(), s.sig.nrows());
        let mut g_in = Mat::<f64>::zeros(k * block, win.c);
        for j in 0..k {
            let terms = [(rg.subrows(j * rows, rows), io.w, self.w), (s.sig, col(v, j), self.w)];
            conv_input_signal_sum(&terms, win, self.c_out, g_in.as_mut().subrows_mut(j * block, block));
        }
        vec![g_in]
    }
}
