//! Any network hesslab trains: a fully connected [`Mlp`] (its own fused kernels) or a
//! [`Sequential`] of convolution, pooling and linear layers. A layer list that is an MLP
//! (linear layers with one activation between them, on vectors) is always built as an
//! `Mlp`, so one architecture has one implementation and one description.
use crate::layers::{LayerSpec, Shape, from_torch_module};
use crate::sequential::{SeqArch, Sequential};
use crate::{Activation, Architecture, LossKind, Mlp, ModelError};
use faer::MatRef;
use serde_json::{Value, json};

/// The architecture of a network, without parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum NetArch {
    /// Fully connected.
    Mlp(Architecture),
    /// Any layer list.
    Sequential(SeqArch),
}

/// A network with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    /// Fully connected.
    Mlp(Mlp),
    /// Any layer list.
    Sequential(Sequential),
}

/// Tensor names, PyTorch shapes and ranges in the flat parameters.
pub type Tensors = Vec<(String, Vec<usize>, std::ops::Range<usize>)>;

impl NetArch {
    /// The network `layers` declare on samples of shape `input` (an MLP when it is one).
    pub fn new(input: Shape, layers: Vec<LayerSpec>, loss: LossKind) -> Result<NetArch, ModelError> {
        let seq = SeqArch::new(input, layers, loss)?;
        if seq.num_params == 0 {
            return Err(ModelError::Invalid("the network has no parameters; add a linear or conv2d layer".into()));
        }
        Ok(match mlp_of(&seq) {
            Some(a) => NetArch::Mlp(a),
            None => NetArch::Sequential(seq),
        })
    }
    /// The layer list of an MLP.
    pub fn mlp_layers(a: &Architecture) -> Vec<LayerSpec> {
        let mut v = Vec::new();
        for (i, s) in a.sizes[1..].iter().enumerate() {
            if i > 0 {
                v.push(LayerSpec::Activation(a.activation));
            }
            v.push(LayerSpec::Linear { in_features: None, out_features: *s, bias: a.bias });
        }
        v
    }
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        match self {
            NetArch::Mlp(a) => a.num_params(),
            NetArch::Sequential(s) => s.num_params,
        }
    }
    /// The loss.
    pub fn loss(&self) -> LossKind {
        match self {
            NetArch::Mlp(a) => a.loss,
            NetArch::Sequential(s) => s.loss,
        }
    }
    /// Shape of one input sample.
    pub fn input_shape(&self) -> Shape {
        match self {
            NetArch::Mlp(a) => Shape::Flat(a.input_dim()),
            NetArch::Sequential(s) => s.input,
        }
    }
    /// Numbers per input sample.
    pub fn input_dim(&self) -> usize {
        self.input_shape().size()
    }
    /// Outputs.
    pub fn output_dim(&self) -> usize {
        match self {
            NetArch::Mlp(a) => a.output_dim(),
            NetArch::Sequential(s) => s.output_dim(),
        }
    }
    /// Values a forward pass keeps per sample (input and every layer's output).
    pub fn units(&self) -> u64 {
        match self {
            NetArch::Mlp(a) => a.sizes.iter().fold(0u64, |s, &x| s.saturating_add(x as u64)),
            NetArch::Sequential(s) => s.units(),
        }
    }
    /// Tensor names, shapes and ranges in `parameters()` order.
    pub fn tensors(&self) -> Tensors {
        match self {
            NetArch::Mlp(a) => a.tensors(),
            NetArch::Sequential(s) => s.tensors(),
        }
    }
    /// Short description.
    pub fn describe(&self) -> String {
        match self {
            NetArch::Mlp(a) => a.describe(),
            NetArch::Sequential(s) => s.describe(),
        }
    }
    /// The `architecture` JSON: PyTorch modules in order (constructor argument names),
    /// `input_shape` and `loss`.
    pub fn to_json(&self) -> Value {
        let (input, modules) = match self {
            NetArch::Mlp(a) => {
                let s = SeqArch::new(Shape::Flat(a.input_dim()), Self::mlp_layers(a), a.loss).expect("a checked MLP resolves");
                (s.input, s.torch_modules())
            }
            NetArch::Sequential(s) => (s.input, s.torch_modules()),
        };
        let mut v = json!({"modules": modules, "input_shape": input.dims(), "loss": self.loss()});
        if let NetArch::Mlp(a) = self {
            // The one thing the module list cannot say: the activation of an MLP without
            // hidden layers (kept so that a decoded model describes itself as it was trained).
            if a.sizes.len() == 2 {
                v["activation"] = json!(a.activation);
            }
        }
        v
    }
    /// From the `architecture` JSON (or the milestone-1 form `{sizes, activation, bias, loss}`).
    pub fn from_json(v: &Value) -> Result<NetArch, String> {
        if v.get("sizes").is_some() {
            let a: Architecture = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            a.check().map_err(|e| e.to_string())?;
            return Ok(NetArch::Mlp(a));
        }
        let dims: Vec<usize> =
            serde_json::from_value(v.get("input_shape").cloned().ok_or("no `input_shape`")?).map_err(|e| format!("input_shape: {e}"))?;
        let mut shape = Shape::from_dims(&dims)?;
        let loss: LossKind = serde_json::from_value(v.get("loss").cloned().ok_or("no `loss`")?).map_err(|e| format!("loss: {e}"))?;
        let modules = v.get("modules").and_then(Value::as_array).ok_or("no `modules` list")?;
        let mut specs = Vec::with_capacity(modules.len());
        for (i, m) in modules.iter().enumerate() {
            let spec = from_torch_module(m, shape).map_err(|e| format!("modules[{i}]: {e}"))?;
            shape = crate::layers::resolve(shape, std::slice::from_ref(&spec)).map_err(|e| format!("modules[{i}]: {e}"))?.1[0];
            specs.push(spec);
        }
        let mut arch = NetArch::new(Shape::from_dims(&dims)?, specs, loss).map_err(|e| e.to_string())?;
        if let (NetArch::Mlp(a), Some(act)) = (&mut arch, v.get("activation")) {
            a.activation = serde_json::from_value(act.clone()).map_err(|e| format!("activation: {e}"))?;
        }
        Ok(arch)
    }
}

/// The MLP a resolved layer list is, if it is one.
fn mlp_of(s: &SeqArch) -> Option<Architecture> {
    let Shape::Flat(d) = s.input else { return None };
    let mut sizes = vec![d];
    let (mut act, mut bias) = (None::<Activation>, None::<bool>);
    for (i, spec) in s.specs.iter().enumerate() {
        match (i % 2, spec) {
            (0, LayerSpec::Linear { out_features, bias: b, .. }) => {
                if *bias.get_or_insert(*b) != *b {
                    return None;
                }
                sizes.push(*out_features);
            }
            (1, LayerSpec::Activation(a)) => {
                if *act.get_or_insert(*a) != *a {
                    return None;
                }
            }
            _ => return None,
        }
    }
    if s.specs.len().is_multiple_of(2) {
        return None; // ends with an activation
    }
    Some(Architecture { sizes, activation: act.unwrap_or(Activation::Relu), bias: bias.unwrap_or(true), loss: s.loss })
}

impl Network {
    /// The network `arch` with parameters `params`.
    pub fn new(arch: NetArch, params: Vec<f64>) -> Network {
        match arch {
            NetArch::Mlp(a) => Network::Mlp(Mlp::new(a, params)),
            NetArch::Sequential(s) => Network::Sequential(Sequential::new(s, params)),
        }
    }
    /// Its architecture.
    pub fn arch(&self) -> NetArch {
        match self {
            Network::Mlp(m) => NetArch::Mlp(m.arch.clone()),
            Network::Sequential(s) => NetArch::Sequential(s.arch.clone()),
        }
    }
    /// Flat parameters in PyTorch order.
    pub fn params(&self) -> &[f64] {
        match self {
            Network::Mlp(m) => &m.params,
            Network::Sequential(s) => &s.params,
        }
    }
    /// Mutable parameters.
    pub fn params_mut(&mut self) -> &mut Vec<f64> {
        match self {
            Network::Mlp(m) => &mut m.params,
            Network::Sequential(s) => &mut s.params,
        }
    }
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.params().len()
    }
    /// The same architecture with other parameters.
    pub fn with_params(&self, params: Vec<f64>) -> Network {
        Network::new(self.arch(), params)
    }
    /// The loss.
    pub fn loss(&self) -> LossKind {
        match self {
            Network::Mlp(m) => m.arch.loss,
            Network::Sequential(s) => s.arch.loss,
        }
    }
    /// Numbers per input sample.
    pub fn input_dim(&self) -> usize {
        match self {
            Network::Mlp(m) => m.arch.input_dim(),
            Network::Sequential(s) => s.arch.input.size(),
        }
    }
    /// Outputs.
    pub fn output_dim(&self) -> usize {
        match self {
            Network::Mlp(m) => m.arch.output_dim(),
            Network::Sequential(s) => s.arch.output_dim(),
        }
    }
    /// Short description.
    pub fn describe(&self) -> String {
        match self {
            Network::Mlp(m) => m.arch.describe(),
            Network::Sequential(s) => s.arch.describe(),
        }
    }
    /// Tensor names, shapes and ranges.
    pub fn tensors(&self) -> Tensors {
        match self {
            Network::Mlp(m) => m.arch.tensors(),
            Network::Sequential(s) => s.arch.tensors(),
        }
    }
    /// Mean loss, gradient and accuracy over the rows of `x` at parameters `w`.
    pub fn loss_grad_accuracy_at(&self, w: &[f64], x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>, f64) {
        match self {
            Network::Mlp(m) => m.loss_grad_accuracy_at(w, x, y),
            Network::Sequential(s) => s.loss_grad_accuracy_at(w, x, y),
        }
    }
    /// Mean loss and gradient at parameters `w`.
    pub fn loss_grad_at(&self, w: &[f64], x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>) {
        let (l, g, _) = self.loss_grad_accuracy_at(w, x, y);
        (l, g)
    }
    /// Mean loss and gradient at the network's parameters.
    pub fn loss_grad(&self, x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>) {
        self.loss_grad_at(self.params(), x, y)
    }
    /// Mean loss and accuracy.
    pub fn evaluate(&self, x: MatRef<'_, f64>, y: &[u32]) -> (f64, f64) {
        match self {
            Network::Mlp(m) => m.evaluate(x, y),
            Network::Sequential(s) => s.evaluate(x, y),
        }
    }
}
