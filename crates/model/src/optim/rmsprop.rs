//! `torch.optim.RMSprop`: g ← ∇ + λθ; v ← αv + (1 − α)g²; centered: ḡ ← lerp(ḡ, g, 1 − α),
//! d ← √(v − ḡ²) + ε, else d ← √v + ε; with momentum μ: b ← μb + g/d, θ ← θ − γb; else
//! θ ← θ − γ g/d.
use super::{Optimizer, OptimizerState, StateBuffer, lerp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `torch.optim.RMSprop` (but `lr`, which is `train`'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RmspropConfig {
    /// Smoothing constant α of the squared-gradient average.
    pub alpha: f64,
    /// ε added to the denominator.
    pub eps: f64,
    /// L2 penalty λ added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor μ.
    pub momentum: f64,
    /// Normalize by the centered second moment (an estimate of the variance).
    pub centered: bool,
}

impl Default for RmspropConfig {
    fn default() -> Self {
        RmspropConfig { alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false }
    }
}

/// RMSprop's state.
pub struct Rmsprop {
    c: RmspropConfig,
    steps: u64,
    v: Vec<f64>,
    g_avg: Vec<f64>,
    buf: Vec<f64>,
}

impl Rmsprop {
    /// A fresh optimizer for `n` parameters.
    pub fn new(c: RmspropConfig, n: usize) -> Self {
        Rmsprop { c, steps: 0, v: vec![0.0; n], g_avg: vec![0.0; n], buf: vec![0.0; n] }
    }
}

impl Optimizer for Rmsprop {
    fn step(&mut self, params: &mut [f64], grad: &[f64], lr: f64) {
        let c = &self.c;
        self.steps += 1;
        for i in 0..params.len() {
            let g = if c.weight_decay != 0.0 { grad[i] + c.weight_decay * params[i] } else { grad[i] };
            self.v[i] = self.v[i] * c.alpha + (1.0 - c.alpha) * (g * g);
            let avg = if c.centered {
                self.g_avg[i] = lerp(self.g_avg[i], g, 1.0 - c.alpha);
                (self.v[i] + -(self.g_avg[i] * self.g_avg[i])).sqrt()
            } else {
                self.v[i].sqrt()
            } + c.eps;
            if c.momentum > 0.0 {
                self.buf[i] = self.buf[i] * c.momentum + g / avg;
                params[i] += -lr * self.buf[i];
            } else {
                params[i] += -lr * (g / avg);
            }
        }
    }
    fn preconditioner(&self) -> Option<Vec<f64>> {
        (self.steps > 0).then(|| {
            let c = &self.c;
            (0..self.v.len())
                .map(|i| if c.centered { (self.v[i] + -(self.g_avg[i] * self.g_avg[i])).sqrt() } else { self.v[i].sqrt() } + c.eps)
                .collect()
        })
    }
    fn stability_threshold_times_lr(&self) -> Option<f64> {
        (self.c.momentum == 0.0).then_some(2.0)
    }
    fn state(&self) -> OptimizerState {
        let mut buffers = vec![StateBuffer::all("square_avg", self.v.clone())];
        if self.c.momentum > 0.0 {
            buffers.push(StateBuffer::all("momentum_buffer", self.buf.clone()));
        }
        if self.c.centered {
            buffers.push(StateBuffer::all("grad_avg", self.g_avg.clone()));
        }
        OptimizerState { steps: self.steps, buffers }
    }
    fn load_state(&mut self, s: &OptimizerState) -> Result<(), String> {
        let n = self.v.len();
        let mut keys = vec!["square_avg"];
        self.v = s.buffer("square_avg", n)?.to_vec();
        if self.c.momentum > 0.0 {
            self.buf = s.buffer("momentum_buffer", n)?.to_vec();
            keys.push("momentum_buffer");
        }
        if self.c.centered {
            self.g_avg = s.buffer("grad_avg", n)?.to_vec();
            keys.push("grad_avg");
        }
        s.only(&keys)?;
        self.steps = s.steps;
        Ok(())
    }
}
