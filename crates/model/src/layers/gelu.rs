//! GELU: x Φ(x) with the exact normal CDF (`"gelu"`), or its tanh approximation
//! (`{ gelu = { approximate = "tanh" } }`), as PyTorch's `nn.GELU(approximate=…)`.
use super::pointwise::{Pointwise, config};
use super::{Config, Entry, table};
use serde_json::{Value, json};
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI};

/// x Φ(x), exactly or by tanh.
#[derive(Debug, Clone)]
pub struct Gelu {
    tanh: bool,
}

/// φ(x), the standard normal density.
fn phi(x: f64) -> f64 {
    0.5 * FRAC_2_SQRT_PI * FRAC_1_SQRT_2 * (-0.5 * x * x).exp()
}

/// √(2/π) and the cubic coefficient of the tanh form.
const K: f64 = FRAC_2_SQRT_PI * FRAC_1_SQRT_2;
const C: f64 = 0.044715;

fn approximate(v: &Value) -> Result<bool, String> {
    let a = table("gelu", v, &["approximate"])?.get("approximate").cloned().unwrap_or(json!("none"));
    match a.as_str() {
        Some("none") => Ok(false),
        Some("tanh") => Ok(true),
        _ => Err(format!("gelu's approximate is \"none\" or \"tanh\", got {a}")),
    }
}

fn make(tanh: bool) -> Config {
    config(Gelu { tanh })
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "gelu",
    torch: "GELU",
    parse: |arg| arg.map(approximate).transpose().map(|t| make(t.unwrap_or(false))),
    from_torch: |m, _| {
        let mut m = m.clone();
        m.as_object_mut().map(|o| o.remove("module"));
        approximate(&m).map(make)
    },
};

impl Gelu {
    /// u(x) = √(2/π)(x + c x³), u′, u″ and t = tanh u.
    fn tanh_parts(z: f64) -> (f64, f64, f64) {
        let t = (K * (z + C * z * z * z)).tanh();
        (t, K * (1.0 + 3.0 * C * z * z), K * 6.0 * C * z)
    }
}

impl Pointwise for Gelu {
    const NAME: &'static str = "gelu";
    fn f(&self, z: f64) -> f64 {
        if self.tanh { 0.5 * z * (1.0 + Self::tanh_parts(z).0) } else { 0.5 * z * (1.0 + libm::erf(z * FRAC_1_SQRT_2)) }
    }
    fn d1(&self, z: f64) -> f64 {
        if self.tanh {
            let (t, du, _) = Self::tanh_parts(z);
            0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du
        } else {
            0.5 * (1.0 + libm::erf(z * FRAC_1_SQRT_2)) + z * phi(z)
        }
    }
    fn d2(&self, z: f64) -> f64 {
        if self.tanh {
            let (t, du, ddu) = Self::tanh_parts(z);
            let s = 1.0 - t * t;
            s * du + 0.5 * z * (s * ddu - 2.0 * t * s * du * du)
        } else {
            phi(z) * (2.0 - z * z)
        }
    }
    fn torch_module(&self) -> Value {
        json!({"module": "GELU", "approximate": if self.tanh { "tanh" } else { "none" }})
    }
    fn to_value(&self) -> Value {
        if self.tanh { json!({"gelu": {"approximate": "tanh"}}) } else { json!("gelu") }
    }
}
