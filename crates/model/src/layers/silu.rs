//! SiLU (swish): x σ(x), PyTorch's `nn.SiLU`.
use super::pointwise::{Pointwise, entry};
use crate::sigmoid;
use serde_json::{Value, json};

/// x σ(x).
#[derive(Debug, Clone, Default)]
pub struct Silu;

impl Pointwise for Silu {
    const NAME: &'static str = "silu";
    fn f(&self, z: f64) -> f64 {
        z * sigmoid(z)
    }
    fn d1(&self, z: f64) -> f64 {
        let s = sigmoid(z);
        s * (1.0 + z * (1.0 - s))
    }
    fn d2(&self, z: f64) -> f64 {
        let s = sigmoid(z);
        s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    }
    fn torch_module(&self) -> Value {
        json!({"module": "SiLU"})
    }
}

/// Registry entry.
pub const ENTRY: super::Entry = entry::<Silu>("SiLU");
