//! Leaky ReLU: x for x > 0, slope · x otherwise (PyTorch's `nn.LeakyReLU`); `"leaky_relu"`
//! (slope 0.01) or `{ leaky_relu = 0.2 }` / `{ leaky_relu = { negative_slope = 0.2 } }`.
use super::pointwise::{Pointwise, config};
use super::{Config, Entry, table};
use serde_json::{Value, json};

/// max(x, 0) + slope · min(x, 0).
#[derive(Debug, Clone)]
pub struct LeakyRelu {
    slope: f64,
}

fn slope(v: &Value) -> Result<f64, String> {
    let s = match v {
        Value::Object(_) => table("leaky_relu", v, &["negative_slope"])?.get("negative_slope").cloned().unwrap_or(json!(0.01)),
        _ => v.clone(),
    };
    s.as_f64().filter(|s| s.is_finite()).ok_or_else(|| format!("leaky_relu's negative_slope must be a finite number, got {s}"))
}

fn make(slope: f64) -> Config {
    config(LeakyRelu { slope })
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "leaky_relu",
    torch: "LeakyReLU",
    parse: |arg| arg.map(slope).transpose().map(|s| make(s.unwrap_or(0.01))),
    from_torch: |m, _| m.get("negative_slope").map(slope).transpose().map(|s| make(s.unwrap_or(0.01))),
};

impl Pointwise for LeakyRelu {
    const NAME: &'static str = "leaky_relu";
    fn f(&self, z: f64) -> f64 {
        if z > 0.0 { z } else { self.slope * z }
    }
    fn d1(&self, z: f64) -> f64 {
        if z > 0.0 { 1.0 } else { self.slope }
    }
    fn d2(&self, _: f64) -> f64 {
        0.0
    }
    fn torch_module(&self) -> Value {
        json!({"module": "LeakyReLU", "negative_slope": self.slope})
    }
    fn to_value(&self) -> Value {
        json!({ "leaky_relu": self.slope })
    }
}
