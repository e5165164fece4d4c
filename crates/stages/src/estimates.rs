//! Memory estimates shared by the stages that build curvature operators or dense matrices.
use hesslab_artifacts::{Dataset, Model};
use hesslab_pipeline::resources::prod;
use hesslab_pipeline::{Estimate, InputFacts, Port};

/// Memory of a curvature operator built from `model` and `dataset` inputs: the forward and
/// backward passes it caches for every sample (four values per unit) and each sample's C×C
/// output Hessian. Returns P (the operator's side) with the estimate.
pub fn operator_estimate(inputs: &InputFacts) -> Option<(u64, Estimate)> {
    let model = inputs.get(Model::NAME)?;
    let data = inputs.get(Dataset::NAME)?;
    let (p, n) = (model.params?, data.rows?);
    let units = model.units.unwrap_or(p);
    let c = data.classes.unwrap_or(1);
    let per_sample = units.saturating_mul(4).saturating_add(c.saturating_mul(c));
    Some((p, Estimate::f64s(prod(&[n, per_sample]), format!("operator cache of {n} samples"))))
}

/// A dense P×P matrix of f64.
pub fn dense_estimate(p: u64) -> Estimate {
    Estimate::f64s(p.saturating_mul(p), format!("dense {p}×{p} matrix"))
}
