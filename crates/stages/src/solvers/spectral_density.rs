//! `spectral_density`: stochastic Lanczos quadrature.
use super::{OPERATOR_INPUTS, Solver, solver_estimate, target};
use crate::WriteFigure;
use hesslab_artifacts::{Density, NodeRow, Nodes, OperatorInfo};
use hesslab_eigen::{SlqParams, StochasticLanczosQuadrature};
use hesslab_figures::spectra;
use hesslab_hessian::{CurvatureKind, SampleSet};
use hesslab_pipeline::{Estimate, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most grid points of a density (a finer grid than this is a typo).
pub const MAX_GRID: usize = 10_000_000;

hesslab_hessian::operator_params! {
/// Parameters of `spectral_density`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SlqStageParams {
    /// Lanczos steps per probe (m).
    pub steps: usize,
    /// Random probe vectors (n_v).
    pub probes: usize,
    /// Width of the Gaussian broadening, as a fraction of the spectral range.
    pub sigma: f64,
    /// Grid points of the density.
    pub grid: usize,
    /// Also estimate the number of eigenvalues above this threshold (null = skip).
    pub count_above: Option<f64>,
    /// Draw the default figures: the density on a log axis, and the negative part against rank
    /// in % of P from the quadrature nodes and weights.
    #[serde(skip_serializing_if = "super::is_true")]
    #[schemars(extend("default" = true))]
    pub plot: bool,
}
}

impl Default for SlqStageParams {
    fn default() -> Self {
        SlqStageParams {
            steps: 80,
            probes: 10,
            sigma: 0.01,
            grid: 1000,
            count_above: None,
            plot: true,
            operator: CurvatureKind::Hessian,
            samples: SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
            batch_norm: Default::default(),
        }
    }
}

/// The `spectral_density` stage kind.
pub struct SlqStage;

impl StageKind for SlqStage {
    type Params = SlqStageParams;
    const KIND: &'static str = "spectral_density";
    const DOC: &'static str = "Stochastic Lanczos quadrature spectral density (full reorthogonalization, m steps × n probes, seeded) of a dense `matrix` or a matrix-free operator; nodes/weights and a Gaussian-broadened density.";
    const INPUTS: &'static [PortSpec] = OPERATOR_INPUTS;
    const OUTPUTS: &'static [PortSpec] = &[port::<Density>(), port::<Nodes>()];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.steps == 0 {
            e.push(("steps".into(), "steps must be ≥ 1".into()));
        }
        if p.probes == 0 {
            e.push(("probes".into(), "probes must be ≥ 1".into()));
        }
        if p.grid < 2 {
            e.push(("grid".into(), "grid must be ≥ 2".into()));
        }
        if !(p.sigma > 0.0) {
            e.push(("sigma".into(), "sigma must be > 0".into()));
        }
        if p.grid > MAX_GRID {
            e.push(("grid".into(), format!("grid must be ≤ {MAX_GRID}")));
        }
        if p.count_above.is_some_and(|t| !t.is_finite()) {
            e.push(("count_above".into(), "count_above must be a finite number".into()));
        }
        e
    }
    fn estimate(p: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        // One Lanczos basis of `steps` P-vectors at a time (probes run one after another).
        solver_estimate(Solver::Power, p.steps, 0, 0, inputs, p.batch_norm)
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let tg = target(ctx, &p.spec())?;
        let slq = SlqParams { steps: p.steps, probes: p.probes, seed: ctx.seed };
        let r = StochasticLanczosQuadrature::run(tg.op.as_ref(), &slq, &ctx.progress).map_err(StageError::other)?;
        let (lo, hi) = r.range();
        let width = (hi - lo).max(1e-12);
        let sigma = p.sigma * width;
        let grid: Vec<f64> = (0..p.grid).map(|i| lo - 3.0 * sigma + (width + 6.0 * sigma) * i as f64 / (p.grid - 1) as f64).collect();
        let density = r.density(&grid, sigma);
        let info = OperatorInfo {
            operator: tg.name.clone(),
            dim: r.dim,
            sigma: Some(sigma),
            operator_applications: Some(r.applications),
            count_above: p.count_above.map(|t| (t, r.count_above(t))),
            training_warning: tg.training_warning.clone(),
            ..Default::default()
        };
        let rows: Vec<NodeRow> = r
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, v)| v.iter().map(move |&(node, weight)| NodeRow { probe: i as u32, node, weight }))
            .collect();
        if p.plot {
            spectra::density_figure(&grid, &density, None).write(ctx, "density")?;
            if let Some(fig) = spectra::slq_negative_figure(&r.nodes.concat(), p.probes) {
                fig.write(ctx, "negative")?;
            }
        }
        ctx.write::<Density>(Density::NAME, &Density { x: grid, density, info: info.clone() })?;
        ctx.write::<Nodes>(Nodes::NAME, &Nodes { rows, info })
    }
}
