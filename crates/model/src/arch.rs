//! Architecture of a fully connected network and its flat parameter layout.
use crate::ModelError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The nonlinearity of the hidden layers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, z).
    Relu,
    /// tanh z.
    Tanh,
    /// 1 / (1 + e^−z).
    Sigmoid,
    /// z (a linear network).
    Identity,
}

impl Activation {
    /// σ(z).
    #[inline]
    pub fn f(self, z: f64) -> f64 {
        match self {
            Activation::Relu => z.max(0.0),
            Activation::Tanh => crate::vmath::tanh(z),
            Activation::Sigmoid => sigmoid(z),
            Activation::Identity => z,
        }
    }
    /// σ'(z), given z and a = σ(z).
    #[inline]
    pub fn d1(self, z: f64, a: f64) -> f64 {
        match self {
            Activation::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Tanh => 1.0 - a * a,
            Activation::Sigmoid => a * (1.0 - a),
            Activation::Identity => 1.0,
        }
    }
    /// Whether σ'' is not identically zero (ReLU and the identity are piecewise linear): the
    /// R-operator's second-order activation terms exist only then.
    pub fn has_second_derivative(self) -> bool {
        !matches!(self, Activation::Relu | Activation::Identity)
    }
    /// σ''(z), given z and a = σ(z). ReLU's is 0 almost everywhere.
    #[inline]
    pub fn d2(self, _z: f64, a: f64) -> f64 {
        match self {
            Activation::Relu | Activation::Identity => 0.0,
            Activation::Tanh => -2.0 * a * (1.0 - a * a),
            Activation::Sigmoid => a * (1.0 - a) * (1.0 - 2.0 * a),
        }
    }
    /// out[i] = σ(z[i]) over a column. Why per slice: one dispatch on the activation per
    /// column instead of per element, and a bounds-check-free loop the compiler vectorizes
    /// where σ allows (ReLU, identity); every value is the one [`Activation::f`] gives.
    pub fn f_slice(self, z: &[f64], out: &mut [f64]) {
        debug_assert_eq!(z.len(), out.len());
        match self {
            Activation::Relu => out.iter_mut().zip(z).for_each(|(o, &z)| *o = z.max(0.0)),
            Activation::Tanh => crate::vmath::tanh_slice(z, out),
            Activation::Sigmoid => crate::vmath::sigmoid_slice(z, out),
            Activation::Identity => out.copy_from_slice(z),
        }
    }
    /// v[i] = σ(v[i]) in place (values of [`Activation::f`]).
    pub fn f_in_place(self, v: &mut [f64]) {
        match self {
            Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
            Activation::Tanh => crate::vmath::tanh_in_place(v),
            Activation::Sigmoid => crate::vmath::sigmoid_in_place(v),
            Activation::Identity => {}
        }
    }
    /// out[i] = σ'(z[i]) over a column, given a = σ(z) (values of [`Activation::d1`]).
    pub fn d1_slice(self, z: &[f64], a: &[f64], out: &mut [f64]) {
        debug_assert!(z.len() == out.len() && a.len() == out.len());
        match self {
            Activation::Relu => out.iter_mut().zip(z).for_each(|(o, &z)| *o = if z > 0.0 { 1.0 } else { 0.0 }),
            Activation::Tanh => out.iter_mut().zip(a).for_each(|(o, &a)| *o = 1.0 - a * a),
            Activation::Sigmoid => out.iter_mut().zip(a).for_each(|(o, &a)| *o = a * (1.0 - a)),
            Activation::Identity => out.fill(1.0),
        }
    }
    /// out[i] = t[i] · σ'(z[i]) over a column, given a = σ(z) (the products of
    /// [`Activation::mul_d1_slice`], written to a new place).
    pub fn mul_d1_into(self, out: &mut [f64], t: &[f64], z: &[f64], a: &[f64]) {
        debug_assert!(z.len() == out.len() && a.len() == out.len() && t.len() == out.len());
        let o = out.iter_mut().zip(t);
        match self {
            Activation::Relu => o.zip(z).for_each(|((o, &t), &z)| *o = t * if z > 0.0 { 1.0 } else { 0.0 }),
            Activation::Tanh => o.zip(a).for_each(|((o, &t), &a)| *o = t * (1.0 - a * a)),
            Activation::Sigmoid => o.zip(a).for_each(|((o, &t), &a)| *o = t * (a * (1.0 - a))),
            Activation::Identity => o.for_each(|(o, &t)| *o = t * 1.0),
        }
    }
    /// g[i] *= σ'(z[i]) over a column, given a = σ(z) (the same products as with
    /// [`Activation::d1`]).
    pub fn mul_d1_slice(self, g: &mut [f64], z: &[f64], a: &[f64]) {
        debug_assert!(z.len() == g.len() && a.len() == g.len());
        match self {
            Activation::Relu => g.iter_mut().zip(z).for_each(|(g, &z)| *g *= if z > 0.0 { 1.0 } else { 0.0 }),
            Activation::Tanh => g.iter_mut().zip(a).for_each(|(g, &a)| *g *= 1.0 - a * a),
            Activation::Sigmoid => g.iter_mut().zip(a).for_each(|(g, &a)| *g *= a * (1.0 - a)),
            Activation::Identity => g.iter_mut().for_each(|g| *g *= 1.0),
        }
    }
    /// g[i] *= σ''(z[i]) over a column, given a = σ(z) (the same products as with
    /// [`Activation::d2`]).
    pub fn mul_d2_slice(self, g: &mut [f64], z: &[f64], a: &[f64]) {
        debug_assert!(z.len() == g.len() && a.len() == g.len());
        g.iter_mut().zip(z.iter().zip(a)).for_each(|(g, (&z, &a))| *g *= self.d2(z, a));
    }
    /// The name pipelines use.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Identity => "identity",
        }
    }
}

/// The logistic function, without overflow for large |z|.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    crate::vmath::sigmoid(z)
}

/// The loss on the network's outputs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Softmax cross-entropy, mean over samples.
    CrossEntropy,
    /// ½‖f − onehot(y)‖², mean over samples.
    Mse,
    /// Binary logistic loss on one sigmoid output (labels 0/1).
    Logistic,
}

/// Layer l maps n_in → n_out; its weight (n_out × n_in, row-major) starts at `w`, its bias at `b`.
#[derive(Debug, Clone, Copy)]
pub struct LayerLayout {
    /// Inputs of the layer.
    pub n_in: usize,
    /// Outputs of the layer.
    pub n_out: usize,
    /// Offset of the weight in the flat parameters.
    pub w: usize,
    /// Offset of the bias, if the layer has one.
    pub b: Option<usize>,
}

/// A fully connected network: widths, activation, biases and loss (serialized as the `model`
/// artifact's `architecture` metadata).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Architecture {
    /// Layer widths: input, hidden..., output.
    pub sizes: Vec<usize>,
    /// Nonlinearity of the hidden layers.
    pub activation: Activation,
    /// Biases in every layer.
    pub bias: bool,
    /// The loss.
    pub loss: LossKind,
}

impl Architecture {
    /// Where each layer's parameters live in the flat vector.
    pub fn layers(&self) -> Vec<LayerLayout> {
        let mut off = 0;
        let mut out = Vec::new();
        for w in self.sizes.windows(2) {
            let (n_in, n_out) = (w[0], w[1]);
            let wo = off;
            off += n_in * n_out;
            let b = if self.bias {
                let b = off;
                off += n_out;
                Some(b)
            } else {
                None
            };
            out.push(LayerLayout { n_in, n_out, w: wo, b });
        }
        out
    }
    /// The most parameters a network may have here (a 2^36-parameter model is 512 GiB).
    pub const MAX_PARAMS: u64 = 1 << 36;

    /// Check that the sizes describe a network (input and output, no zero width) whose
    /// parameter count fits in memory arithmetic; returns that count.
    pub fn check(&self) -> Result<usize, ModelError> {
        let invalid = |m: String| Err(ModelError::Invalid(m));
        if self.sizes.len() < 2 {
            return invalid(format!("a network needs at least an input and an output size, got sizes {:?}", self.sizes));
        }
        if let Some(i) = self.sizes.iter().position(|&s| s == 0) {
            return invalid(format!("layer size {i} is 0 in sizes {:?}", self.sizes));
        }
        let mut total: u64 = 0;
        for w in self.sizes.windows(2) {
            let layer = (w[0] as u64).checked_mul(w[1] as u64).and_then(|x| x.checked_add(if self.bias { w[1] as u64 } else { 0 }));
            total = layer.and_then(|l| total.checked_add(l)).unwrap_or(u64::MAX);
        }
        if total > Self::MAX_PARAMS {
            return invalid(format!("sizes {:?} give more than 2^36 parameters", self.sizes));
        }
        Ok(total as usize)
    }

    /// Number of parameters P.
    pub fn num_params(&self) -> usize {
        self.sizes.windows(2).map(|w| w[0] * w[1] + if self.bias { w[1] } else { 0 }).sum()
    }
    /// Number of weight layers.
    pub fn num_layers(&self) -> usize {
        self.sizes.len() - 1
    }
    /// Inputs of the network.
    pub fn input_dim(&self) -> usize {
        self.sizes[0]
    }
    /// Outputs of the network.
    pub fn output_dim(&self) -> usize {
        *self.sizes.last().unwrap()
    }
    /// PyTorch-style tensor names and ranges, in `parameters()` order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, std::ops::Range<usize>)> {
        let mut v = Vec::new();
        for (l, ly) in self.layers().iter().enumerate() {
            v.push((format!("layers.{l}.weight"), vec![ly.n_out, ly.n_in], ly.w..ly.w + ly.n_in * ly.n_out));
            if let Some(b) = ly.b {
                v.push((format!("layers.{l}.bias"), vec![ly.n_out], b..b + ly.n_out));
            }
        }
        v
    }
    /// Short description, e.g. "100→30→30→10 relu".
    pub fn describe(&self) -> String {
        format!(
            "{} {}{}",
            self.sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("→"),
            self.activation.name(),
            if self.bias { "" } else { " (no bias)" }
        )
    }
}
