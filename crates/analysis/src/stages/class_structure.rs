//! `class_structure`: how much of each top Hessian eigenvector lies in the class-mean gradients' span.
use crate::plots::Plot;
use faer::Mat;
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
    const DOC: &'static str =
        "Overlap of each top-k Hessian eigenvector with the span of the C class-mean gradients (Papyan: outliers come from class means).";
    const INPUTS: &'static [PortSpec] = &[port::<Model>(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Overlap>()];
    fn estimate(p: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        // Class-mean gradients (P × C, and their Q), the Lanczos basis and the operator cache.
        let (dim, cache) = operator_estimate(inputs, Default::default())?;
        let classes = inputs.get(Dataset::NAME).and_then(|d| d.classes).unwrap_or(1);
        let m = (2 * p.k + 20).max(40) as u64;
        let vectors = (m + p.k as u64).saturating_add(classes.saturating_mul(2));
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
        // Class-mean gradients, orthonormalized (QR).
        let mut gm = Mat::<f64>::zeros(pdim, ds.num_classes);
        let mut used = 0;
        for c in 0..ds.num_classes {
            let idx: Vec<usize> = (0..split.len()).filter(|&i| split.y[i] as usize == c).collect();
            if idx.is_empty() {
                continue;
            }
            let sub = split.subset(&idx);
            let (_, g) = model.loss_grad(sub.x.as_ref(), &sub.y);
            for (i, v) in g.iter().enumerate() {
                gm[(i, used)] = *v;
            }
            used += 1;
        }
        let q = gm.as_ref().subcols(0, used).qr().compute_thin_Q();
        let op = ModelCurvature::new(model, split, CurvatureKind::Hessian);
        let k = p.k.min(pdim);
        let (pairs, _) = LanczosSolver::solve(&op, &LanczosParams { k, seed: ctx.seed, tol: 1e-8, ..Default::default() }, &ctx.progress)
            .map_err(StageError::other)?;
        let mut rows = Vec::new();
        for ((r, v), val) in pairs.vectors.iter().zip(&pairs.values) {
            let proj: f64 = (0..q.ncols()).map(|c| (0..pdim).map(|i| q[(i, c)] * v[i]).sum::<f64>().powi(2)).sum();
            rows.push(OverlapRow { rank: *r, eigenvalue: *val, overlap: proj });
        }
        Plot::new("Top Hessian eigenvectors in the class-mean gradient span", "rank", "overlap (0..1)")
            .points("overlap", rows.iter().map(|r| (r.rank as f64, r.overlap)).collect())
            .line("", rows.iter().map(|r| (r.rank as f64, r.overlap)).collect())
            .write(ctx, "class_structure")?;
        ctx.write::<Overlap>(Overlap::NAME, &Overlap(rows))
    }
}
