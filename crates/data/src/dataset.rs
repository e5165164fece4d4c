//! Examples with class labels and a train/test split, and the dense views the math uses.
use crate::{DataError, Result};

/// How the training split is spelled where a split is text (tables, artifacts).
pub const TRAIN: &str = "train";
/// How the test split is spelled where a split is text.
pub const TEST: &str = "test";
/// The most classes a dataset may have (each is an output unit and a column of every
/// per-sample output Hessian).
pub const MAX_CLASSES: usize = 1 << 20;

/// Examples held as row-major features.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Features per example.
    pub dim: usize,
    /// Shape of one example: [C, H, W] for images (features in C, H, W row-major order, as
    /// PyTorch's NCHW), [dim] otherwise.
    pub shape: Vec<usize>,
    /// Number of classes; every label is below it.
    pub num_classes: usize,
    /// Features, `len × dim` row-major.
    pub x: Vec<f64>,
    /// Class labels.
    pub y: Vec<u32>,
    /// `true` for the training split.
    pub split: Vec<bool>,
    /// A name per feature.
    pub feature_names: Vec<String>,
    /// Generator parameters and provenance, as JSON.
    pub info: serde_json::Value,
}

/// One split as a dense matrix (N × d, column-major for faer) plus labels.
#[derive(Debug, Clone)]
pub struct Split {
    /// Features, one row per example.
    pub x: faer::Mat<f64>,
    /// Class labels.
    pub y: Vec<u32>,
    /// Number of classes of the dataset it came from.
    pub num_classes: usize,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// No examples?
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
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// No examples?
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    /// The examples of one split (`train = true` for the training split) as a dense matrix.
    pub fn split(&self, train: bool) -> Split {
        let idx: Vec<usize> = (0..self.len()).filter(|&i| self.split[i] == train).collect();
        let d = self.dim;
        let x = faer::Mat::from_fn(idx.len(), d, |i, j| self.x[idx[i] * d + j]);
        Split { x, y: idx.iter().map(|&i| self.y[i]).collect(), num_classes: self.num_classes }
    }
    /// The training split.
    pub fn train(&self) -> Split {
        self.split(true)
    }
    /// The test split.
    pub fn test(&self) -> Split {
        self.split(false)
    }

    /// Check the shape invariants an artifact needs: at least one feature, `x` holding
    /// `len × dim` values, a bounded `num_classes` (labels are checked when read).
    pub fn check(&self) -> Result<()> {
        let invalid = |m: String| Err(DataError::Invalid(m));
        if self.dim == 0 {
            return invalid("the dataset has no feature columns (dimension 0)".into());
        }
        if self.dim > i32::MAX as usize {
            return invalid(format!("dimension {} is too large", self.dim));
        }
        if self.x.len() != self.len().saturating_mul(self.dim) || self.split.len() != self.len() {
            return invalid(format!("{} values for {} examples of dimension {}", self.x.len(), self.len(), self.dim));
        }
        if self.num_classes > MAX_CLASSES {
            return invalid(format!("{} classes; at most {MAX_CLASSES} are supported", self.num_classes));
        }
        Ok(())
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
