//! Which operator a stage applies: curvature kind, samples, and parameter block.
use crate::rop::{BatchNormMode, CurvatureKind};
use crate::{HessianError, LinearOperator, ModelCurvature, Restricted, Result};
use hesslab_data::{Dataset, Split, rng::Rng};
use hesslab_model::Network;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which examples the loss averages over.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SampleSet {
    /// The training split.
    Train,
    /// The test split.
    Test,
    /// Both.
    All,
}

/// The operator description shared by curvature and solver stages.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct OperatorSpec {
    /// Which curvature matrix.
    pub operator: CurvatureKind,
    /// Which examples.
    pub samples: SampleSet,
    /// Use a seeded random subset of this many samples (0 = all).
    pub max_samples: usize,
    /// Restrict to these tensors (e.g. ["layers.0.weight"]); empty = all parameters.
    pub tensors: Vec<String>,
    /// BatchNorm statistics: running (eval) or the batch's (batch).
    pub batch_norm: BatchNormMode,
}

impl Default for OperatorSpec {
    fn default() -> Self {
        OperatorSpec {
            operator: CurvatureKind::Hessian,
            samples: SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
            batch_norm: BatchNormMode::Eval,
        }
    }
}

/// Declares a stage parameter struct with the four operator fields (`operator`, `samples`,
/// `max_samples`, `tensors`) appended, and its `spec()`. Why a macro: the fields must stay flat
/// in the TOML, and serde's `flatten` does not combine with `deny_unknown_fields`.
#[macro_export]
macro_rules! operator_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Operator: hessian, gauss_newton, residual, empirical_fisher, gradient_covariance.
            pub operator: $crate::CurvatureKind,
            /// Samples the loss averages over: train, test or all.
            pub samples: $crate::SampleSet,
            /// Seeded random subset of this many samples (0 = all). The subset follows the
            /// stage's seed: give two stages the same `seed` to take the same samples.
            pub max_samples: usize,
            /// Restrict to these tensors (e.g. ["layers.1.weight"]); empty = all parameters.
            pub tensors: Vec<String>,
            /// BatchNorm layers' statistics: "eval" (the running ones: the Hessian of
            /// `model.eval()`) or "batch" (the whole sample set's, with the derivatives
            /// through them: the exact full-batch train-mode Hessian, dropout off).
            #[serde(skip_serializing_if = "hesslab_hessian::BatchNormMode::is_eval")]
            #[schemars(extend("default" = "eval"))]
            pub batch_norm: $crate::BatchNormMode,
        }
        impl $name {
            /// The operator these parameters describe.
            pub fn spec(&self) -> $crate::OperatorSpec {
                $crate::OperatorSpec {
                    operator: self.operator,
                    samples: self.samples,
                    max_samples: self.max_samples,
                    tensors: self.tensors.clone(),
                    batch_norm: self.batch_norm,
                }
            }
        }
    };
}

/// An operator ready to apply, with what it was built from.
pub struct BuiltOperator {
    /// The operator to apply (restricted to the block when there is one).
    pub op: Arc<dyn LinearOperator>,
    /// The full-parameter curvature operator it is built on.
    pub curvature: Arc<ModelCurvature>,
    /// Parameter indices of the block (None = all).
    pub index: Option<Vec<usize>>,
}

impl OperatorSpec {
    /// The examples the operator averages over (a seeded subset when `max_samples` > 0).
    pub fn select(&self, ds: &Dataset, seed: u64) -> Split {
        let s = match self.samples {
            SampleSet::Train => ds.train(),
            SampleSet::Test => ds.test(),
            SampleSet::All => {
                let mut all = ds.clone();
                all.split.iter_mut().for_each(|t| *t = true);
                all.train()
            }
        };
        if self.max_samples > 0 && self.max_samples < s.len() {
            let mut idx: Vec<usize> = (0..s.len()).collect();
            Rng::new(seed).shuffle(&mut idx);
            let mut keep = idx[..self.max_samples].to_vec();
            keep.sort_unstable();
            s.subset(&keep)
        } else {
            s
        }
    }

    /// Parameter indices of the named tensors.
    pub fn index(&self, model: &Network) -> Result<Option<Vec<usize>>> {
        if self.tensors.is_empty() {
            return Ok(None);
        }
        let t = model.tensors();
        let mut idx = Vec::new();
        for name in &self.tensors {
            let (_, _, r) = t.iter().find(|(n, _, _)| n == name).ok_or_else(|| HessianError::UnknownTensor {
                name: name.clone(),
                available: t.iter().map(|x| x.0.as_str()).collect::<Vec<_>>().join(", "),
            })?;
            idx.extend(r.clone());
        }
        idx.sort_unstable();
        idx.dedup();
        Ok(Some(idx))
    }

    /// The operator on `model`'s loss over `ds`, ready to apply.
    /// Build the operator of `model` on the samples of `ds` this spec selects; errors when the
    /// model cannot take the data or score its labels.
    pub fn build(&self, model: Network, ds: &Dataset, seed: u64) -> Result<BuiltOperator> {
        let index = self.index(&model)?;
        let split = self.select(ds, seed);
        if split.is_empty() {
            return Err(HessianError::NoSamples(self.samples));
        }
        if split.x.ncols() != model.input_dim() {
            return Err(HessianError::InputMismatch { model: model.input_dim(), data: split.x.ncols() });
        }
        check_labels(&model, ds)?;
        let curvature = Arc::new(ModelCurvature::with_options(model, split, self.operator, self.batch_norm, None)?);
        let op: Arc<dyn LinearOperator> = match &index {
            None => curvature.clone(),
            Some(ix) => Arc::new(Restricted { inner: curvature.clone(), index: ix.clone() }),
        };
        Ok(BuiltOperator { op, curvature, index })
    }
}

/// The labels of `ds` are ones `model`'s loss can score: 0/1 for one logistic output, else
/// fewer classes than outputs.
pub fn check_labels(model: &Network, ds: &Dataset) -> Result<()> {
    let outputs = model.output_dim();
    let top = ds.y.iter().copied().max().unwrap_or(0) as usize;
    let logistic = model.loss() == hesslab_model::LossKind::Logistic;
    if logistic && (outputs != 1 || top > 1 || ds.num_classes > 2) {
        return Err(HessianError::LabelMismatch(format!(
            "the model's loss is \"logistic\" (one output, labels 0 and 1), but the dataset has {} classes",
            ds.num_classes.max(top + 1)
        )));
    }
    if !logistic && top >= outputs {
        return Err(HessianError::LabelMismatch(format!(
            "the dataset has label {top}, but the model has only {outputs} outputs (classes)"
        )));
    }
    Ok(())
}
