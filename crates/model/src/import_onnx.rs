//! An ONNX graph (as `torch.onnx.export` writes it) mapped onto hesslab's layers: the result is
//! an architecture JSON and a state_dict, which [`crate::network_from_state_dict`] turns into a
//! network exactly as it does an exported PyTorch model.
//!
//! Each operator becomes the layer that computes the same function (Gemm with `transB = 1` is a
//! Linear, MatMul + Add too; `GlobalAveragePool` and `ReduceMean` over H, W the global average
//! pool; `Sigmoid` feeding `Mul` with its own input SiLU); anything else is an error naming the
//! operator, the node and the supported set. Attributes hesslab would compute differently
//! (dilations, groups, asymmetric or automatic padding, ceil mode, training-mode BatchNorm) are
//! errors too. Parameter names are the initializers' (`fc1.weight`), so a model exported from
//! PyTorch keeps its `state_dict` names.
use hesslab_data::{Attribute, NamedArray, OnnxModel, OnnxNode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The operators read, for messages.
pub const ONNX_OPERATORS: &str = "Gemm, MatMul (+ Add), Conv, BatchNormalization (inference), Relu, Tanh, Sigmoid, Sigmoid·Mul (SiLU), Gelu, Elu, LeakyRelu, Softplus, MaxPool, AveragePool, GlobalAveragePool, ReduceMean over H and W, Flatten, Reshape to (N, features), Add, Concat (axis 1), Identity, Dropout";

/// A network read from ONNX: its architecture JSON and its tensors by `state_dict` name.
#[derive(Debug, Clone)]
pub struct OnnxNetwork {
    /// `{"modules", "input_shape", "loss"}`, module entries with their `path`.
    pub architecture: Value,
    /// Parameters and buffers under `{path}.weight` etc.
    pub state_dict: BTreeMap<String, NamedArray>,
}

/// What a value of the ONNX graph is: a constant tensor, or a value the network computes (the
/// name of the hesslab node that writes it, `input` for the network's input).
#[derive(Debug, Clone)]
enum Val {
    Const(NamedArray),
    Net(String),
}

struct Builder<'a> {
    m: &'a OnnxModel,
    values: BTreeMap<String, Val>,
    nodes: Vec<Value>,
    state_dict: BTreeMap<String, NamedArray>,
    paths: BTreeSet<String>,
    /// Values a `Sigmoid` wrote, to the value it read (for `x * sigmoid(x)`).
    sigmoid_of: BTreeMap<String, String>,
    /// hesslab nodes that are Linear layers without a bias yet (a MatMul), by node name.
    open_linear: BTreeSet<String>,
}

/// The float32 attribute `f` as the decimal a user wrote (`1e-5` for 9.99999974738e-06): the
/// shortest decimal that rounds to it, so eps and momentum mean in float64 what they meant.
fn decimal(f: f32) -> f64 {
    format!("{f}").parse().unwrap_or(f as f64)
}

impl<'a> Builder<'a> {
    fn here(n: &OnnxNode) -> String {
        format!("node `{}` ({})", if n.name.is_empty() { n.outputs.first().map_or("", String::as_str) } else { &n.name }, n.op_type)
    }
    fn net(&self, n: &OnnxNode, i: usize) -> Result<String, String> {
        match n.inputs.get(i).and_then(|v| self.values.get(v)) {
            Some(Val::Net(x)) => Ok(x.clone()),
            Some(Val::Const(_)) => Err(format!("{}: input {i} is a constant where a network value is expected", Self::here(n))),
            None => Err(format!("{}: input {i} `{}` is not computed before it", Self::here(n), n.inputs.get(i).map_or("", String::as_str))),
        }
    }
    fn constant(&self, n: &OnnxNode, i: usize) -> Result<Option<NamedArray>, String> {
        match n.inputs.get(i).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => match self.values.get(v) {
                Some(Val::Const(a)) => Ok(Some(a.clone())),
                Some(Val::Net(_)) => Err(format!(
                    "{}: input {i} `{v}` is computed by the network; hesslab needs it to be a weight (an initializer)",
                    Self::here(n)
                )),
                None => Err(format!("{}: input {i} `{v}` is unknown", Self::here(n))),
            },
        }
    }
    fn need(&self, n: &OnnxNode, i: usize, what: &str) -> Result<NamedArray, String> {
        self.constant(n, i)?.ok_or_else(|| format!("{}: no {what}", Self::here(n)))
    }
    fn int(n: &OnnxNode, key: &str, default: i64) -> Result<i64, String> {
        match n.attributes.get(key) {
            None => Ok(default),
            Some(Attribute::Int(i)) => Ok(*i),
            Some(other) => Err(format!("{}: attribute `{key}` is {other:?}, not an integer", Self::here(n))),
        }
    }
    fn ints(n: &OnnxNode, key: &str) -> Result<Option<Vec<i64>>, String> {
        match n.attributes.get(key) {
            None => Ok(None),
            Some(Attribute::Ints(v)) => Ok(Some(v.clone())),
            Some(other) => Err(format!("{}: attribute `{key}` is {other:?}, not a list of integers", Self::here(n))),
        }
    }
    fn float(n: &OnnxNode, key: &str, default: f64) -> Result<f64, String> {
        match n.attributes.get(key) {
            None => Ok(default),
            Some(Attribute::Float(f)) => Ok(decimal(*f)),
            Some(other) => Err(format!("{}: attribute `{key}` is {other:?}, not a float", Self::here(n))),
        }
    }
    fn text(n: &OnnxNode, key: &str, default: &str) -> Result<String, String> {
        match n.attributes.get(key) {
            None => Ok(default.to_string()),
            Some(Attribute::Bytes(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            Some(other) => Err(format!("{}: attribute `{key}` is {other:?}, not a string", Self::here(n))),
        }
    }
    /// Refuse an attribute at anything but the value hesslab computes with.
    fn only(n: &OnnxNode, key: &str, ok: impl Fn(&[i64]) -> bool, want: &str) -> Result<(), String> {
        match Self::ints(n, key)? {
            Some(v) if !ok(&v) => Err(format!("{}: {key} = {v:?} is not supported (only {want})", Self::here(n))),
            _ => Ok(()),
        }
    }
    fn output(&mut self, n: &OnnxNode, v: Val) {
        if let Some(o) = n.outputs.first() {
            self.values.insert(o.clone(), v);
        }
    }
    /// A prefix for a layer's tensors: its weight initializer's (`fc1` for `fc1.weight`) when
    /// that is free, else one from the node.
    fn path(&mut self, n: &OnnxNode, weight: Option<&String>) -> String {
        let from_weight = weight.and_then(|w| w.strip_suffix(".weight")).filter(|p| !p.is_empty() && !self.paths.contains(*p));
        let mut p = from_weight.map(str::to_string).unwrap_or_else(|| format!("{}_{}", n.op_type.to_lowercase(), self.nodes.len()));
        while self.paths.contains(&p) {
            p.push('_');
        }
        self.paths.insert(p.clone());
        p
    }
    /// Append a hesslab node reading `inputs`; its value is the ONNX node's first output.
    fn push(&mut self, n: &OnnxNode, module: Value, inputs: Vec<String>) -> String {
        let name = format!("{}_{}", n.op_type.to_lowercase(), self.nodes.len());
        self.nodes.push(json!({"name": name, "inputs": inputs, "module": module}));
        self.output(n, Val::Net(name.clone()));
        name
    }
    fn tensor(&mut self, key: String, a: NamedArray) {
        self.state_dict.insert(key, a);
    }

    fn node(&mut self, n: &OnnxNode) -> Result<(), String> {
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(format!("{}: operator domain `{}` is not ONNX's; supported: {ONNX_OPERATORS}", Self::here(n), n.domain));
        }
        let act = |name: &str| json!({ "module": name });
        match n.op_type.as_str() {
            "Identity" | "Dropout" => {
                let v = n
                    .inputs
                    .first()
                    .and_then(|i| self.values.get(i))
                    .cloned()
                    .ok_or_else(|| format!("{}: unknown input", Self::here(n)))?;
                if n.op_type == "Dropout" && n.inputs.get(2).is_some_and(|t| !t.is_empty()) {
                    return Err(format!("{}: Dropout in training mode is not supported (export with model.eval())", Self::here(n)));
                }
                self.output(n, v);
            }
            "Constant" => match n.attributes.get("value") {
                Some(Attribute::Tensor(t)) => self.output(n, Val::Const(t.clone())),
                _ => return Err(format!("{}: only a Constant with a tensor `value` is supported", Self::here(n))),
            },
            "Relu" | "Tanh" | "Sigmoid" => {
                let x = self.net(n, 0)?;
                let name = match n.op_type.as_str() {
                    "Relu" => "ReLU",
                    "Tanh" => "Tanh",
                    _ => "Sigmoid",
                };
                self.push(n, act(name), vec![x.clone()]);
                if let (true, Some(o)) = (n.op_type == "Sigmoid", n.outputs.first()) {
                    self.sigmoid_of.insert(o.clone(), x);
                }
            }
            "Mul" => {
                // x * sigmoid(x) (how SiLU is exported before opset 20): one SiLU node.
                let silu = (0..2).find_map(|s| {
                    let (a, b) = (n.inputs.get(s)?, n.inputs.get(1 - s)?);
                    let Some(Val::Net(x)) = self.values.get(b) else { return None };
                    (self.sigmoid_of.get(a) == Some(x)).then(|| x.clone())
                });
                let x = silu.ok_or_else(|| {
                    format!("{}: Mul is supported only as x · Sigmoid(x) (SiLU); supported: {ONNX_OPERATORS}", Self::here(n))
                })?;
                self.push(n, act("SiLU"), vec![x]);
            }
            "Gelu" => {
                let approximate = Self::text(n, "approximate", "none")?;
                let x = self.net(n, 0)?;
                self.push(n, json!({"module": "GELU", "approximate": approximate}), vec![x]);
            }
            "Elu" => {
                if Self::float(n, "alpha", 1.0)? != 1.0 {
                    return Err(format!("{}: Elu with alpha ≠ 1 is not supported", Self::here(n)));
                }
                let x = self.net(n, 0)?;
                self.push(n, json!({"module": "ELU", "alpha": 1.0}), vec![x]);
            }
            "LeakyRelu" => {
                let slope = Self::float(n, "alpha", 0.01)?;
                let x = self.net(n, 0)?;
                self.push(n, json!({"module": "LeakyReLU", "negative_slope": slope}), vec![x]);
            }
            "Softplus" => {
                // PyTorch exports Softplus(beta = 1, threshold = 20) as this operator.
                let x = self.net(n, 0)?;
                self.push(n, json!({"module": "Softplus", "beta": 1.0, "threshold": 20.0}), vec![x]);
            }
            "Gemm" => self.gemm(n)?,
            "MatMul" => {
                let x = self.net(n, 0)?;
                let w = self.need(n, 1, "weight")?;
                let [k, out] = w.shape[..] else {
                    return Err(format!("{}: a MatMul weight of shape {:?} (only K × N)", Self::here(n), w.shape));
                };
                let path = self.path(n, n.inputs.get(1));
                self.tensor(format!("{path}.weight"), transpose(&w, k, out));
                let node =
                    self.push(n, json!({"module": "Linear", "in_features": k, "out_features": out, "bias": false, "path": path}), vec![x]);
                self.open_linear.insert(node);
            }
            "Add" => self.add(n)?,
            "Conv" => self.conv(n)?,
            "BatchNormalization" => self.batch_norm(n)?,
            "MaxPool" | "AveragePool" => {
                let x = self.net(n, 0)?;
                let k = Self::ints(n, "kernel_shape")?.ok_or_else(|| format!("{}: no kernel_shape", Self::here(n)))?;
                Self::only(n, "pads", |p| p.iter().all(|&x| x == 0), "no padding")?;
                Self::only(n, "dilations", |d| d.iter().all(|&x| x == 1), "dilation 1")?;
                if Self::int(n, "ceil_mode", 0)? != 0 || Self::text(n, "auto_pad", "NOTSET")? != "NOTSET" {
                    return Err(format!("{}: ceil_mode and auto_pad are not supported", Self::here(n)));
                }
                let s = Self::ints(n, "strides")?.unwrap_or_else(|| vec![1; k.len()]);
                let name = if n.op_type == "MaxPool" { "MaxPool2d" } else { "AvgPool2d" };
                self.push(n, json!({"module": name, "kernel_size": k, "stride": s}), vec![x]);
            }
            "GlobalAveragePool" => {
                let x = self.net(n, 0)?;
                self.push(n, act("GlobalAvgPool"), vec![x]);
            }
            "ReduceMean" => {
                let axes = match Self::ints(n, "axes")? {
                    Some(a) => a,
                    None => self.constant(n, 1)?.map(|a| a.values.iter().map(|&v| v as i64).collect()).unwrap_or_default(),
                };
                if axes != [2, 3] && axes != [-2, -1] {
                    return Err(format!("{}: ReduceMean over axes {axes:?} (only [2, 3], a global average pool)", Self::here(n)));
                }
                let x = self.net(n, 0)?;
                self.push(n, act("GlobalAvgPool"), vec![x]);
            }
            "Flatten" => {
                if Self::int(n, "axis", 1)? != 1 {
                    return Err(format!("{}: Flatten with axis ≠ 1 is not supported", Self::here(n)));
                }
                let x = self.net(n, 0)?;
                self.push(n, act("Flatten"), vec![x]);
            }
            "Reshape" => {
                let shape = self.need(n, 1, "shape")?;
                let s: Vec<f64> = shape.values;
                if s.len() != 2 || !(s[1] == -1.0 || s[0] == 0.0 || s[0] == -1.0) {
                    return Err(format!("{}: Reshape to {s:?} (only to (N, features), a flatten)", Self::here(n)));
                }
                let x = self.net(n, 0)?;
                self.push(n, act("Flatten"), vec![x]);
            }
            "Concat" => {
                if Self::int(n, "axis", 0)? != 1 {
                    return Err(format!("{}: Concat with axis ≠ 1 is not supported", Self::here(n)));
                }
                let xs = (0..n.inputs.len()).map(|i| self.net(n, i)).collect::<Result<Vec<_>, _>>()?;
                self.push(n, json!({"module": "Concat", "dim": 1}), xs);
            }
            other => return Err(format!("{}: operator `{other}` is not supported; supported: {ONNX_OPERATORS}", Self::here(n))),
        }
        Ok(())
    }

    /// A Linear layer's bias from a constant of `out` values (shape `[out]` or `[1, out]`).
    fn bias(n: &OnnxNode, c: &NamedArray, out: usize) -> Result<NamedArray, String> {
        if c.values.len() != out {
            return Err(format!("{}: a bias of shape {:?} for {out} outputs", Self::here(n), c.shape));
        }
        Ok(NamedArray { dtype: c.dtype, shape: vec![out], values: c.values.clone() })
    }

    fn gemm(&mut self, n: &OnnxNode) -> Result<(), String> {
        let x = self.net(n, 0)?;
        let b = self.need(n, 1, "weight")?;
        let c = self.constant(n, 2)?;
        if Self::float(n, "alpha", 1.0)? != 1.0 || Self::float(n, "beta", 1.0)? != 1.0 || Self::int(n, "transA", 0)? != 0 {
            return Err(format!("{}: only Gemm with alpha = beta = 1, transA = 0 (a Linear layer)", Self::here(n)));
        }
        let [r, s] = b.shape[..] else { return Err(format!("{}: a weight of shape {:?}", Self::here(n), b.shape)) };
        // transB = 1 holds PyTorch's Linear weight (out × in) as it is; transB = 0 its transpose.
        let (weight, out, inp) = if Self::int(n, "transB", 0)? == 1 { (b, r, s) } else { (transpose(&b, r, s), s, r) };
        let path = self.path(n, n.inputs.get(1));
        self.tensor(format!("{path}.weight"), weight);
        if let Some(c) = &c {
            let bias = Self::bias(n, c, out)?;
            self.tensor(format!("{path}.bias"), bias);
        }
        self.push(n, json!({"module": "Linear", "in_features": inp, "out_features": out, "bias": c.is_some(), "path": path}), vec![x]);
        Ok(())
    }

    fn add(&mut self, n: &OnnxNode) -> Result<(), String> {
        let vals: Vec<Option<Val>> = (0..2).map(|i| n.inputs.get(i).and_then(|v| self.values.get(v)).cloned()).collect();
        match (&vals[0], &vals[1]) {
            (Some(Val::Net(a)), Some(Val::Net(b))) => {
                let (a, b) = (a.clone(), b.clone());
                self.push(n, json!({"module": "Add"}), vec![a, b]);
            }
            (Some(Val::Net(x)), Some(Val::Const(c))) | (Some(Val::Const(c)), Some(Val::Net(x))) if self.open_linear.contains(x) => {
                // MatMul + Add of a vector: the bias of that Linear.
                let x = x.clone();
                self.open_linear.remove(&x);
                let node = self.nodes.iter_mut().find(|v| v["name"] == x.as_str()).expect("the open linear's node");
                let bias = Self::bias(n, c, node["module"]["out_features"].as_u64().unwrap_or(0) as usize)?;
                node["module"]["bias"] = json!(true);
                let path = node["module"]["path"].as_str().unwrap_or("").to_string();
                self.tensor(format!("{path}.bias"), bias);
                self.output(n, Val::Net(x));
            }
            _ => return Err(format!("{}: Add is supported of two network values, or as a MatMul's bias", Self::here(n))),
        }
        Ok(())
    }

    fn conv(&mut self, n: &OnnxNode) -> Result<(), String> {
        let x = self.net(n, 0)?;
        let w = self.need(n, 1, "weight")?;
        let b = self.constant(n, 2)?;
        let [out, inp, kh, kw] = w.shape[..] else {
            return Err(format!("{}: a 2-D convolution weight has 4 dimensions, not {:?}", Self::here(n), w.shape));
        };
        Self::only(n, "dilations", |d| d.iter().all(|&x| x == 1), "dilation 1")?;
        if Self::int(n, "group", 1)? != 1 || Self::text(n, "auto_pad", "NOTSET")? != "NOTSET" {
            return Err(format!("{}: grouped convolutions and auto_pad are not supported", Self::here(n)));
        }
        let pads = Self::ints(n, "pads")?.unwrap_or_else(|| vec![0; 4]);
        let [pt, pl, pb, pr] = pads[..] else { return Err(format!("{}: pads {pads:?}", Self::here(n))) };
        if pt != pb || pl != pr || pt < 0 || pl < 0 {
            return Err(format!("{}: asymmetric padding {pads:?} is not supported", Self::here(n)));
        }
        let strides = Self::ints(n, "strides")?.unwrap_or_else(|| vec![1, 1]);
        let path = self.path(n, n.inputs.get(1));
        self.tensor(format!("{path}.weight"), w);
        if let Some(b) = &b {
            self.tensor(format!("{path}.bias"), b.clone());
        }
        let module = json!({"module": "Conv2d", "in_channels": inp, "out_channels": out, "kernel_size": [kh, kw],
                            "stride": strides, "padding": [pt, pl], "bias": b.is_some(), "path": path});
        self.push(n, module, vec![x]);
        Ok(())
    }

    fn batch_norm(&mut self, n: &OnnxNode) -> Result<(), String> {
        if Self::int(n, "training_mode", 0)? != 0 || n.outputs.len() > 1 {
            return Err(format!("{}: BatchNormalization in training mode is not supported (export with model.eval())", Self::here(n)));
        }
        let x = self.net(n, 0)?;
        let parts = ["scale", "bias", "running mean", "running variance"];
        let arrays = (1..5).map(|i| self.need(n, i, parts[i - 1])).collect::<Result<Vec<_>, _>>()?;
        let c = arrays[0].values.len();
        if arrays.iter().any(|a| a.values.len() != c) {
            return Err(format!("{}: scale, bias, mean and variance of different sizes", Self::here(n)));
        }
        let eps = Self::float(n, "epsilon", 1e-5)?;
        // ONNX's momentum weighs the old statistics (PyTorch's is 1 − it); it does not change
        // any curvature, only further training.
        let momentum: f64 = format!("{:.9}", 1.0 - Self::float(n, "momentum", 0.9)?).parse().unwrap_or(0.1);
        let path = self.path(n, n.inputs.get(1));
        for (a, key) in arrays.into_iter().zip(["weight", "bias", "running_mean", "running_var"]) {
            self.tensor(format!("{path}.{key}"), NamedArray { shape: vec![c], ..a });
        }
        // Not in ONNX; it counts batches seen in training and enters no evaluation.
        self.tensor(format!("{path}.num_batches_tracked"), NamedArray { dtype: "int64", shape: vec![], values: vec![0.0] });
        let module = json!({"module": "BatchNorm2d", "num_features": c, "eps": eps, "momentum": momentum, "affine": true, "path": path});
        self.push(n, module, vec![x]);
        Ok(())
    }
}

/// `a` (r × c, row-major) transposed, as a c × r array.
fn transpose(a: &NamedArray, r: usize, c: usize) -> NamedArray {
    let mut v = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            v[j * r + i] = a.values[i * c + j];
        }
    }
    NamedArray { dtype: a.dtype, shape: vec![c, r], values: v }
}

/// The network an ONNX model computes, as an architecture JSON (with `loss`) and a state_dict.
pub fn network_of_onnx(m: &OnnxModel, loss: &str) -> Result<OnnxNetwork, String> {
    let [(input, dims)] = &m.inputs[..] else {
        let names: Vec<&str> = m.inputs.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format!("the graph has {} inputs ({}); hesslab's networks take one", names.len(), names.join(", ")));
    };
    let sample: Vec<u64> = dims
        .iter()
        .skip(1)
        .map(|d| d.ok_or_else(|| format!("input `{input}` has a symbolic dimension after the batch axis: {dims:?}")))
        .collect::<Result<_, _>>()?;
    if sample.is_empty() {
        return Err(format!("input `{input}` has shape {dims:?}: it needs a batch axis and a sample shape"));
    }
    let mut b = Builder {
        m,
        values: m.initializers.iter().map(|(k, v)| (k.clone(), Val::Const(v.clone()))).collect(),
        nodes: Vec::new(),
        state_dict: BTreeMap::new(),
        paths: BTreeSet::new(),
        sigmoid_of: BTreeMap::new(),
        open_linear: BTreeSet::new(),
    };
    b.values.insert(input.clone(), Val::Net("input".into()));
    for n in &m.nodes {
        b.node(n)?;
    }
    let [out] = &b.m.outputs[..] else { return Err(format!("the graph has {} outputs; hesslab's networks have one", b.m.outputs.len())) };
    // Drop nodes nothing reads (a Sigmoid folded into a SiLU): they have no parameters.
    loop {
        let read: BTreeSet<String> = b
            .nodes
            .iter()
            .flat_map(|v| v["inputs"].as_array().cloned().unwrap_or_default())
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        let last = b.nodes.len().saturating_sub(1);
        let before = b.nodes.len();
        let mut i = 0;
        b.nodes.retain(|v| {
            i += 1;
            i - 1 == last || read.contains(v["name"].as_str().unwrap_or(""))
        });
        if b.nodes.len() == before {
            break;
        }
    }
    let last = b.nodes.last().and_then(|v| v["name"].as_str()).map(str::to_string);
    match b.values.get(out) {
        Some(Val::Net(x)) if Some(x) == last.as_ref() => {}
        _ => return Err(format!("the graph's output `{out}` is not the value its last operator computes")),
    }
    let chain = b.nodes.iter().enumerate().all(|(i, v)| {
        let prev = if i == 0 { "input".to_string() } else { b.nodes[i - 1]["name"].as_str().unwrap_or("").to_string() };
        v["inputs"] == json!([prev])
    });
    let modules =
        if chain { b.nodes.iter().map(|v| v["module"].clone()).collect() } else { vec![json!({"module": "Graph", "nodes": b.nodes})] };
    Ok(OnnxNetwork { architecture: json!({"modules": modules, "input_shape": sample, "loss": loss}), state_dict: b.state_dict })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(shape: &[usize]) -> NamedArray {
        let n = shape.iter().product::<usize>();
        NamedArray { dtype: "float32", shape: shape.to_vec(), values: (0..n).map(|i| i as f64 * 0.01).collect() }
    }
    fn node(op: &str, inputs: &[&str], output: &str, attributes: &[(&str, Attribute)]) -> OnnxNode {
        OnnxNode {
            name: format!("/{output}"),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }
    fn model(input: &[u64], nodes: Vec<OnnxNode>, inits: &[(&str, NamedArray)]) -> OnnxModel {
        let out = nodes.last().unwrap().outputs[0].clone();
        OnnxModel {
            opset: Some(17),
            producer: "test".into(),
            nodes,
            initializers: inits.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            inputs: vec![("x".into(), std::iter::once(None).chain(input.iter().map(|&d| Some(d))).collect())],
            outputs: vec![out],
        }
    }

    #[test]
    fn matmul_plus_add_is_a_linear_layer_with_its_bias_and_silu_is_found() {
        let m = model(
            &[3],
            vec![
                node("MatMul", &["x", "w"], "h", &[]),
                node("Add", &["h", "b"], "hb", &[]),
                node("Sigmoid", &["hb"], "s", &[]),
                node("Mul", &["hb", "s"], "a", &[]),
                node("Gemm", &["a", "fc.weight", "fc.bias"], "y", &[("transB", Attribute::Int(1))]),
            ],
            &[("w", array(&[3, 4])), ("b", array(&[4])), ("fc.weight", array(&[2, 4])), ("fc.bias", array(&[2]))],
        );
        let net = network_of_onnx(&m, "cross_entropy").unwrap();
        let modules = net.architecture["modules"].as_array().unwrap();
        let kinds: Vec<&str> = modules.iter().map(|m| m["module"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Linear", "SiLU", "Linear"], "{}", net.architecture);
        assert_eq!(modules[0]["bias"], json!(true));
        // MatMul's K × N weight is PyTorch's N × K: transposed.
        let w = &net.state_dict[&format!("{}.weight", modules[0]["path"].as_str().unwrap())];
        assert_eq!(w.shape, [4, 3]);
        assert_eq!(w.values[1], array(&[3, 4]).values[4]);
        assert!(net.state_dict.contains_key("fc.weight") && net.state_dict.contains_key("fc.bias"));
    }

    #[test]
    fn attributes_hesslab_would_compute_differently_are_refused_by_name() {
        let conv = |attrs: &[(&str, Attribute)]| {
            model(&[1, 6, 6], vec![node("Conv", &["x", "c.weight"], "y", attrs)], &[("c.weight", array(&[2, 1, 3, 3]))])
        };
        let err = |m: OnnxModel| network_of_onnx(&m, "cross_entropy").unwrap_err();
        assert!(err(conv(&[("group", Attribute::Int(2))])).contains("grouped convolutions"));
        assert!(err(conv(&[("dilations", Attribute::Ints(vec![2, 2]))])).contains("dilations = [2, 2] is not supported"));
        assert!(err(conv(&[("pads", Attribute::Ints(vec![1, 1, 0, 0]))])).contains("asymmetric padding"));
        let bn = model(
            &[2],
            vec![node("BatchNormalization", &["x", "s", "b", "m", "v"], "y", &[("training_mode", Attribute::Int(1))])],
            &[("s", array(&[2])), ("b", array(&[2])), ("m", array(&[2])), ("v", array(&[2]))],
        );
        assert!(err(bn).contains("training mode"));
        let sub = model(&[2], vec![node("Sub", &["x", "x"], "y", &[])], &[]);
        let e = err(sub);
        assert!(e.contains("node `/y` (Sub): operator `Sub` is not supported; supported: Gemm"), "{e}");
        let pool = model(
            &[1, 4, 4],
            vec![node("MaxPool", &["x"], "y", &[("kernel_shape", Attribute::Ints(vec![2, 2])), ("ceil_mode", Attribute::Int(1))])],
            &[],
        );
        assert!(err(pool).contains("ceil_mode"));
        // eps in float32 reads as the decimal it was written as.
        assert_eq!(decimal(1e-5f32), 1e-5);
    }
}
