//! `torch.optim.Muon` on every weight matrix (a tensor of two or more dimensions, a conv kernel
//! flattened to [out, in·kh·kw]), `torch.optim.AdamW` on the other tensors (biases, norms), as
//! PyTorch's documentation pairs them. Per matrix, as `torch.optim.Muon`'s code:
//! b ← lerp(b, g, 1 − μ); u ← lerp(g, b, μ) (Nesterov) or b; O ← NS₅(u) (the quintic
//! Newton–Schulz orthogonalization, X ← X/‖X‖_F, then X ← aX + (bXXᵀ + c(XXᵀ)²)X, on the wide
//! orientation); θ ← θ(1 − γλ); θ ← θ − γ·s·O with s = √max(1, A/B) ("original").
//! PyTorch runs the iteration in bfloat16; here it is float64 (the fixtures patch PyTorch's to
//! float64 too, `scripts/torch_optim.py`).
use super::adam::{ADAMW_WEIGHT_DECAY, Adam, AdamConfig};
use super::{Optimizer, OptimizerState, StateBuffer, TensorRange, lerp};
use faer::Mat;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Arguments of `torch.optim.Muon` (but `lr`, which is `train`'s), and of the AdamW that
/// updates the tensors Muon does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MuonConfig {
    /// Momentum μ.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Decoupled weight decay λ of the matrices.
    pub weight_decay: f64,
    /// Newton–Schulz steps.
    pub ns_steps: usize,
    /// Coefficients (a, b, c) of the quintic iteration.
    pub ns_coefficients: [f64; 3],
    /// ε of the normalization ‖X‖_F.
    pub eps: f64,
    /// Learning-rate scaling by shape: "original" (√max(1, A/B)), "match_rms_adamw"
    /// (0.2·√max(A, B)) or "spectral_unclamped" (√(A/B)).
    pub adjust_lr_fn: String,
    /// The AdamW of the other tensors.
    pub adamw: MuonAdamw,
}

/// The AdamW half of Muon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MuonAdamw {
    /// Its learning rate (0 = `train`'s `lr`).
    pub lr: f64,
    /// (β₁, β₂).
    pub betas: [f64; 2],
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for MuonAdamw {
    fn default() -> Self {
        MuonAdamw { lr: 0.0, betas: [0.9, 0.999], eps: 1e-8, weight_decay: ADAMW_WEIGHT_DECAY }
    }
}

impl Default for MuonConfig {
    fn default() -> Self {
        MuonConfig {
            momentum: 0.95,
            nesterov: true,
            weight_decay: 0.1,
            ns_steps: 5,
            ns_coefficients: [3.4445, -4.7750, 2.0315],
            eps: 1e-7,
            adjust_lr_fn: "original".into(),
            adamw: MuonAdamw::default(),
        }
    }
}

/// Muon's state: a momentum buffer per matrix, and the AdamW of the rest.
pub struct Muon {
    c: MuonConfig,
    /// (name, rows A, columns B, range) of each matrix.
    matrices: Vec<(String, usize, usize, Range<usize>)>,
    buf: Vec<f64>,
    /// The other tensors' ranges and names.
    rest: Vec<(String, Range<usize>)>,
    /// Indices (in the network's tensor order) of the matrices and of the rest.
    matrix_index: Vec<usize>,
    rest_index: Vec<usize>,
    adamw: Adam,
    /// Packed parameters and gradients of the other tensors.
    rest_p: Vec<f64>,
    rest_g: Vec<f64>,
}

impl Muon {
    /// A fresh optimizer for a network with these tensors.
    pub fn new(c: MuonConfig, tensors: &[TensorRange], n: usize) -> Self {
        let (mut matrices, mut rest) = (Vec::new(), Vec::new());
        let (mut matrix_index, mut rest_index) = (Vec::new(), Vec::new());
        for (i, (name, shape, r)) in tensors.iter().enumerate() {
            if shape.len() >= 2 {
                matrices.push((name.clone(), shape[0], shape[1..].iter().product(), r.clone()));
                matrix_index.push(i);
            } else {
                rest.push((name.clone(), r.clone()));
                rest_index.push(i);
            }
        }
        let m: usize = rest.iter().map(|(_, r)| r.len()).sum();
        let ac = AdamConfig { betas: c.adamw.betas, eps: c.adamw.eps, weight_decay: c.adamw.weight_decay, amsgrad: false };
        Muon {
            adamw: Adam::new(ac, true, m),
            c,
            matrices,
            buf: vec![0.0; n],
            rest,
            matrix_index,
            rest_index,
            rest_p: vec![0.0; m],
            rest_g: vec![0.0; m],
        }
    }

    /// The learning rate of an A × B matrix.
    fn adjusted_lr(&self, lr: f64, a: usize, b: usize) -> f64 {
        let (a, b) = (a as f64, b as f64);
        lr * match self.c.adjust_lr_fn.as_str() {
            "match_rms_adamw" => 0.2 * a.max(b).sqrt(),
            "spectral_unclamped" => (a / b).sqrt(),
            _ => (a / b).max(1.0).sqrt(),
        }
    }
}

/// The quintic Newton–Schulz orthogonalization of an A × B matrix (row-major `g`).
pub fn newton_schulz(g: &[f64], a_rows: usize, b_cols: usize, steps: usize, [a, b, c]: [f64; 3], eps: f64) -> Vec<f64> {
    let tall = a_rows > b_cols;
    let (r, k) = if tall { (b_cols, a_rows) } else { (a_rows, b_cols) };
    // X is r × k with r ≤ k.
    let mut x = Mat::<f64>::from_fn(r, k, |i, j| if tall { g[j * b_cols + i] } else { g[i * b_cols + j] });
    let norm = x.norm_l2().max(eps);
    x.as_mut().col_iter_mut().for_each(|c| c.iter_mut().for_each(|v| *v /= norm));
    for _ in 0..steps {
        let gram = &x * x.transpose();
        let update = Mat::<f64>::from_fn(r, r, |i, j| b * gram[(i, j)]) + (&gram * &gram) * faer::Scale(c);
        x = Mat::<f64>::from_fn(r, k, |i, j| a * x[(i, j)]) + &update * &x;
    }
    let mut out = vec![0.0; g.len()];
    for i in 0..r {
        for j in 0..k {
            if tall {
                out[j * b_cols + i] = x[(i, j)];
            } else {
                out[i * b_cols + j] = x[(i, j)];
            }
        }
    }
    out
}

impl Optimizer for Muon {
    fn step(&mut self, params: &mut [f64], grad: &[f64], lr: f64) {
        let (mu, wd) = (self.c.momentum, self.c.weight_decay);
        for (_, a, b, r) in &self.matrices {
            let mut u = vec![0.0; r.len()];
            for (k, i) in r.clone().enumerate() {
                self.buf[i] = lerp(self.buf[i], grad[i], 1.0 - mu);
                u[k] = if self.c.nesterov { lerp(grad[i], self.buf[i], mu) } else { self.buf[i] };
            }
            let o = newton_schulz(&u, *a, *b, self.c.ns_steps, self.c.ns_coefficients, self.c.eps);
            let step = self.adjusted_lr(lr, *a, *b);
            for (k, i) in r.clone().enumerate() {
                params[i] *= 1.0 - lr * wd;
                params[i] += -step * o[k];
            }
        }
        let mut o = 0;
        for (_, r) in &self.rest {
            self.rest_p[o..o + r.len()].copy_from_slice(&params[r.clone()]);
            self.rest_g[o..o + r.len()].copy_from_slice(&grad[r.clone()]);
            o += r.len();
        }
        let adam_lr = if self.c.adamw.lr > 0.0 { self.c.adamw.lr } else { lr };
        self.adamw.step(&mut self.rest_p, &self.rest_g, adam_lr);
        let mut o = 0;
        for (_, r) in &self.rest {
            params[r.clone()].copy_from_slice(&self.rest_p[o..o + r.len()]);
            o += r.len();
        }
    }
    fn groups(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "muon": self.matrices.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
            "adamw": self.rest.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
        }))
    }
    fn state(&self) -> OptimizerState {
        // The matrices' momentum, then the AdamW half's moments over the rest (its packed
        // vectors are the rest tensors in order).
        let momentum = self.matrices.iter().flat_map(|m| self.buf[m.3.clone()].iter().copied()).collect();
        let adam = self.adamw.state();
        let mut buffers = vec![StateBuffer { key: "momentum_buffer".into(), tensors: Some(self.matrix_index.clone()), values: momentum }];
        buffers.extend(adam.buffers.into_iter().map(|b| StateBuffer { tensors: Some(self.rest_index.clone()), ..b }));
        OptimizerState { steps: adam.steps, buffers }
    }
    fn load_state(&mut self, s: &OptimizerState) -> Result<(), String> {
        s.only(&["momentum_buffer", "exp_avg", "exp_avg_sq"])?;
        let len: usize = self.matrices.iter().map(|m| m.3.len()).sum();
        let momentum = s.buffer("momentum_buffer", len)?;
        let mut at = 0;
        for (_, _, _, r) in &self.matrices {
            self.buf[r.clone()].copy_from_slice(&momentum[at..at + r.len()]);
            at += r.len();
        }
        let rest = OptimizerState { steps: s.steps, buffers: s.buffers.iter().filter(|b| b.key != "momentum_buffer").cloned().collect() };
        self.adamw.load_state(&rest)
    }
}
