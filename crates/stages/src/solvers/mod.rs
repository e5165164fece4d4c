//! Solver stages with shared output types, so one solver replaces another in a pipeline by
//! changing `solver = "..."`. Each takes either a dense `matrix` or `model` + `dataset` (a
//! matrix-free operator).
mod choice;
mod eigenvalues;
mod spectral_density;
mod trace;

pub use choice::{DenseSettings, LanczosSettings, PowerSettings, Solver, SolverChoice, TaggedSolver};
pub use eigenvalues::{EigenParams, EigenStage, ResolvedSolver};
pub use spectral_density::{MAX_GRID, SlqStage, SlqStageParams};
pub use trace::{TraceParams, TraceStage};

use crate::estimates::{dense_estimate, operator_estimate};
use hesslab_artifacts::{Dataset, Matrix, Model};
use hesslab_hessian::{DenseMatrix, DenseOperator, LinearOperator, ModelCurvature, OperatorSpec};
use hesslab_pipeline::{Estimate, InputFacts, Port, PortSpec, StageContext, StageError, port};
use std::sync::Arc;

/// The inputs of every solver stage: a dense matrix, or a model and its data.
const OPERATOR_INPUTS: &[PortSpec] = &[port::<Matrix>().optional(), port::<Model>().optional(), port::<Dataset>().optional()];

/// The operator a solver stage works on.
struct Target {
    op: Arc<dyn LinearOperator>,
    dense: Option<DenseMatrix>,
    curvature: Option<Arc<ModelCurvature>>,
    index: Option<Vec<usize>>,
    name: String,
    /// Why the network looks untrained, carried to the outputs' metadata.
    training_warning: Option<String>,
}

fn target(ctx: &StageContext, spec: &OperatorSpec) -> Result<Target, StageError> {
    if let Some(m) = ctx.read_opt::<Matrix>(Matrix::NAME)? {
        let dm = m.dense;
        let name = dm.operator.clone();
        let op = Arc::new(DenseOperator::new(dm.matrix.clone(), name.clone()));
        return Ok(Target { op, dense: Some(dm), curvature: None, index: None, name, training_warning: m.training_warning });
    }
    match (ctx.read_opt::<Model>(Model::NAME)?, ctx.read_opt::<Dataset>(Dataset::NAME)?) {
        (Some(model), Some(ds)) => {
            let b = spec.build(model.net, &ds, ctx.seed).map_err(StageError::other)?;
            Ok(Target {
                op: b.op,
                dense: None,
                curvature: Some(b.curvature),
                index: b.index,
                name: spec.operator.name().to_string(),
                training_warning: model.warning,
            })
        }
        _ => Err(StageError::msg(format!(
            "connect either `{}` (a dense matrix) or both `{}` and `{}` (matrix-free operator)",
            Matrix::NAME,
            Model::NAME,
            Dataset::NAME
        ))),
    }
}

/// The snake_case name serde gives a unit enum variant.
fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The side P of the operator a solver stage will see: a dense `matrix` input's, or the model's.
fn side(inputs: &InputFacts) -> Option<u64> {
    inputs.get(Matrix::NAME).and_then(|m| m.dim).or_else(|| inputs.get(Model::NAME).and_then(|m| m.params))
}

/// Peak memory of a solver: dense works on the matrix (a copy of the input and faer's
/// working copy, plus the eigenvectors when asked; eigenvalues only, a matrix the stage
/// materializes is reduced in place: itself plus ~0.2 of it in scratch, counted as 2);
/// Lanczos and power keep a basis of P-vectors.
fn solver_estimate(
    solver: Solver,
    k: usize,
    max_dim: usize,
    vectors: usize,
    inputs: &InputFacts,
    batch_norm: hesslab_hessian::BatchNormMode,
) -> Option<Estimate> {
    let matrix_free = inputs.get(Matrix::NAME).is_none();
    let (p, cache) = if matrix_free { operator_estimate(inputs, batch_norm)? } else { (side(inputs)?, Estimate::f64s(0, "")) };
    let estimate = match solver {
        Solver::Dense => {
            let copies = if vectors > 0 { 3 + u64::from(matrix_free) } else { 2 };
            let m = dense_estimate(p);
            Estimate { bytes: m.bytes.saturating_mul(copies), what: format!("{copies} × {}", m.what) }
        }
        Solver::Lanczos => {
            let m = if max_dim == 0 { (2 * k + 20).max(40) } else { max_dim.max(k + 2) } as u64;
            Estimate::f64s(p.saturating_mul(m.saturating_add(k as u64 + 4)), format!("Krylov basis of {m} vectors of length {p}"))
        }
        Solver::Power => Estimate::f64s(p.saturating_mul(k as u64 + 4), format!("{k} vectors of length {p}")),
    };
    Some(if matrix_free { estimate.plus(cache) } else { estimate })
}

/// serde: leave a `true` default out of the serialized parameters, so adding a default-on
/// switch does not change the cache key of every existing run.
pub(crate) fn is_true(b: &bool) -> bool {
    *b
}
