//! Which operator a stage applies: curvature kind, samples, and parameter block.
use crate::rop::CurvatureKind;
use crate::{LinearOperator, ModelCurvature, Restricted};
use hesslab_data::{Dataset, Split, rng::Rng};
use hesslab_model::Mlp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SampleSet {
    Train,
    Test,
    All,
}

/// The operator description shared by curvature and solver stages.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct OperatorSpec {
    pub operator: CurvatureKind,
    pub samples: SampleSet,
    /// Use a seeded random subset of this many samples (0 = all).
    pub max_samples: usize,
    /// Restrict to these tensors (e.g. ["layers.0.weight"]); empty = all parameters.
    pub tensors: Vec<String>,
}

impl Default for OperatorSpec {
    fn default() -> Self {
        OperatorSpec { operator: CurvatureKind::Hessian, samples: SampleSet::Train, max_samples: 0, tensors: vec![] }
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
            /// Seeded random subset of this many samples (0 = all).
            pub max_samples: usize,
            /// Restrict to these tensors (e.g. ["layers.1.weight"]); empty = all parameters.
            pub tensors: Vec<String>,
        }
        impl $name {
            /// The operator these parameters describe.
            pub fn spec(&self) -> $crate::OperatorSpec {
                $crate::OperatorSpec {
                    operator: self.operator,
                    samples: self.samples,
                    max_samples: self.max_samples,
                    tensors: self.tensors.clone(),
                }
            }
        }
    };
}

/// An operator ready to apply, with what it was built from.
pub struct BuiltOperator {
    pub op: Arc<dyn LinearOperator>,
    pub curvature: Arc<ModelCurvature>,
    /// Parameter indices of the block (None = all).
    pub index: Option<Vec<usize>>,
}

impl OperatorSpec {
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
    pub fn index(&self, model: &Mlp) -> Result<Option<Vec<usize>>, String> {
        if self.tensors.is_empty() {
            return Ok(None);
        }
        let t = model.arch.tensors();
        let mut idx = Vec::new();
        for name in &self.tensors {
            let (_, _, r) = t.iter().find(|(n, _, _)| n == name).ok_or_else(|| {
                format!("no tensor `{name}` in the model; tensors: {}", t.iter().map(|x| x.0.as_str()).collect::<Vec<_>>().join(", "))
            })?;
            idx.extend(r.clone());
        }
        idx.sort_unstable();
        idx.dedup();
        Ok(Some(idx))
    }

    pub fn build(&self, model: Mlp, ds: &Dataset, seed: u64) -> Result<BuiltOperator, String> {
        let index = self.index(&model)?;
        let split = self.select(ds, seed);
        if split.is_empty() {
            return Err(format!("the {:?} samples are empty", self.samples));
        }
        if split.x.ncols() != model.arch.input_dim() {
            return Err(format!("the model takes {} inputs, the data has {} features", model.arch.input_dim(), split.x.ncols()));
        }
        let curvature = Arc::new(ModelCurvature::new(model, split, self.operator));
        let op: Arc<dyn LinearOperator> = match &index {
            None => curvature.clone(),
            Some(ix) => Arc::new(Restricted { inner: curvature.clone(), index: ix.clone() }),
        };
        Ok(BuiltOperator { op, curvature, index })
    }
}

/// Memory of a curvature operator built from `model` and `dataset` inputs: the forward and
/// backward passes it caches for every sample (four values per unit) and each sample's C×C
/// output Hessian. Returns P (the operator's side) with the estimate.
pub fn operator_estimate(inputs: &hesslab_pipeline::InputFacts) -> Option<(u64, hesslab_pipeline::Estimate)> {
    let model = inputs.get("model")?;
    let data = inputs.get("dataset")?;
    let (p, n) = (model.params?, data.rows?);
    let units = model.units.unwrap_or(p);
    let c = data.classes.unwrap_or(1);
    let per_sample = units.saturating_mul(4).saturating_add(c.saturating_mul(c));
    Some((
        p,
        hesslab_pipeline::Estimate::f64s(hesslab_pipeline::resources::prod(&[n, per_sample]), format!("operator cache of {n} samples")),
    ))
}

/// A dense P×P matrix of f64.
pub fn dense_estimate(p: u64) -> hesslab_pipeline::Estimate {
    hesslab_pipeline::Estimate::f64s(p.saturating_mul(p), format!("dense {p}×{p} matrix"))
}
