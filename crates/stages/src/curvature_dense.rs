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
        CurvatureDenseParams { operator: CurvatureKind::Hessian, samples: SampleSet::Train, max_samples: 0, tensors: vec![], block_size: 8 }
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
    fn estimate(_: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        // The matrix, plus one copy kept in memory for the stages that read it next.
        let (p, cache) = operator_estimate(inputs)?;
        Some(dense_estimate(p).plus(cache))
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let model = ctx.read::<Model>(Model::NAME)?;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let built = p.spec().build(model.net, &ds, ctx.seed).map_err(StageError::other)?;
        let (a, sym) = materialize(built.op.as_ref(), Some((&built.curvature, built.index.as_deref())), p.block_size, &ctx.progress);
        let matrix = Matrix {
            dense: DenseMatrix { matrix: Arc::new(a), operator: p.operator.name().to_string(), symmetry_error: sym },
            num_samples: Some(built.curvature.num_samples()),
            loss: Some(built.curvature.loss),
            tensors: p.tensors.clone(),
            architecture: Some(built.curvature.model.arch()),
        };
        ctx.write_shared::<Matrix>(Matrix::NAME, matrix)
    }
}
