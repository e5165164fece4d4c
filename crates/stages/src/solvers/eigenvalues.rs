//! `eigenvalues`: dense, Lanczos or power iteration behind one output schema.
use super::{OPERATOR_INPUTS, enum_name, side, solver_estimate, target};
use hesslab_artifacts::{Eigenvalues, Eigenvectors, OperatorInfo};
use hesslab_eigen::{DenseParams, DenseSolver, LanczosParams, LanczosSolver, PowerIteration, PowerParams, Which};
use hesslab_figures::spectra::{SpectrumView, eigenvalue_figures};
use hesslab_hessian::{CurvatureKind, SampleSet, materialize};
use hesslab_pipeline::{Estimate, Facts, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which eigensolver.
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
/// Parameters of `eigenvalues`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EigenParams {
    /// dense, lanczos or power.
    pub solver: Solver,
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
            solver: Solver::Dense,
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

/// The `eigenvalues` stage kind.
pub struct EigenStage;

impl StageKind for EigenStage {
    type Params = EigenParams;
    const KIND: &'static str = "eigenvalues";
    const DOC: &'static str = "Eigenvalues of a dense `matrix` or of a matrix-free operator (`model` + `dataset`), by solver = dense | lanczos | power. Same output schema for every solver.";
    const INPUTS: &'static [PortSpec] = OPERATOR_INPUTS;
    const OUTPUTS: &'static [PortSpec] = &[port::<Eigenvalues>(), port::<Eigenvectors>().optional()];
    fn check(p: &EigenParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if (p.solver != Solver::Dense || p.partial) && p.k == 0 {
            e.push(("k".into(), "k must be ≥ 1".into()));
        }
        if p.partial && p.solver != Solver::Dense {
            e.push(("partial".into(), "partial applies to solver = \"dense\" only (lanczos and power are partial already)".into()));
        }
        if !(p.tol > 0.0) {
            e.push(("tol".into(), "tol must be > 0".into()));
        }
        if !(p.max_seconds > 0.0) {
            e.push(("max_seconds".into(), "max_seconds must be > 0".into()));
        }
        e
    }
    fn facts(p: &EigenParams, inputs: &InputFacts) -> Facts {
        let dim = side(inputs);
        let rows = if p.solver == Solver::Dense && !p.partial { dim } else { Some(dim.map_or(p.k as u64, |d| d.min(p.k as u64))) };
        Facts { rows, dim, ..Default::default() }
    }
    fn estimate(p: &EigenParams, inputs: &InputFacts) -> Option<Estimate> {
        solver_estimate(p.solver, p.k, p.max_dim, p.vectors, inputs, p.batch_norm)
    }
    fn run(p: &EigenParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let tg = target(ctx, &p.spec())?;
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
                let dp = DenseParams { top_vectors: p.vectors, bottom_vectors: p.vectors, select, ..Default::default() };
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
        let nvec = if p.solver == Solver::Dense { pairs.vectors.len() } else { p.vectors.min(pairs.vectors.len()) };
        let values = Eigenvalues { ranks: pairs.ranks, values: pairs.values, residuals: pairs.residuals, info: info.clone() };
        ctx.write::<Eigenvalues>(Eigenvalues::NAME, &values)?;
        if p.plot {
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
        if p.vectors > 0 {
            let mut vectors = pairs.vectors;
            vectors.truncate(nvec);
            ctx.write::<Eigenvectors>(Eigenvectors::NAME, &Eigenvectors { vectors, info })?;
        }
        Ok(())
    }
}
