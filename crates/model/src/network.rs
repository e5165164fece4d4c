//! Any network hesslab trains: one graph of layers ([`GraphArch`]). A graph that is an MLP
//! (linear layers with one activation between them, on vectors) is evaluated by the fused MLP
//! kernels ([`Mlp`]) — the same network, a faster implementation of what it covers, chosen
//! here and nowhere else.
use crate::graph::{GraphArch, GraphNet, PassMode};
use crate::layers::{LayerSpec, Shape, torch_entry};
use crate::{Activation, Architecture, LossKind, Mlp, ModelError};
use faer::MatRef;
use serde_json::{Value, json};
use std::sync::Arc;

/// The architecture of a network, without parameters.
#[derive(Debug, Clone)]
pub struct NetArch {
    graph: Arc<GraphArch>,
    /// The MLP the graph is, when it is one (evaluated by the fused kernels).
    mlp: Option<Architecture>,
}

impl PartialEq for NetArch {
    fn eq(&self, o: &Self) -> bool {
        self.graph.input == o.graph.input && self.graph.specs == o.graph.specs && self.graph.loss == o.graph.loss && self.mlp == o.mlp
    }
}

/// A network with its parameters.
#[derive(Debug, Clone)]
pub struct Network {
    arch: NetArch,
    imp: Imp,
}

#[derive(Debug, Clone)]
enum Imp {
    Fused(Mlp),
    Graph(GraphNet),
}

impl PartialEq for Network {
    fn eq(&self, o: &Self) -> bool {
        self.arch == o.arch && self.params() == o.params() && self.buffers() == o.buffers()
    }
}

/// Tensor names, PyTorch shapes and ranges in the flat parameters.
pub type Tensors = Vec<(String, Vec<usize>, std::ops::Range<usize>)>;

impl NetArch {
    /// The network `layers` declare on samples of shape `input`.
    pub fn new(input: Shape, layers: Vec<LayerSpec>, loss: LossKind) -> Result<NetArch, ModelError> {
        let graph = GraphArch::new(input, layers, loss)?;
        if graph.num_params == 0 {
            return Err(ModelError::Invalid("the network has no parameters; add a linear or conv2d layer".into()));
        }
        let mlp = mlp_of(&graph);
        Ok(NetArch { graph: Arc::new(graph), mlp })
    }
    /// The fully connected network `a`.
    pub fn mlp(a: Architecture) -> NetArch {
        let graph = GraphArch::new(Shape::Flat(a.input_dim()), Self::mlp_layers(&a), a.loss).expect("a checked MLP resolves");
        NetArch { graph: Arc::new(graph), mlp: Some(a) }
    }
    /// The layer list of an MLP.
    pub fn mlp_layers(a: &Architecture) -> Vec<LayerSpec> {
        let mut v = Vec::new();
        for (i, s) in a.sizes[1..].iter().enumerate() {
            if i > 0 {
                v.push(LayerSpec::layer(a.activation.name(), None).expect("a registry activation"));
            }
            v.push(LayerSpec::layer("linear", Some(json!({"out_features": s, "bias": a.bias}))).expect("a linear layer"));
        }
        v
    }
    /// The graph of layers.
    pub fn graph(&self) -> &Arc<GraphArch> {
        &self.graph
    }
    /// The MLP this network is, if it is one.
    pub fn as_mlp(&self) -> Option<&Architecture> {
        self.mlp.as_ref()
    }
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.graph.num_params
    }
    /// The loss.
    pub fn loss(&self) -> LossKind {
        self.graph.loss
    }
    /// Shape of one input sample.
    pub fn input_shape(&self) -> Shape {
        self.graph.input
    }
    /// Numbers per input sample.
    pub fn input_dim(&self) -> usize {
        self.input_shape().size()
    }
    /// Outputs.
    pub fn output_dim(&self) -> usize {
        self.graph.output_dim()
    }
    /// Values a forward pass keeps per sample (input and every layer's output).
    pub fn units(&self) -> u64 {
        match &self.mlp {
            Some(a) => a.sizes.iter().fold(0u64, |s, &x| s.saturating_add(x as u64)),
            None => self.graph.units(),
        }
    }
    /// Tensor names, shapes and ranges in `parameters()` order.
    pub fn tensors(&self) -> Tensors {
        self.graph.tensors()
    }
    /// FLOP of one sample's forward pass.
    pub fn flops_per_sample(&self) -> f64 {
        self.graph.flops_per_sample()
    }
    /// Short description.
    pub fn describe(&self) -> String {
        match &self.mlp {
            Some(a) => a.describe(),
            None => self.graph.describe(),
        }
    }
    /// The `architecture` JSON: PyTorch modules in order (constructor argument names; a
    /// residual block is `{"module": "Residual", "body": [...], "shortcut": [...]}`, a graph
    /// `{"module": "Graph", "nodes": [{name, inputs, module}]}`), `input_shape` and `loss`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"modules": self.graph.modules, "input_shape": self.graph.input.dims(), "loss": self.loss()});
        if let Some(a) = &self.mlp {
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
            return Ok(NetArch::mlp(a));
        }
        let dims: Vec<usize> =
            serde_json::from_value(v.get("input_shape").cloned().ok_or("no `input_shape`")?).map_err(|e| format!("input_shape: {e}"))?;
        let input = Shape::from_dims(&dims)?;
        let loss: LossKind = serde_json::from_value(v.get("loss").cloned().ok_or("no `loss`")?).map_err(|e| format!("loss: {e}"))?;
        let modules = v.get("modules").and_then(Value::as_array).ok_or("no `modules` list")?;
        let (specs, _) = specs_of_modules(modules, input, "modules")?;
        let mut arch = NetArch::new(input, specs, loss).map_err(|e| e.to_string())?;
        if let (Some(a), Some(act)) = (&mut arch.mlp, v.get("activation")) {
            a.activation = serde_json::from_value(act.clone()).map_err(|e| format!("activation: {e}"))?;
        }
        Ok(arch)
    }
}

/// The layers a list of PyTorch module entries describes, on inputs of shape `input`, and the
/// shape after them (the inverse of the `modules` that [`NetArch::to_json`] writes).
fn specs_of_modules(modules: &[Value], mut shape: Shape, place: &str) -> Result<(Vec<LayerSpec>, Shape), String> {
    let mut specs = Vec::with_capacity(modules.len());
    for (i, m) in modules.iter().enumerate() {
        let (spec, after) = one_module(m, &[shape], &format!("{place}[{i}]"))?;
        specs.push(spec);
        shape = after;
    }
    Ok((specs, shape))
}

/// One PyTorch module entry on inputs of shapes `ins`: its layer and its output shape. The
/// containers `Residual` and `Graph` hold module entries themselves; anything else is a
/// registry layer.
fn one_module(m: &Value, ins: &[Shape], here: &str) -> Result<(LayerSpec, Shape), String> {
    let name = m.get("module").and_then(Value::as_str).ok_or_else(|| format!("{here}: module entry without a \"module\" name: {m}"))?;
    let single = || match ins {
        [x] => Ok(*x),
        _ => Err(format!("{here}: a {name} block takes one input")),
    };
    let spec = if name == "Residual" {
        let x = single()?;
        let list = |k: &str| m.get(k).and_then(Value::as_array).ok_or_else(|| format!("{here}: Residual lacks the `{k}` list"));
        let (body, _) = specs_of_modules(list("body")?, x, &format!("{here}.body"))?;
        let (shortcut, _) = specs_of_modules(list("shortcut")?, x, &format!("{here}.shortcut"))?;
        LayerSpec::Residual { body, shortcut }
    } else if name == "Graph" {
        // Node entries are the TOML graph nodes with PyTorch modules: shapes resolve node by
        // node from the names they read.
        let nodes = m.get("nodes").and_then(Value::as_array).ok_or_else(|| format!("{here}: Graph lacks its `nodes` list"))?;
        let mut shapes: Vec<(String, Shape)> = vec![("input".into(), single()?)];
        let mut out = Vec::with_capacity(nodes.len());
        for (j, n) in nodes.iter().enumerate() {
            let at = format!("{here}.nodes[{j}]");
            let node_name = n.get("name").and_then(Value::as_str).ok_or_else(|| format!("{at}: no `name`"))?.to_string();
            let inputs: Vec<String> = serde_json::from_value(n.get("inputs").cloned().ok_or_else(|| format!("{at}: no `inputs`"))?)
                .map_err(|e| format!("{at}: inputs: {e}"))?;
            let read: Vec<Shape> = inputs
                .iter()
                .map(|x| shapes.iter().find(|(s, _)| s == x).map(|(_, s)| *s).ok_or_else(|| format!("{at}: unknown input `{x}`")))
                .collect::<Result<_, _>>()?;
            let (layer, after) = one_module(n.get("module").ok_or_else(|| format!("{at}: no `module`"))?, &read, &at)?;
            shapes.push((node_name.clone(), after));
            out.push(crate::layers::GraphNode { name: node_name, layer, inputs: Some(inputs) });
        }
        LayerSpec::Graph(out)
    } else {
        let e = torch_entry(name).ok_or_else(|| format!("{here}: unknown module `{name}`"))?;
        let config = (e.from_torch)(m, ins).map_err(|e| format!("{here}: {e}"))?;
        let layer = config.build(ins, &mut Default::default()).map_err(|e| format!("{here}: {e}"))?;
        return Ok((LayerSpec::Layer(config), layer.output_shape()));
    };
    let x = single()?;
    let g = GraphArch::new_unchecked_output(x, vec![spec.clone()]).map_err(|e| format!("{here}: {e}"))?;
    Ok((spec, *g.shapes.last().expect("the input")))
}

/// The MLP a resolved graph is, if it is one: a chain of linear layers on a vector with one
/// activation between them, ending with a linear layer, one bias setting.
fn mlp_of(g: &GraphArch) -> Option<Architecture> {
    let Shape::Flat(d) = g.input else { return None };
    if g.specs.len() != g.nodes.len() || g.nodes.len().is_multiple_of(2) {
        return None; // a block, or ends with an activation
    }
    let mut sizes = vec![d];
    let (mut act, mut bias) = (None::<Activation>, None::<bool>);
    for (i, n) in g.nodes.iter().enumerate() {
        if n.inputs != [i] {
            return None;
        }
        if i % 2 == 0 {
            let (_, out, b) = n.layer.as_linear()?;
            if *bias.get_or_insert(b) != b {
                return None;
            }
            sizes.push(out);
        } else {
            let a = n.layer.as_activation()?;
            if *act.get_or_insert(a) != a {
                return None;
            }
        }
    }
    Some(Architecture { sizes, activation: act.unwrap_or(Activation::Relu), bias: bias.unwrap_or(true), loss: g.loss })
}

impl From<Mlp> for Network {
    fn from(m: Mlp) -> Network {
        Network { arch: NetArch::mlp(m.arch.clone()), imp: Imp::Fused(m) }
    }
}

impl Network {
    /// The network `arch` with parameters `params`.
    pub fn new(arch: NetArch, params: Vec<f64>) -> Network {
        let imp = match &arch.mlp {
            Some(a) => Imp::Fused(Mlp::new(a.clone(), params)),
            None => Imp::Graph(GraphNet::new(arch.graph.clone(), params)),
        };
        Network { arch, imp }
    }
    /// Its architecture.
    pub fn arch(&self) -> NetArch {
        self.arch.clone()
    }
    /// The fused MLP evaluating it, when it is an MLP.
    pub fn as_mlp(&self) -> Option<&Mlp> {
        match &self.imp {
            Imp::Fused(m) => Some(m),
            Imp::Graph(_) => None,
        }
    }
    /// The graph evaluating it, when it is not an MLP.
    pub fn as_graph(&self) -> Option<&GraphNet> {
        match &self.imp {
            Imp::Graph(g) => Some(g),
            Imp::Fused(_) => None,
        }
    }
    /// Flat parameters in PyTorch order.
    pub fn params(&self) -> &[f64] {
        match &self.imp {
            Imp::Fused(m) => &m.params,
            Imp::Graph(g) => &g.params,
        }
    }
    /// Mutable parameters.
    pub fn params_mut(&mut self) -> &mut Vec<f64> {
        match &mut self.imp {
            Imp::Fused(m) => &mut m.params,
            Imp::Graph(g) => &mut g.params,
        }
    }
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.params().len()
    }
    /// Buffers (BatchNorm running statistics) in PyTorch `buffers()` order; empty without.
    pub fn buffers(&self) -> &[f64] {
        match &self.imp {
            Imp::Fused(_) => &[],
            Imp::Graph(g) => &g.buffers,
        }
    }
    /// Mutable buffers.
    pub fn buffers_mut(&mut self) -> &mut [f64] {
        match &mut self.imp {
            Imp::Fused(_) => &mut [],
            Imp::Graph(g) => &mut g.buffers,
        }
    }
    /// PyTorch's `state_dict()` order: per module its parameters, then its buffers; each entry
    /// (name, shape, range in the parameters or the buffers, whether a buffer).
    pub fn state_dict(&self) -> Vec<(String, Vec<usize>, std::ops::Range<usize>, bool)> {
        let mut v = Vec::new();
        for n in &self.arch.graph.nodes {
            let named = |t: crate::Tensor, buffer: bool| (format!("{}.{}", n.path, t.name), t.shape, t.range, buffer);
            v.extend(n.layer.tensors().into_iter().map(|t| named(t, false)));
            v.extend(n.layer.buffers().into_iter().map(|t| named(t, true)));
        }
        v
    }
    /// Buffer names, shapes and ranges in [`Network::buffers`].
    pub fn buffer_tensors(&self) -> Tensors {
        self.arch.graph.buffer_tensors()
    }
    /// Whether training passes differ from evaluation ones (BatchNorm, dropout).
    pub fn has_train_mode(&self) -> bool {
        self.arch.graph.nodes.iter().any(|n| n.layer.as_batch_norm().is_some() || n.layer.as_dropout().is_some())
    }
    /// One training step's mean loss and gradient on the mini-batch `x` (`model.train()`:
    /// BatchNorm with the batch's statistics, updating its running ones; dropout with masks
    /// from `seed`). The same as [`Network::loss_grad`] for networks without either.
    pub fn train_loss_grad(&mut self, x: MatRef<'_, f64>, y: &[u32], seed: u64) -> (f64, Vec<f64>) {
        match &mut self.imp {
            Imp::Fused(m) => {
                let (l, g, _) = m.loss_grad_accuracy_at(&m.params, x, y);
                (l, g)
            }
            Imp::Graph(g) => g.train_loss_grad(x, y, seed),
        }
    }
    /// Mean loss, gradient and accuracy at parameters `w` in `mode` (see [`PassMode`]).
    pub fn loss_grad_accuracy_mode(&self, w: &[f64], x: MatRef<'_, f64>, y: &[u32], mode: PassMode) -> (f64, Vec<f64>, f64) {
        match &self.imp {
            Imp::Fused(m) => m.loss_grad_accuracy_at(w, x, y),
            Imp::Graph(g) => g.loss_grad_accuracy_mode(w, x, y, mode).0,
        }
    }
    /// The same architecture and buffers with other parameters.
    pub fn with_params(&self, params: Vec<f64>) -> Network {
        let mut n = Network::new(self.arch(), params);
        n.buffers_mut().copy_from_slice(self.buffers());
        n
    }
    /// The loss.
    pub fn loss(&self) -> LossKind {
        self.arch.loss()
    }
    /// Numbers per input sample.
    pub fn input_dim(&self) -> usize {
        self.arch.input_dim()
    }
    /// Outputs.
    pub fn output_dim(&self) -> usize {
        self.arch.output_dim()
    }
    /// Short description.
    pub fn describe(&self) -> String {
        self.arch.describe()
    }
    /// Tensor names, shapes and ranges.
    pub fn tensors(&self) -> Tensors {
        self.arch.tensors()
    }
    /// Mean loss, gradient and accuracy over the rows of `x` at parameters `w`.
    pub fn loss_grad_accuracy_at(&self, w: &[f64], x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>, f64) {
        match &self.imp {
            Imp::Fused(m) => m.loss_grad_accuracy_at(w, x, y),
            Imp::Graph(g) => g.loss_grad_accuracy_at(w, x, y),
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
        match &self.imp {
            Imp::Fused(m) => m.evaluate(x, y),
            Imp::Graph(g) => g.evaluate(x, y),
        }
    }
}
