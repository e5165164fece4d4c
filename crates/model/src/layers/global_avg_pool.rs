//! Global average pooling: the mean of each channel over the image, [C, H, W] → [C]
//! (PyTorch's `nn.AdaptiveAvgPool2d(1)` followed by `nn.Flatten()`).
use super::{Bare, Entry, Shape, one_input};
use crate::layer::{Aux, Io, Layer, col};
use faer::{Mat, MatRef};
use serde_json::{Value, json};

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "global_avg_pool",
    torch: "GlobalAvgPool",
    parse: |arg| Bare::parse("global_avg_pool", build, arg),
    from_torch: |_, _| Ok(Bare::config("global_avg_pool", build)),
};

fn build(inputs: &[Shape]) -> Result<Box<dyn Layer>, String> {
    let Shape::Image { c, h, w } = one_input("global_avg_pool", inputs)? else {
        return Err("global_avg_pool needs an image input [C, H, W]".into());
    };
    Ok(Box::new(GlobalAvgPool { c, hw: h * w }))
}

/// Per sample and channel, the mean over the hw positions.
#[derive(Debug)]
pub struct GlobalAvgPool {
    c: usize,
    hw: usize,
}

impl GlobalAvgPool {
    /// Rows of hw positions per sample (channels-last) → one row per sample.
    fn mean(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        let n = x.nrows() / self.hw;
        let mut out = Mat::<f64>::zeros(n, self.c);
        let inv = 1.0 / self.hw as f64;
        for ch in 0..self.c {
            let src = col(x, ch);
            for (s, o) in out.col_as_slice_mut(ch).iter_mut().enumerate() {
                *o = src[s * self.hw..(s + 1) * self.hw].iter().sum::<f64>() * inv;
            }
        }
        out
    }
}

impl Layer for GlobalAvgPool {
    fn kind(&self) -> &'static str {
        "global_avg_pool"
    }
    fn output_shape(&self) -> Shape {
        Shape::Flat(self.c)
    }
    fn torch_module(&self) -> Value {
        json!({"module": "GlobalAvgPool"})
    }
    fn describe(&self) -> String {
        "global_avg_pool".into()
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        (self.mean(inputs[0]), None)
    }
    fn adjoint(&self, _: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        // Each position receives 1/hw of its sample's signal (k blocks are just more rows).
        let inv = 1.0 / self.hw as f64;
        let mut out = Mat::<f64>::zeros(g.nrows() * self.hw, self.c);
        for ch in 0..self.c {
            let gc = col(g, ch);
            for (s, o) in out.col_as_slice_mut(ch).chunks_mut(self.hw).enumerate() {
                o.fill(gc[s] * inv);
            }
        }
        vec![out]
    }
    fn tangent(&self, _: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        Some(self.mean(t[0]?.as_ref()))
    }
}
