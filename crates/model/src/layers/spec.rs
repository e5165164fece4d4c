//! A layer as a pipeline declares it: one registry layer, a residual block, or a graph.
use super::{Config, entry, table, unknown_layer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One entry of a `layers = [...]` list: `"relu"`, `{ linear = 50 }`, `{ conv2d = {...} }`,
/// `{ residual = [...] }` (x + body(x)), `{ residual = { body = [...], shortcut = [...] } }`
/// (shortcut(x) + body(x)), or `{ graph = [ { name, layer, inputs }, ... ] }`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum LayerSpec {
    /// A layer of the registry.
    Layer(Config),
    /// shortcut(x) + body(x); an empty shortcut is the identity.
    Residual {
        /// The residual branch.
        body: Vec<LayerSpec>,
        /// The shortcut branch (empty: x itself).
        shortcut: Vec<LayerSpec>,
    },
    /// Named nodes with explicit inputs; the last node is the output.
    Graph(Vec<GraphNode>),
}

/// A node of a `graph`: `{ name = "h", layer = { linear = 20 }, inputs = ["input"] }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphNode {
    /// Its name (unique in the graph; `input` is the graph's input).
    pub name: String,
    /// What it computes.
    pub layer: LayerSpec,
    /// The nodes it reads; `None`: the node before it (the graph's input for the first).
    pub inputs: Option<Vec<String>>,
}

impl LayerSpec {
    /// The registry layer `name` with argument `arg` (`None` for a bare name).
    pub fn layer(name: &str, arg: Option<Value>) -> Result<LayerSpec, String> {
        let e = entry(name).ok_or_else(|| unknown_layer(name))?;
        (e.parse)(arg.as_ref()).map(LayerSpec::Layer)
    }
    /// The TOML name of what this declares.
    pub fn name(&self) -> &'static str {
        match self {
            LayerSpec::Layer(c) => c.name(),
            LayerSpec::Residual { .. } => "residual",
            LayerSpec::Graph(_) => "graph",
        }
    }
}

impl PartialEq for LayerSpec {
    fn eq(&self, other: &Self) -> bool {
        Value::from(self.clone()) == Value::from(other.clone())
    }
}
impl Eq for LayerSpec {}

impl std::fmt::Debug for LayerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", Value::from(self.clone()))
    }
}

impl schemars::JsonSchema for LayerSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LayerSpec".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // From the registry, so `hesslab stages` lists every layer there is.
        let mut names: Vec<&str> = super::REGISTRY.iter().map(|e| e.name).collect();
        names.dedup();
        let description = format!(
            "a layer: \"name\" or {{ name = arguments }} with name one of {}; {{ residual = [layers] }} (x + body(x)) or {{ residual = {{ body = [layers], shortcut = [layers] }} }}; {{ graph = [ {{ name, layer, inputs = [names] }} ] }}",
            names.join(", ")
        );
        schemars::json_schema!({ "description": description })
    }
}

fn list(v: &Value, what: &str) -> Result<Vec<LayerSpec>, String> {
    let a = v.as_array().ok_or_else(|| format!("{what} is a list of layers, got {v}"))?;
    a.iter().enumerate().map(|(i, l)| LayerSpec::try_from(l.clone()).map_err(|e| format!("{what}[{i}]: {e}"))).collect()
}

impl TryFrom<Value> for LayerSpec {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        if let Some(s) = v.as_str() {
            return match s {
                "residual" | "graph" => Err(format!("`{s}` needs its layers, e.g. {{ {s} = [...] }}")),
                "transformer" => {
                    Err("`transformer` needs its size: { transformer = { vocab_size, n_layer, n_embd, n_head, block_size } }".into())
                }
                _ => LayerSpec::layer(s, None),
            };
        }
        let t = v
            .as_object()
            .filter(|t| t.len() == 1)
            .ok_or_else(|| format!("a layer is a name (\"relu\") or a one-key table ({{ linear = 50 }}), got {v}"))?;
        let (name, arg) = t.iter().next().expect("one key");
        match name.as_str() {
            "residual" => {
                let (body, shortcut) = if arg.is_array() {
                    (list(arg, "body")?, vec![])
                } else {
                    let t = table("residual", arg, &["body", "shortcut"])?;
                    let body = list(t.get("body").ok_or("residual needs body = [...]")?, "body")?;
                    (body, t.get("shortcut").map(|s| list(s, "shortcut")).transpose()?.unwrap_or_default())
                };
                if body.is_empty() {
                    return Err("residual has an empty body".into());
                }
                Ok(LayerSpec::Residual { body, shortcut })
            }
            "graph" => {
                let nodes = arg.as_array().ok_or_else(|| format!("graph is a list of nodes {{ name, layer, inputs }}, got {arg}"))?;
                if nodes.is_empty() {
                    return Err("graph has no nodes".into());
                }
                let mut out = Vec::with_capacity(nodes.len());
                for (i, n) in nodes.iter().enumerate() {
                    let at = |e: String| format!("graph[{i}]: {e}");
                    let t = table("a graph node", n, &["name", "layer", "inputs"]).map_err(at)?;
                    let name = t.get("name").and_then(Value::as_str).ok_or_else(|| at("needs name = \"…\"".into()))?.to_string();
                    let layer = LayerSpec::try_from(t.get("layer").cloned().ok_or_else(|| at("needs layer = …".into()))?)
                        .map_err(|e| at(format!("layer: {e}")))?;
                    let inputs = t
                        .get("inputs")
                        .map(|v| {
                            v.as_array()
                                .and_then(|a| a.iter().map(|x| x.as_str().map(String::from)).collect::<Option<Vec<_>>>())
                                .ok_or_else(|| at(format!("inputs is a list of node names, got {v}")))
                        })
                        .transpose()?;
                    out.push(GraphNode { name, layer, inputs });
                }
                Ok(LayerSpec::Graph(out))
            }
            "transformer" => transformer(arg),
            _ => LayerSpec::layer(name, Some(arg.clone())),
        }
    }
}

/// `{ transformer = { vocab_size, n_layer, n_embd, n_head, block_size, mlp_ratio = 4, bias =
/// true } }`: nanoGPT's GPT as a graph of named nodes — `wte`, `wpe`, per block `h{i}_attn`
/// (x + c_proj(attention(c_attn(ln_1(x))))) and `h{i}_mlp` (x + c_proj(gelu(c_fc(ln_2(x))))),
/// `ln_f` and an untied `lm_head` without bias: [T] token ids → [T, vocab_size] logits.
fn transformer(arg: &Value) -> Result<LayerSpec, String> {
    let keys = ["vocab_size", "n_layer", "n_embd", "n_head", "block_size", "mlp_ratio", "bias"];
    let t = table("transformer", arg, &keys)?;
    let int = |k: &str, default: Option<usize>| match (t.get(k), default) {
        (Some(v), _) => super::as_usize(v, k),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(format!("transformer needs {k}")),
    };
    let (vocab, n_layer, d, heads, block) =
        (int("vocab_size", None)?, int("n_layer", None)?, int("n_embd", None)?, int("n_head", None)?, int("block_size", None)?);
    let ratio = int("mlp_ratio", Some(4))?;
    let bias = super::as_bias(t)?;
    if !bias {
        return Err("transformer with bias = false needs LayerNorm without a bias, which is not supported yet".into());
    }
    if n_layer == 0 || d == 0 || heads == 0 || ratio == 0 {
        return Err("transformer needs n_layer, n_embd, n_head and mlp_ratio ≥ 1".into());
    }
    let layer = |name: &str, arg: Value| LayerSpec::layer(name, Some(arg));
    let node = |name: String, layer: LayerSpec| GraphNode { name, layer, inputs: None };
    let mut nodes = vec![
        node("wte".into(), layer("embedding", json!({"num_embeddings": vocab, "embedding_dim": d}))?),
        node("wpe".into(), layer("position_embedding", json!({"max_len": block}))?),
    ];
    for i in 0..n_layer {
        let attn = vec![LayerSpec::layer("layer_norm", None)?, layer("causal_self_attention", json!({"heads": heads, "bias": bias}))?];
        let mlp = vec![
            LayerSpec::layer("layer_norm", None)?,
            layer("linear", json!({"out_features": ratio * d, "bias": bias}))?,
            LayerSpec::layer("gelu", None)?,
            layer("linear", json!({"out_features": d, "bias": bias}))?,
        ];
        nodes.push(node(format!("h{i}_attn"), LayerSpec::Residual { body: attn, shortcut: vec![] }));
        nodes.push(node(format!("h{i}_mlp"), LayerSpec::Residual { body: mlp, shortcut: vec![] }));
    }
    nodes.push(node("ln_f".into(), LayerSpec::layer("layer_norm", None)?));
    nodes.push(node("lm_head".into(), layer("linear", json!({"out_features": vocab, "bias": false}))?));
    Ok(LayerSpec::Graph(nodes))
}

impl From<LayerSpec> for Value {
    fn from(l: LayerSpec) -> Value {
        let list = |v: Vec<LayerSpec>| Value::Array(v.into_iter().map(Value::from).collect());
        match l {
            LayerSpec::Layer(c) => c.to_value(),
            LayerSpec::Residual { body, shortcut } if shortcut.is_empty() => json!({ "residual": list(body) }),
            LayerSpec::Residual { body, shortcut } => json!({ "residual": { "body": list(body), "shortcut": list(shortcut) } }),
            LayerSpec::Graph(nodes) => {
                let nodes: Vec<Value> = nodes
                    .into_iter()
                    .map(|n| {
                        let mut v = json!({ "name": n.name, "layer": Value::from(n.layer) });
                        if let Some(i) = n.inputs {
                            v["inputs"] = json!(i);
                        }
                        v
                    })
                    .collect();
                json!({ "graph": nodes })
            }
        }
    }
}
