//! Max pooling over windows (PyTorch's `nn.MaxPool2d`, no padding): tangents and signals go
//! through the argmax (the first maximum on ties, as PyTorch).
use super::avg_pool2d::{pool_args, torch_pool_args};
use super::{Config, Entry, Pair, Shape, Window, needs_arguments, one_input};
use crate::kernels::{gather_argmax, max_pool, max_pool_values, scatter_argmax};
use crate::layer::{Aux, Io, Layer, LayerConfig, ParamCursor, aux};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct MaxPoolConfig {
    kernel_size: Pair,
    stride: Pair,
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "max_pool2d",
    torch: "MaxPool2d",
    parse: |arg| {
        let (kernel_size, stride) = pool_args("max_pool2d", needs_arguments("max_pool2d", arg)?)?;
        Ok(Arc::new(MaxPoolConfig { kernel_size, stride }) as Config)
    },
    from_torch: |m, _| {
        let (kernel_size, stride) = torch_pool_args(m)?;
        Ok(Arc::new(MaxPoolConfig { kernel_size, stride }) as Config)
    },
};

impl LayerConfig for MaxPoolConfig {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }
    fn to_value(&self) -> Value {
        json!({"max_pool2d": {"kernel_size": self.kernel_size, "stride": self.stride}})
    }
    fn build(&self, inputs: &[Shape], _: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        let win = Window::over(one_input("max_pool2d", inputs)?, self.kernel_size, self.stride, [0, 0], "pooling")?;
        Ok(Box::new(MaxPool2d { win }))
    }
}

/// The maximum of each window.
#[derive(Debug)]
pub struct MaxPool2d {
    win: Window,
}

/// The input row of each output's maximum, per (channel, output row).
pub(crate) type Argmax = Vec<usize>;

impl Layer for MaxPool2d {
    fn kind(&self) -> &'static str {
        "max_pool2d"
    }
    fn output_shape(&self) -> Shape {
        self.win.output_shape(self.win.c)
    }
    fn torch_module(&self) -> Value {
        json!({"module": "MaxPool2d", "kernel_size": self.win.kernel, "stride": self.win.stride})
    }
    fn describe(&self) -> String {
        format!("maxpool{}", self.win.kernel[0])
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let (o, a) = max_pool(inputs[0], &self.win);
        (o, Some(Box::new(a)))
    }
    fn evaluate(&self, _: &[f64], input: Mat<f64>) -> Mat<f64> {
        max_pool_values(input.as_ref(), &self.win)
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>> {
        let _ = (io, k);
        vec![scatter_argmax(g, aux::<Argmax>(io.aux), &self.win, k)]
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>> {
        Some(gather_argmax(t[0]?.as_ref(), aux::<Argmax>(io.aux), &self.win, k))
    }
    fn as_max_pool(&self) -> Option<Window> {
        Some(self.win)
    }
}
