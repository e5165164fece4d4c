//! `dataset`: one row per example.
use crate::Meta;
use crate::batched::{Batched, decode_whole, read_in_batches, rows_per_batch};
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use hesslab_data::{MAX_CLASSES, TEST, TRAIN};
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, ArtifactReader, Encoded, Facts, MetaKey, Port, StageError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `dataset` port; its value is a [`hesslab_data::Dataset`].
pub enum Dataset {}

const X: &str = "x";
const Y: &str = "y";
const SPLIT: &str = "split";

const NUM_CLASSES: MetaKey = MetaKey { key: "num_classes", doc: "number of classes (every label is below it)" };
const DIM: MetaKey = MetaKey { key: "dim", doc: "features per example" };
const SHAPE: MetaKey = MetaKey {
    key: "shape",
    doc: "JSON [C, H, W] for images (x holds each example in C, H, W row-major order, PyTorch's NCHW), [T, d] for sequences (T positions of d features, row-major), [d] otherwise (token datasets: [T] ids)",
};
const FEATURE_NAMES: MetaKey = MetaKey { key: "feature_names", doc: "JSON list of feature names" };
const GENERATOR: MetaKey = MetaKey { key: "generator", doc: "JSON: the generator or loader, its parameters, seed and source" };

impl Port for Dataset {
    type Value = hesslab_data::Dataset;
    const NAME: &'static str = "dataset";
    const DOC: &'static str = "examples: x FixedSizeList<Float64>(d), y UInt32 class label, split \"train\"/\"test\"";
    const METADATA: &'static [MetaKey] = &[NUM_CLASSES, DIM, SHAPE, FEATURE_NAMES, GENERATOR];
    fn schema() -> Schema {
        Schema::new(vec![fixed_f64_field(X, 0), u32_field(Y), utf8_field(SPLIT)])
    }
    fn encode(ds: &Self::Value) -> Result<Encoded<'_>, StageError> {
        ds.check().map_err(StageError::other)?;
        let schema = Arc::new(Schema::new(vec![fixed_f64_field(X, ds.dim as i32), u32_field(Y), utf8_field(SPLIT)]));
        let mut m = Meta::new();
        m.put(NUM_CLASSES, ds.num_classes);
        m.put(DIM, ds.dim);
        m.put(SHAPE, serde_json::to_string(&ds.shape).unwrap_or_default());
        m.put(FEATURE_NAMES, serde_json::to_string(&ds.feature_names).unwrap_or_default());
        m.put(GENERATOR, &ds.info);
        let (n, dim, rows) = (ds.y.len(), ds.dim, rows_per_batch(ds.dim));
        let batch_schema = schema.clone();
        let batches = (0..n).step_by(rows).map(move |r0| {
            let r1 = (r0 + rows).min(n);
            RecordBatch::try_new(
                batch_schema.clone(),
                vec![
                    fixed_f64_array(&ds.x[r0 * dim..r1 * dim], dim),
                    u32_array(ds.y[r0..r1].iter().copied()),
                    utf8_array(ds.split[r0..r1].iter().map(|&t| if t { TRAIN } else { TEST })),
                ],
            )
            .map_err(StageError::other)
        });
        Ok(Encoded { schema, metadata: m.0, batches: Box::new(batches) })
    }
    fn facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
        let num = |k: MetaKey| meta.get(k.key).and_then(|v| v.parse().ok());
        let shape = meta.get(SHAPE.key).and_then(|s| serde_json::from_str::<Vec<u64>>(s).ok()).and_then(|s| <[u64; 3]>::try_from(s).ok());
        Facts { rows: Some(rows), dim: num(DIM), classes: num(NUM_CLASSES), shape, ..Facts::default() }
    }
    /// Checks labels against `num_classes` and that every feature is finite.
    fn decode(a: &Artifact) -> Result<Self::Value, StageError> {
        decode_whole::<Examples>(a)
    }
    /// As [`Dataset::decode`], ~8 MB of examples at a time (a 60 000 × 784 dataset, 376 MB,
    /// read whole peaked near 2 GB in every stage that read it).
    fn read(reader: ArtifactReader) -> Result<Self::Value, StageError> {
        read_in_batches::<Examples>(reader)
    }
}

/// The examples read so far.
struct Examples {
    dim: usize,
    x: Vec<f64>,
    y: Vec<u32>,
    split: Vec<bool>,
}

impl Batched for Examples {
    const LIST_COLUMN: &'static str = X;
    type Value = hesslab_data::Dataset;

    /// Reserves the features of `rows` examples up front (one allocation; a footer claiming
    /// more than memory holds is an error, not an abort).
    fn new(dim: usize, rows: u64) -> Result<Self, String> {
        let mut x = Vec::new();
        let values = usize::try_from(rows).ok().and_then(|r| r.checked_mul(dim));
        values
            .and_then(|v| x.try_reserve_exact(v).ok())
            .ok_or_else(|| format!("{rows} examples of {dim} features do not fit in memory"))?;
        Ok(Examples { dim, x, y: Vec::new(), split: Vec::new() })
    }

    fn add(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let (x, dim) = fixed_f64_slice(batch, X)?;
        if dim != self.dim {
            return Err(format!("column `{X}` holds {dim} features where the schema says {}", self.dim));
        }
        let first = self.y.len();
        if let Some((i, v)) = first_non_finite(x) {
            return Err(format!("column `{X}` row {} holds {v}: examples are finite", first + i / dim.max(1)));
        }
        for (i, s) in utf8_values(batch, SPLIT)?.iter().enumerate() {
            match s.as_str() {
                TRAIN => self.split.push(true),
                TEST => self.split.push(false),
                other => {
                    return Err(format!("column `{SPLIT}` row {}: `{other}` is neither \"{TRAIN}\" nor \"{TEST}\"", first + i));
                }
            }
        }
        self.y.extend(u32_values(batch, Y)?);
        self.x.extend_from_slice(x);
        Ok(())
    }

    fn finish(self, a: &Artifact) -> Result<hesslab_data::Dataset, String> {
        let Examples { dim, x, y, split } = self;
        let max_label = y.iter().copied().max().map(|m| m as usize + 1).unwrap_or(0);
        let num_classes = match a.meta(NUM_CLASSES.key) {
            Some(s) => s.parse::<usize>().map_err(|_| format!("metadata `{}` = `{s}` is not an integer", NUM_CLASSES.key))?,
            None => max_label,
        };
        if num_classes > MAX_CLASSES {
            return Err(format!("metadata `{}` = {num_classes}; at most {MAX_CLASSES} classes are supported", NUM_CLASSES.key));
        }
        if let Some(i) = y.iter().position(|&l| l as usize >= num_classes) {
            return Err(format!("column `{Y}` row {i}: label {} ≥ num_classes {num_classes}", y[i]));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(format!("column `{X}` holds NaN or infinite values"));
        }
        let feature_names = a.meta(FEATURE_NAMES.key).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        let info = a.meta(GENERATOR.key).and_then(|s| serde_json::from_str(s).ok()).unwrap_or(serde_json::Value::Null);
        // Files written before the `shape` key hold flat examples.
        let shape: Vec<usize> = match a.meta(SHAPE.key) {
            Some(s) => serde_json::from_str(s).map_err(|e| format!("metadata `{}` = `{s}` is not a list of sizes: {e}", SHAPE.key))?,
            None => vec![dim],
        };
        if shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) != Some(dim) || !(shape.len() == 1 || shape.len() == 3) {
            return Err(format!("metadata `{}` = {shape:?} does not describe {dim} features as [d] or [C, H, W]", SHAPE.key));
        }
        Ok(hesslab_data::Dataset { dim, shape, num_classes, x, y, split, feature_names, info })
    }
}

#[cfg(test)]
mod tests;
