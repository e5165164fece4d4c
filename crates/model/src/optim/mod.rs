//! Optimizers as `torch.optim` defines them, one file each, the update written as PyTorch's
//! single-tensor code computes it (float64, same operation order, so 50 steps agree with
//! PyTorch's to rounding): [`sgd`], [`adam`] (Adam and AdamW), [`rmsprop`], [`muon`]; and the
//! learning-rate [`schedule`]s.
//!
//! In a pipeline: `optimizer = "adam"` (PyTorch's defaults) or `optimizer = { adam = { betas =
//! [0.9, 0.99], weight_decay = 1e-4 } }` — one table per optimizer with PyTorch's argument names,
//! unknown ones refused. `lr` stays `train`'s own key (one learning rate, the schedule's base).
pub mod adam;
pub mod muon;
pub mod rmsprop;
pub mod schedule;
pub mod sgd;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ops::Range;

pub use schedule::Schedule;

/// One parameter tensor as an optimizer sees it: its name, PyTorch shape and range.
pub type TensorRange = (String, Vec<usize>, Range<usize>);

/// The optimizer a `train` stage uses, with its arguments (PyTorch's names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`.
    Sgd(sgd::SgdConfig),
    /// `torch.optim.Adam`.
    Adam(adam::AdamConfig),
    /// `torch.optim.AdamW` (decoupled weight decay, default 0.01).
    AdamW(adam::AdamConfig),
    /// `torch.optim.RMSprop`.
    Rmsprop(rmsprop::RmspropConfig),
    /// `torch.optim.Muon` on the weight matrices, AdamW on the rest.
    Muon(muon::MuonConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Sgd(sgd::SgdConfig::default())
    }
}

const NAMES: &str = "sgd, adam, adamw, rmsprop, muon";

impl OptimizerConfig {
    /// Its name in a pipeline.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd(_) => "sgd",
            OptimizerConfig::Adam(_) => "adam",
            OptimizerConfig::AdamW(_) => "adamw",
            OptimizerConfig::Rmsprop(_) => "rmsprop",
            OptimizerConfig::Muon(_) => "muon",
        }
    }
    /// Whether it is plain SGD without weight decay, Nesterov or dampening (what `train` did
    /// before optimizers were configurable: its `momentum` key applies).
    pub fn is_default(&self) -> bool {
        *self == OptimizerConfig::default()
    }
    fn from_value(v: &Value) -> Result<Self, String> {
        fn args<T: serde::de::DeserializeOwned>(name: &str, v: &Value) -> Result<T, String> {
            serde_json::from_value(v.clone()).map_err(|e| format!("optimizer `{name}`: {e}"))
        }
        let (name, table) = match v {
            Value::String(s) => (s.as_str(), Value::Object(Default::default())),
            Value::Object(m) if m.len() == 1 => {
                let (k, t) = m.iter().next().expect("one entry");
                (k.as_str(), t.clone())
            }
            _ => return Err(format!("optimizer is a name ({NAMES}) or {{ name = {{ arguments }} }}, got {v}")),
        };
        Ok(match name {
            "sgd" => OptimizerConfig::Sgd(args(name, &table)?),
            "adam" => OptimizerConfig::Adam(args(name, &table)?),
            "adamw" => {
                let mut c: adam::AdamConfig = args(name, &table)?;
                if table.get("weight_decay").is_none() {
                    c.weight_decay = adam::ADAMW_WEIGHT_DECAY;
                }
                OptimizerConfig::AdamW(c)
            }
            "rmsprop" => OptimizerConfig::Rmsprop(args(name, &table)?),
            "muon" => OptimizerConfig::Muon(args(name, &table)?),
            other => return Err(format!("unknown optimizer `{other}`; known: {NAMES}")),
        })
    }
    fn to_value(&self) -> Value {
        let inner = match self {
            OptimizerConfig::Sgd(c) => serde_json::to_value(c),
            OptimizerConfig::Adam(c) | OptimizerConfig::AdamW(c) => serde_json::to_value(c),
            OptimizerConfig::Rmsprop(c) => serde_json::to_value(c),
            OptimizerConfig::Muon(c) => serde_json::to_value(c),
        };
        serde_json::json!({ self.name(): inner.expect("plain data") })
    }

    /// How many parameter-sized state vectors it keeps (moments, momentum; Muon's halves
    /// together count as at most three), for memory estimates.
    pub fn state_vectors(&self) -> usize {
        match self {
            OptimizerConfig::Sgd(c) => usize::from(c.momentum != 0.0),
            OptimizerConfig::Adam(c) | OptimizerConfig::AdamW(c) => 2 + usize::from(c.amsgrad),
            OptimizerConfig::Rmsprop(c) => 1 + usize::from(c.momentum > 0.0) + usize::from(c.centered),
            OptimizerConfig::Muon(_) => 2,
        }
    }

    /// The optimizer for a network with these tensors (Muon splits them by shape).
    pub fn build(&self, tensors: &[TensorRange], num_params: usize) -> Box<dyn Optimizer> {
        match self {
            OptimizerConfig::Sgd(c) => Box::new(sgd::Sgd::new(c.clone(), num_params)),
            OptimizerConfig::Adam(c) => Box::new(adam::Adam::new(c.clone(), false, num_params)),
            OptimizerConfig::AdamW(c) => Box::new(adam::Adam::new(c.clone(), true, num_params)),
            OptimizerConfig::Rmsprop(c) => Box::new(rmsprop::Rmsprop::new(c.clone(), num_params)),
            OptimizerConfig::Muon(c) => Box::new(muon::Muon::new(c.clone(), tensors, num_params)),
        }
    }
}

impl Serialize for OptimizerConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for OptimizerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        OptimizerConfig::from_value(&v).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for OptimizerConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OptimizerConfig".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "\"sgd\" | \"adam\" | \"adamw\" | \"rmsprop\" | \"muon\", or { name = { PyTorch's arguments } }: sgd { momentum, dampening, nesterov, weight_decay }; adam/adamw { betas, eps, weight_decay, amsgrad }; rmsprop { alpha, eps, weight_decay, momentum, centered }; muon { momentum, nesterov, weight_decay, ns_steps, ns_coefficients, eps, adjust_lr_fn, adamw = { lr, betas, eps, weight_decay } }",
            "default": "sgd"
        })
    }
}

/// An optimizer's state between steps and its update.
pub trait Optimizer: Send {
    /// One update of `params` from the gradient `grad` at learning rate `lr` (the schedule's).
    fn step(&mut self, params: &mut [f64], grad: &[f64], lr: f64);
    /// Which tensors it updates how (Muon: the matrices by Muon, the rest by AdamW), for the
    /// log's metadata; `None` when all alike.
    fn groups(&self) -> Option<Value> {
        None
    }
    /// The diagonal preconditioner P of an adaptive optimizer after its last step (Adam:
    /// √v̂ + ε, bias-corrected, the learning rate kept out; RMSprop: √v + ε), whose
    /// P⁻¹H is the preconditioned Hessian of Cohen et al. 2022; `None` for the others or
    /// before the first step.
    fn preconditioner(&self) -> Option<Vec<f64>> {
        None
    }
    /// The preconditioned-sharpness stability threshold times the learning rate: (2 + 2β₁)/(1 − β₁)
    /// for Adam (38 at β₁ = 0.9), 2 for RMSprop without momentum.
    fn stability_threshold_times_lr(&self) -> Option<f64> {
        None
    }
    /// Its state (step count and buffers), what `load_state` restores exactly.
    fn state(&self) -> OptimizerState;
    /// Restore a state that [`Optimizer::state`] of the same optimizer on the same network
    /// returned; an error names what does not fit.
    fn load_state(&mut self, s: &OptimizerState) -> Result<(), String>;
}

/// An optimizer's state between steps as PyTorch's `state_dict()["state"]` holds it: the step
/// count and, per buffer (`exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`, `momentum_buffer`,
/// `square_avg`, `grad_avg`), the values of the tensors it covers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    /// Updates made.
    pub steps: u64,
    /// The buffers, in the optimizer's fixed order.
    pub buffers: Vec<StateBuffer>,
}

/// One state buffer of an optimizer.
#[derive(Debug, Clone, PartialEq)]
pub struct StateBuffer {
    /// PyTorch's state key (`exp_avg`, `momentum_buffer`, …).
    pub key: String,
    /// Indices of the tensors it covers, in the network's order; `None` is all of them.
    pub tensors: Option<Vec<usize>>,
    /// Those tensors' values, concatenated in tensor order (all: the flat parameter layout).
    pub values: Vec<f64>,
}

impl StateBuffer {
    /// A buffer over all parameters.
    pub fn all(key: &str, values: Vec<f64>) -> Self {
        StateBuffer { key: key.into(), tensors: None, values }
    }
}

impl OptimizerState {
    /// The buffer `key`, checked to hold `len` values; an error when absent or of another size.
    pub fn buffer(&self, key: &str, len: usize) -> Result<&[f64], String> {
        let b = self.buffers.iter().find(|b| b.key == key).ok_or_else(|| format!("the saved optimizer state has no `{key}`"))?;
        if b.values.len() != len {
            return Err(format!("the saved `{key}` holds {} values, this optimizer {len}", b.values.len()));
        }
        if let Some(i) = b.values.iter().position(|v| !v.is_finite()) {
            return Err(format!("the saved `{key}` holds {} at {i}: optimizer state is finite", b.values[i]));
        }
        Ok(&b.values)
    }
    /// Refuse buffers other than `keys` (a state saved with other arguments).
    pub fn only(&self, keys: &[&str]) -> Result<(), String> {
        match self.buffers.iter().find(|b| !keys.contains(&b.key.as_str())) {
            Some(b) => Err(format!("the saved optimizer state has `{}`, which this optimizer does not keep", b.key)),
            None => Ok(()),
        }
    }
    /// The buffers' values end to end (a trajectory row).
    pub fn flat(&self) -> Vec<f64> {
        self.buffers.iter().flat_map(|b| b.values.iter().copied()).collect()
    }
    /// A state of this layout (keys, tensors and sizes as `self`) with `flat` values.
    pub fn with_flat(&self, steps: u64, flat: &[f64]) -> Result<Self, String> {
        let total: usize = self.buffers.iter().map(|b| b.values.len()).sum();
        if flat.len() != total {
            return Err(format!("{} optimizer-state values where the layout has {total}", flat.len()));
        }
        let mut at = 0;
        let buffers = self
            .buffers
            .iter()
            .map(|b| {
                let values = flat[at..at + b.values.len()].to_vec();
                at += b.values.len();
                StateBuffer { values, ..b.clone() }
            })
            .collect();
        Ok(OptimizerState { steps, buffers })
    }
}

/// `a.lerp_(b, w)` as PyTorch's CPU kernel computes it: a + w(b − a) for w < ½, else
/// b − (b − a)(1 − w).
pub fn lerp(a: f64, b: f64, w: f64) -> f64 {
    if w.abs() < 0.5 { a + w * (b - a) } else { b - (b - a) * (1.0 - w) }
}

/// `torch.nn.utils.clip_grad_norm_(max_norm)`: scale `g` by min(1, max_norm/(‖g‖ + 1e-6)).
pub fn clip_grad_norm(g: &mut [f64], max_norm: f64) -> f64 {
    let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    g.iter_mut().for_each(|x| *x *= coef);
    norm
}
