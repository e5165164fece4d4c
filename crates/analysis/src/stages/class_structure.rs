//! `class_structure`: how much of each top Hessian eigenvector lies in the spans of class means
//! of gradients — Papyan's (2019, 2020) global class means and class/cross-class means of the
//! per-sample logit-gradient vectors, and the class-mean loss gradients.
//!
//! For cross-entropy, Jᵢᵀ(pᵢ − e_{c'}) is the gradient of sample i's loss had its label been c',
//! so δ_{c,c'} = Ave_{i ∈ c} Jᵢᵀ(pᵢ − e_{c'}) is one loss gradient of the class-c samples with
//! every label set to c': C² gradients of class subsets, no per-sample Jacobian kept. The
//! Gauss-Newton matrix is their second moment, G = Ave_i Σ_{c'} p_{i,c'} δ_{i,c'} δ_{i,c'}ᵀ
//! (tested), which is why its outliers follow their means.
use crate::plots::Plot;
use hesslab_artifacts::{Dataset, Model, Overlap, OverlapRow};
use hesslab_eigen::{LanczosParams, LanczosSolver};
use hesslab_hessian::{CurvatureKind, ModelCurvature, OperatorSpec, SampleSet};
use hesslab_pipeline::{Estimate, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::WriteFigure;
use hesslab_stages::estimates::operator_estimate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `class_structure`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClassStructureParams {
    /// Top Hessian eigenvectors examined.
    pub k: usize,
    /// Samples the loss averages over: train, test or all.
    pub samples: SampleSet,
}
impl Default for ClassStructureParams {
    fn default() -> Self {
        ClassStructureParams { k: 20, samples: SampleSet::Train }
    }
}

/// The `class_structure` stage kind.
pub struct ClassStructure;

impl StageKind for ClassStructure {
    type Params = ClassStructureParams;
    const KIND: &'static str = "class_structure";
    const DOC: &'static str = "Overlap of each top-k Hessian eigenvector with the spans of Papyan's C global class means and C(C − 1) class/cross-class means of the logit-gradient vectors (his account of the outliers), and of the C class-mean loss gradients (cross-entropy only).";
    const INPUTS: &'static [PortSpec] = &[port::<Model>(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Overlap>()];
    fn estimate(p: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        // Class-mean gradients (P × C, and their Q), the Lanczos basis and the operator cache.
        let (dim, cache) = operator_estimate(inputs, Default::default())?;
        let classes = inputs.get(Dataset::NAME).and_then(|d| d.classes).unwrap_or(1);
        let m = (2 * p.k + 20).max(40) as u64;
        // The C² class/cross-class means and their orthonormal bases.
        let vectors = (m + p.k as u64).saturating_add(classes.saturating_mul(classes).saturating_mul(2)).saturating_add(classes * 4);
        Some(Estimate::f64s(dim.saturating_mul(vectors), format!("{vectors} vectors of length {dim}")).plus(cache))
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let model = ctx.read::<Model>(Model::NAME)?.net;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let spec = OperatorSpec {
            operator: CurvatureKind::Hessian,
            samples: p.samples,
            max_samples: 0,
            tensors: vec![],
            batch_norm: Default::default(),
        };
        let split = spec.select(&ds, ctx.seed);
        let pdim = model.num_params();
        if model.loss() != hesslab_model::LossKind::CrossEntropy {
            return Err(StageError::msg(format!(
                "class_structure needs a cross-entropy network (Papyan's means are of softmax logit gradients); this one has loss {:?}",
                model.loss()
            )));
        }
        let classes = ds.num_classes;
        // δ[c][c'] = the class-c loss gradient with every label set to c'.
        let mut delta: Vec<Vec<Vec<f64>>> = Vec::with_capacity(classes);
        let bar = ctx.progress.bar((classes * classes) as u64, "class/cross-class means");
        for c in 0..classes {
            let idx: Vec<usize> = (0..split.len()).filter(|&i| split.y[i] as usize == c).collect();
            if idx.is_empty() {
                delta.push(Vec::new());
                continue;
            }
            let sub = split.subset(&idx);
            let row = (0..classes)
                .map(|c2| {
                    bar.inc(1);
                    model.loss_grad(sub.x.as_ref(), &vec![c2 as u32; idx.len()]).1
                })
                .collect();
            delta.push(row);
        }
        bar.finish();
        let present: Vec<usize> = (0..classes).filter(|&c| !delta[c].is_empty()).collect();
        let loss_means: Vec<&[f64]> = present.iter().map(|&c| delta[c][c].as_slice()).collect();
        let global: Vec<Vec<f64>> = present
            .iter()
            .map(|&c| {
                let others: Vec<&Vec<f64>> = (0..classes).filter(|&c2| c2 != c).map(|c2| &delta[c][c2]).collect();
                (0..pdim).map(|i| others.iter().map(|d| d[i]).sum::<f64>() / others.len().max(1) as f64).collect()
            })
            .collect();
        let cross: Vec<&[f64]> = present
            .iter()
            .flat_map(|&c| (0..classes).filter(move |&c2| c2 != c).map(move |c2| (c, c2)))
            .map(|(c, c2)| delta[c][c2].as_slice())
            .collect();
        let bases = [orthonormal(&loss_means), orthonormal(&global.iter().map(Vec::as_slice).collect::<Vec<_>>()), orthonormal(&cross)];
        let op = ModelCurvature::new(model, split, CurvatureKind::Hessian);
        let k = p.k.min(pdim);
        let (pairs, _) = LanczosSolver::solve(&op, &LanczosParams { k, seed: ctx.seed, tol: 1e-8, ..Default::default() }, &ctx.progress)
            .map_err(StageError::other)?;
        let mut rows = Vec::new();
        for ((r, v), val) in pairs.vectors.iter().zip(&pairs.values) {
            let [loss, global, cross] =
                bases.each_ref().map(|q| q.iter().map(|b| b.iter().zip(v).map(|(a, x)| a * x).sum::<f64>().powi(2)).sum::<f64>());
            rows.push(OverlapRow {
                rank: *r,
                eigenvalue: *val,
                overlap: loss,
                overlap_global_means: Some(global),
                overlap_cross_class_means: Some(cross),
            });
        }
        let series = |f: fn(&OverlapRow) -> f64| rows.iter().map(|r| (r.rank as f64, f(r))).collect::<Vec<_>>();
        Plot::new("Top Hessian eigenvectors in the spans of class means", "rank", "overlap (0..1)")
            .points("global class means δ_c (Papyan)", series(|r| r.overlap_global_means.unwrap_or(f64::NAN)))
            .points("cross-class means δ_{c,c'}", series(|r| r.overlap_cross_class_means.unwrap_or(f64::NAN)))
            .points("class-mean loss gradients δ_{c,c}", series(|r| r.overlap))
            .write(ctx, "class_structure")?;
        ctx.write::<Overlap>(Overlap::NAME, &Overlap(rows))
    }
}

/// An orthonormal basis of the span of `vectors` (modified Gram–Schmidt, twice): a vector
/// within 1e-10 of the span of the ones before adds nothing, so a dependent set never lends
/// the projection directions outside its span.
fn orthonormal(vectors: &[&[f64]]) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for v in vectors {
        let norm0 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let mut u = v.to_vec();
        for _ in 0..2 {
            for b in &basis {
                let d: f64 = b.iter().zip(&u).map(|(a, x)| a * x).sum();
                u.iter_mut().zip(b).for_each(|(x, a)| *x -= d * a);
            }
        }
        let n = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n > 1e-10 * norm0 && n > 0.0 {
            u.iter_mut().for_each(|x| *x /= n);
            basis.push(u);
        }
    }
    basis
}
