//! `trace`: Hutchinson and Hutch++ estimates.
use super::{OPERATOR_INPUTS, Solver, solver_estimate, target};
use hesslab_artifacts::{OperatorInfo, Trace, TraceRow};
use hesslab_eigen::{HutchPlusPlus, Hutchinson, TraceParams as Probes};
use hesslab_hessian::{CurvatureKind, SampleSet};
use hesslab_pipeline::{Estimate, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

hesslab_hessian::operator_params! {
/// Parameters of `trace`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TraceParams {
    /// Operator-vector products per estimator.
    pub probes: usize,
}
}

impl Default for TraceParams {
    fn default() -> Self {
        TraceParams {
            probes: 99,
            operator: CurvatureKind::Hessian,
            samples: SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
            batch_norm: Default::default(),
        }
    }
}

/// The `trace` stage kind.
pub struct TraceStage;

impl StageKind for TraceStage {
    type Params = TraceParams;
    const KIND: &'static str = "trace";
    const DOC: &'static str =
        "Hutchinson and Hutch++ trace estimates with standard errors (plus the exact trace when a dense matrix is connected).";
    const INPUTS: &'static [PortSpec] = OPERATOR_INPUTS;
    const OUTPUTS: &'static [PortSpec] = &[port::<Trace>()];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        if p.probes < 3 { vec![("probes".into(), "probes must be ≥ 3".into())] } else { vec![] }
    }
    fn estimate(p: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        // Hutch++ keeps its sketch and its image: about `probes` P-vectors.
        solver_estimate(Solver::Power, p.probes, 0, 0, inputs, p.batch_norm)
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let tg = target(ctx, &p.spec())?;
        let row = |e: hesslab_eigen::TraceEstimate| TraceRow {
            estimator: e.estimator.to_string(),
            value: e.value,
            stderr: e.stderr,
            probes: e.probes as u64,
        };
        let op = tg.op.as_ref();
        let hutchinson = Hutchinson::estimate(op, &Probes { probes: p.probes, seed: ctx.seed }).map_err(StageError::other)?;
        let hutch_pp = HutchPlusPlus::estimate(op, &Probes { probes: p.probes, seed: ctx.seed ^ 1 }).map_err(StageError::other)?;
        let mut rows = vec![row(hutchinson), row(hutch_pp)];
        if let Some(d) = &tg.dense {
            let m = &d.matrix;
            rows.push(TraceRow { estimator: "exact".into(), value: (0..m.nrows()).map(|i| m[(i, i)]).sum(), stderr: 0.0, probes: 0 });
        }
        let info = OperatorInfo {
            operator: tg.name.clone(),
            dim: tg.op.dim(),
            training_warning: tg.training_warning.clone(),
            ..Default::default()
        };
        ctx.write::<Trace>(Trace::NAME, &Trace { rows, info })
    }
}
