//! `model`, `log` and `trajectory`: what training writes.
use crate::optimizer_state::{ModelStateMeta, TrajectoryStateMeta, layout, template};
use crate::{Meta, TRAINING_WARNING, parsed};
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use hesslab_model::optim::{OptimizerConfig, OptimizerState};
use hesslab_model::{NetArch, Network, TrainLog, TrainState};
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, Encoded, Facts, MetaKey, Port, StageError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) const ARCHITECTURE: MetaKey = MetaKey {
    key: "architecture",
    doc: "JSON {modules, input_shape, loss}: the torch.nn.Sequential modules in order with their constructor arguments; residual blocks and graphs as Residual {body, shortcut} and Graph {nodes} containers (see docs/guide.md, \"Model architecture\")",
};
const NUM_PARAMS: MetaKey = MetaKey { key: "num_params", doc: "number of parameters P" };
const STEPS: MetaKey = MetaKey { key: "steps", doc: "parameter updates behind this model (continued runs count on)" };
const FINAL_TRAIN_LOSS: MetaKey = MetaKey { key: "final_train_loss", doc: "training loss at the last logged step" };

fn put_network(m: &mut Meta, arch: &NetArch) {
    m.put(ARCHITECTURE, arch.to_json().to_string());
    m.put(NUM_PARAMS, arch.num_params());
}

/// Parameters and units (widths added up) of the network in `architecture` metadata.
pub(crate) fn network_facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
    let arch = meta.get(ARCHITECTURE.key).and_then(|a| serde_json::from_str(a).ok()).and_then(|v| NetArch::from_json(&v).ok());
    // P comes from the architecture, which decoding allocates and checks the rows against,
    // not from the `num_params` entry, which a planted file could set to anything.
    Facts { rows: Some(rows), params: arch.as_ref().map(|a| a.num_params() as u64), units: arch.map(|a| a.units()), ..Facts::default() }
}

/// `schema` without the optional columns `names` (a file that has nothing for them leaves them
/// out, and reads exactly as one written before they existed).
fn without(schema: &Schema, names: &[&str]) -> Schema {
    Schema::new(schema.fields().iter().filter(|f| !names.contains(&f.name().as_str())).cloned().collect::<Vec<_>>())
}

pub(crate) fn read_architecture(a: &Artifact) -> Result<NetArch, StageError> {
    let v = a.meta_json(ARCHITECTURE.key)?;
    Ok(NetArch::from_json(&v).map_err(|e| a.column_error(format!("metadata `{}` does not describe a network: {e}", ARCHITECTURE.key)))?)
}

/// A trained network: the `model` port.
#[derive(Debug, Clone)]
pub struct Model {
    /// The network and its parameters.
    pub net: Network,
    /// Parameter updates behind it (0 for a fresh initialization or an import).
    pub steps: u64,
    /// Training loss at the last logged step (NaN when unknown).
    pub final_train_loss: f64,
    /// The optimizer state and batch order at the end of the run that trained it (`None` for
    /// an initialization or an import), what `init_from` continues from.
    pub train_state: Option<TrainState>,
    /// Why the network looks untrained, when `train` said so.
    pub warning: Option<String>,
    /// Where `import_model` read the network from (files, the element types it widened).
    pub imported: Option<serde_json::Value>,
}

const IMPORTED: MetaKey = MetaKey {
    key: "imported",
    doc: "written by `import_model`: JSON {weights, architecture | onnx, producer, opset, dtypes, widened_to_float64}: the files the network was read from (an ONNX file's producer and operator set), how many tensors each element type had there (float32 and float16 values were widened to float64, exactly) and whether any were",
};

const TENSOR: &str = "tensor";
const SHAPE: &str = "shape";
const VALUES: &str = "values";
const BUFFER: &str = "buffer";
const OPTIMIZER: &str = "optimizer";
const MODEL_OPTIMIZER_STATE: MetaKey = MetaKey {
    key: "optimizer_state",
    doc: "written by `train`: JSON {optimizer, steps, batches {seed, samples, batch_size, shuffles, cursor}, buffers [{key, tensors}]}, the optimizer (PyTorch's arguments), its update count, where the mini-batch order stands and which state buffers (PyTorch's keys: exp_avg, exp_avg_sq, max_exp_avg_sq, momentum_buffer, square_avg, grad_avg) the `optimizer` rows hold, over which tensors (null: all); `init_from` continues from it",
};

impl Port for Model {
    type Value = Self;
    const NAME: &'static str = "model";
    const DOC: &'static str = "network parameters, one row per tensor in PyTorch `parameters()` order: tensor Utf8 (\"layers.0.weight\"), shape List<UInt64>, values List<Float64> (row-major); a network with buffers (BatchNorm running statistics) has rows in `state_dict()` order and a column buffer Boolean (true for running_mean, running_var, num_batches_tracked: not parameters of the Hessian); a trained model whose optimizer keeps state (moments, momentum) has, after those, rows `optimizer.{tensor}.{key}` (\"optimizer.layers.0.weight.exp_avg\", the tensor's shape) and a column optimizer Boolean true on them (select `NOT coalesce(buffer, false) AND NOT coalesce(optimizer, false)` for the parameters)";
    const METADATA: &'static [MetaKey] =
        &[ARCHITECTURE, NUM_PARAMS, STEPS, FINAL_TRAIN_LOSS, MODEL_OPTIMIZER_STATE, TRAINING_WARNING, IMPORTED];
    fn schema() -> Schema {
        Schema::new(vec![
            utf8_field(TENSOR),
            list_u64_field(SHAPE),
            list_f64_field(VALUES),
            bool_optional_field(BUFFER),
            bool_optional_field(OPTIMIZER),
        ])
    }
    fn encode(m: &Self) -> Result<Encoded<'_>, StageError> {
        let t = m.net.state_dict();
        let tensors = m.net.tensors();
        let empty = OptimizerState::default();
        let state_rows = crate::optimizer_state::rows(m.train_state.as_ref().map_or(&empty, |s| &s.state), &tensors);
        let mut names: Vec<&str> = t.iter().map(|(n, _, _, _)| n.as_str()).collect();
        let mut shapes: Vec<Vec<u64>> = t.iter().map(|(_, s, _, _)| s.iter().map(|&x| x as u64).collect()).collect();
        let (params, buffers) = (m.net.params(), m.net.buffers());
        let mut values: Vec<&[f64]> = t.iter().map(|(_, _, r, b)| if *b { &buffers[r.clone()] } else { &params[r.clone()] }).collect();
        let mut kind: Vec<(bool, bool)> = t.iter().map(|(_, _, _, b)| (*b, false)).collect();
        for (name, i, v) in &state_rows {
            names.push(name);
            shapes.push(tensors[*i].1.iter().map(|&x| x as u64).collect());
            values.push(v);
            kind.push((false, true));
        }
        let mut columns =
            vec![utf8_array(names), list_u64_array(shapes.iter().map(|s| s.as_slice())), list_f64_array(values.iter().copied())];
        // Without buffers or optimizer state the file is exactly what it was before the column.
        let mut absent = Vec::new();
        if buffers.is_empty() {
            absent.push(BUFFER);
        } else {
            columns.push(bool_array(kind.iter().map(|k| k.0)));
        }
        if state_rows.is_empty() {
            absent.push(OPTIMIZER);
        } else {
            columns.push(bool_array(kind.iter().map(|k| k.1)));
        }
        let batch = RecordBatch::try_new(Arc::new(without(&Self::schema(), &absent)), columns).map_err(StageError::other)?;
        let mut meta = Meta::new();
        put_network(&mut meta, &m.net.arch());
        meta.put(STEPS, m.steps);
        meta.put_f64(FINAL_TRAIN_LOSS, m.final_train_loss);
        meta.put_opt(TRAINING_WARNING, m.warning.as_ref());
        meta.put_opt(IMPORTED, m.imported.as_ref());
        if let Some(s) = &m.train_state {
            meta.put(MODEL_OPTIMIZER_STATE, serde_json::to_string(&ModelStateMeta::of(s, &tensors)).map_err(StageError::other)?);
        }
        Ok(Encoded::one(batch, meta.0))
    }
    fn facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
        network_facts(rows, meta)
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let arch = read_architecture(a)?;
        let all_names = utf8_values(&a.batch, TENSOR).map_err(err)?;
        let all_values = list_f64_values(&a.batch, VALUES).map_err(err)?;
        let flags = |c: &str| -> Result<Vec<bool>, StageError> {
            if a.batch.column_by_name(c).is_some() { bool_values(&a.batch, c).map_err(err) } else { Ok(vec![false; all_names.len()]) }
        };
        let (is_buffer, is_state) = (flags(BUFFER)?, flags(OPTIMIZER)?);
        let (mut names, mut values, mut buffer_rows, mut state_rows) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (((n, v), b), o) in all_names.into_iter().zip(all_values).zip(is_buffer).zip(is_state) {
            match (b, o) {
                (true, true) => return Err(err(format!("row `{n}` is marked both `{BUFFER}` and `{OPTIMIZER}`"))),
                (true, false) => buffer_rows.push((n, v)),
                (false, true) => state_rows.push((n, v)),
                (false, false) => {
                    names.push(n);
                    values.push(v)
                }
            }
        }
        let expect = arch.tensors();
        if names.len() != expect.len() {
            return Err(err(format!("{} tensors, the architecture has {}", names.len(), expect.len())));
        }
        let total: usize = values.iter().map(Vec::len).sum();
        if total != arch.num_params() {
            return Err(err(format!("{total} parameter values, the architecture has {}", arch.num_params())));
        }
        if let Some(claimed) = a.meta(NUM_PARAMS.key).and_then(|v| v.parse::<usize>().ok())
            && claimed != total
        {
            return Err(err(format!("metadata `{}` says {claimed} parameters, the file holds {total}", NUM_PARAMS.key)));
        }
        let mut params = vec![0.0; arch.num_params()];
        for ((name, vals), (ename, _, range)) in names.iter().zip(&values).zip(&expect) {
            if name != ename || vals.len() != range.len() {
                return Err(err(format!("tensor `{name}` ({} values) where `{ename}` ({} values) was expected", vals.len(), range.len())));
            }
            params[range.clone()].copy_from_slice(vals);
        }
        if params.iter().any(|v| !v.is_finite()) {
            return Err(err(format!("column `{VALUES}` holds NaN or infinite parameters")));
        }
        let mut net = Network::new(arch, params);
        let expect_buffers = net.buffer_tensors();
        if buffer_rows.len() != expect_buffers.len() {
            return Err(err(format!("{} buffer rows, the architecture has {} buffers", buffer_rows.len(), expect_buffers.len())));
        }
        for ((name, vals), (ename, _, range)) in buffer_rows.iter().zip(&expect_buffers) {
            if name != ename || vals.len() != range.len() || vals.iter().any(|v| !v.is_finite()) {
                return Err(err(format!(
                    "buffer `{name}` ({} values) where `{ename}` ({} finite values) was expected",
                    vals.len(),
                    range.len()
                )));
            }
            net.buffers_mut()[range.clone()].copy_from_slice(vals);
        }
        let train_state = match a.meta(MODEL_OPTIMIZER_STATE.key) {
            None if state_rows.is_empty() => None,
            None => return Err(err(format!("{} `{OPTIMIZER}` rows without metadata `{}`", state_rows.len(), MODEL_OPTIMIZER_STATE.key))),
            Some(text) => {
                let m: ModelStateMeta = serde_json::from_str(text)
                    .map_err(|e| err(format!("metadata `{}` is not an optimizer state: {e}", MODEL_OPTIMIZER_STATE.key)))?;
                Some(m.read(&net.tensors(), &state_rows).map_err(err)?)
            }
        };
        Ok(Model {
            net,
            steps: parsed(a, STEPS).unwrap_or(0),
            final_train_loss: parsed(a, FINAL_TRAIN_LOSS).unwrap_or(f64::NAN),
            train_state,
            warning: a.meta(TRAINING_WARNING.key).map(str::to_string),
            imported: a.meta(IMPORTED.key).and_then(|v| serde_json::from_str(v).ok()),
        })
    }
}

/// Training metrics: the `log` port.
#[derive(Debug, Clone)]
pub struct Log {
    /// The metrics (its `snapshots` are not part of this artifact: see [`Trajectory`]).
    pub metrics: TrainLog,
    /// The trained network's architecture.
    pub architecture: Option<NetArch>,
    /// The learning rate (recorded with sharpness, for the 2/η line).
    pub lr: Option<f64>,
    /// With `init_from`: what the run continued besides the weights ("weights", "optimizer",
    /// "exact").
    pub continued: Option<String>,
    /// Why the trained network looks untrained (chance-level accuracy, a loss that did not
    /// fall), when it does.
    pub warning: Option<String>,
}

const STEP: &str = "step";
const EPOCH: &str = "epoch";
const TRAIN_LOSS: &str = "train_loss";
const TRAIN_ACCURACY: &str = "train_accuracy";
const TEST_LOSS: &str = "test_loss";
const TEST_ACCURACY: &str = "test_accuracy";
const GRAD_NORM: &str = "grad_norm";
const SHARPNESS: &str = "sharpness";
const SHARPNESS_RESIDUAL: &str = "sharpness_residual";
const LR: MetaKey = MetaKey { key: "lr", doc: "the learning rate (written with `sharpness`, for the 2/η line)" };
const OPTIMIZER_GROUPS: MetaKey = MetaKey {
    key: "optimizer_groups",
    doc: "with optimizer = \"muon\": JSON {\"muon\": [tensors], \"adamw\": [tensors]}, which tensors each half updated",
};
const PRE_SHARPNESS: &str = "preconditioned_sharpness";
const PRE_SHARPNESS_RESIDUAL: &str = "preconditioned_sharpness_residual";
const PRE_THRESHOLD: MetaKey = MetaKey {
    key: "preconditioned_threshold",
    doc: "with `preconditioned_sharpness`: its stability threshold at the base lr η, (2 + 2β₁)/((1 − β₁)η) for Adam (38/η at β₁ = 0.9), 2/η for RMSprop",
};
const CONTINUED: MetaKey = MetaKey {
    key: "continued",
    doc: "with `init_from`: what the run continued besides the weights, \"weights\" (a fresh optimizer), \"optimizer\" (the saved optimizer state) or \"exact\" (also the saved batch order and seed)",
};
const SHARPNESS_PRODUCTS: MetaKey =
    MetaKey { key: "sharpness_products", doc: "Hessian-vector products the sharpness tracking used (with `sharpness`)" };

impl Port for Log {
    type Value = Self;
    const NAME: &'static str = "log";
    const DOC: &'static str = "metrics: step, epoch, train_loss, train_accuracy, test_loss, test_accuracy, grad_norm; with `sharpness_every` also sharpness (largest-magnitude Hessian eigenvalue by tracked power iteration) and sharpness_residual (‖Hv − λv‖/|λ|), and for Adam-family optimizers and RMSprop preconditioned_sharpness (top eigenvalue of P^{-1/2} H P^{-1/2}, P the optimizer's preconditioner) with its residual, null on rows without a measurement; files without them are still read";
    const METADATA: &'static [MetaKey] =
        &[ARCHITECTURE, NUM_PARAMS, LR, SHARPNESS_PRODUCTS, OPTIMIZER_GROUPS, PRE_THRESHOLD, CONTINUED, TRAINING_WARNING];
    fn schema() -> Schema {
        Schema::new(vec![
            u64_field(STEP),
            f64_field(EPOCH),
            f64_field(TRAIN_LOSS),
            f64_field(TRAIN_ACCURACY),
            f64_field(TEST_LOSS),
            f64_field(TEST_ACCURACY),
            f64_field(GRAD_NORM),
            f64_optional_field(SHARPNESS),
            f64_optional_field(SHARPNESS_RESIDUAL),
            f64_optional_field(PRE_SHARPNESS),
            f64_optional_field(PRE_SHARPNESS_RESIDUAL),
        ])
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let l = &v.metrics;
        let mut columns = vec![
            u64_array(l.step.iter().copied()),
            f64_array(l.epoch.iter().copied()),
            f64_array(l.train_loss.iter().copied()),
            f64_array(l.train_acc.iter().copied()),
            f64_array(l.test_loss.iter().copied()),
            f64_array(l.test_acc.iter().copied()),
            f64_array(l.grad_norm.iter().copied()),
        ];
        let mut schema = Self::schema();
        let mut meta = Meta::new();
        if l.sharpness.is_empty() {
            // Without tracking the file is exactly what it was before the optional columns.
            schema = without(&schema, &[SHARPNESS, SHARPNESS_RESIDUAL]);
        } else {
            let at = |step: u64| l.sharpness.iter().find(|s| s.0 == step);
            columns.push(f64_opt_array(l.step.iter().map(|s| at(*s).map(|x| x.1))));
            columns.push(f64_opt_array(l.step.iter().map(|s| at(*s).map(|x| x.2))));
            meta.put(SHARPNESS_PRODUCTS, l.sharpness_products);
            if let Some(lr) = v.lr {
                meta.put_f64(LR, lr);
            }
        }
        if l.preconditioned_sharpness.is_empty() {
            schema = without(&schema, &[PRE_SHARPNESS, PRE_SHARPNESS_RESIDUAL]);
        } else {
            let at = |step: u64| l.preconditioned_sharpness.iter().find(|s| s.0 == step);
            columns.push(f64_opt_array(l.step.iter().map(|s| at(*s).map(|x| x.1))));
            columns.push(f64_opt_array(l.step.iter().map(|s| at(*s).map(|x| x.2))));
            if let Some(t) = l.preconditioned_threshold {
                meta.put_f64(PRE_THRESHOLD, t);
            }
        }
        let batch = RecordBatch::try_new(Arc::new(schema), columns).map_err(StageError::other)?;
        if let Some(arch) = &v.architecture {
            put_network(&mut meta, arch);
        }
        if let Some(g) = &l.optimizer_groups {
            meta.put(OPTIMIZER_GROUPS, g.to_string());
        }
        meta.put_opt(CONTINUED, v.continued.as_ref());
        meta.put_opt(TRAINING_WARNING, v.warning.as_ref());
        Ok(Encoded::one(batch, meta.0))
    }
    fn facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
        network_facts(rows, meta)
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let f = |c: &str| f64_values(&a.batch, c).map_err(err);
        let metrics = TrainLog {
            step: u64_values(&a.batch, STEP).map_err(err)?,
            epoch: f(EPOCH)?,
            train_loss: f(TRAIN_LOSS)?,
            train_acc: f(TRAIN_ACCURACY)?,
            test_loss: f(TEST_LOSS)?,
            test_acc: f(TEST_ACCURACY)?,
            grad_norm: f(GRAD_NORM)?,
            snapshots: Vec::new(),
            snapshot_states: Vec::new(),
            final_state: None,
            sharpness: Vec::new(),
            sharpness_products: a.meta(SHARPNESS_PRODUCTS.key).and_then(|v| v.parse().ok()).unwrap_or(0),
            optimizer_groups: a.meta(OPTIMIZER_GROUPS.key).and_then(|v| serde_json::from_str(v).ok()),
            preconditioned_sharpness: Vec::new(),
            preconditioned_threshold: a.meta(PRE_THRESHOLD.key).and_then(|v| v.parse().ok()),
        };
        let mut metrics = metrics;
        if a.batch.schema().field_with_name(SHARPNESS).is_ok() {
            let (l, r) = (f64_opt_values(&a.batch, SHARPNESS).map_err(err)?, f64_opt_values(&a.batch, SHARPNESS_RESIDUAL).map_err(err)?);
            metrics.sharpness = (0..l.len()).filter_map(|i| Some((metrics.step[i], l[i]?, r[i].unwrap_or(f64::NAN)))).collect();
        }
        if a.batch.schema().field_with_name(PRE_SHARPNESS).is_ok() {
            let (l, r) =
                (f64_opt_values(&a.batch, PRE_SHARPNESS).map_err(err)?, f64_opt_values(&a.batch, PRE_SHARPNESS_RESIDUAL).map_err(err)?);
            metrics.preconditioned_sharpness =
                (0..l.len()).filter_map(|i| Some((metrics.step[i], l[i]?, r[i].unwrap_or(f64::NAN)))).collect();
        }
        let lr = a.meta(LR.key).and_then(|v| v.parse().ok());
        Ok(Log {
            metrics,
            architecture: read_architecture(a).ok(),
            lr,
            continued: a.meta(CONTINUED.key).map(str::to_string),
            warning: a.meta(TRAINING_WARNING.key).map(str::to_string),
        })
    }
}

/// Parameter snapshots along training: the `trajectory` port.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// (step, flat parameters in PyTorch order).
    pub snapshots: Vec<(u64, Vec<f64>)>,
    /// The network's architecture.
    pub architecture: Option<NetArch>,
    /// The optimizer and its state at each snapshot, when it keeps state (moments, momentum):
    /// what the preconditioner of each snapshot is computed from.
    pub optimizer: Option<(OptimizerConfig, Vec<OptimizerState>)>,
}

const OPTIMIZER_STEPS: &str = "optimizer_steps";
const OPTIMIZER_STATE_VALUES: &str = "optimizer_state";
const TRAJECTORY_OPTIMIZER_STATE: MetaKey = MetaKey {
    key: "optimizer_state",
    doc: "with the `optimizer_state` column: JSON {optimizer, buffers [{key, tensors}]}, the optimizer (PyTorch's arguments) and which state buffers (PyTorch's keys) the column holds end to end, over which tensors (null: all)",
};

impl Port for Trajectory {
    type Value = Self;
    const NAME: &'static str = "trajectory";
    const DOC: &'static str = "parameter snapshots: step UInt64, values List<Float64> (flat, PyTorch order); when the optimizer keeps state (Adam's moments, momentum) also optimizer_steps UInt64 (its update count) and optimizer_state List<Float64> (its buffers end to end, layout in metadata `optimizer_state`)";
    const METADATA: &'static [MetaKey] = &[ARCHITECTURE, NUM_PARAMS, TRAJECTORY_OPTIMIZER_STATE];
    fn schema() -> Schema {
        Schema::new(vec![
            u64_field(STEP),
            list_f64_field(VALUES),
            optional(u64_field(OPTIMIZER_STEPS)),
            optional(list_f64_field(OPTIMIZER_STATE_VALUES)),
        ])
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let mut columns = vec![u64_array(v.snapshots.iter().map(|s| s.0)), list_f64_array(v.snapshots.iter().map(|s| s.1.as_slice()))];
        let mut meta = Meta::new();
        // The layout of the last state: SGD's momentum buffer, say, exists only after the first
        // update (a state without buffers is written as zeros, which loads as the same).
        let stateful = v.optimizer.as_ref().filter(|(_, s)| s.last().is_some_and(|s| !s.buffers.is_empty()));
        let schema = match (stateful, &v.architecture) {
            (Some((config, states)), Some(arch)) => {
                if states.len() != v.snapshots.len() {
                    return Err(StageError::msg(format!("{} optimizer states for {} snapshots", states.len(), v.snapshots.len())));
                }
                let last = states.last().expect("not empty");
                let width = last.flat().len();
                let flat: Vec<Vec<f64>> = states.iter().map(|s| if s.buffers.is_empty() { vec![0.0; width] } else { s.flat() }).collect();
                if let Some(f) = flat.iter().find(|f| f.len() != width) {
                    return Err(StageError::msg(format!("optimizer states of {} and {width} values in one trajectory", f.len())));
                }
                columns.push(u64_array(states.iter().map(|s| s.steps)));
                columns.push(list_f64_array(flat.iter().map(Vec::as_slice)));
                let layout = TrajectoryStateMeta { optimizer: config.clone(), buffers: layout(last, &arch.tensors()) };
                meta.put(TRAJECTORY_OPTIMIZER_STATE, serde_json::to_string(&layout).map_err(StageError::other)?);
                Self::schema()
            }
            // Without optimizer state the file is exactly what it was before the columns.
            _ => without(&Self::schema(), &[OPTIMIZER_STEPS, OPTIMIZER_STATE_VALUES]),
        };
        let batch = RecordBatch::try_new(Arc::new(schema), columns).map_err(StageError::other)?;
        if let Some(arch) = &v.architecture {
            put_network(&mut meta, arch);
        }
        Ok(Encoded::one(batch, meta.0))
    }
    fn facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
        Facts { snapshots: Some(rows), ..network_facts(rows, meta) }
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let steps = u64_values(&a.batch, STEP).map_err(err)?;
        let values = list_f64_values(&a.batch, VALUES).map_err(err)?;
        for (step, v) in steps.iter().zip(&values) {
            if let Some((i, x)) = first_non_finite(v) {
                return Err(err(format!("the snapshot of step {step} holds {x} at parameter {i}: snapshots are finite")));
            }
        }
        let architecture = read_architecture(a).ok();
        let optimizer = match (a.meta(TRAJECTORY_OPTIMIZER_STATE.key), &architecture) {
            (Some(text), Some(arch)) if a.batch.column_by_name(OPTIMIZER_STATE_VALUES).is_some() => {
                let m: TrajectoryStateMeta = serde_json::from_str(text)
                    .map_err(|e| err(format!("metadata `{}` is not an optimizer-state layout: {e}", TRAJECTORY_OPTIMIZER_STATE.key)))?;
                let (counts, flat) =
                    (u64_values(&a.batch, OPTIMIZER_STEPS).map_err(err)?, list_f64_values(&a.batch, OPTIMIZER_STATE_VALUES).map_err(err)?);
                let zero = template(&m.buffers, &arch.tensors(), 0).map_err(err)?;
                let mut states = Vec::with_capacity(flat.len());
                for ((step, n), f) in steps.iter().zip(counts).zip(&flat) {
                    if let Some((i, x)) = first_non_finite(f) {
                        return Err(err(format!("the optimizer state of step {step} holds {x} at {i}: optimizer state is finite")));
                    }
                    states.push(zero.with_flat(n, f).map_err(|e| err(format!("the optimizer state of step {step}: {e}")))?);
                }
                Some((m.optimizer, states))
            }
            _ => None,
        };
        Ok(Trajectory { snapshots: steps.into_iter().zip(values).collect(), architecture, optimizer })
    }
}
