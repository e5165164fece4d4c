//! `import_model`: a network trained elsewhere (PyTorch) as a `model` artifact, so that every
//! curvature stage, solver and analysis works on it unchanged.
use hesslab_artifacts::Model;
use hesslab_data::{ArrayHeader, NamedArray, read_arrays, read_onnx, safetensors_header};
use hesslab_model::{LossKind, NetArch, Network, StateDictLayout, network_from_state_dict, network_of_onnx};
use hesslab_pipeline::{Facts, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Parameters of `import_model`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ImportModelParams {
    /// The weights: a PyTorch `state_dict` as `safetensors.torch.save_file(model.state_dict(),
    /// path)` writes it (`.safetensors`), or as `numpy.savez(path, **arrays)` (`.npz`).
    /// Parameters and BatchNorm buffers; float32/float16 values are widened to float64.
    pub weights: String,
    /// The architecture JSON: `{"modules": [...], "input_shape": [...], "loss": "..."}`, the
    /// module tree hesslab writes in a model's `architecture` metadata (docs/guide.md, "Model
    /// architecture"; `scripts/export_torch.py` writes it from an `nn.Module`). Tensor names
    /// are those of the PyTorch module it rebuilds ("0.weight", "2.body.0.bias"), or under a
    /// module entry's `"path"` ("fc1" → "fc1.weight").
    pub architecture: String,
    /// Instead of `weights` and `architecture`: an ONNX graph with its initializers, as
    /// `torch.onnx.export` writes it (`scripts/export_torch.py`'s `export_onnx`), mapped onto
    /// hesslab's layers; parameters keep the initializers' names.
    pub onnx: String,
    /// With `onnx`: the loss the network was trained with (ONNX graphs do not hold it).
    pub loss: Option<LossKind>,
}

/// The largest architecture file read (a module list is kilobytes).
const MAX_ARCHITECTURE_BYTES: u64 = 16 << 20;

/// The architecture file, parsed: its JSON and the network it declares.
fn read_architecture(path: &str) -> Result<(Value, NetArch), String> {
    let bytes = hesslab_limits::read_regular(std::path::Path::new(path), MAX_ARCHITECTURE_BYTES).map_err(|e| format!("`{path}`: {e}"))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("`{path}` is not JSON: {e}"))?;
    let arch = NetArch::from_json(&v).map_err(|e| format!("`{path}` does not describe a network: {e}"))?;
    Ok((v, arch))
}

/// The tensors a weights file holds, by its header only where the format allows (safetensors).
fn weight_headers(path: &str) -> Result<BTreeMap<String, ArrayHeader>, String> {
    let headers = if path.ends_with(".safetensors") {
        safetensors_header(path)
    } else {
        read_arrays(path).map(|a| a.into_iter().map(|(k, a)| (k, ArrayHeader { dtype: a.dtype.to_string(), shape: a.shape })).collect())
    };
    headers.map_err(|e| e.to_string())
}

/// The `import_model` stage kind.
pub struct ImportModel;

impl StageKind for ImportModel {
    type Params = ImportModelParams;
    const KIND: &'static str = "import_model";
    const DOC: &'static str = "A network trained elsewhere: a PyTorch state_dict (.safetensors or .npz; parameters and BatchNorm buffers) and an architecture JSON (hesslab's module tree; scripts/export_torch.py writes both from an nn.Module), checked tensor by tensor (names, shapes) at validate time, or an ONNX graph with its initializers mapped onto hesslab's layers; written as a `model` that every curvature stage and solver reads.";
    const OUTPUTS: &'static [PortSpec] = &[port::<Model>()];
    fn check(p: &ImportModelParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !p.onnx.is_empty() {
            for (key, v) in [("weights", &p.weights), ("architecture", &p.architecture)] {
                if !v.is_empty() {
                    e.push((key.into(), format!("give either `onnx` or `weights` and `architecture`, not both (`{key}` with `onnx`)")));
                }
            }
            if !p.onnx.ends_with(".onnx") {
                e.push(("onnx".into(), format!("`{}`: an ONNX file ends in .onnx", p.onnx)));
            } else {
                e.extend(crate::data::unreadable_input("onnx", &p.onnx));
            }
            if e.is_empty()
                && let Err(m) = onnx_network(p)
            {
                e.push(("onnx".into(), m));
            }
            return e;
        }
        if p.loss.is_some() {
            e.push(("loss".into(), "`loss` goes with `onnx`; the architecture JSON states the loss itself".into()));
        }
        if p.weights.is_empty() {
            e.push(("weights".into(), "the weights file (.safetensors or .npz) is required, or an `onnx` file".into()));
        } else if !(p.weights.ends_with(".safetensors") || p.weights.ends_with(".npz")) {
            e.push(("weights".into(), format!("`{}`: weights end in .safetensors (safetensors.torch.save_file) or .npz", p.weights)));
        } else {
            e.extend(crate::data::unreadable_input("weights", &p.weights));
        }
        if p.architecture.is_empty() {
            e.push(("architecture".into(), "the architecture JSON is required (scripts/export_torch.py writes it)".into()));
        } else {
            e.extend(crate::data::unreadable_input("architecture", &p.architecture));
        }
        if !e.is_empty() {
            return e;
        }
        // Both files are there: every mismatch between them now, before anything runs.
        let arch = read_architecture(&p.architecture).map_err(|m| e.push(("architecture".into(), m))).ok();
        let headers = weight_headers(&p.weights).map_err(|m| e.push(("weights".into(), m))).ok();
        if let (Some((json, arch)), Some(headers)) = (arch, headers) {
            let problems = StateDictLayout::of(&arch, &json).mismatches(&headers);
            e.extend(problems.into_iter().map(|m| ("weights".to_string(), format!("`{}` against `{}`: {m}", p.weights, p.architecture))));
        }
        e
    }
    fn input_files(p: &ImportModelParams) -> Vec<String> {
        [&p.weights, &p.architecture, &p.onnx].into_iter().filter(|f| !f.is_empty()).cloned().collect()
    }
    fn facts(p: &ImportModelParams, _: &InputFacts) -> Facts {
        let arch =
            if p.onnx.is_empty() { read_architecture(&p.architecture).map(|a| a.1) } else { onnx_network(p).map(|(n, ..)| n.arch()) };
        match arch {
            Ok(a) => Facts {
                rows: Some(a.tensors().len() as u64),
                params: Some(a.num_params() as u64),
                units: Some(a.units()),
                ..Facts::default()
            },
            Err(_) => Facts::default(),
        }
    }
    fn run(p: &ImportModelParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let (net, dtypes, mut imported) = if p.onnx.is_empty() {
            let (json, arch) = read_architecture(&p.architecture).map_err(StageError::msg)?;
            let arrays = read_arrays(&p.weights).map_err(StageError::other)?;
            let net = network_from_state_dict(arch, &json, &arrays)
                .map_err(|e| StageError::msg(format!("`{}` against `{}`: {e}", p.weights, p.architecture)))?;
            (net, dtype_counts(arrays.values()), json!({"weights": p.weights, "architecture": p.architecture}))
        } else {
            let (net, dtypes, producer, opset) = onnx_network(p).map_err(StageError::msg)?;
            (net, dtypes, json!({"onnx": p.onnx, "producer": producer, "opset": opset}))
        };
        let source = if p.onnx.is_empty() { &p.weights } else { &p.onnx };
        ctx.progress.line(&format!("imported {} ({} parameters) from {source}", net.describe(), net.num_params()));
        imported["dtypes"] = json!(dtypes);
        imported["widened_to_float64"] = json!(dtypes.keys().any(|d| matches!(*d, "float32" | "float16")));
        let model = Model { net, steps: 0, final_train_loss: f64::NAN, train_state: None, warning: None, imported: Some(imported) };
        ctx.write_shared::<Model>(Model::NAME, model)
    }
}

/// How many tensors of each element type.
fn dtype_counts<'a>(arrays: impl Iterator<Item = &'a NamedArray>) -> BTreeMap<&'static str, usize> {
    let mut dtypes = BTreeMap::new();
    arrays.for_each(|a| *dtypes.entry(a.dtype).or_default() += 1);
    dtypes
}

/// The network of `p.onnx`, the element types of its initializers, the producer and the opset.
fn onnx_network(p: &ImportModelParams) -> Result<(Network, BTreeMap<&'static str, usize>, String, Option<i64>), String> {
    let m = read_onnx(&p.onnx).map_err(|e| e.to_string())?;
    let loss = serde_json::to_value(p.loss.unwrap_or(LossKind::CrossEntropy)).unwrap_or(Value::Null);
    let loss = loss.as_str().unwrap_or("cross_entropy");
    let found = network_of_onnx(&m, loss).map_err(|e| format!("`{}`: {e}", p.onnx))?;
    let arch = NetArch::from_json(&found.architecture)
        .map_err(|e| format!("`{}`: the network it describes is not one hesslab builds: {e}", p.onnx))?;
    let net = network_from_state_dict(arch, &found.architecture, &found.state_dict).map_err(|e| format!("`{}`: {e}", p.onnx))?;
    Ok((net, dtype_counts(m.initializers.values()), m.producer, m.opset))
}
