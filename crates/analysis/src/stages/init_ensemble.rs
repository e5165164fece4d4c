//! `init_ensemble`: the top Hessian eigenvalues of thousands of independently drawn parameter
//! vectors of one architecture (S16 P4: > 5 000 initializations on a sphere), as one stage
//! rather than a 5 000-member sweep: one artifact, one histogram, members run in parallel.
use crate::plots::Plot;
use hesslab_artifacts::{Dataset, Ensemble, EnsembleMember, Model};
use hesslab_eigen::{DenseParams, DenseSolver};
use hesslab_hessian::{CurvatureKind, SampleSet, materialize};
use hesslab_model::optim::{OptimizerConfig, Schedule};
use hesslab_model::{Init, TrainParams, initialize_network};
use hesslab_pipeline::{Estimate, InputFacts, Port, PortSpec, Progress, StageContext, StageError, StageKind, derive_seed, port};
use hesslab_stages::WriteFigure;
use hesslab_stages::estimates::operator_estimate;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

hesslab_hessian::operator_params! {
/// Parameters of `init_ensemble`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InitEnsembleParams {
    /// Number of parameter draws (S16 P4 used more than 5 000).
    pub members: usize,
    /// How each draw is made: sphere (a uniform point on the sphere of radius init_radius,
    /// S16 P4), normal (init_std) or kaiming_uniform.
    pub init: Init,
    /// Radius of the sphere for init = "sphere".
    pub init_radius: f64,
    /// Standard deviation for init = "normal".
    pub init_std: f64,
    /// Full-batch gradient steps from each draw before its Hessian (0 = at the draw itself).
    pub steps: usize,
    /// Step size of those steps (the schedule's base).
    pub lr: f64,
    /// The optimizer of those steps, as `train`'s: "sgd" (default), "adam", "adamw",
    /// "rmsprop", "muon" or { name = { PyTorch's arguments } }.
    #[serde(skip_serializing_if = "OptimizerConfig::is_default")]
    #[schemars(extend("default" = "sgd"))]
    pub optimizer: OptimizerConfig,
    /// Their learning-rate schedule, as `train`'s.
    #[serde(skip_serializing_if = "Schedule::is_constant")]
    #[schemars(extend("default" = "constant"))]
    pub schedule: Schedule,
    /// Eigenvalues kept per member, from the largest.
    pub top: usize,
    /// Largest parameter count accepted: each member's Hessian is materialized (P products)
    /// and fully diagonalized (O(P³)).
    pub max_params: usize,
}
}

impl Default for InitEnsembleParams {
    fn default() -> Self {
        InitEnsembleParams {
            members: 5000,
            init: Init::Sphere,
            init_radius: 1.0,
            init_std: 0.1,
            steps: 0,
            lr: 0.1,
            optimizer: OptimizerConfig::default(),
            schedule: Schedule::Constant,
            top: 2,
            max_params: 2048,
            operator: CurvatureKind::Hessian,
            samples: SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
            batch_norm: Default::default(),
        }
    }
}

/// The full-batch training of each member before its Hessian.
fn steps_of(p: &InitEnsembleParams) -> TrainParams {
    TrainParams {
        max_steps: p.steps,
        lr: p.lr,
        optimizer: p.optimizer.clone(),
        schedule: p.schedule.clone(),
        batch_size: 0,
        log_every: p.steps.max(1),
        ..Default::default()
    }
}

/// The `init_ensemble` stage kind.
pub struct InitEnsemble;

impl StageKind for InitEnsemble {
    type Params = InitEnsembleParams;
    const KIND: &'static str = "init_ensemble";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Top eigenvalues of the curvature at many independent parameter draws of the `model`'s architecture (its weights are not used): S16 P4's > 5 000 initializations on a sphere, optionally followed by full-batch GD steps; histogram of the largest eigenvalue.";
    const INPUTS: &'static [PortSpec] = &[port::<Model>(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Ensemble>()];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.members == 0 || p.members > 1_000_000 {
            e.push(("members".into(), "members must be between 1 and 1 000 000".into()));
        }
        if p.top == 0 {
            e.push(("top".into(), "top must be ≥ 1".into()));
        }
        if !(p.init_radius > 0.0 && p.init_radius.is_finite()) || !(p.init_std > 0.0 && p.init_std.is_finite()) {
            e.push(("init_radius".into(), "init_radius and init_std must be positive and finite".into()));
        }
        if p.steps > 0 && !(p.lr > 0.0 && p.lr.is_finite()) {
            e.push(("lr".into(), "lr must be positive and finite".into()));
        }
        e.extend(hesslab_stages::check_optimizer(&steps_of(p)));
        e
    }
    /// Members run side by side, one per thread, each with its dense P×P Hessian, its
    /// eigendecomposition workspace (about as much again) and an operator cache.
    fn estimate(params: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        let (p, cache) = operator_estimate(inputs, params.batch_norm)?;
        let threads = rayon::current_num_threads() as u64;
        let per_member = p.saturating_mul(p).saturating_mul(2);
        Some(
            Estimate::f64s(per_member.saturating_mul(threads), format!("{threads} dense {p}×{p} Hessians and their eigensolves"))
                .plus(cache),
        )
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let model = ctx.read::<Model>(Model::NAME)?;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let arch = model.net.arch();
        let dim = if p.tensors.is_empty() {
            arch.num_params()
        } else {
            p.spec().index(&model.net).map_err(StageError::other)?.map_or(0, |i| i.len())
        };
        if dim > p.max_params {
            return Err(StageError::msg(format!(
                "the operator has {dim} rows, above max_params = {}: every member is a dense eigenproblem",
                p.max_params
            )));
        }
        let (spec, seed) = (p.spec(), ctx.seed);
        let gd = steps_of(p);
        let bar = ctx.progress.bar(p.members as u64, "ensemble members");
        // Each member depends only on its index: the same artifact for any thread count.
        let members: Vec<Result<EnsembleMember, StageError>> = (0..p.members)
            .into_par_iter()
            .map(|i| {
                let member_seed = derive_seed(seed, &format!("member {i}"));
                let mut net = initialize_network(&arch, p.init, p.init_std, p.init_radius, member_seed);
                if p.steps > 0 {
                    hesslab_model::train(
                        &mut net,
                        &gd,
                        &ds.train(),
                        &ds.test(),
                        member_seed,
                        &hesslab_model::Start::default(),
                        &Progress::hidden(),
                    )
                    .map_err(StageError::other)?;
                }
                let built = spec.build(net, &ds, seed).map_err(StageError::other)?;
                let (a, _) = materialize(built.op.as_ref(), Some((&built.curvature, built.index.as_deref())), 8, &Progress::hidden());
                let (pairs, _) = DenseSolver::solve_owned(a, &DenseParams::default(), &Progress::hidden()).map_err(StageError::other)?;
                bar.inc(1);
                Ok(EnsembleMember { top: pairs.values.iter().take(p.top).copied().collect(), loss: built.curvature.loss })
            })
            .collect();
        bar.finish_and_clear();
        let members = members.into_iter().collect::<Result<Vec<_>, _>>()?;
        let draw = serde_json::json!({
            "init": p.init, "init_radius": p.init_radius, "init_std": p.init_std, "members": p.members, "steps": p.steps, "lr": p.lr,
        });
        let mut draw = draw;
        if p.steps > 0 && !p.optimizer.is_default() {
            draw["optimizer"] = serde_json::to_value(&p.optimizer).map_err(StageError::other)?;
        }
        if p.steps > 0 && !p.schedule.is_constant() {
            draw["schedule"] = serde_json::to_value(&p.schedule).map_err(StageError::other)?;
        }
        let top: Vec<f64> = members.iter().map(|m| m.top[0]).collect();
        let ens = Ensemble { members, operator: p.operator.name().to_string(), dim, draw: draw.to_string() };
        ctx.write::<Ensemble>(Ensemble::NAME, &ens)?;
        histogram(&top).write(ctx, "top_histogram")
    }
}

/// S16 Fig 5: a bar histogram of the largest eigenvalue over the members (40 bins).
pub fn histogram(top: &[f64]) -> Plot {
    let (lo, hi) = top.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let bins = 40;
    let width = if hi > lo { (hi - lo) / bins as f64 } else { lo.abs().max(1.0) * 1e-3 };
    let counts = crate::plots::bin_counts(top.iter().copied(), lo, width, bins);
    let bars = counts.iter().enumerate().map(|(i, &c)| (lo + (i as f64 + 0.5) * width, c as f64)).collect();
    Plot::new(&format!("Largest eigenvalue over {} draws", top.len()), "largest eigenvalue", "members").bars("", bars)
}
