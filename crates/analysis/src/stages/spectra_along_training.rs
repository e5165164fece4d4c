//! `spectra_along_training`: the top (or bottom) k Hessian eigenvalues at every snapshot of a
//! training trajectory, each Lanczos solve started from the previous snapshot's Ritz vectors,
//! optionally with the outlier count and the SLQ density per snapshot.
use crate::outliers::count_outliers;
use crate::plots::{Plot, YScale};
use hesslab_artifacts::{
    Dataset, OperatorInfo, SnapshotDensity, SnapshotEigenvalue, TrainingDensity, TrainingSpectrum, TrainingStep, TrainingSteps, Trajectory,
};
use hesslab_eigen::{LanczosParams, LanczosSolver, SlqParams, SlqResult, StochasticLanczosQuadrature, Which, warm_start};
use hesslab_hessian::{CurvatureKind, SampleSet};
use hesslab_model::Network;
use hesslab_pipeline::resources::prod;
use hesslab_pipeline::{Estimate, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::WriteFigure;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

hesslab_hessian::operator_params! {
/// Parameters of `spectra_along_training`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlongTrainingParams {
    /// Eigenvalues per snapshot.
    pub k: usize,
    /// largest, smallest or magnitude.
    pub which: Which,
    /// Relative residual tolerance of every eigenpair.
    pub tol: f64,
    /// Krylov subspace size (0 = automatic).
    pub max_dim: usize,
    /// Start each snapshot's Lanczos from the sum of the previous snapshot's Ritz vectors.
    pub warm_start: bool,
    /// Also solve every snapshot from a random start and record its product count
    /// (`cold_applications`), to measure what the warm start saves; the warm and cold
    /// eigenvalues are checked to agree to 100 × tol.
    pub compare_cold: bool,
    /// Use every n-th snapshot of the trajectory (1 = all).
    pub every: usize,
    /// Count outliers (elbow) on each snapshot's top k (which = largest only).
    pub outliers: bool,
    /// Also the SLQ spectral density at every snapshot (`training_density`).
    pub density: bool,
    /// SLQ: random probes per snapshot.
    pub probes: usize,
    /// SLQ: Lanczos steps per probe.
    pub steps: usize,
    /// SLQ: Gaussian broadening, as a fraction of the spectral range over all snapshots.
    pub sigma: f64,
    /// SLQ: grid points.
    pub grid: usize,
}
}

impl Default for AlongTrainingParams {
    fn default() -> Self {
        AlongTrainingParams {
            k: 20,
            which: Which::Largest,
            tol: 1e-10,
            max_dim: 0,
            warm_start: true,
            compare_cold: false,
            every: 1,
            outliers: true,
            density: false,
            probes: 5,
            steps: 80,
            sigma: 0.01,
            grid: 400,
            operator: CurvatureKind::Hessian,
            samples: SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
            batch_norm: Default::default(),
        }
    }
}

/// The `spectra_along_training` stage kind.
pub struct SpectraAlongTraining;

/// Ranks drawn (and named in the legend) in the top-k figure.
const DRAWN_RANKS: usize = 10;

impl StageKind for SpectraAlongTraining {
    type Params = AlongTrainingParams;
    const KIND: &'static str = "spectra_along_training";
    const DOC: &'static str = "Top (or bottom) k eigenvalues of the loss Hessian (or another curvature operator) at every snapshot of a training `trajectory`, Lanczos warm-started from the previous snapshot's Ritz vectors (products counted; optionally against a cold start), with the outlier count and optionally the SLQ density per snapshot.";
    const INPUTS: &'static [PortSpec] = &[port::<Trajectory>(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<TrainingSpectrum>(), port::<TrainingSteps>(), port::<TrainingDensity>().optional()];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.k == 0 {
            e.push(("k".into(), "k must be ≥ 1".into()));
        }
        if !(p.tol > 0.0 && p.tol < 1.0) {
            e.push(("tol".into(), "tol must be in (0, 1)".into()));
        }
        if p.every == 0 {
            e.push(("every".into(), "every must be ≥ 1".into()));
        }
        if p.outliers && p.which != Which::Largest {
            e.push(("outliers".into(), "outlier counts need which = \"largest\"; set outliers = false".into()));
        }
        if p.density && (p.probes == 0 || p.steps < 2 || p.grid < 2 || p.grid > hesslab_stages::solvers::MAX_GRID || !(p.sigma > 0.0)) {
            e.push((
                "density".into(),
                format!("density needs probes ≥ 1, steps ≥ 2, 2 ≤ grid ≤ {} and sigma > 0", hesslab_stages::solvers::MAX_GRID),
            ));
        }
        e
    }
    fn estimate(p: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        let traj = inputs.get(Trajectory::NAME)?;
        let data = inputs.get(Dataset::NAME)?;
        let (dim, n) = (traj.params?, data.rows?);
        let units = traj.units.unwrap_or(dim);
        let c = data.classes.unwrap_or(1);
        let m = if p.max_dim == 0 { (2 * p.k + 20).max(40) } else { p.max_dim.max(p.k + 2) } as u64;
        // The trajectory itself, the Krylov basis, the previous snapshot's vectors and the
        // operator's per-sample cache.
        // The trajectory's rows are its snapshots once it is written; before a run the train
        // stage's facts say how many it will record.
        let snapshots = traj.snapshots.unwrap_or(1);
        Some(
            Estimate::f64s(prod(&[snapshots, dim]), format!("{snapshots} snapshots"))
                .plus(Estimate::f64s(dim.saturating_mul(m + 2 * p.k as u64 + 4), format!("Krylov basis of {m} vectors of length {dim}")))
                .plus(Estimate::f64s(
                    prod(&[n, units.saturating_mul(if p.batch_norm.is_eval() { 4 } else { 6 }).saturating_add(c * c)]),
                    format!("operator cache of {n} samples"),
                )),
        )
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let traj = ctx.read::<Trajectory>(Trajectory::NAME)?;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let arch = traj.architecture.clone().ok_or_else(|| StageError::msg("the trajectory has no `architecture` metadata".to_string()))?;
        let snapshots: Vec<&(u64, Vec<f64>)> = traj.snapshots.iter().step_by(p.every).collect();
        if snapshots.is_empty() {
            return Err(StageError::msg("the trajectory has no snapshots (set `snapshot_every` in `train`)".to_string()));
        }
        let spec = p.spec();
        if spec.batch_norm == hesslab_hessian::BatchNormMode::Eval && arch.graph().num_buffers > 0 {
            // A snapshot is the parameters only; eval mode would take PyTorch's initial running
            // statistics for every step.
            return Err(StageError::msg(
                "trajectory snapshots hold parameters, not BatchNorm's running statistics; set batch_norm = \"batch\" (the batch statistics of the samples)".to_string(),
            ));
        }
        // Each snapshot's preconditioner, from the optimizer state the trajectory carries.
        let mut preconditioners = preconditioners(&traj, &arch)?.into_iter().step_by(p.every);
        let mut spectrum = Vec::new();
        let mut steps = Vec::new();
        let mut slq: Vec<(u64, SlqResult)> = Vec::new();
        let mut previous: Option<Vec<Vec<f64>>> = None;
        let mut dim = 0;
        let bar = ctx.progress.bar(snapshots.len() as u64, "snapshots");
        for (step, params) in snapshots {
            if params.len() != arch.num_params() {
                return Err(StageError::msg(format!(
                    "trajectory snapshot at step {step} has {} parameters; its architecture has {}",
                    params.len(),
                    arch.num_params()
                )));
            }
            let net = Network::new(arch.clone(), params.clone());
            let split = spec.select(&ds, ctx.seed);
            // The loss only: a forward pass, not a gradient.
            let train_loss = net.evaluate(split.x.as_ref(), &split.y).0;
            let built = spec.build(net, &ds, ctx.seed).map_err(StageError::other)?;
            let op = built.op.as_ref();
            dim = op.dim();
            let k = p.k.min(dim);
            let lp =
                LanczosParams { k, which: p.which, tol: p.tol, max_dim: p.max_dim, seed: ctx.seed, check_every: 5, ..Default::default() };
            let start =
                previous.as_ref().filter(|_| p.warm_start).and_then(|v| warm_start(&v.iter().map(|x| x.as_slice()).collect::<Vec<_>>()));
            let hidden = hesslab_pipeline::Progress::hidden();
            let (pairs, info) = LanczosSolver::solve_from(op, &lp, start.as_deref(), &hidden).map_err(StageError::other)?;
            let cold_applications = if p.compare_cold {
                let (cold, ci) = LanczosSolver::solve(op, &lp, &hidden).map_err(StageError::other)?;
                check_agreement(*step, &pairs.values, &cold.values, p.tol)?;
                Some(ci.applications)
            } else {
                None
            };
            let desc = pairs.values.clone();
            for (i, (v, r)) in pairs.values.iter().zip(&pairs.residuals).enumerate() {
                spectrum.push((*step, pairs.ranks[i], *v, r.unwrap_or(f64::NAN)));
            }
            let outliers = p.outliers.then(|| count_outliers(&desc, desc.len(), None).heuristic as u64);
            let (preconditioned_sharpness, preconditioned_residual) = match preconditioners.next().flatten() {
                Some(pc) => {
                    let (l, r) = preconditioned_top(&built, &pc, p.tol, ctx.seed)?;
                    (Some(l), Some(r))
                }
                None => (None, None),
            };
            steps.push(TrainingStep {
                step: *step,
                train_loss,
                applications: info.applications,
                cold_applications,
                outliers,
                preconditioned_sharpness,
                preconditioned_residual,
            });
            if p.density {
                let r =
                    StochasticLanczosQuadrature::run(op, &SlqParams { steps: p.steps.min(dim), probes: p.probes, seed: ctx.seed }, &hidden)
                        .map_err(StageError::other)?;
                slq.push((*step, r));
            }
            previous = Some(pairs.vectors.into_iter().map(|(_, v)| v).collect());
            bar.inc(1);
        }
        bar.finish_and_clear();
        let which = serde_json::to_value(p.which).ok().and_then(|v| v.as_str().map(str::to_string));
        let info = OperatorInfo { operator: spec.operator.name().to_string(), dim, which, ..Default::default() };
        draw(ctx, &spectrum, &steps)?;
        if p.density {
            let (density, sigma) = density_rows(&slq, p.sigma, p.grid);
            draw_density(ctx, &density)?;
            let info = OperatorInfo { which: None, sigma: Some(sigma), ..info.clone() };
            let rows = density.into_iter().map(|(step, x, density)| SnapshotDensity { step, x, density }).collect();
            ctx.write::<TrainingDensity>(TrainingDensity::NAME, &TrainingDensity { rows, info })?;
        }
        ctx.write::<TrainingSteps>(TrainingSteps::NAME, &TrainingSteps(steps))?;
        let rows = spectrum
            .into_iter()
            .map(|(step, rank, eigenvalue, residual)| SnapshotEigenvalue { step, rank, eigenvalue, residual })
            .collect();
        ctx.write::<TrainingSpectrum>(TrainingSpectrum::NAME, &TrainingSpectrum { rows, info })
    }
}

/// The diagonal preconditioner P of every snapshot (`None` where the optimizer has none, or
/// has not updated yet), rebuilt from the optimizer state the trajectory carries; empty
/// iterations (`None` throughout) for a trajectory without state.
fn preconditioners(traj: &Trajectory, arch: &hesslab_model::NetArch) -> Result<Vec<Option<Vec<f64>>>, StageError> {
    let Some((config, states)) = &traj.optimizer else { return Ok(vec![None; traj.snapshots.len()]) };
    let tensors = arch.tensors();
    states
        .iter()
        .zip(&traj.snapshots)
        .map(|(s, (step, _))| {
            let mut o = config.build(&tensors, arch.num_params());
            o.load_state(s).map_err(|e| StageError::msg(format!("the trajectory's optimizer state at step {step}: {e}")))?;
            Ok(o.preconditioner())
        })
        .collect()
}

/// The top eigenvalue of P^{-1/2} A P^{-1/2} (A the snapshot's operator, restricted to its
/// block when it has one) by Lanczos to `tol`, and its relative residual.
fn preconditioned_top(built: &hesslab_hessian::BuiltOperator, pc: &[f64], tol: f64, seed: u64) -> Result<(f64, f64), StageError> {
    let p: Vec<f64> = match &built.index {
        Some(ix) => ix.iter().map(|&i| pc[i]).collect(),
        None => pc.to_vec(),
    };
    let op = hesslab_hessian::Preconditioned::inverse_sqrt(built.op.clone(), &p);
    let lp = LanczosParams { k: 1, which: Which::Largest, tol, seed, check_every: 5, ..Default::default() };
    let (pairs, _) = LanczosSolver::solve(&op, &lp, &hesslab_pipeline::Progress::hidden()).map_err(StageError::other)?;
    Ok((pairs.values[0], pairs.residuals[0].unwrap_or(f64::NAN)))
}

/// The warm and cold solves answer the same question; a disagreement beyond what the residual
/// tolerance allows is a bug, not a result.
fn check_agreement(step: u64, warm: &[f64], cold: &[f64], tol: f64) -> Result<(), StageError> {
    let scale = warm.iter().chain(cold).fold(0.0f64, |a, b| a.max(b.abs())).max(f64::MIN_POSITIVE);
    for (i, (w, c)) in warm.iter().zip(cold).enumerate() {
        if (w - c).abs() > 100.0 * tol * scale {
            return Err(StageError::msg(format!("step {step}, rank {i}: warm-started Lanczos gives {w}, a cold start {c}")));
        }
    }
    Ok(())
}

/// Every snapshot's density on one grid spanning all their quadrature nodes, and the absolute
/// broadening.
fn density_rows(slq: &[(u64, SlqResult)], sigma: f64, grid: usize) -> (Vec<(u64, f64, f64)>, f64) {
    let nodes = || slq.iter().flat_map(|(_, r)| r.nodes.iter().flatten().map(|&(t, _)| t));
    let (lo, hi) = (nodes().fold(f64::INFINITY, f64::min), nodes().fold(f64::NEG_INFINITY, f64::max));
    let width = (hi - lo).max(f64::MIN_POSITIVE);
    let s = sigma * width;
    let xs: Vec<f64> = (0..grid).map(|i| lo - 3.0 * s + (width + 6.0 * s) * i as f64 / (grid - 1) as f64).collect();
    let mut rows = Vec::with_capacity(slq.len() * grid);
    for (step, r) in slq {
        for (x, d) in xs.iter().zip(r.density(&xs, s)) {
            rows.push((*step, *x, d));
        }
    }
    (rows, s)
}

fn draw(ctx: &StageContext, spectrum: &[(u64, u32, f64, f64)], steps: &[TrainingStep]) -> Result<(), StageError> {
    let ranks: Vec<u32> = {
        let mut r: Vec<u32> = spectrum.iter().map(|r| r.1).collect();
        r.sort_unstable();
        r.dedup();
        r
    };
    let mut plot = Plot::new("Top eigenvalues along training", "step", "eigenvalue").y_scale(YScale::Log).sequential();
    for (i, rank) in ranks.iter().enumerate().take(DRAWN_RANKS.max(ranks.len())) {
        let pts: Vec<(f64, f64)> = spectrum.iter().filter(|r| r.1 == *rank).map(|r| (r.0 as f64, r.2)).collect();
        let name = if i < DRAWN_RANKS { format!("λ{}", rank + 1) } else { String::new() };
        plot = plot.line(&name, pts);
    }
    plot.write(ctx, "top_along_training")?;
    let counts: Vec<(f64, f64)> = steps.iter().filter_map(|s| s.outliers.map(|o| (s.step as f64, o as f64))).collect();
    if !counts.is_empty() {
        Plot::new("Outliers (elbow count) along training", "step", "outliers")
            .line("", counts.clone())
            .points("", counts)
            .write(ctx, "outliers_along_training")?;
    }
    let pre: Vec<(f64, f64)> = steps.iter().filter_map(|s| s.preconditioned_sharpness.map(|l| (s.step as f64, l))).collect();
    if !pre.is_empty() {
        let top = spectrum.iter().filter(|r| r.1 == 0).map(|r| (r.0 as f64, r.2)).collect();
        Plot::new("Plain and preconditioned sharpness along training", "step", "top eigenvalue")
            .line("λ₁(H)", top)
            .line("λ₁(P^-1/2 H P^-1/2)", pre)
            .write(ctx, "preconditioned_along_training")?;
    }
    if steps.iter().any(|s| s.cold_applications.is_some()) {
        let warm = steps.iter().map(|s| (s.step as f64, s.applications as f64)).collect();
        let cold = steps.iter().filter_map(|s| s.cold_applications.map(|c| (s.step as f64, c as f64))).collect();
        Plot::new("Operator applications per snapshot", "step", "Hessian-vector products")
            .line("warm start", warm)
            .line("cold start", cold)
            .y_scale(YScale::Linear)
            .write(ctx, "warm_vs_cold")?;
    }
    Ok(())
}

/// The density at up to six snapshots spread over training, on a log axis.
fn draw_density(ctx: &StageContext, rows: &[(u64, f64, f64)]) -> Result<(), StageError> {
    let mut steps: Vec<u64> = rows.iter().map(|r| r.0).collect();
    steps.dedup();
    let picks: Vec<u64> = if steps.len() <= 6 { steps.clone() } else { (0..6).map(|i| steps[i * (steps.len() - 1) / 5]).collect() };
    // Eight decades below the highest peak: the Gaussian tails below that are only broadening.
    let floor = rows.iter().fold(0.0f64, |a, r| a.max(r.2)) * 1e-8;
    let mut plot = Plot::new("Spectral density along training (SLQ)", "eigenvalue", "density").y_scale(YScale::Log);
    for s in picks {
        // Below the floor the line stops (a gap in the spectrum stays a gap).
        plot = plot.line(
            &format!("step {s}"),
            rows.iter().filter(|r| r.0 == s).map(|r| (r.1, if r.2 > floor { r.2 } else { f64::NAN })).collect(),
        );
    }
    plot.write(ctx, "density_along_training")?;
    // Every snapshot at once: step × eigenvalue, coloured by log density.
    let cells: Vec<(f64, f64, f64)> = rows.iter().map(|r| (r.0 as f64, r.1, r.2)).collect();
    Plot::new("Spectral density along training (colour: log10 density, 8 decades)", "step", "eigenvalue")
        .cells(cells)
        .y_scale(YScale::Linear)
        .write(ctx, "density_heatmap")
}
