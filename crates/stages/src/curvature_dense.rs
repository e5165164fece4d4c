//! `curvature_dense`: a curvature operator materialized as a dense symmetric matrix.
use crate::estimates::{dense_estimate, operator_estimate};
use hesslab_artifacts::{Dataset, Matrix, Model};
use hesslab_hessian::{CurvatureKind, DenseMatrix, SampleSet, materialize};
use hesslab_pipeline::{Estimate, Facts, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

hesslab_hessian::operator_params! {
/// Parameters of `curvature_dense`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CurvatureDenseParams {
    /// Columns per block (each block is one batched R-operator pass; 8 measured fastest here, small
    /// blocks keep the temporaries in cache).
    pub block_size: usize,
}
}

impl Default for CurvatureDenseParams {
    fn default() -> Self {
        CurvatureDenseParams {
            operator: CurvatureKind::Hessian,
            samples: SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
            batch_norm: Default::default(),
            block_size: 8,
        }
    }
}

/// The `curvature_dense` stage kind.
pub struct CurvatureDense;

impl StageKind for CurvatureDense {
    type Params = CurvatureDenseParams;
    const KIND: &'static str = "curvature_dense";
    /// 4: `architecture` metadata is the PyTorch module list.
    const VERSION: u32 = 4;
    const DOC: &'static str = "Materialize a curvature operator (exact Hessian by R-operator, Gauss-Newton, residual, empirical Fisher, gradient covariance; optionally one parameter block) as a dense symmetric P×P matrix, using all cores; reports the symmetry error and symmetrizes.";
    const INPUTS: &'static [PortSpec] = &[port::<Model>(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Matrix>()];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        if p.block_size == 0 { vec![("block_size".into(), "block_size must be ≥ 1".into())] } else { vec![] }
    }
    fn facts(_: &Self::Params, inputs: &InputFacts) -> Facts {
        let p = inputs.get(Model::NAME).and_then(|m| m.params);
        Facts { rows: p, dim: p, ..Default::default() }
    }
    fn estimate(params: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        // The matrix, plus one copy kept in memory for the stages that read it next.
        let (p, cache) = operator_estimate(inputs, params.batch_norm)?;
        if !params.tensors.is_empty() {
            // A block of some tensors: its side is not among the input facts (only P is), and
            // P×P would refuse a 5 680-parameter block of a 60 630-parameter network. The block
            // is left out (it is at most P×P and usually far smaller; see DEVELOPING, limits).
            return Some(cache);
        }
        Some(dense_estimate(p).plus(cache))
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let model = ctx.read::<Model>(Model::NAME)?;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let training_warning = model.warning.clone();
        let built = p.spec().build(model.net, &ds, ctx.seed).map_err(StageError::other)?;
        let (a, sym) = materialize(built.op.as_ref(), Some((&built.curvature, built.index.as_deref())), p.block_size, &ctx.progress);
        let matrix = Matrix {
            dense: DenseMatrix { matrix: Arc::new(a), operator: p.operator.name().to_string(), symmetry_error: sym },
            num_samples: Some(built.curvature.num_samples()),
            loss: Some(built.curvature.loss),
            tensors: p.tensors.clone(),
            architecture: Some(built.curvature.model.arch()),
            training_warning,
        };
        ctx.write_shared::<Matrix>(Matrix::NAME, matrix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hesslab_pipeline::resources::Facts;

    /// S16 P1's block of the last two layers of a 60 630-parameter network must not be refused
    /// as if it were the whole 27 GiB Hessian; the whole Hessian still counts P×P.
    #[test]
    fn a_restricted_block_is_not_estimated_as_the_whole_matrix() {
        let mut inputs = InputFacts::new();
        inputs.insert(Model::NAME.into(), Facts { params: Some(60_630), units: Some(934), ..Default::default() });
        inputs.insert(Dataset::NAME.into(), Facts { rows: Some(1_250), classes: Some(10), ..Default::default() });
        let whole = CurvatureDense::estimate(&CurvatureDenseParams::default(), &inputs).unwrap();
        let block = CurvatureDenseParams { tensors: vec!["layers.2.weight".into()], ..Default::default() };
        let block = CurvatureDense::estimate(&block, &inputs).unwrap();
        assert!(whole.bytes >= 8 * 60_630 * 60_630, "{whole:?}");
        assert!(block.bytes < 1 << 30, "{block:?}");
    }
}
