//! `decomposition`: H = G + R side by side.
use crate::plots::Plot;
use crate::subspace_overlap;
use faer::{Mat, Side};
use hesslab_artifacts::{self as artifacts, Dataset, Model, Spectra, SpectrumRow};
use hesslab_eigen::{LanczosParams, LanczosSolver, Which};
use hesslab_hessian::{BatchNormMode, CurvatureKind, LinearOperator, OperatorSpec, SampleSet, materialize};
use hesslab_pipeline::{Estimate, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::WriteFigure;
use hesslab_stages::estimates::{dense_estimate, operator_estimate};
use hesslab_stages::solvers::Solver;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `decomposition`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DecompositionParams {
    /// Eigenvalues compared per operator, and the size of the top eigenspaces whose overlap is reported.
    pub k: usize,
    /// "dense": materialize H, G and R (all eigenvalues); "lanczos": matrix-free top-k.
    pub solver: Solver,
    /// Samples the loss averages over: train, test or all.
    pub samples: SampleSet,
    /// Seeded subset of samples (0 = all).
    pub max_samples: usize,
    /// BatchNorm statistics: "eval" (running) or "batch" (the samples', derivatives through them).
    #[serde(skip_serializing_if = "BatchNormMode::is_eval")]
    #[schemars(extend("default" = "eval"))]
    pub batch_norm: BatchNormMode,
}
impl Default for DecompositionParams {
    fn default() -> Self {
        DecompositionParams { k: 20, solver: Solver::Dense, samples: SampleSet::Train, max_samples: 0, batch_norm: BatchNormMode::Eval }
    }
}

/// The `decomposition` stage kind.
pub struct Decomposition;

fn top_pairs(
    op: &dyn LinearOperator,
    dense: Option<&Mat<f64>>,
    k: usize,
    which: Which,
    seed: u64,
) -> Result<(Vec<f64>, Mat<f64>), StageError> {
    match dense {
        Some(a) => {
            let evd = a.self_adjoint_eigen(Side::Lower).map_err(|e| StageError::other(hesslab_eigen::EigenError::Dense(e)))?;
            let n = a.nrows();
            let mut idx: Vec<usize> = (0..n).collect();
            match which {
                Which::Largest => idx.reverse(),
                Which::Smallest => {}
                Which::Magnitude => idx.sort_by(|&x, &y| evd.S()[y].abs().total_cmp(&evd.S()[x].abs())),
            }
            let all: Vec<f64> = idx.iter().map(|&i| evd.S()[i]).collect();
            let u = Mat::from_fn(n, k.min(n), |r, c| evd.U()[(r, idx[c])]);
            Ok((all, u))
        }
        None => {
            let (p, _) = LanczosSolver::solve(
                op,
                &LanczosParams { k, which, seed, tol: 1e-8, ..Default::default() },
                &hesslab_pipeline::Progress::hidden(),
            )
            .map_err(StageError::other)?;
            let n = op.dim();
            let u = Mat::from_fn(n, p.vectors.len(), |r, c| p.vectors[c].1[r]);
            Ok((p.values, u))
        }
    }
}

impl StageKind for Decomposition {
    type Params = DecompositionParams;
    const KIND: &'static str = "decomposition";
    const VERSION: u32 = 3;
    const DOC: &'static str = "Spectra of H, the Gauss-Newton term G and the residual R side by side; overlap of the top-k eigenspaces of H and G; size of R relative to H.";
    const INPUTS: &'static [PortSpec] = &[port::<Model>(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Spectra>(), port::<artifacts::Decomposition>()];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.k == 0 {
            e.push(("k".into(), "k must be ≥ 1".into()));
        }
        if p.solver == Solver::Power {
            e.push((
                "solver".into(),
                "solver must be \"dense\" or \"lanczos\" (power iteration finds the largest in magnitude, not H's and G's top)".into(),
            ));
        }
        e
    }
    fn estimate(p: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        let (dim, cache) = operator_estimate(inputs, p.batch_norm)?;
        let cache = Estimate { bytes: cache.bytes.saturating_mul(3), what: format!("3 × {}", cache.what) };
        Some(if p.solver == Solver::Dense {
            // H, G and R = H − G held together, and the dense solver's working copy.
            let m = dense_estimate(dim);
            Estimate { bytes: m.bytes.saturating_mul(4), what: format!("4 × {}", m.what) }.plus(cache)
        } else {
            let m = (2 * p.k + 20).max(40) as u64;
            Estimate::f64s(dim.saturating_mul(m + p.k as u64), format!("Krylov bases of length {dim}")).plus(cache)
        })
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let model = ctx.read::<Model>(Model::NAME)?.net;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let mut ops: Vec<(CurvatureKind, hesslab_hessian::BuiltOperator, Option<Mat<f64>>)> = Vec::new();
        for kind in [CurvatureKind::Hessian, CurvatureKind::GaussNewton, CurvatureKind::Residual] {
            let spec =
                OperatorSpec { operator: kind, samples: p.samples, max_samples: p.max_samples, tensors: vec![], batch_norm: p.batch_norm };
            let b = spec.build(model.clone(), &ds, ctx.seed).map_err(StageError::other)?;
            let dense = match (p.solver, kind) {
                // R = H − G exactly (tested to 1e-12): derive it rather than materialize a third time.
                (Solver::Dense, CurvatureKind::Residual) => match (ops[0].2.as_ref(), ops[1].2.as_ref()) {
                    (Some(h), Some(g)) => Some(h - g),
                    _ => return Err(StageError::msg("decomposition: H and G were not materialized before R")),
                },
                (Solver::Dense, _) => Some(materialize(b.op.as_ref(), Some((&b.curvature, None)), 8, &ctx.progress).0),
                _ => None,
            };
            ops.push((kind, b, dense));
        }
        let k = p.k.min(model.num_params());
        let (h_vals, h_vec) = top_pairs(ops[0].1.op.as_ref(), ops[0].2.as_ref(), k, Which::Largest, ctx.seed)?;
        let (g_vals, g_vec) = top_pairs(ops[1].1.op.as_ref(), ops[1].2.as_ref(), k, Which::Largest, ctx.seed)?;
        let (r_vals, _) = top_pairs(ops[2].1.op.as_ref(), ops[2].2.as_ref(), k, Which::Magnitude, ctx.seed)?;
        let overlap = subspace_overlap(&h_vec, &g_vec);
        let hmax = h_vals.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        let rmax = r_vals.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        let fro = |m: &Mat<f64>| (0..m.ncols()).map(|j| (0..m.nrows()).map(|i| m[(i, j)].powi(2)).sum::<f64>()).sum::<f64>().sqrt();
        // Frobenius norms need the dense matrices: null (not NaN) with the lanczos solver.
        let fro_ratio = match (&ops[2].2, &ops[0].2) {
            (Some(r), Some(h)) => Some(fro(r) / fro(h)),
            _ => None,
        };
        // Descending order for every operator.
        let mut rows: Vec<(&str, u32, f64)> = Vec::new();
        for (name, vals) in [("hessian", &h_vals), ("gauss_newton", &g_vals), ("residual", &r_vals)] {
            let mut v = vals.clone();
            v.sort_by(|a, b| b.total_cmp(a));
            rows.extend(v.iter().enumerate().map(|(i, &x)| (name, i as u32, x)));
        }
        let spectra = rows.iter().map(|r| SpectrumRow { operator: r.0.to_string(), rank: r.1, eigenvalue: r.2 }).collect();
        ctx.write::<Spectra>(Spectra::NAME, &Spectra(spectra))?;
        let summary = artifacts::Decomposition {
            k: k as u64,
            overlap_top_k: overlap,
            residual_norm_ratio: rmax / hmax,
            residual_fro_ratio: fro_ratio,
        };
        ctx.write::<artifacts::Decomposition>(artifacts::Decomposition::NAME, &summary)?;
        let top =
            |name: &str| -> Vec<(f64, f64)> { rows.iter().filter(|r| r.0 == name).take(k.max(40)).map(|r| (r.1 as f64, r.2)).collect() };
        Plot::new(&format!("H = G + R: top eigenvalues (top-{k} overlap of H and G = {overlap:.3})"), "rank", "eigenvalue")
            .line("H (Hessian)", top("hessian"))
            .line("G (Gauss-Newton)", top("gauss_newton"))
            .line("R (residual)", top("residual"))
            .write(ctx, "decomposition")?;
        Ok(())
    }
}
