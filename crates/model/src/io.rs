//! The `model` artifact: one row per tensor in PyTorch `parameters()` order.
use crate::{Architecture, Mlp};
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, PortSpec, StageContext, StageError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn model_port() -> PortSpec {
    PortSpec::new(
        "model",
        "network parameters: tensor Utf8 (\"layers.0.weight\"), shape List<UInt64>, values List<Float64> (row-major); metadata `architecture` JSON",
        vec![utf8_field("tensor"), list_u64_field("shape"), list_f64_field("values")],
    )
}

impl Mlp {
    pub fn to_batch(&self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let t = self.arch.tensors();
        let shapes: Vec<Vec<u64>> = t.iter().map(|(_, s, _)| s.iter().map(|&x| x as u64).collect()).collect();
        let schema = Arc::new(Schema::new(vec![utf8_field("tensor"), list_u64_field("shape"), list_f64_field("values")]));
        RecordBatch::try_new(
            schema,
            vec![
                utf8_array(t.iter().map(|(n, _, _)| n.as_str())),
                list_u64_array(shapes.iter().map(|s| s.as_slice())),
                list_f64_array(t.iter().map(|(_, _, r)| &self.params[r.clone()])),
            ],
        )
    }

    pub fn metadata(&self, extra: &[(&str, String)]) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("architecture".into(), serde_json::to_string(&self.arch).unwrap_or_default());
        m.insert("num_params".into(), self.num_params().to_string());
        for (k, v) in extra {
            m.insert(k.to_string(), v.clone());
        }
        m
    }

    pub fn from_artifact(a: &Artifact) -> Result<Mlp, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let arch: Architecture = serde_json::from_value(a.meta_json("architecture")?)
            .map_err(|e| err(format!("metadata `architecture` does not describe a network: {e}")))?;
        arch.check().map_err(|m| err(format!("metadata `architecture`: {m}")))?;
        let names = utf8_values(&a.batch, "tensor").map_err(err)?;
        let values = list_f64_values(&a.batch, "values").map_err(err)?;
        let expect = arch.tensors();
        if names.len() != expect.len() {
            return Err(err(format!("{} tensors, the architecture has {}", names.len(), expect.len())));
        }
        let mut params = vec![0.0; arch.num_params()];
        for ((name, vals), (ename, _, range)) in names.iter().zip(&values).zip(&expect) {
            if name != ename || vals.len() != range.len() {
                return Err(err(format!("tensor `{name}` ({} values) where `{ename}` ({} values) was expected", vals.len(), range.len())));
            }
            params[range.clone()].copy_from_slice(vals);
        }
        if params.iter().any(|v| !v.is_finite()) {
            return Err(err("column `values` holds NaN or infinite parameters".into()));
        }
        Ok(Mlp::new(arch, params))
    }

    /// Read a model input, preferring the copy the producer kept in memory.
    pub fn read(ctx: &StageContext, port: &str) -> Result<Mlp, StageError> {
        let input = ctx.input(port)?;
        if let Some(m) = input.shared::<Mlp>() {
            return Ok((*m).clone());
        }
        Mlp::from_artifact(&input.read()?)
    }
}
