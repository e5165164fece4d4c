//! `eigenvalues`: dense, Lanczos or power iteration behind one output schema.
use super::choice::{Solver, SolverChoice, TaggedSolver};
use super::{OPERATOR_INPUTS, enum_name, side, solver_estimate, target};
use crate::WriteFigure;
use hesslab_artifacts::{Eigenvalues, Eigenvectors, OperatorInfo};
use hesslab_eigen::{DenseParams, DenseSolver, LanczosParams, LanczosSolver, PowerIteration, PowerParams, Which};
use hesslab_figures::spectra::{SpectrumView, eigenvalue_figures};
use hesslab_hessian::{CurvatureKind, SampleSet, materialize};
use hesslab_pipeline::{Estimate, Facts, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

hesslab_hessian::operator_params! {
/// Parameters of `eigenvalues`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EigenParams {
    /// "dense", "lanczos" or "power"; or one of them with its own settings, e.g.
    /// `{ lanczos = { k = 20, tol = 1e-10 } }` — dense takes partial, k, which; lanczos k, which,
    /// tol, max_restarts, max_dim, max_seconds; power k, tol, max_iter. A setting left out there
    /// takes the flat key below; one given in both places is an error.
    pub solver: SolverChoice,
    /// Number of eigenvalues for lanczos/power (dense returns all unless `partial`; see
    /// `vectors`).
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
    /// dense: only the k eigenvalues `which` selects, by bisection on the tridiagonal matrix
    /// (the reduction to it is the same; what is saved is the tridiagonal solve).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("default" = false))]
    pub partial: bool,
    /// Draw the default figures: top eigenvalues, the negative part in % of P, and for a full
    /// spectrum the ordered values and the histogram (bars on a log count axis).
    #[serde(skip_serializing_if = "super::is_true")]
    #[schemars(extend("default" = true))]
    pub plot: bool,
}
}

impl Default for EigenParams {
    fn default() -> Self {
        EigenParams {
            solver: SolverChoice::Name(Solver::Dense),
            k: 20,
            which: Which::Largest,
            vectors: 0,
            tol: 1e-10,
            max_iter: 2000,
            max_dim: 0,
            max_seconds: 3600.0,
            partial: false,
            plot: true,
            operator: CurvatureKind::Hessian,
            samples: SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
            batch_norm: Default::default(),
        }
    }
}

/// The solver and its settings once the tagged form and the flat keys are merged.
#[derive(Debug, Clone)]
pub struct ResolvedSolver {
    /// Which solver.
    pub solver: Solver,
    /// Eigenpairs wanted (dense: with `partial`).
    pub k: usize,
    /// Which end of the spectrum.
    pub which: Which,
    /// Lanczos: relative residual; power: relative change.
    pub tol: f64,
    /// Lanczos: restarts; power: iterations per eigenvalue.
    pub max_iter: usize,
    /// Lanczos: Krylov subspace size (0 = automatic).
    pub max_dim: usize,
    /// Lanczos: wall-clock cap in seconds.
    pub max_seconds: f64,
    /// Dense: only k eigenvalues, by bisection.
    pub partial: bool,
    /// The settings the tagged form gave: (flat key, its name inside `solver.NAME`).
    pub tagged: Vec<(&'static str, &'static str)>,
}

impl ResolvedSolver {
    /// Where a problem with the setting behind flat key `flat` is reported: at `solver` (named
    /// `solver.NAME.KEY`) when the tagged form gave it, else at the flat key.
    fn at(&self, flat: &str, msg: &str) -> (String, String) {
        match self.tagged.iter().find(|t| t.0 == flat) {
            Some((_, nested)) => ("solver".into(), format!("`solver.{}.{nested}`: {msg}", enum_name(&self.solver))),
            None => (flat.into(), msg.into()),
        }
    }
}

impl EigenParams {
    /// The solver's settings: the tagged form's where it gives them, else the flat keys'. A
    /// setting given in both places (the flat key away from its default) is an error at the
    /// flat key.
    pub fn resolve(&self) -> (ResolvedSolver, Vec<(String, String)>) {
        let mut r = ResolvedSolver {
            solver: self.solver.solver(),
            k: self.k,
            which: self.which,
            tol: self.tol,
            max_iter: self.max_iter,
            max_dim: self.max_dim,
            max_seconds: self.max_seconds,
            partial: self.partial,
            tagged: Vec::new(),
        };
        let d = EigenParams::default();
        let mut errors = Vec::new();
        let SolverChoice::Tagged(tagged) = &self.solver else { return (r, errors) };
        let name = enum_name(&r.solver);
        let mut given = Vec::new();
        let mut take = |flat: &'static str, nested: &'static str, flat_is_default: bool, set: &mut dyn FnMut()| {
            if !flat_is_default {
                errors.push((flat.to_string(), format!("given twice: here and as `solver.{name}.{nested}`; keep one")));
            }
            given.push((flat, nested));
            set();
        };
        // Each tagged setting over its flat key: `nested => flat`.
        macro_rules! merge {
            ($t:ident: $($nested:ident => $flat:ident),*) => {{
                $(if let Some(v) = $t.$nested {
                    take(stringify!($flat), stringify!($nested), self.$flat == d.$flat, &mut || r.$flat = v);
                })*
            }};
        }
        match tagged {
            TaggedSolver::Dense(t) => merge!(t: partial => partial, k => k, which => which),
            TaggedSolver::Lanczos(t) => {
                merge!(t: k => k, which => which, tol => tol, max_restarts => max_iter, max_dim => max_dim, max_seconds => max_seconds)
            }
            TaggedSolver::Power(t) => merge!(t: k => k, tol => tol, max_iter => max_iter),
        }
        r.tagged = given;
        (r, errors)
    }
}

/// The `eigenvalues` stage kind.
pub struct EigenStage;

impl StageKind for EigenStage {
    type Params = EigenParams;
    const KIND: &'static str = "eigenvalues";
    const DOC: &'static str = "Eigenvalues of a dense `matrix` or of a matrix-free operator (`model` + `dataset`), by solver = dense | lanczos | power. Same output schema for every solver.";
    const INPUTS: &'static [PortSpec] = OPERATOR_INPUTS;
    const OUTPUTS: &'static [PortSpec] = &[port::<Eigenvalues>(), port::<Eigenvectors>().optional()];
    fn check(params: &EigenParams) -> Vec<(String, String)> {
        let (p, mut e) = params.resolve();
        if (p.solver != Solver::Dense || p.partial) && p.k == 0 {
            e.push(p.at("k", "k must be ≥ 1"));
        }
        if p.partial && p.solver != Solver::Dense {
            e.push(("partial".into(), "partial applies to solver = \"dense\" only (lanczos and power are partial already)".into()));
        }
        if !(p.tol > 0.0) {
            e.push(p.at("tol", "tol must be > 0"));
        }
        if !(p.max_seconds > 0.0) {
            e.push(p.at("max_seconds", "max_seconds must be > 0"));
        }
        e
    }
    fn facts(p: &EigenParams, inputs: &InputFacts) -> Facts {
        let p = p.resolve().0;
        let dim = side(inputs);
        let rows = if p.solver == Solver::Dense && !p.partial { dim } else { Some(dim.map_or(p.k as u64, |d| d.min(p.k as u64))) };
        Facts { rows, dim, ..Default::default() }
    }
    fn estimate(p: &EigenParams, inputs: &InputFacts) -> Option<Estimate> {
        let r = p.resolve().0;
        solver_estimate(r.solver, r.k, r.max_dim, p.vectors, inputs, p.batch_norm)
    }
    fn run(params: &EigenParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let tg = target(ctx, &params.spec())?;
        let p = &params.resolve().0;
        let mut info = OperatorInfo {
            operator: tg.name.clone(),
            dim: tg.op.dim(),
            training_warning: tg.training_warning.clone(),
            ..Default::default()
        };
        let (pairs, applications) = match p.solver {
            Solver::Dense => {
                let (mat, applications) = match tg.dense {
                    Some(d) => {
                        // The dense solver never applies the operator, whose view shares the
                        // matrix: let go of it, so that the matrix can be handed over.
                        let applications = tg.op.applications();
                        drop(tg.op);
                        (d.matrix, applications)
                    }
                    None => {
                        let curvature = tg.curvature.as_deref().map(|cv| (cv, tg.index.as_deref()));
                        let a = materialize(tg.op.as_ref(), curvature, 8, &ctx.progress).0;
                        (Arc::new(a), tg.op.applications())
                    }
                };
                let select = p.partial.then_some((p.which, p.k));
                let dp = DenseParams { top_vectors: params.vectors, bottom_vectors: params.vectors, select, ..Default::default() };
                // A matrix nothing else holds (materialized here, or read for this stage) is
                // handed over and reduced in place: 8n² bytes less than reducing a copy.
                let pairs = match Arc::try_unwrap(mat) {
                    Ok(own) => DenseSolver::solve_owned(own, &dp, &ctx.progress),
                    Err(shared) => DenseSolver::solve_with_progress(&shared, &dp, &ctx.progress),
                };
                (pairs.map_err(StageError::other)?.0, applications)
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
                let (pairs, li) = LanczosSolver::solve(tg.op.as_ref(), &lp, &ctx.progress).map_err(StageError::other)?;
                info.restarts = Some(li.restarts);
                info.max_residual = Some(li.max_residual);
                info.orthogonality_error = Some(li.orthogonality_error);
                (pairs, tg.op.applications())
            }
            Solver::Power => {
                let pp = PowerParams { k: p.k, tol: p.tol.max(1e-12), max_iter: p.max_iter, seed: ctx.seed };
                (PowerIteration::solve(tg.op.as_ref(), &pp).map_err(StageError::other)?.0, tg.op.applications())
            }
        };
        info.solver = Some(enum_name(&p.solver));
        info.which = Some(enum_name(&p.which));
        info.operator_applications = Some(applications);
        let nvec = if p.solver == Solver::Dense { pairs.vectors.len() } else { params.vectors.min(pairs.vectors.len()) };
        let values = Eigenvalues { ranks: pairs.ranks, values: pairs.values, residuals: pairs.residuals, info: info.clone() };
        ctx.write::<Eigenvalues>(Eigenvalues::NAME, &values)?;
        if params.plot {
            let view = SpectrumView {
                desc: &values.values,
                dim: info.dim,
                which: info.which.as_deref(),
                zero_tol: hesslab_figures::spectra::DEFAULT_ZERO_TOL,
            };
            for (name, fig) in eigenvalue_figures(&view, None) {
                fig.write(ctx, name)?;
            }
        }
        if params.vectors > 0 {
            let mut vectors = pairs.vectors;
            vectors.truncate(nvec);
            ctx.write::<Eigenvectors>(Eigenvectors::NAME, &Eigenvectors { vectors, info })?;
        }
        Ok(())
    }
}
