//! The optimizer state that `model` and `trajectory` carry, so that a continued run
//! (`init_from`) resumes exactly and `spectra_along_training` knows each snapshot's
//! preconditioner. Its layout — which buffers, over which tensors — is metadata; the values are
//! rows (`model`) or one list per snapshot (`trajectory`).
use hesslab_model::optim::{OptimizerConfig, OptimizerState, StateBuffer, TensorRange};
use hesslab_model::{BatchOrder, TrainState};
use serde::{Deserialize, Serialize};

/// One buffer of a state: PyTorch's key and the tensors it covers (`None`: all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BufferLayout {
    key: String,
    tensors: Option<Vec<String>>,
}

/// The layout of `s` on a network with these tensors.
pub(crate) fn layout(s: &OptimizerState, tensors: &[TensorRange]) -> Vec<BufferLayout> {
    s.buffers
        .iter()
        .map(|b| BufferLayout {
            key: b.key.clone(),
            tensors: b.tensors.as_ref().map(|t| t.iter().map(|&i| tensors[i].0.clone()).collect()),
        })
        .collect()
}

/// A zero state of `layout` on these tensors (its sizes say how many values each buffer has).
pub(crate) fn template(layout: &[BufferLayout], tensors: &[TensorRange], steps: u64) -> Result<OptimizerState, String> {
    let num_params = tensors.last().map_or(0, |t| t.2.end);
    let buffers = layout
        .iter()
        .map(|b| {
            let index = match &b.tensors {
                None => None,
                Some(names) => Some(
                    names
                        .iter()
                        .map(|n| {
                            tensors
                                .iter()
                                .position(|t| &t.0 == n)
                                .ok_or_else(|| format!("optimizer state of `{n}`, which the network does not have"))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let len = index.as_ref().map_or(num_params, |ix| ix.iter().map(|&i| tensors[i].2.len()).sum());
            Ok(StateBuffer { key: b.key.clone(), tensors: index, values: vec![0.0; len] })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(OptimizerState { steps, buffers })
}

/// The rows of a state in a `model` file: per buffer, per tensor it covers, the name
/// `optimizer.{tensor}.{key}`, the tensor's index and its values.
pub(crate) fn rows<'a>(s: &'a OptimizerState, tensors: &'a [TensorRange]) -> Vec<(String, usize, &'a [f64])> {
    let mut out = Vec::new();
    for b in &s.buffers {
        let index: Vec<usize> = b.tensors.clone().unwrap_or_else(|| (0..tensors.len()).collect());
        let mut at = 0;
        for i in index {
            let len = tensors[i].2.len();
            out.push((format!("optimizer.{}.{}", tensors[i].0, b.key), i, &b.values[at..at + len]));
            at += len;
        }
    }
    out
}

/// What a `model` file's `optimizer_state` metadata holds (the values are rows).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelStateMeta {
    optimizer: OptimizerConfig,
    steps: u64,
    batches: BatchOrder,
    buffers: Vec<BufferLayout>,
}

impl ModelStateMeta {
    pub(crate) fn of(t: &TrainState, tensors: &[TensorRange]) -> Self {
        ModelStateMeta { optimizer: t.optimizer.clone(), steps: t.state.steps, batches: t.batches, buffers: layout(&t.state, tensors) }
    }
    /// The state these rows (name, values) fill in; the rows must be exactly the layout's.
    pub(crate) fn read(self, tensors: &[TensorRange], rows: &[(String, Vec<f64>)]) -> Result<TrainState, String> {
        let mut state = template(&self.buffers, tensors, self.steps)?;
        let expect = rows_layout(&state, tensors);
        if expect.len() != rows.len() {
            return Err(format!("{} optimizer rows, its metadata describes {}", rows.len(), expect.len()));
        }
        let mut flat = Vec::with_capacity(state.buffers.iter().map(|b| b.values.len()).sum());
        for ((name, values), (ename, len)) in rows.iter().zip(&expect) {
            if name != ename || values.len() != *len {
                return Err(format!("optimizer row `{name}` ({} values) where `{ename}` ({len} values) was expected", values.len()));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(format!("optimizer row `{name}` holds {v}: optimizer state is finite"));
            }
            flat.extend_from_slice(values);
        }
        state = state.with_flat(self.steps, &flat)?;
        Ok(TrainState { optimizer: self.optimizer, state, batches: self.batches })
    }
}

/// (row name, value count) of each row a state of this layout writes.
fn rows_layout(s: &OptimizerState, tensors: &[TensorRange]) -> Vec<(String, usize)> {
    rows(s, tensors).into_iter().map(|(n, _, v)| (n, v.len())).collect()
}

/// What a `trajectory` file's `optimizer_state` metadata holds (the values are one list per
/// snapshot, the buffers end to end).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrajectoryStateMeta {
    pub(crate) optimizer: OptimizerConfig,
    pub(crate) buffers: Vec<BufferLayout>,
}
