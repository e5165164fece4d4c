//! Layers of a sequential network: how a pipeline declares them (`LayerSpec`), their shapes
//! (`Shape`), resolved layers with parameter offsets (`Layer`) and the PyTorch module list
//! that the `model` artifact's `architecture` metadata carries.
use crate::{Activation, ModelError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A (height, width) pair: kernel size, stride or padding.
pub type Pair = [usize; 2];

/// One layer as a pipeline declares it: `"relu"`, `"flatten"`, `{ linear = 50 }`,
/// `{ conv2d = { out_channels = 10, kernel_size = 5 } }`, `{ max_pool2d = 2 }`, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum LayerSpec {
    /// An elementwise nonlinearity.
    Activation(Activation),
    /// Flatten C×H×W to C·H·W (PyTorch's `nn.Flatten`, C, H, W row-major).
    Flatten,
    /// A fully connected layer to `out_features` units.
    Linear {
        /// Input units, when declared (checked against the shape there; PyTorch's argument).
        in_features: Option<usize>,
        /// Output units.
        out_features: usize,
        /// With a bias.
        bias: bool,
    },
    /// A 2-d convolution (cross-correlation, as PyTorch's `nn.Conv2d`; zero padding).
    Conv2d {
        /// Input channels, when declared (checked against the shape there).
        in_channels: Option<usize>,
        /// Output channels.
        out_channels: usize,
        /// Kernel (height, width).
        kernel_size: Pair,
        /// Stride (height, width).
        stride: Pair,
        /// Zero padding on each side (height, width).
        padding: Pair,
        /// With a bias per output channel.
        bias: bool,
    },
    /// Max pooling over windows (the tangent and the signal go through the argmax).
    MaxPool2d {
        /// Window (height, width).
        kernel_size: Pair,
        /// Stride (height, width); PyTorch's default is the window.
        stride: Pair,
    },
    /// Average pooling over windows.
    AvgPool2d {
        /// Window (height, width).
        kernel_size: Pair,
        /// Stride (height, width); PyTorch's default is the window.
        stride: Pair,
    },
}

impl schemars::JsonSchema for LayerSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LayerSpec".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "\"relu\" | \"tanh\" | \"sigmoid\" | \"identity\" | \"flatten\" | { linear = N or { out_features, bias } } | { conv2d = { out_channels, kernel_size, stride = 1, padding = 0, bias = true } } | { max_pool2d = K or { kernel_size, stride } } | { avg_pool2d = … }"
        })
    }
}

const LAYER_NAMES: &str = "relu, tanh, sigmoid, identity, flatten, linear, conv2d, max_pool2d, avg_pool2d";

fn as_usize(v: &Value, what: &str) -> Result<usize, String> {
    v.as_u64()
        .filter(|&x| x <= u32::MAX as u64)
        .map(|x| x as usize)
        .ok_or_else(|| format!("{what} must be a non-negative integer, got {v}"))
}

/// The largest kernel, stride or padding accepted (larger ones are typos).
pub const MAX_WINDOW: usize = 1 << 16;

fn as_pair(v: &Value, what: &str) -> Result<Pair, String> {
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

/// The keys of an argument table, checked against the known ones.
fn table<'a>(layer: &str, v: &'a Value, known: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let t = v.as_object().ok_or_else(|| format!("{layer} takes a table {{ {} }}, got {v}", known.join(", ")))?;
    if let Some(k) = t.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("{layer} has no argument `{k}`; known: {}", known.join(", ")));
    }
    Ok(t)
}

fn pool(name: &str, v: &Value) -> Result<(Pair, Pair), String> {
    if !v.is_object() {
        let k = as_pair(v, &format!("{name} window"))?;
        return Ok((k, k));
    }
    let t = table(name, v, &["kernel_size", "stride"])?;
    let k = as_pair(t.get("kernel_size").ok_or_else(|| format!("{name} needs kernel_size"))?, "kernel_size")?;
    let s = t.get("stride").map(|s| as_pair(s, "stride")).transpose()?.unwrap_or(k);
    Ok((k, s))
}

impl TryFrom<Value> for LayerSpec {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        if let Some(s) = v.as_str() {
            return match s {
                "relu" => Ok(LayerSpec::Activation(Activation::Relu)),
                "tanh" => Ok(LayerSpec::Activation(Activation::Tanh)),
                "sigmoid" => Ok(LayerSpec::Activation(Activation::Sigmoid)),
                "identity" => Ok(LayerSpec::Activation(Activation::Identity)),
                "flatten" => Ok(LayerSpec::Flatten),
                "linear" | "conv2d" | "max_pool2d" | "avg_pool2d" => Err(format!("layer `{s}` needs arguments, e.g. {{ {s} = … }}")),
                _ => Err(unknown_layer(s)),
            };
        }
        let t = v
            .as_object()
            .filter(|t| t.len() == 1)
            .ok_or_else(|| format!("a layer is a name (\"relu\") or a one-key table ({{ linear = 50 }}), got {v}"))?;
        let (name, arg) = t.iter().next().expect("one key");
        match name.as_str() {
            "linear" => {
                if !arg.is_object() {
                    return Ok(LayerSpec::Linear { in_features: None, out_features: as_usize(arg, "linear width")?, bias: true });
                }
                let t = table("linear", arg, &["in_features", "out_features", "bias"])?;
                let in_features = t.get("in_features").map(|v| as_usize(v, "in_features")).transpose()?;
                let out_features = as_usize(t.get("out_features").ok_or("linear needs out_features")?, "out_features")?;
                let bias =
                    t.get("bias").map(|b| b.as_bool().ok_or(format!("bias must be true or false, got {b}"))).transpose()?.unwrap_or(true);
                Ok(LayerSpec::Linear { in_features, out_features, bias })
            }
            "conv2d" => {
                let t = table("conv2d", arg, &["in_channels", "out_channels", "kernel_size", "stride", "padding", "bias"])?;
                let need = |k: &str| t.get(k).ok_or_else(|| format!("conv2d needs {k}"));
                let pair_or = |k: &str, d: usize| t.get(k).map(|x| as_pair(x, k)).transpose().map(|p| p.unwrap_or([d, d]));
                Ok(LayerSpec::Conv2d {
                    in_channels: t.get("in_channels").map(|v| as_usize(v, "in_channels")).transpose()?,
                    out_channels: as_usize(need("out_channels")?, "out_channels")?,
                    kernel_size: as_pair(need("kernel_size")?, "kernel_size")?,
                    stride: pair_or("stride", 1)?,
                    padding: pair_or("padding", 0)?,
                    bias: t
                        .get("bias")
                        .map(|b| b.as_bool().ok_or(format!("bias must be true or false, got {b}")))
                        .transpose()?
                        .unwrap_or(true),
                })
            }
            "max_pool2d" => pool(name, arg).map(|(kernel_size, stride)| LayerSpec::MaxPool2d { kernel_size, stride }),
            "avg_pool2d" => pool(name, arg).map(|(kernel_size, stride)| LayerSpec::AvgPool2d { kernel_size, stride }),
            "relu" | "tanh" | "sigmoid" | "identity" | "flatten" => Err(format!("layer `{name}` takes no arguments: write \"{name}\"")),
            _ => Err(unknown_layer(name)),
        }
    }
}

/// PyTorch modules (snake_case, as a pipeline would name them) that hesslab does not have yet,
/// with their PyTorch name: said as "not supported yet" rather than "unknown".
const NOT_YET: &[(&str, &str)] = &[
    ("batch_norm", "BatchNorm1d/2d"),
    ("batch_norm1d", "BatchNorm1d"),
    ("batch_norm2d", "BatchNorm2d"),
    ("layer_norm", "LayerNorm"),
    ("group_norm", "GroupNorm"),
    ("dropout", "Dropout"),
    ("gelu", "GELU"),
    ("silu", "SiLU"),
    ("softplus", "Softplus"),
    ("elu", "ELU"),
    ("leaky_relu", "LeakyReLU"),
    ("global_avg_pool", "AdaptiveAvgPool2d(1)"),
    ("adaptive_avg_pool2d", "AdaptiveAvgPool2d"),
    ("embedding", "Embedding"),
    ("multihead_attention", "MultiheadAttention"),
    ("causal_self_attention", "nanoGPT's CausalSelfAttention"),
    ("residual", "a residual block"),
    ("softmax", "Softmax (the cross-entropy loss applies it)"),
];

fn unknown_layer(name: &str) -> String {
    match NOT_YET.iter().find(|(n, _)| *n == name) {
        Some((_, torch)) => format!("layer `{name}` ({torch} in PyTorch) is not supported yet; supported: {LAYER_NAMES}"),
        None => format!("unknown layer `{name}`; known: {LAYER_NAMES}"),
    }
}

impl From<LayerSpec> for Value {
    fn from(l: LayerSpec) -> Value {
        match l {
            LayerSpec::Activation(a) => json!(a.name()),
            LayerSpec::Flatten => json!("flatten"),
            LayerSpec::Linear { in_features, out_features, bias } => {
                let mut t = json!({"out_features": out_features, "bias": bias});
                if let Some(i) = in_features {
                    t["in_features"] = json!(i);
                }
                json!({ "linear": t })
            }
            LayerSpec::Conv2d { in_channels, out_channels, kernel_size, stride, padding, bias } => {
                let mut t =
                    json!({"out_channels": out_channels, "kernel_size": kernel_size, "stride": stride, "padding": padding, "bias": bias});
                if let Some(i) = in_channels {
                    t["in_channels"] = json!(i);
                }
                json!({ "conv2d": t })
            }
            LayerSpec::MaxPool2d { kernel_size, stride } => json!({"max_pool2d": {"kernel_size": kernel_size, "stride": stride}}),
            LayerSpec::AvgPool2d { kernel_size, stride } => json!({"avg_pool2d": {"kernel_size": kernel_size, "stride": stride}}),
        }
    }
}

/// The shape of one sample at some point of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Channels × height × width (stored channels-last inside the network).
    Image {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// A vector.
    Flat(usize),
}

impl Shape {
    /// Numbers per sample.
    pub fn size(&self) -> usize {
        match *self {
            Shape::Image { c, h, w } => c * h * w,
            Shape::Flat(d) => d,
        }
    }
    /// PyTorch's shape of one sample: [C, H, W] or [d].
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Image { c, h, w } => vec![c, h, w],
            Shape::Flat(d) => vec![d],
        }
    }
    /// From [C, H, W] or [d].
    pub fn from_dims(d: &[usize]) -> Result<Shape, String> {
        let total = d.iter().try_fold(1u64, |a, &b| a.checked_mul(b as u64));
        if d.contains(&0) || total.is_none_or(|t| t > MAX_UNITS) {
            return Err(format!("sample shape {d:?} is empty or has more than 2^32 values"));
        }
        match *d {
            [c, h, w] => Ok(Shape::Image { c, h, w }),
            [n] => Ok(Shape::Flat(n)),
            _ => Err(format!("a sample shape is [C, H, W] or [d], got {d:?}")),
        }
    }
    fn show(&self) -> String {
        format!("{:?}", self.dims())
    }
}

/// Geometry of a window sliding over an image: a convolution or a pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Input channels.
    pub c: usize,
    /// Input height and width.
    pub input: Pair,
    /// Output height and width.
    pub output: Pair,
    /// Kernel height and width.
    pub kernel: Pair,
    /// Stride.
    pub stride: Pair,
    /// Zero padding.
    pub padding: Pair,
}

impl Window {
    /// Input positions per sample.
    pub fn in_hw(&self) -> usize {
        self.input[0] * self.input[1]
    }
    /// Output positions per sample.
    pub fn out_hw(&self) -> usize {
        self.output[0] * self.output[1]
    }
    /// Columns of the unfolded input: C·kh·kw.
    pub fn patch(&self) -> usize {
        self.c * self.kernel[0] * self.kernel[1]
    }
}

/// A layer with its shapes and parameter offsets, ready to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// y = x Wᵀ + b; W is out × in, row-major at `w`.
    Linear {
        /// Inputs.
        n_in: usize,
        /// Outputs.
        n_out: usize,
        /// Offset of the weight.
        w: usize,
        /// Offset of the bias.
        b: Option<usize>,
    },
    /// Convolution; weight [out, in, kh, kw] row-major at `w`.
    Conv2d {
        /// The window.
        win: Window,
        /// Output channels.
        c_out: usize,
        /// Offset of the weight.
        w: usize,
        /// Offset of the bias.
        b: Option<usize>,
    },
    /// Max pooling.
    MaxPool2d(Window),
    /// Average pooling.
    AvgPool2d(Window),
    /// Channels-last image to PyTorch's C, H, W flat order.
    Flatten {
        /// Channels.
        c: usize,
        /// Positions (height × width).
        hw: usize,
    },
    /// Elementwise nonlinearity.
    Activation(Activation),
}

/// The most parameters a network may have here (a 2^36-parameter model is 512 GiB).
pub const MAX_PARAMS: u64 = 1 << 36;
/// The largest number of values per sample at any layer.
pub const MAX_UNITS: u64 = 1 << 32;

fn out_len(i: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    let padded = i + 2 * p;
    (k <= padded && s > 0).then(|| (padded - k) / s + 1)
}

/// Resolve `specs` on samples of shape `input`: each layer with its parameter offsets, the
/// shape after each layer, and the parameter count. Errors name the layer (from 0) and the
/// shape there.
pub fn resolve(input: Shape, specs: &[LayerSpec]) -> Result<(Vec<Layer>, Vec<Shape>, usize), ModelError> {
    let mut shape = input;
    let mut off: u64 = 0;
    let mut out = Vec::with_capacity(specs.len());
    let mut shapes = Vec::with_capacity(specs.len());
    if shape.size() == 0 {
        return Err(ModelError::Invalid(format!("the input shape {} is empty", shape.show())));
    }
    for (i, spec) in specs.iter().enumerate() {
        let at = |m: String| ModelError::Invalid(format!("layers[{i}] ({}): {m} (input shape there: {})", spec_name(spec), shape.show()));
        let mut take = |n: u64| -> Result<usize, ModelError> {
            let o = off;
            off = off.checked_add(n).filter(|&t| t <= MAX_PARAMS).ok_or_else(|| at("more than 2^36 parameters".into()))?;
            Ok(o as usize)
        };
        let (layer, next) = match *spec {
            LayerSpec::Activation(a) => (Layer::Activation(a), shape),
            LayerSpec::Flatten => match shape {
                Shape::Image { c, h, w } => (Layer::Flatten { c, hw: h * w }, Shape::Flat(c * h * w)),
                // Flattening a vector is the identity (as in PyTorch): nothing to do.
                Shape::Flat(d) => (Layer::Flatten { c: d, hw: 1 }, Shape::Flat(d)),
            },
            LayerSpec::Linear { in_features, out_features, bias } => {
                let Shape::Flat(n_in) = shape else {
                    return Err(at("linear needs a flat input; insert \"flatten\" before it".into()));
                };
                if let Some(d) = in_features.filter(|&d| d != n_in) {
                    return Err(at(format!("linear declares in_features = {d}, but its input has {n_in}")));
                }
                if out_features == 0 {
                    return Err(at("linear has 0 outputs".into()));
                }
                let w = take((n_in as u64).saturating_mul(out_features as u64))?;
                let b = if bias { Some(take(out_features as u64)?) } else { None };
                (Layer::Linear { n_in, n_out: out_features, w, b }, Shape::Flat(out_features))
            }
            LayerSpec::Conv2d { in_channels, out_channels, kernel_size, stride, padding, bias } => {
                let Shape::Image { c, h, w } = shape else {
                    return Err(at("conv2d needs an image input [C, H, W]".into()));
                };
                if let Some(d) = in_channels.filter(|&d| d != c) {
                    return Err(at(format!("conv2d declares in_channels = {d}, but its input has {c} channels")));
                }
                if out_channels == 0 || kernel_size.contains(&0) || stride.contains(&0) {
                    return Err(at("out_channels, kernel_size and stride must be ≥ 1".into()));
                }
                let (Some(oh), Some(ow)) =
                    (out_len(h, kernel_size[0], stride[0], padding[0]), out_len(w, kernel_size[1], stride[1], padding[1]))
                else {
                    return Err(at(format!(
                        "kernel {kernel_size:?} is larger than the padded input {:?}",
                        [h + 2 * padding[0], w + 2 * padding[1]]
                    )));
                };
                let win = Window { c, input: [h, w], output: [oh, ow], kernel: kernel_size, stride, padding };
                // In u64 with checks: channels × kernel area × outputs can exceed any usize.
                let weights = [c, kernel_size[0], kernel_size[1], out_channels].iter().try_fold(1u64, |a, &b| a.checked_mul(b as u64));
                let wo = take(weights.unwrap_or(u64::MAX))?;
                let b = if bias { Some(take(out_channels as u64)?) } else { None };
                (Layer::Conv2d { win, c_out: out_channels, w: wo, b }, Shape::Image { c: out_channels, h: oh, w: ow })
            }
            LayerSpec::MaxPool2d { kernel_size, stride } | LayerSpec::AvgPool2d { kernel_size, stride } => {
                let Shape::Image { c, h, w } = shape else {
                    return Err(at("pooling needs an image input [C, H, W]".into()));
                };
                if kernel_size.contains(&0) || stride.contains(&0) {
                    return Err(at("kernel_size and stride must be ≥ 1".into()));
                }
                let (Some(oh), Some(ow)) = (out_len(h, kernel_size[0], stride[0], 0), out_len(w, kernel_size[1], stride[1], 0)) else {
                    return Err(at(format!("window {kernel_size:?} is larger than the input {:?}", [h, w])));
                };
                let win = Window { c, input: [h, w], output: [oh, ow], kernel: kernel_size, stride, padding: [0, 0] };
                let layer = if matches!(spec, LayerSpec::MaxPool2d { .. }) { Layer::MaxPool2d(win) } else { Layer::AvgPool2d(win) };
                (layer, Shape::Image { c, h: oh, w: ow })
            }
        };
        if next.size() as u64 > MAX_UNITS {
            return Err(at(format!("its output {} has more than 2^32 values per sample", next.show())));
        }
        out.push(layer);
        shapes.push(next);
        shape = next;
    }
    Ok((out, shapes, off as usize))
}

fn spec_name(s: &LayerSpec) -> &'static str {
    match s {
        LayerSpec::Activation(a) => a.name(),
        LayerSpec::Flatten => "flatten",
        LayerSpec::Linear { .. } => "linear",
        LayerSpec::Conv2d { .. } => "conv2d",
        LayerSpec::MaxPool2d { .. } => "max_pool2d",
        LayerSpec::AvgPool2d { .. } => "avg_pool2d",
    }
}

/// PyTorch's module for a resolved layer: `{"module": "Conv2d", "in_channels": 1, …}` with the
/// constructor's argument names, so `getattr(torch.nn, m.pop("module"))(**m)` rebuilds it.
pub fn torch_module(spec: &LayerSpec, input: Shape) -> Value {
    match *spec {
        LayerSpec::Activation(a) => json!({"module": match a {
            Activation::Relu => "ReLU",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
            Activation::Identity => "Identity",
        }}),
        LayerSpec::Flatten => json!({"module": "Flatten"}),
        LayerSpec::Linear { out_features, bias, .. } => {
            json!({"module": "Linear", "in_features": input.size(), "out_features": out_features, "bias": bias})
        }
        LayerSpec::Conv2d { out_channels, kernel_size, stride, padding, bias, .. } => {
            let c = if let Shape::Image { c, .. } = input { c } else { 0 };
            json!({"module": "Conv2d", "in_channels": c, "out_channels": out_channels, "kernel_size": kernel_size,
                   "stride": stride, "padding": padding, "bias": bias})
        }
        LayerSpec::MaxPool2d { kernel_size, stride } => json!({"module": "MaxPool2d", "kernel_size": kernel_size, "stride": stride}),
        LayerSpec::AvgPool2d { kernel_size, stride } => json!({"module": "AvgPool2d", "kernel_size": kernel_size, "stride": stride}),
    }
}

/// The layer a PyTorch module entry describes (the inverse of [`torch_module`]); the input
/// sizes it names (`in_features`, `in_channels`) are checked against `input`.
pub fn from_torch_module(m: &Value, input: Shape) -> Result<LayerSpec, String> {
    let name = m.get("module").and_then(Value::as_str).ok_or_else(|| format!("module entry without a \"module\" name: {m}"))?;
    let get = |k: &str| m.get(k).ok_or_else(|| format!("{name} entry lacks `{k}`"));
    let bias = || m.get("bias").map(|b| b.as_bool().ok_or(format!("{name}: bias is not a boolean"))).transpose().map(|b| b.unwrap_or(true));
    let check_in = |k: &str, want: usize| -> Result<(), String> {
        let got = as_usize(get(k)?, k)?;
        if got != want { Err(format!("{name}: {k} = {got}, but its input has {want}")) } else { Ok(()) }
    };
    Ok(match name {
        "ReLU" => LayerSpec::Activation(Activation::Relu),
        "Tanh" => LayerSpec::Activation(Activation::Tanh),
        "Sigmoid" => LayerSpec::Activation(Activation::Sigmoid),
        "Identity" => LayerSpec::Activation(Activation::Identity),
        "Flatten" => LayerSpec::Flatten,
        "Linear" => {
            check_in("in_features", input.size())?;
            LayerSpec::Linear { in_features: None, out_features: as_usize(get("out_features")?, "out_features")?, bias: bias()? }
        }
        "Conv2d" => {
            if let Shape::Image { c, .. } = input {
                check_in("in_channels", c)?;
            }
            LayerSpec::Conv2d {
                in_channels: None,
                out_channels: as_usize(get("out_channels")?, "out_channels")?,
                kernel_size: as_pair(get("kernel_size")?, "kernel_size")?,
                stride: m.get("stride").map(|s| as_pair(s, "stride")).transpose()?.unwrap_or([1, 1]),
                padding: m.get("padding").map(|s| as_pair(s, "padding")).transpose()?.unwrap_or([0, 0]),
                bias: bias()?,
            }
        }
        "MaxPool2d" | "AvgPool2d" => {
            let kernel_size = as_pair(get("kernel_size")?, "kernel_size")?;
            let stride = m.get("stride").filter(|s| !s.is_null()).map(|s| as_pair(s, "stride")).transpose()?.unwrap_or(kernel_size);
            if name == "MaxPool2d" { LayerSpec::MaxPool2d { kernel_size, stride } } else { LayerSpec::AvgPool2d { kernel_size, stride } }
        }
        _ => return Err(format!("unknown module `{name}`")),
    })
}
