//! Solver stages with shared output schemas, so one solver replaces another in a pipeline by
//! changing `solver = "..."`.
use crate::*;
use arrow_array::RecordBatch;
use hesslab_data::{Dataset, dataset_port};
use hesslab_hessian::{
    CurvatureKind, DenseMatrix, DenseOperator, LinearOperator, OperatorSpec, SampleSet, materialize, matrix_port, read_matrix_input,
};
use hesslab_model::{Mlp, model_port};
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, PortSpec, StageContext, StageError, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn eigenvalues_port() -> PortSpec {
    PortSpec::new(
        "eigenvalues",
        "rank UInt32 (0 = largest), eigenvalue Float64, residual Float64 (‖Av − λv‖; null where exact)",
        vec![u32_field("rank"), f64_field("eigenvalue"), f64_null_field("residual")],
    )
}
pub fn eigenvectors_port() -> PortSpec {
    PortSpec::new("eigenvectors", "rank UInt32, vector List<Float64> (unit norm)", vec![u32_field("rank"), list_f64_field("vector")])
        .optional()
}
pub fn density_port() -> PortSpec {
    PortSpec::new("density", "x Float64, density Float64 (Gaussian-broadened, integrates to 1)", vec![f64_field("x"), f64_field("density")])
}
pub fn nodes_port() -> PortSpec {
    PortSpec::new(
        "nodes",
        "probe UInt32, node Float64 (Ritz value), weight Float64",
        vec![u32_field("probe"), f64_field("node"), f64_field("weight")],
    )
}
pub fn trace_port() -> PortSpec {
    PortSpec::new(
        "trace",
        "estimator Utf8, value Float64, stderr Float64, probes UInt64",
        vec![utf8_field("estimator"), f64_field("value"), f64_field("stderr"), u64_field("probes")],
    )
}

fn op_inputs() -> Vec<PortSpec> {
    vec![matrix_port().optional(), model_port().optional(), dataset_port().optional()]
}

/// The operator a solver stage works on: a dense `matrix` input, or `model` + `dataset` and an
/// operator description.
struct Target {
    op: Arc<dyn LinearOperator>,
    dense: Option<DenseMatrix>,
    curvature: Option<Arc<hesslab_hessian::ModelCurvature>>,
    index: Option<Vec<usize>>,
    name: String,
}

fn target(ctx: &StageContext, spec: &OperatorSpec) -> Result<Target, StageError> {
    if ctx.input_opt("matrix").is_some() {
        let dm = read_matrix_input(ctx, "matrix")?;
        let name = dm.operator.clone();
        return Ok(Target {
            op: Arc::new(DenseOperator::new(dm.matrix.clone(), name.clone())),
            dense: Some(dm),
            curvature: None,
            index: None,
            name,
        });
    }
    match (ctx.input_opt("model"), ctx.input_opt("dataset")) {
        (Some(_), Some(_)) => {
            let model = Mlp::read(ctx, "model")?;
            let ds = Dataset::read(ctx, "dataset")?;
            let b = spec.build(model, &ds, ctx.seed).map_err(StageError::msg)?;
            Ok(Target { op: b.op, dense: None, curvature: Some(b.curvature), index: b.index, name: spec.operator.name().to_string() })
        }
        _ => Err(StageError::msg("connect either `matrix` (a dense matrix) or both `model` and `dataset` (matrix-free operator)")),
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    /// faer's dense self-adjoint eigendecomposition: every eigenvalue.
    Dense,
    /// Thick-restart Lanczos: k extreme eigenpairs, matrix-free.
    Lanczos,
    /// Power iteration with deflation (PyHessian's method): k largest-magnitude eigenpairs.
    Power,
}

hesslab_hessian::operator_params! {
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EigenParams {
    /// dense, lanczos or power.
    pub solver: Solver,
    /// Number of eigenvalues for lanczos/power (dense returns all; see `vectors`).
    pub k: usize,
    /// largest, smallest or magnitude (lanczos).
    pub which: Which,
    /// Write eigenvectors of this many top eigenvalues (and as many bottom ones with dense).
    pub vectors: usize,
    /// lanczos: relative residual tolerance; power: relative change tolerance.
    pub tol: f64,
    /// lanczos: maximum restarts; power: maximum iterations per eigenvalue.
    pub max_iter: usize,
    /// lanczos: Krylov subspace size (0 = automatic).
    pub max_dim: usize,
    /// lanczos: wall-clock cap in seconds, after which it stops with an error.
    pub max_seconds: f64,
}
}

impl Default for EigenParams {
    fn default() -> Self {
        EigenParams {
            solver: Solver::Dense,
            k: 20,
            which: Which::Largest,
            vectors: 0,
            tol: 1e-10,
            max_iter: 2000,
            max_dim: 0,
            max_seconds: 3600.0,
            operator: CurvatureKind::Hessian,
            samples: SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
        }
    }
}

pub struct EigenStage;

impl StageKind for EigenStage {
    type Params = EigenParams;
    const KIND: &'static str = "eigenvalues";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Eigenvalues of a dense `matrix` or of a matrix-free operator (`model` + `dataset`), by solver = dense | lanczos | power. Same output schema for every solver.";
    fn inputs() -> Vec<PortSpec> {
        op_inputs()
    }
    fn outputs() -> Vec<PortSpec> {
        vec![eigenvalues_port(), eigenvectors_port()]
    }
    fn check(p: &EigenParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.solver != Solver::Dense && p.k == 0 {
            e.push(("k".into(), "k must be ≥ 1".into()));
        }
        if !(p.tol > 0.0) {
            e.push(("tol".into(), "tol must be > 0".into()));
        }
        if !(p.max_seconds > 0.0) {
            e.push(("max_seconds".into(), "max_seconds must be > 0".into()));
        }
        e
    }
    fn facts(p: &EigenParams, inputs: &hesslab_pipeline::InputFacts) -> hesslab_pipeline::Facts {
        let dim = side(inputs);
        let rows = if p.solver == Solver::Dense { dim } else { Some(p.k as u64) };
        hesslab_pipeline::Facts { rows, dim, ..Default::default() }
    }
    fn estimate(p: &EigenParams, inputs: &hesslab_pipeline::InputFacts) -> Option<hesslab_pipeline::Estimate> {
        solver_estimate(p.solver, p.k, p.max_dim, p.vectors, inputs)
    }
    fn run(p: &EigenParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let tg = target(ctx, &p.spec())?;
        let t0 = std::time::Instant::now();
        let mut meta = BTreeMap::new();
        meta.insert("operator".to_string(), tg.name.clone());
        meta.insert("dim".to_string(), tg.op.dim().to_string());
        let pairs = match p.solver {
            Solver::Dense => {
                let mat = match &tg.dense {
                    Some(d) => d.matrix.clone(),
                    None => {
                        let curvature = tg.curvature.as_deref().map(|cv| (cv, tg.index.as_deref()));
                        Arc::new(materialize(tg.op.as_ref(), curvature, 8, &ctx.progress).0)
                    }
                };
                let dp = DenseParams { top_vectors: p.vectors, bottom_vectors: p.vectors };
                DenseSolver::solve(&mat, &dp).map_err(StageError::other)?.0
            }
            Solver::Lanczos => {
                let lp = LanczosParams {
                    k: p.k,
                    which: p.which,
                    max_dim: p.max_dim,
                    tol: p.tol,
                    max_restarts: p.max_iter,
                    max_seconds: p.max_seconds,
                    seed: ctx.seed,
                    ..Default::default()
                };
                let (pairs, info) = LanczosSolver::solve(tg.op.as_ref(), &lp, &ctx.progress).map_err(StageError::other)?;
                meta.insert("restarts".into(), info.restarts.to_string());
                meta.insert("max_residual".into(), format!("{:e}", info.max_residual));
                meta.insert("orthogonality_error".into(), format!("{:e}", info.orthogonality_error));
                pairs
            }
            Solver::Power => {
                let pp = PowerParams { k: p.k, tol: p.tol.max(1e-12), max_iter: p.max_iter, seed: ctx.seed };
                PowerIteration::solve(tg.op.as_ref(), &pp).map_err(StageError::other)?.0
            }
        };
        let _ = t0;
        meta.insert("solver".into(), enum_name(&p.solver));
        meta.insert("which".into(), enum_name(&p.which));
        meta.insert("operator_applications".into(), tg.op.applications().to_string());
        let b = RecordBatch::try_new(
            eigenvalues_port().schema,
            vec![
                u32_array(pairs.ranks.iter().copied()),
                f64_array(pairs.values.iter().copied()),
                f64_opt_array(pairs.residuals.iter().copied()),
            ],
        )
        .map_err(StageError::other)?;
        ctx.write("eigenvalues", b, &meta)?;
        let nvec = if p.solver == Solver::Dense { pairs.vectors.len() } else { p.vectors.min(pairs.vectors.len()) };
        if p.vectors > 0 {
            let vecs = &pairs.vectors[..nvec];
            let b = RecordBatch::try_new(
                eigenvectors_port().schema,
                vec![u32_array(vecs.iter().map(|v| v.0)), list_f64_array(vecs.iter().map(|v| v.1.as_slice()))],
            )
            .map_err(StageError::other)?;
            ctx.write("eigenvectors", b, &meta)?;
        }
        Ok(())
    }
}

/// The most grid points of a density (a finer grid than this is a typo).
pub const MAX_GRID: usize = 10_000_000;

/// The snake_case name serde gives a unit enum variant.
fn enum_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The side P of the operator a solver stage will see: a dense `matrix` input's, or the model's.
fn side(inputs: &hesslab_pipeline::InputFacts) -> Option<u64> {
    inputs.get("matrix").and_then(|m| m.dim).or_else(|| inputs.get("model").and_then(|m| m.params))
}

/// Peak memory of a solver: dense works on the matrix (a copy of the input and faer's
/// working copy, plus the eigenvectors when asked); Lanczos and power keep a basis of P-vectors.
pub(crate) fn solver_estimate(
    solver: Solver,
    k: usize,
    max_dim: usize,
    vectors: usize,
    inputs: &hesslab_pipeline::InputFacts,
) -> Option<hesslab_pipeline::Estimate> {
    use hesslab_pipeline::Estimate;
    let matrix_free = inputs.get("matrix").is_none();
    let (p, cache) = if matrix_free { hesslab_hessian::operator_estimate(inputs)? } else { (side(inputs)?, Estimate::f64s(0, "")) };
    let estimate = match solver {
        Solver::Dense => {
            let copies = if vectors > 0 { 3 } else { 2 } + u64::from(matrix_free);
            let m = hesslab_hessian::dense_estimate(p);
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

/// Eigenvalues (descending) and ranks from an `eigenvalues` artifact.
pub fn read_eigenvalues(a: &Artifact) -> Result<(Vec<u32>, Vec<f64>), StageError> {
    let err = |m: String| StageError::from(a.column_error(m));
    let ranks = u32_values(&a.batch, "rank").map_err(err)?;
    let vals = f64_values(&a.batch, "eigenvalue").map_err(err)?;
    let mut pairs: Vec<(u32, f64)> = ranks.into_iter().zip(vals).collect();
    pairs.sort_by_key(|p| p.0);
    Ok(pairs.into_iter().unzip())
}

hesslab_hessian::operator_params! {
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
            operator: CurvatureKind::Hessian,
            samples: SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
        }
    }
}

pub struct SlqStage;

impl StageKind for SlqStage {
    type Params = SlqStageParams;
    const KIND: &'static str = "spectral_density";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Stochastic Lanczos quadrature spectral density (full reorthogonalization, m steps × n probes, seeded) of a dense `matrix` or a matrix-free operator; nodes/weights and a Gaussian-broadened density.";
    fn inputs() -> Vec<PortSpec> {
        op_inputs()
    }
    fn outputs() -> Vec<PortSpec> {
        vec![density_port(), nodes_port()]
    }
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
    fn estimate(p: &Self::Params, inputs: &hesslab_pipeline::InputFacts) -> Option<hesslab_pipeline::Estimate> {
        // One Lanczos basis of `steps` P-vectors at a time (probes run one after another).
        solver_estimate(Solver::Power, p.steps, 0, 0, inputs)
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let spec = p.spec();
        let tg = target(ctx, &spec)?;
        let r = StochasticLanczosQuadrature::run(
            tg.op.as_ref(),
            &SlqParams { steps: p.steps, probes: p.probes, seed: ctx.seed },
            &ctx.progress,
        )
        .map_err(StageError::other)?;
        let (lo, hi) = r.range();
        let width = (hi - lo).max(1e-12);
        let sigma = p.sigma * width;
        let grid: Vec<f64> = (0..p.grid).map(|i| lo - 3.0 * sigma + (width + 6.0 * sigma) * i as f64 / (p.grid - 1) as f64).collect();
        let dens = r.density(&grid, sigma);
        let mut meta = BTreeMap::new();
        meta.insert("operator".to_string(), tg.name.clone());
        meta.insert("dim".to_string(), r.dim.to_string());
        meta.insert("sigma".to_string(), format!("{sigma:e}"));
        meta.insert("operator_applications".to_string(), r.applications.to_string());
        if let Some(t) = p.count_above {
            meta.insert("count_above_threshold".into(), format!("{t:e}"));
            meta.insert("count_above".into(), format!("{:.3}", r.count_above(t)));
        }
        ctx.write(
            "density",
            RecordBatch::try_new(density_port().schema, vec![f64_array(grid), f64_array(dens)]).map_err(StageError::other)?,
            &meta,
        )?;
        let rows: Vec<(u32, f64, f64)> =
            r.nodes.iter().enumerate().flat_map(|(i, v)| v.iter().map(move |&(t, w)| (i as u32, t, w))).collect();
        ctx.write(
            "nodes",
            RecordBatch::try_new(
                nodes_port().schema,
                vec![u32_array(rows.iter().map(|r| r.0)), f64_array(rows.iter().map(|r| r.1)), f64_array(rows.iter().map(|r| r.2))],
            )
            .map_err(StageError::other)?,
            &meta,
        )?;
        Ok(())
    }
}

hesslab_hessian::operator_params! {
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TraceParams {
    /// Operator-vector products per estimator.
    pub probes: usize,
}
}

impl Default for TraceParams {
    fn default() -> Self {
        TraceParams { probes: 99, operator: CurvatureKind::Hessian, samples: SampleSet::Train, max_samples: 0, tensors: vec![] }
    }
}

pub struct TraceStage;

impl StageKind for TraceStage {
    type Params = TraceParams;
    const KIND: &'static str = "trace";
    const VERSION: u32 = 1;
    const DOC: &'static str =
        "Hutchinson and Hutch++ trace estimates with standard errors (plus the exact trace when a dense matrix is connected).";
    fn inputs() -> Vec<PortSpec> {
        op_inputs()
    }
    fn outputs() -> Vec<PortSpec> {
        vec![trace_port()]
    }
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        if p.probes < 3 { vec![("probes".into(), "probes must be ≥ 3".into())] } else { vec![] }
    }
    fn estimate(p: &Self::Params, inputs: &hesslab_pipeline::InputFacts) -> Option<hesslab_pipeline::Estimate> {
        // Hutch++ keeps its sketch and its image: about `probes` P-vectors.
        solver_estimate(Solver::Power, p.probes, 0, 0, inputs)
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let spec = p.spec();
        let tg = target(ctx, &spec)?;
        let mut rows = vec![hutchinson(tg.op.as_ref(), p.probes, ctx.seed), hutch_plus_plus(tg.op.as_ref(), p.probes, ctx.seed ^ 1)];
        if let Some(d) = &tg.dense {
            let m = &d.matrix;
            rows.push(TraceEstimate { estimator: "exact", value: (0..m.nrows()).map(|i| m[(i, i)]).sum(), stderr: 0.0, probes: 0 });
        }
        let mut meta = BTreeMap::new();
        meta.insert("operator".to_string(), tg.name.clone());
        meta.insert("dim".to_string(), tg.op.dim().to_string());
        let b = RecordBatch::try_new(
            trace_port().schema,
            vec![
                utf8_array(rows.iter().map(|r| r.estimator)),
                f64_array(rows.iter().map(|r| r.value)),
                f64_array(rows.iter().map(|r| r.stderr)),
                u64_array(rows.iter().map(|r| r.probes as u64)),
            ],
        )
        .map_err(StageError::other)?;
        ctx.write("trace", b, &meta)
    }
}
