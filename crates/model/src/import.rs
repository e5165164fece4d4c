//! A network from a PyTorch `state_dict`: the `architecture` JSON (the module tree hesslab
//! writes, [`NetArch::to_json`]) says which layers there are, and every parameter and buffer
//! is looked up under the name PyTorch's `state_dict()` gives it.
//!
//! Names: the module that the JSON rebuilds (the README's `seq(modules)`: `nn.Sequential`s,
//! `Residual {body, shortcut}`, `Graph` with its nodes in a `ModuleList` `m`) names a tensor by
//! its place, `"0.weight"`, `"2.body.2.bias"`, `"6.m.1.weight"`, `"1.running_mean"`. A module
//! entry with a `"path"` key ("features.0", "fc1") is found under that prefix instead: the
//! attribute path of the module in a network written as a class, which is what
//! `scripts/export_torch.py` records from a traced `nn.Module`.
use crate::{ModelError, NetArch, Network, Tensors};
use hesslab_data::{ArrayHeader, NamedArray};
use serde_json::Value;
use std::collections::BTreeMap;

/// The `state_dict()` key, PyTorch shape and range of every parameter and every buffer of a
/// network, as an architecture JSON names them.
#[derive(Debug, Clone)]
pub struct StateDictLayout {
    /// Parameters in `parameters()` order (ranges in the flat parameter vector).
    pub params: Tensors,
    /// Buffers in `buffers()` order (ranges in the buffer vector).
    pub buffers: Tensors,
}

impl StateDictLayout {
    /// The keys of `arch`, whose architecture JSON is `json` (its `"path"` entries rename).
    pub fn of(arch: &NetArch, json: &Value) -> StateDictLayout {
        let mut paths = BTreeMap::new();
        if let Some(m) = json.get("modules").and_then(Value::as_array) {
            renamed_paths(m, "", &mut paths);
        }
        let rename = |t: Tensors| -> Tensors {
            t.into_iter()
                .map(|(name, shape, range)| {
                    // The innermost renamed module containing the tensor replaces its part.
                    let mut at = name.len();
                    while let Some(dot) = name[..at].rfind('.') {
                        if let Some(p) = paths.get(&name[..dot]) {
                            let rest = &name[dot + 1..];
                            return (if p.is_empty() { rest.to_string() } else { format!("{p}.{rest}") }, shape, range);
                        }
                        at = dot;
                    }
                    (name, shape, range)
                })
                .collect()
        };
        let g = arch.graph();
        StateDictLayout { params: rename(g.torch_tensors(false)), buffers: rename(g.torch_tensors(true)) }
    }

    /// Every way the tensors a file holds (by its header) differ from this layout: missing,
    /// unexpected and wrong-shaped tensors, all at once (empty when they match).
    pub fn mismatches(&self, file: &BTreeMap<String, ArrayHeader>) -> Vec<String> {
        let mut errors = Vec::new();
        let expected: Vec<_> = self.params.iter().chain(&self.buffers).collect();
        let missing: Vec<String> =
            expected.iter().filter(|(name, ..)| !file.contains_key(name)).map(|(name, shape, _)| format!("`{name}` {shape:?}")).collect();
        if !missing.is_empty() {
            let has: Vec<&str> = file.keys().map(String::as_str).take(12).collect();
            errors.push(format!(
                "{} tensor(s) the architecture needs are missing: {} (the file has: {}{}){}",
                missing.len(),
                missing.join(", "),
                has.join(", "),
                if file.len() > 12 { ", …" } else { "" },
                hint_prefix(&missing, file)
            ));
        }
        let extra: Vec<&str> = file.keys().filter(|k| !expected.iter().any(|(name, ..)| name == *k)).map(String::as_str).collect();
        if !extra.is_empty() {
            errors.push(format!(
                "{} tensor(s) in the file are not in the architecture: {} (a layer the architecture JSON leaves out, or a renamed module; give the module entry its `path`)",
                extra.len(),
                extra.join(", ")
            ));
        }
        for (name, shape, _) in expected {
            let Some(h) = file.get(name) else { continue };
            if &h.shape != shape {
                let mut sorted = (h.shape.clone(), shape.clone());
                sorted.0.sort_unstable();
                sorted.1.sort_unstable();
                let layout = if sorted.0 == sorted.1 {
                    " (the same sizes in another order: a transposed or permuted layout; PyTorch's Linear weight is out × in, Conv2d's out × in × kh × kw)"
                } else {
                    ""
                };
                errors.push(format!("`{name}` has shape {:?} in the file, the architecture needs {shape:?}{layout}", h.shape));
            }
            if !matches!(h.dtype.as_str(), "float64" | "float32" | "float16" | "int64" | "int32") {
                errors.push(format!("`{name}` is {}, not a floating-point tensor", h.dtype));
            }
        }
        errors
    }
}

/// A hint when every missing tensor is in the file under one extra prefix ("model.0.weight"
/// for "0.weight": a network wrapped in another module).
fn hint_prefix(missing: &[String], file: &BTreeMap<String, ArrayHeader>) -> String {
    let first = missing.first().and_then(|m| m.split('`').nth(1)).unwrap_or("");
    match file.keys().find(|k| k.ends_with(&format!(".{first}"))) {
        Some(k) => format!("; `{k}` looks like `{first}` under the prefix `{}`", &k[..k.len() - first.len() - 1]),
        None => String::new(),
    }
}

/// Canonical paths ("2.body.0", "6.m.1") of module entries that carry a `"path"`, to it.
fn renamed_paths(modules: &[Value], prefix: &str, out: &mut BTreeMap<String, String>) {
    for (i, m) in modules.iter().enumerate() {
        let here = format!("{prefix}{i}");
        entry_paths(m, &here, out);
    }
}

fn entry_paths(m: &Value, here: &str, out: &mut BTreeMap<String, String>) {
    if let Some(p) = m.get("path").and_then(Value::as_str) {
        out.insert(here.to_string(), p.to_string());
    }
    match m.get("module").and_then(Value::as_str) {
        Some("Residual") => {
            for part in ["body", "shortcut"] {
                if let Some(list) = m.get(part).and_then(Value::as_array) {
                    renamed_paths(list, &format!("{here}.{part}."), out);
                }
            }
        }
        Some("Graph") => {
            for (j, n) in m.get("nodes").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let node = format!("{here}.m.{j}");
                if let Some(p) = n.get("path").and_then(Value::as_str) {
                    out.insert(node.clone(), p.to_string());
                }
                if let Some(inner) = n.get("module") {
                    entry_paths(inner, &node, out);
                }
            }
        }
        _ => {}
    }
}

/// The network `arch` (architecture JSON `json`) with the parameters and buffers of `arrays`,
/// a `state_dict` widened to f64. Every mismatch is reported at once; values must be finite.
pub fn network_from_state_dict(arch: NetArch, json: &Value, arrays: &BTreeMap<String, NamedArray>) -> Result<Network, ModelError> {
    let layout = StateDictLayout::of(&arch, json);
    let headers: BTreeMap<String, ArrayHeader> =
        arrays.iter().map(|(k, a)| (k.clone(), ArrayHeader { dtype: a.dtype.to_string(), shape: a.shape.clone() })).collect();
    let errors = layout.mismatches(&headers);
    if !errors.is_empty() {
        return Err(ModelError::Invalid(errors.join("; ")));
    }
    let fill = |tensors: &Tensors, into: &mut [f64]| -> Result<(), ModelError> {
        for (name, _, range) in tensors {
            let a = &arrays[name];
            if let Some(i) = a.values.iter().position(|v| !v.is_finite()) {
                return Err(ModelError::Invalid(format!("`{name}` holds {} at flat index {i}; parameters must be finite", a.values[i])));
            }
            into[range.clone()].copy_from_slice(&a.values);
        }
        Ok(())
    };
    let mut params = vec![0.0; arch.num_params()];
    fill(&layout.params, &mut params)?;
    let mut net = Network::new(arch, params);
    fill(&layout.buffers, net.buffers_mut())?;
    Ok(net)
}
