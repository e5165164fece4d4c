//! `torch.optim.SGD`: g ← ∇ + λθ; with momentum μ the buffer b ← g on the first step, then
//! b ← μb + (1 − τ)g (τ the dampening); g ← g + μb (Nesterov) or b; θ ← θ − γg.
use super::{Optimizer, OptimizerState, StateBuffer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `torch.optim.SGD` (but `lr`, which is `train`'s).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Momentum factor μ (0 = none).
    pub momentum: f64,
    /// Dampening τ of the momentum.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty λ added to the gradient.
    pub weight_decay: f64,
}

/// SGD's state: the momentum buffer (absent before the first step).
pub struct Sgd {
    c: SgdConfig,
    buf: Option<Vec<f64>>,
    g: Vec<f64>,
    steps: u64,
}

impl Sgd {
    /// A fresh optimizer for `n` parameters.
    pub fn new(c: SgdConfig, n: usize) -> Self {
        Sgd { c, buf: None, g: vec![0.0; n], steps: 0 }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [f64], grad: &[f64], lr: f64) {
        let c = &self.c;
        self.steps += 1;
        for ((g, &d), &p) in self.g.iter_mut().zip(grad).zip(params.iter()) {
            *g = if c.weight_decay != 0.0 { d + c.weight_decay * p } else { d };
        }
        if c.momentum != 0.0 {
            match &mut self.buf {
                None => self.buf = Some(self.g.clone()),
                Some(b) => b.iter_mut().zip(&self.g).for_each(|(b, g)| *b = *b * c.momentum + g * (1.0 - c.dampening)),
            }
            let b = self.buf.as_ref().expect("set above");
            if c.nesterov {
                self.g.iter_mut().zip(b).for_each(|(g, b)| *g += c.momentum * b);
            } else {
                self.g.copy_from_slice(b);
            }
        }
        params.iter_mut().zip(&self.g).for_each(|(p, g)| *p += -lr * g);
    }
    fn state(&self) -> OptimizerState {
        OptimizerState { steps: self.steps, buffers: self.buf.iter().map(|b| StateBuffer::all("momentum_buffer", b.clone())).collect() }
    }
    fn load_state(&mut self, s: &OptimizerState) -> Result<(), String> {
        s.only(&["momentum_buffer"])?;
        self.steps = s.steps;
        // PyTorch creates the buffer at the first step with momentum.
        self.buf = if self.c.momentum != 0.0 && s.steps > 0 { Some(s.buffer("momentum_buffer", self.g.len())?.to_vec()) } else { None };
        Ok(())
    }
}
