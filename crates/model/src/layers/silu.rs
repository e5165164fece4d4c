//! SiLU (swish): x σ(x), PyTorch's `nn.SiLU`.
use super::pointwise::{Pointwise, entry};
use crate::sigmoid;

/// x σ(x).
#[derive(Debug)]
pub struct Silu;

impl Pointwise for Silu {
    const NAME: &'static str = "silu";
    const TORCH: &'static str = "SiLU";
    fn f(z: f64) -> f64 {
        z * sigmoid(z)
    }
    fn d1(z: f64) -> f64 {
        let s = sigmoid(z);
        s * (1.0 + z * (1.0 - s))
    }
    fn d2(z: f64) -> f64 {
        let s = sigmoid(z);
        s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    }
}

/// Registry entry.
pub const ENTRY: super::Entry = entry::<Silu>();
