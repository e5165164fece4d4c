//! Memory estimates shared by the stages that build curvature operators or dense matrices.
use hesslab_artifacts::{Dataset, Model};
use hesslab_pipeline::resources::prod;
use hesslab_pipeline::{Estimate, InputFacts, Port};

/// Memory of a curvature operator built from `model` and `dataset` inputs: the forward and
/// backward passes it caches for every sample (four values per unit) and each sample's C×C
/// output Hessian. Returns P (the operator's side) with the estimate.
pub fn operator_estimate(inputs: &InputFacts, batch_norm: hesslab_hessian::BatchNormMode) -> Option<(u64, Estimate)> {
    let model = inputs.get(Model::NAME)?;
    let data = inputs.get(Dataset::NAME)?;
    let (p, n) = (model.params?, data.rows?);
    let units = model.units.unwrap_or(p);
    let c = data.classes.unwrap_or(1);
    let mut per_sample = units.saturating_mul(4).saturating_add(c.saturating_mul(c));
    let mut what = format!("operator cache of {n} samples");
    if batch_norm == hesslab_hessian::BatchNormMode::Batch {
        // Batch statistics: a product holds every chunk's tangents and signals at once (they
        // meet at each BatchNorm node), not one chunk per thread: one tangent and one signal per
        // unit (the ResNet of resnet_fashion.toml at N = 1 000: 2.7 GB peak measured, 5.9 GiB estimated).
        per_sample = per_sample.saturating_add(units.saturating_mul(2));
        what.push_str(" and every sample's tangents (batch_norm = \"batch\")");
    }
    Some((p, Estimate::f64s(prod(&[n, per_sample]), what)))
}

/// A dense P×P matrix of f64.
pub fn dense_estimate(p: u64) -> Estimate {
    Estimate::f64s(p.saturating_mul(p), format!("dense {p}×{p} matrix"))
}
