//! Average pooling over windows (PyTorch's `nn.AvgPool2d`, no padding).
use super::{Config, Entry, Pair, Shape, Window, as_pair, needs_arguments, one_input, table};
use crate::kernels::{avg_pool, avg_pool_adjoint};
use crate::layer::{Aux, Io, Layer, LayerConfig, ParamCursor};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

/// `K`, `[kh, kw]` or `{ kernel_size, stride }` (stride defaults to the window, as PyTorch's).
pub(crate) fn pool_args(name: &str, v: &Value) -> Result<(Pair, Pair), String> {
    if !v.is_object() {
        let k = as_pair(v, &format!("{name} window"))?;
        return Ok((k, k));
    }
    let t = table(name, v, &["kernel_size", "stride"])?;
    let k = as_pair(t.get("kernel_size").ok_or_else(|| format!("{name} needs kernel_size"))?, "kernel_size")?;
    let s = t.get("stride").map(|s| as_pair(s, "stride")).transpose()?.unwrap_or(k);
    Ok((k, s))
}

/// From a PyTorch MaxPool2d/AvgPool2d entry.
pub(crate) fn torch_pool_args(m: &Value) -> Result<(Pair, Pair), String> {
    let module = m.get("module").and_then(Value::as_str).unwrap_or("pooling");
    super::refuse_other_torch_args(
        m,
        module,
        &[
            ("padding", json!(0)),
            ("dilation", json!(1)),
            ("ceil_mode", json!(false)),
            ("divisor_override", Value::Null),
            ("return_indices", json!(false)),
        ],
    )?;
    let kernel_size = as_pair(m.get("kernel_size").ok_or("pooling entry lacks `kernel_size`")?, "kernel_size")?;
    let stride = m.get("stride").filter(|s| !s.is_null()).map(|s| as_pair(s, "stride")).transpose()?.unwrap_or(kernel_size);
    Ok((kernel_size, stride))
}

#[derive(Debug)]
struct AvgPoolConfig {
    kernel_size: Pair,
    stride: Pair,
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "avg_pool2d",
    torch: "AvgPool2d",
    parse: |arg| {
        let (kernel_size, stride) = pool_args("avg_pool2d", needs_arguments("avg_pool2d", arg)?)?;
        Ok(Arc::new(AvgPoolConfig { kernel_size, stride }) as Config)
    },
    from_torch: |m, _| {
        let (kernel_size, stride) = torch_pool_args(m)?;
        Ok(Arc::new(AvgPoolConfig { kernel_size, stride }) as Config)
    },
};

impl LayerConfig for AvgPoolConfig {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }
    fn to_value(&self) -> Value {
        json!({"avg_pool2d": {"kernel_size": self.kernel_size, "stride": self.stride}})
    }
    fn build(&self, inputs: &[Shape], _: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        let win = Window::over(one_input("avg_pool2d", inputs)?, self.kernel_size, self.stride, [0, 0], "pooling")?;
        Ok(Box::new(AvgPool2d { win }))
    }
}

/// The mean of each window.
#[derive(Debug)]
pub struct AvgPool2d {
    win: Window,
}

impl Layer for AvgPool2d {
    fn kind(&self) -> &'static str {
        "avg_pool2d"
    }
    fn output_shape(&self) -> Shape {
        self.win.output_shape(self.win.c)
    }
    fn torch_module(&self) -> Value {
        json!({"module": "AvgPool2d", "kernel_size": self.win.kernel, "stride": self.win.stride})
    }
    fn describe(&self) -> String {
        format!("avgpool{}", self.win.kernel[0])
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        (avg_pool(inputs[0], &self.win), None)
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>> {
        let _ = (io, k);
        vec![avg_pool_adjoint(g, &self.win)]
    }
    fn tangent(&self, _: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        Some(avg_pool(t[0]?.as_ref(), &self.win))
    }
}
