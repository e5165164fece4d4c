//! The `dataset` artifact: `x: FixedSizeList<Float64>(d)`, `y: UInt32`, `split: Utf8`.
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, PortSpec, StageContext, StageError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const TRAIN: &str = "train";
pub const TEST: &str = "test";
/// The most classes a dataset may have (each is an output unit and a column of every
/// per-sample output Hessian).
pub const MAX_CLASSES: usize = 1 << 20;

/// The `dataset` port: one row per example.
pub fn dataset_port() -> PortSpec {
    PortSpec::new(
        "dataset",
        "examples: x FixedSizeList<Float64>(d), y UInt32 class label, split \"train\"/\"test\"",
        vec![fixed_f64_field("x", 0), u32_field("y"), utf8_field("split")],
    )
}

/// Examples held as row-major features.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub dim: usize,
    pub num_classes: usize,
    pub x: Vec<f64>,
    pub y: Vec<u32>,
    pub split: Vec<bool>, // true = train
    pub feature_names: Vec<String>,
    /// Generator parameters and provenance, as JSON.
    pub info: serde_json::Value,
}

/// One split as a dense matrix (N × d, column-major for faer) plus labels.
#[derive(Debug, Clone)]
pub struct Split {
    pub x: faer::Mat<f64>,
    pub y: Vec<u32>,
    pub num_classes: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    /// The rows `idx` of this split, in that order.
    pub fn subset(&self, idx: &[usize]) -> Split {
        let x = faer::Mat::from_fn(idx.len(), self.x.ncols(), |i, j| self.x[(idx[i], j)]);
        Split { x, y: idx.iter().map(|&i| self.y[i]).collect(), num_classes: self.num_classes }
    }
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    pub fn split(&self, train: bool) -> Split {
        let idx: Vec<usize> = (0..self.len()).filter(|&i| self.split[i] == train).collect();
        let d = self.dim;
        let x = faer::Mat::from_fn(idx.len(), d, |i, j| self.x[idx[i] * d + j]);
        Split { x, y: idx.iter().map(|&i| self.y[i]).collect(), num_classes: self.num_classes }
    }
    pub fn train(&self) -> Split {
        self.split(true)
    }
    pub fn test(&self) -> Split {
        self.split(false)
    }

    /// Check the shape invariants an artifact needs: at least one feature, `x` holding
    /// `len × dim` values, a bounded `num_classes` (labels are checked when read).
    pub fn check(&self) -> Result<(), String> {
        if self.dim == 0 {
            return Err("the dataset has no feature columns (dimension 0)".into());
        }
        if self.dim > i32::MAX as usize {
            return Err(format!("dimension {} is too large", self.dim));
        }
        if self.x.len() != self.len().saturating_mul(self.dim) || self.split.len() != self.len() {
            return Err(format!("{} values for {} examples of dimension {}", self.x.len(), self.len(), self.dim));
        }
        if self.num_classes > MAX_CLASSES {
            return Err(format!("{} classes; at most {MAX_CLASSES} are supported", self.num_classes));
        }
        Ok(())
    }

    pub fn to_batch(&self) -> Result<RecordBatch, StageError> {
        self.check().map_err(StageError::msg)?;
        let schema = Arc::new(Schema::new(vec![fixed_f64_field("x", self.dim as i32), u32_field("y"), utf8_field("split")]));
        RecordBatch::try_new(
            schema,
            vec![
                fixed_f64_array(&self.x, self.dim),
                u32_array(self.y.iter().copied()),
                utf8_array(self.split.iter().map(|&t| if t { TRAIN } else { TEST })),
            ],
        )
        .map_err(StageError::other)
    }

    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("num_classes".into(), self.num_classes.to_string());
        m.insert("dim".into(), self.dim.to_string());
        m.insert("feature_names".into(), serde_json::to_string(&self.feature_names).unwrap_or_default());
        m.insert("generator".into(), self.info.to_string());
        m
    }

    pub fn write(&self, ctx: &StageContext, port: &str) -> Result<(), StageError> {
        ctx.write(port, self.to_batch()?, &self.metadata())
    }

    /// Decode a `dataset` artifact, checking labels against `num_classes`.
    pub fn from_artifact(a: &Artifact) -> Result<Dataset, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let (x, dim) = fixed_f64_values(&a.batch, "x").map_err(err)?;
        let y = u32_values(&a.batch, "y").map_err(err)?;
        let split_s = utf8_values(&a.batch, "split").map_err(err)?;
        let mut split = Vec::with_capacity(split_s.len());
        for (i, s) in split_s.iter().enumerate() {
            match s.as_str() {
                TRAIN => split.push(true),
                TEST => split.push(false),
                other => {
                    return Err(err(format!("column `split` row {i}: `{other}` is neither \"train\" nor \"test\"")));
                }
            }
        }
        let max_label = y.iter().copied().max().map(|m| m as usize + 1).unwrap_or(0);
        let num_classes = match a.meta("num_classes") {
            Some(s) => s.parse::<usize>().map_err(|_| err(format!("metadata `num_classes` = `{s}` is not an integer")))?,
            None => max_label,
        };
        if num_classes > MAX_CLASSES {
            return Err(err(format!("metadata `num_classes` = {num_classes}; at most {MAX_CLASSES} classes are supported")));
        }
        if let Some(i) = y.iter().position(|&l| l as usize >= num_classes) {
            return Err(err(format!("column `y` row {i}: label {} ≥ num_classes {num_classes}", y[i])));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(err("column `x` holds NaN or infinite values".into()));
        }
        let feature_names = a.meta("feature_names").and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        let info = a.meta("generator").and_then(|s| serde_json::from_str(s).ok()).unwrap_or(serde_json::Value::Null);
        Ok(Dataset { dim, num_classes, x, y, split, feature_names, info })
    }

    pub fn read(ctx: &StageContext, port: &str) -> Result<Dataset, StageError> {
        let input = ctx.input(port)?;
        if let Some(d) = input.shared::<Dataset>() {
            return Ok((*d).clone());
        }
        Dataset::from_artifact(&input.read()?)
    }

    /// Zero mean, unit variance per feature using training-split statistics, applied to all rows.
    pub fn standardize(&mut self) {
        let d = self.dim;
        let n_train = self.split.iter().filter(|&&t| t).count().max(1) as f64;
        for j in 0..d {
            let mut mean = 0.0;
            for i in 0..self.len() {
                if self.split[i] {
                    mean += self.x[i * d + j];
                }
            }
            mean /= n_train;
            let mut var = 0.0;
            for i in 0..self.len() {
                if self.split[i] {
                    var += (self.x[i * d + j] - mean).powi(2);
                }
            }
            let sd = (var / n_train).sqrt();
            let sd = if sd > 1e-12 { sd } else { 1.0 };
            for i in 0..self.len() {
                self.x[i * d + j] = (self.x[i * d + j] - mean) / sd;
            }
        }
    }
}
