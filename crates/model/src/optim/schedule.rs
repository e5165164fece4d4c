//! Learning-rate schedules as multiplicative factors of `lr` (PyTorch's `LambdaLR` with these
//! lambdas): the update of step t (t = 0 for the first) uses lr·f(t).
//! - `"constant"`: f = 1;
//! - `{ step = { step_size, gamma = 0.1 } }`: f = γ^⌊t/step_size⌋ (`StepLR`);
//! - `{ cosine = { t_max = max_steps, min_factor = 0 } }`: f = m + (1 − m)(1 + cos(π·min(t, T)/T))/2;
//! - `{ warmup_cosine = { warmup, t_max = max_steps, min_factor = 0 } }` and
//!   `{ warmup_linear = { … } }`: f = (t + 1)/warmup for t < warmup, then with
//!   p = min(1, (t − warmup)/(T − warmup)) cosine m + (1 − m)(1 + cos πp)/2 or linear 1 − (1 − m)p.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A learning-rate schedule (see the module documentation for the formulas).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// lr throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` steps.
    Step {
        /// Steps between decays.
        step_size: u64,
        /// Factor per decay.
        #[serde(default = "tenth")]
        gamma: f64,
    },
    /// Cosine from lr to min_factor·lr over t_max steps.
    Cosine(Decay),
    /// Linear warmup over `warmup` steps, then cosine decay.
    WarmupCosine(Warmup),
    /// Linear warmup over `warmup` steps, then linear decay.
    WarmupLinear(Warmup),
}

impl JsonSchema for Schedule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Schedule".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "\"constant\" | { step = { step_size, gamma = 0.1 } } | { cosine = { t_max = max_steps, min_factor = 0 } } | { warmup_cosine = { warmup, t_max = max_steps, min_factor = 0 } } | { warmup_linear = { warmup, t_max, min_factor } }: factors of lr at update t (docs/guide.md, \"Optimizers\")",
            "default": "constant"
        })
    }
}

fn tenth() -> f64 {
    0.1
}

/// A decay's length and floor.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Decay {
    /// Steps to the floor (0 = `max_steps`).
    pub t_max: u64,
    /// The floor as a fraction of lr.
    pub min_factor: f64,
}

/// A warmup and the decay after it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Warmup {
    /// Warmup steps.
    pub warmup: u64,
    /// Steps to the floor, warmup included (0 = `max_steps`).
    pub t_max: u64,
    /// The floor as a fraction of lr.
    pub min_factor: f64,
}

impl Schedule {
    /// f(t) for a run of `max_steps` updates.
    pub fn factor(&self, t: u64, max_steps: u64) -> f64 {
        let total = |t_max: u64| if t_max == 0 { max_steps.max(1) } else { t_max } as f64;
        let cosine = |m: f64, p: f64| m + (1.0 - m) * (1.0 + (std::f64::consts::PI * p).cos()) / 2.0;
        match self {
            Schedule::Constant => 1.0,
            Schedule::Step { step_size, gamma } => gamma.powi((t / (*step_size).max(1)) as i32),
            Schedule::Cosine(d) => cosine(d.min_factor, (t as f64).min(total(d.t_max)) / total(d.t_max)),
            Schedule::WarmupCosine(w) | Schedule::WarmupLinear(w) => {
                if t < w.warmup {
                    return (t + 1) as f64 / w.warmup as f64;
                }
                let p = ((t - w.warmup) as f64 / (total(w.t_max) - w.warmup as f64).max(1.0)).min(1.0);
                if matches!(self, Schedule::WarmupCosine(_)) { cosine(w.min_factor, p) } else { 1.0 - (1.0 - w.min_factor) * p }
            }
        }
    }
    /// Whether it is the constant schedule.
    pub fn is_constant(&self) -> bool {
        *self == Schedule::Constant
    }
}
