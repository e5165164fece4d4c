//! ELU: x for x > 0, α(eˣ − 1) otherwise (PyTorch's `nn.ELU`, α = 1).
use super::pointwise::{Pointwise, entry};
use serde_json::{Value, json};

/// The exponential linear unit with α = 1.
#[derive(Debug, Clone, Default)]
pub struct Elu;

impl Pointwise for Elu {
    const NAME: &'static str = "elu";
    fn f(&self, z: f64) -> f64 {
        if z > 0.0 { z } else { libm::expm1(z) }
    }
    fn d1(&self, z: f64) -> f64 {
        if z > 0.0 { 1.0 } else { z.exp() }
    }
    fn d2(&self, z: f64) -> f64 {
        if z > 0.0 { 0.0 } else { z.exp() }
    }
    fn torch_module(&self) -> Value {
        json!({"module": "ELU", "alpha": 1.0})
    }
}

/// Registry entry.
pub const ENTRY: super::Entry = entry::<Elu>("ELU");
