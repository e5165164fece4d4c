//! `torch.optim.Adam` and `AdamW`: t ← t + 1; AdamW θ ← θ(1 − γλ), Adam g ← ∇ + λθ;
//! m ← lerp(m, g, 1 − β₁); v ← β₂v + (1 − β₂)g²; (amsgrad: v̂ ← max(v̂, v));
//! θ ← θ − (γ/(1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε).
use super::{Optimizer, OptimizerState, StateBuffer, lerp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// AdamW's default weight decay (Adam's is 0).
pub const ADAMW_WEIGHT_DECAY: f64 = 0.01;

/// Arguments of `torch.optim.Adam`/`AdamW` (but `lr`, which is `train`'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    /// (β₁, β₂): decay rates of the first and second moments.
    pub betas: [f64; 2],
    /// ε added to the denominator.
    pub eps: f64,
    /// Weight decay λ (Adam: L2 in the gradient; AdamW: decoupled, default 0.01).
    pub weight_decay: f64,
    /// The AMSGrad variant (the maximum of the second moments so far).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0, amsgrad: false }
    }
}

/// Adam's state: step count and the moments.
pub struct Adam {
    c: AdamConfig,
    decoupled: bool,
    step: u64,
    m: Vec<f64>,
    v: Vec<f64>,
    v_max: Vec<f64>,
}

impl Adam {
    /// A fresh optimizer for `n` parameters; `decoupled` is AdamW.
    pub fn new(c: AdamConfig, decoupled: bool, n: usize) -> Self {
        let v_max = if c.amsgrad { vec![0.0; n] } else { Vec::new() };
        Adam { c, decoupled, step: 0, m: vec![0.0; n], v: vec![0.0; n], v_max }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut [f64], grad: &[f64], lr: f64) {
        let c = &self.c;
        self.step += 1;
        let t = self.step as f64;
        let [b1, b2] = c.betas;
        let bc1 = 1.0 - b1.powf(t);
        let bc2_sqrt = (1.0 - b2.powf(t)).powf(0.5);
        let step_size = lr / bc1;
        for i in 0..params.len() {
            let mut g = grad[i];
            if c.weight_decay != 0.0 {
                if self.decoupled {
                    params[i] *= 1.0 - lr * c.weight_decay;
                } else {
                    g += c.weight_decay * params[i];
                }
            }
            self.m[i] = lerp(self.m[i], g, 1.0 - b1);
            self.v[i] = self.v[i] * b2 + (1.0 - b2) * (g * g);
            let v = if c.amsgrad {
                self.v_max[i] = self.v_max[i].max(self.v[i]);
                self.v_max[i]
            } else {
                self.v[i]
            };
            let denom = v.sqrt() / bc2_sqrt + c.eps;
            params[i] += -step_size * (self.m[i] / denom);
        }
    }
    fn preconditioner(&self) -> Option<Vec<f64>> {
        if self.step == 0 {
            return None;
        }
        let bc2_sqrt = (1.0 - self.c.betas[1].powf(self.step as f64)).powf(0.5);
        let v = if self.c.amsgrad { &self.v_max } else { &self.v };
        Some(v.iter().map(|v| v.sqrt() / bc2_sqrt + self.c.eps).collect())
    }
    fn stability_threshold_times_lr(&self) -> Option<f64> {
        let b1 = self.c.betas[0];
        Some((2.0 + 2.0 * b1) / (1.0 - b1))
    }
    fn state(&self) -> OptimizerState {
        let mut buffers = vec![StateBuffer::all("exp_avg", self.m.clone()), StateBuffer::all("exp_avg_sq", self.v.clone())];
        if self.c.amsgrad {
            buffers.push(StateBuffer::all("max_exp_avg_sq", self.v_max.clone()));
        }
        OptimizerState { steps: self.step, buffers }
    }
    fn load_state(&mut self, s: &OptimizerState) -> Result<(), String> {
        s.only(&["exp_avg", "exp_avg_sq", "max_exp_avg_sq"])?;
        let n = self.m.len();
        self.m = s.buffer("exp_avg", n)?.to_vec();
        self.v = s.buffer("exp_avg_sq", n)?.to_vec();
        if self.c.amsgrad {
            self.v_max = s.buffer("max_exp_avg_sq", n)?.to_vec();
        } else {
            s.only(&["exp_avg", "exp_avg_sq"])?;
        }
        self.step = s.steps;
        Ok(())
    }
}
