//! Layers: how a pipeline declares them ([`LayerSpec`]), the registry that maps a TOML or
//! PyTorch name to the layer's file, and residual blocks and graphs built from layers.
//!
//! The registry ([`REGISTRY`]) is the only place that lists layer kinds: one line per kind.
//! Everything else reaches a layer through [`crate::Layer`] and [`crate::LayerConfig`].
mod activation;
mod add;
mod avg_pool2d;
mod batch_norm;
mod causal_attention;
mod chain;
mod concat;
mod conv2d;
mod dropout;
mod elu;
mod embedding;
mod flatten;
mod gelu;
mod global_avg_pool;
mod last_position;
mod layer_norm;
mod leaky_relu;
mod linear;
mod max_pool2d;
mod pointwise;
mod position_embedding;
mod shape;
mod silu;
mod softplus;
mod spec;

pub use activation::ActivationLayer;
pub use batch_norm::{BatchNorm, Stats as BatchStats, Totals as BatchTotals};
pub use dropout::Dropout;
pub use shape::{MAX_UNITS, Pair, Shape, Window};
pub use spec::{GraphNode, LayerSpec};

use crate::layer::LayerConfig;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The most parameters a network may have here (a 2^36-parameter model is 512 GiB).
pub const MAX_PARAMS: u64 = 1 << 36;
/// The largest kernel, stride or padding accepted (larger ones are typos).
pub const MAX_WINDOW: usize = 1 << 16;

/// A declared layer, shared (declarations are immutable once parsed).
pub type Config = Arc<dyn LayerConfig>;

/// One layer kind: its TOML name, its PyTorch module name, and how to read it from either.
pub struct Entry {
    /// TOML name (`"conv2d"`).
    pub name: &'static str,
    /// PyTorch module (`"Conv2d"`).
    pub torch: &'static str,
    /// From TOML: `None` for the bare name (`"relu"`), else the argument of `{ name = arg }`.
    pub parse: fn(Option<&Value>) -> Result<Config, String>,
    /// From a PyTorch module entry of the `architecture` metadata, on inputs of these shapes
    /// (the input sizes it names are checked against them).
    pub from_torch: fn(&Value, &[Shape]) -> Result<Config, String>,
}

/// Every layer kind. Adding a layer: one file in this directory and one line here.
pub const REGISTRY: &[Entry] = &[
    activation::RELU,
    activation::TANH,
    activation::SIGMOID,
    activation::IDENTITY,
    silu::ENTRY,
    gelu::ENTRY,
    softplus::ENTRY,
    elu::ENTRY,
    leaky_relu::ENTRY,
    flatten::ENTRY,
    linear::ENTRY,
    conv2d::ENTRY,
    max_pool2d::ENTRY,
    avg_pool2d::ENTRY,
    global_avg_pool::ENTRY,
    layer_norm::ENTRY,
    batch_norm::ENTRY_2D,
    batch_norm::ENTRY_1D,
    dropout::ENTRY,
    embedding::ENTRY,
    position_embedding::ENTRY,
    causal_attention::ENTRY,
    chain::SELF_ATTENTION,
    last_position::ENTRY,
    add::ENTRY,
    concat::ENTRY,
];

/// The registry entry of TOML name `name`.
pub fn entry(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// The registry entry of PyTorch module `torch`.
pub fn torch_entry(torch: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.torch == torch)
}

/// "relu, tanh, …, residual, graph": what a layer list may name.
pub fn layer_names() -> String {
    let mut v: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
    v.dedup();
    v.extend(["residual", "graph", "transformer"]);
    v.join(", ")
}

/// PyTorch modules (snake_case, as a pipeline would name them) that hesslab does not have yet,
/// with their PyTorch name: said as "not supported yet" rather than "unknown".
const NOT_YET: &[(&str, &str)] = &[
    ("group_norm", "GroupNorm"),
    ("adaptive_avg_pool2d", "AdaptiveAvgPool2d"),
    ("multihead_attention", "MultiheadAttention"),
    ("softmax", "Softmax (the cross-entropy loss applies it)"),
];

/// PyTorch module names (snake_case) that hesslab writes otherwise.
const ALIASES: &[(&str, &str)] = &[
    ("batch_norm1d", "batch_norm (BatchNorm1d on vectors, BatchNorm2d on images)"),
    ("batch_norm2d", "batch_norm (BatchNorm1d on vectors, BatchNorm2d on images)"),
];

/// The message for a layer name the registry does not have.
pub fn unknown_layer(name: &str) -> String {
    let known = layer_names();
    if let Some((_, ours)) = ALIASES.iter().find(|(n, _)| *n == name) {
        return format!("layer `{name}` is written {ours} here");
    }
    match NOT_YET.iter().find(|(n, _)| *n == name) {
        Some((_, torch)) => format!("layer `{name}` ({torch} in PyTorch) is not supported yet; supported: {known}"),
        None => format!("unknown layer `{name}`; known: {known}"),
    }
}

// ---- argument readers shared by the layer files ----

/// A non-negative integer that fits in 32 bits.
pub fn as_usize(v: &Value, what: &str) -> Result<usize, String> {
    v.as_u64()
        .filter(|&x| x <= u32::MAX as u64)
        .map(|x| x as usize)
        .ok_or_else(|| format!("{what} must be a non-negative integer, got {v}"))
}

/// An integer or a [height, width] pair.
pub fn as_pair(v: &Value, what: &str) -> Result<Pair, String> {
    let p = match v {
        Value::Array(a) if a.len() == 2 => [as_usize(&a[0], what)?, as_usize(&a[1], what)?],
        Value::Array(_) => return Err(format!("{what} must be an integer or a [height, width] pair, got {v}")),
        _ => as_usize(v, what).map(|x| [x, x])?,
    };
    if p.iter().any(|&x| x > MAX_WINDOW) {
        return Err(format!("{what} {p:?} is larger than {MAX_WINDOW}"));
    }
    Ok(p)
}

/// `bias = true | false` (default true).
pub fn as_bias(t: &Map<String, Value>) -> Result<bool, String> {
    t.get("bias").map(|b| b.as_bool().ok_or(format!("bias must be true or false, got {b}"))).transpose().map(|b| b.unwrap_or(true))
}

/// The keys of an argument table, checked against the known ones.
pub fn table<'a>(layer: &str, v: &'a Value, known: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let t = v.as_object().ok_or_else(|| format!("{layer} takes a table {{ {} }}, got {v}", known.join(", ")))?;
    if let Some(k) = t.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("{layer} has no argument `{k}`; known: {}", known.join(", ")));
    }
    Ok(t)
}

/// A layer without arguments: the bare name only.
pub fn no_arguments(name: &str, arg: Option<&Value>) -> Result<(), String> {
    match arg {
        None => Ok(()),
        Some(_) => Err(format!("layer `{name}` takes no arguments: write \"{name}\"")),
    }
}

/// A layer that needs arguments.
pub fn needs_arguments<'a>(name: &str, arg: Option<&'a Value>) -> Result<&'a Value, String> {
    arg.ok_or_else(|| format!("layer `{name}` needs arguments, e.g. {{ {name} = … }}"))
}

/// How a layer without arguments is built on inputs of these shapes.
pub type BuildFn = fn(&[Shape]) -> Result<Box<dyn crate::Layer>, String>;

/// A declared layer without arguments: its name and how it is built (flatten, add, concat,
/// the activations).
pub struct Bare {
    name: &'static str,
    build: BuildFn,
}

impl std::fmt::Debug for Bare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Bare {
    /// The declaration `"name"` (refusing arguments).
    pub fn parse(name: &'static str, build: BuildFn, arg: Option<&Value>) -> Result<Config, String> {
        no_arguments(name, arg)?;
        Ok(Arc::new(Bare { name, build }))
    }
    /// The declaration, from a PyTorch module entry (whose arguments the layer's shapes imply).
    pub fn config(name: &'static str, build: BuildFn) -> Config {
        Arc::new(Bare { name, build })
    }
}

impl LayerConfig for Bare {
    fn name(&self) -> &'static str {
        self.name
    }
    fn to_value(&self) -> Value {
        Value::String(self.name.into())
    }
    fn build(&self, inputs: &[Shape], _: &mut crate::layer::ParamCursor) -> Result<Box<dyn crate::Layer>, String> {
        (self.build)(inputs)
    }
}

/// The one input of a single-input layer.
pub fn one_input(name: &str, inputs: &[Shape]) -> Result<Shape, String> {
    match inputs {
        [s] => Ok(*s),
        _ => Err(format!("{name} takes one input, got {}", inputs.len())),
    }
}

/// PyTorch constructor arguments a module entry may state only at the value hesslab computes
/// with (`groups = 1`, `dilation = 1`, `padding_mode = "zeros"`, …): any other value is an
/// error naming it, never silently a different network. An integer stands for both of a pair.
pub fn refuse_other_torch_args(m: &Value, module: &str, fixed: &[(&str, Value)]) -> Result<(), String> {
    for (key, only) in fixed {
        let Some(v) = m.get(*key).filter(|v| !v.is_null()) else { continue };
        let same = v == only || matches!((v, only), (Value::Array(a), Value::Number(_)) if a.iter().all(|x| x == only));
        if !same {
            return Err(format!("{module} with {key} = {v} is not supported (hesslab computes {key} = {only} only)"));
        }
    }
    Ok(())
}

/// The input size a PyTorch module entry names (`in_features`, `in_channels`), checked.
pub fn check_torch_input(m: &Value, module: &str, key: &str, want: usize) -> Result<(), String> {
    let got = as_usize(m.get(key).ok_or_else(|| format!("{module} entry lacks `{key}`"))?, key)?;
    if got != want { Err(format!("{module}: {key} = {got}, but its input has {want}")) } else { Ok(()) }
}
