//! Softplus: log(1 + eˣ), and x itself above the threshold 20 (PyTorch's `nn.Softplus`, β = 1,
//! threshold = 20: the same switch, so values and derivatives match there too).
use super::pointwise::{Pointwise, entry};
use crate::sigmoid;
use serde_json::{Value, json};

/// log(1 + eˣ).
#[derive(Debug, Clone, Default)]
pub struct Softplus;

const THRESHOLD: f64 = 20.0;

impl Pointwise for Softplus {
    const NAME: &'static str = "softplus";
    fn f(&self, z: f64) -> f64 {
        if z > THRESHOLD { z } else { libm::log1p(z.exp()) }
    }
    fn d1(&self, z: f64) -> f64 {
        if z > THRESHOLD { 1.0 } else { sigmoid(z) }
    }
    fn d2(&self, z: f64) -> f64 {
        if z > THRESHOLD {
            0.0
        } else {
            let s = sigmoid(z);
            s * (1.0 - s)
        }
    }
    fn torch_module(&self) -> Value {
        json!({"module": "Softplus", "beta": 1.0, "threshold": THRESHOLD})
    }
}

/// Registry entry.
pub const ENTRY: super::Entry = entry::<Softplus>("Softplus");
