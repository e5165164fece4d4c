//! Analysis stages beyond the summary: H = G + R decomposition, class structure of the top
//! eigenvectors, loss along lines (interpolation), training curves, heat maps and densities.
use crate::plots::{Plot, heatmap_png};
use arrow_array::RecordBatch;
use faer::{Mat, Side};
use hesslab_data::{Dataset, dataset_port};
use hesslab_eigen::{LanczosParams, LanczosSolver, Which, density_port, eigenvalues_port, eigenvectors_port, read_eigenvalues};
use hesslab_hessian::{
    CurvatureKind, LinearOperator, ModelCurvature, OperatorSpec, SampleSet, materialize, matrix_port, read_matrix_input,
};
use hesslab_model::{Mlp, log_port, model_port};
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{PortSpec, StageContext, StageError, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

fn batch(fields: Vec<arrow_schema::Field>, cols: Vec<arrow_array::ArrayRef>) -> Result<RecordBatch, StageError> {
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols).map_err(StageError::other)
}

// ------------------------------------------------------------------ decomposition

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DecompositionParams {
    /// Eigenvalues compared per operator, and the size of the top eigenspaces whose overlap is reported.
    pub k: usize,
    /// "dense": materialize H, G and R (all eigenvalues); "lanczos": matrix-free top-k.
    pub solver: String,
    /// Samples the loss averages over: train, test or all.
    pub samples: SampleSet,
    /// Seeded subset of samples (0 = all).
    pub max_samples: usize,
}
impl Default for DecompositionParams {
    fn default() -> Self {
        DecompositionParams { k: 20, solver: "dense".into(), samples: SampleSet::Train, max_samples: 0 }
    }
}

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
            let evd = a.self_adjoint_eigen(Side::Lower).map_err(|e| StageError::msg(format!("{e:?}")))?;
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

/// ‖UᵀV‖²_F / k: 1 when the two k-dimensional subspaces coincide, k/n for random ones.
pub fn subspace_overlap(u: &Mat<f64>, v: &Mat<f64>) -> f64 {
    let m = u.transpose() * v;
    let k = u.ncols().min(v.ncols()).max(1);
    (0..m.ncols()).map(|j| (0..m.nrows()).map(|i| m[(i, j)].powi(2)).sum::<f64>()).sum::<f64>() / k as f64
}

impl StageKind for Decomposition {
    type Params = DecompositionParams;
    const KIND: &'static str = "decomposition";
    const VERSION: u32 = 3;
    const DOC: &'static str = "Spectra of H, the Gauss-Newton term G and the residual R side by side; overlap of the top-k eigenspaces of H and G; size of R relative to H.";
    fn inputs() -> Vec<PortSpec> {
        vec![model_port(), dataset_port()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![
            PortSpec::new(
                "spectra",
                "operator Utf8 (hessian, gauss_newton, residual), rank UInt32, eigenvalue Float64",
                vec![utf8_field("operator"), u32_field("rank"), f64_field("eigenvalue")],
            ),
            PortSpec::new(
                "decomposition",
                "one row: k, overlap_top_k (‖U_HᵀU_G‖²_F/k), residual_norm_ratio (‖R‖/‖H‖, spectral), residual_fro_ratio (dense only, else null)",
                vec![u64_field("k"), f64_field("overlap_top_k"), f64_field("residual_norm_ratio"), f64_null_field("residual_fro_ratio")],
            ),
        ]
    }
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.k == 0 {
            e.push(("k".into(), "k must be ≥ 1".into()));
        }
        if p.solver != "dense" && p.solver != "lanczos" {
            e.push(("solver".into(), format!("solver must be \"dense\" or \"lanczos\", got \"{}\"", p.solver)));
        }
        e
    }
    fn estimate(p: &Self::Params, inputs: &hesslab_pipeline::InputFacts) -> Option<hesslab_pipeline::Estimate> {
        let (dim, cache) = hesslab_hessian::operator_estimate(inputs)?;
        let cache = hesslab_pipeline::Estimate { bytes: cache.bytes.saturating_mul(3), what: format!("3 × {}", cache.what) };
        Some(if p.solver == "dense" {
            // H, G and R = H − G held together, and the dense solver's working copy.
            let m = hesslab_hessian::dense_estimate(dim);
            hesslab_pipeline::Estimate { bytes: m.bytes.saturating_mul(4), what: format!("4 × {}", m.what) }.plus(cache)
        } else {
            let m = (2 * p.k + 20).max(40) as u64;
            hesslab_pipeline::Estimate::f64s(dim.saturating_mul(m + p.k as u64), format!("Krylov bases of length {dim}")).plus(cache)
        })
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let model = Mlp::read(ctx, "model")?;
        let ds = Dataset::read(ctx, "dataset")?;
        let mut ops: Vec<(CurvatureKind, hesslab_hessian::BuiltOperator, Option<Mat<f64>>)> = Vec::new();
        for kind in [CurvatureKind::Hessian, CurvatureKind::GaussNewton, CurvatureKind::Residual] {
            let spec = OperatorSpec { operator: kind, samples: p.samples, max_samples: p.max_samples, tensors: vec![] };
            let b = spec.build(model.clone(), &ds, ctx.seed).map_err(StageError::msg)?;
            let dense = match (p.solver.as_str(), kind) {
                // R = H − G exactly (tested to 1e-12): derive it rather than materialize a third time.
                ("dense", CurvatureKind::Residual) => match (ops[0].2.as_ref(), ops[1].2.as_ref()) {
                    (Some(h), Some(g)) => Some(h - g),
                    _ => return Err(StageError::msg("decomposition: H and G were not materialized before R")),
                },
                ("dense", _) => Some(materialize(b.op.as_ref(), Some((&b.curvature, None)), 8, &ctx.progress).0),
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
        let spectra_fields = vec![utf8_field("operator"), u32_field("rank"), f64_field("eigenvalue")];
        ctx.write(
            "spectra",
            batch(
                spectra_fields,
                vec![utf8_array(rows.iter().map(|r| r.0)), u32_array(rows.iter().map(|r| r.1)), f64_array(rows.iter().map(|r| r.2))],
            )?,
            &BTreeMap::new(),
        )?;
        ctx.write(
            "decomposition",
            batch(
                vec![u64_field("k"), f64_field("overlap_top_k"), f64_field("residual_norm_ratio"), f64_null_field("residual_fro_ratio")],
                vec![u64_array([k as u64]), f64_array([overlap]), f64_array([rmax / hmax]), f64_opt_array([fro_ratio])],
            )?,
            &BTreeMap::new(),
        )?;
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

// ------------------------------------------------------------------ class structure

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

pub struct ClassStructure;

impl StageKind for ClassStructure {
    type Params = ClassStructureParams;
    const KIND: &'static str = "class_structure";
    const VERSION: u32 = 1;
    const DOC: &'static str =
        "Overlap of each top-k Hessian eigenvector with the span of the C class-mean gradients (Papyan: outliers come from class means).";
    fn inputs() -> Vec<PortSpec> {
        vec![model_port(), dataset_port()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new(
            "overlap",
            "rank UInt32, eigenvalue Float64, overlap Float64 (squared norm of the eigenvector's projection on the class-mean gradient span, 0..1)",
            vec![u32_field("rank"), f64_field("eigenvalue"), f64_field("overlap")],
        )]
    }
    fn estimate(p: &Self::Params, inputs: &hesslab_pipeline::InputFacts) -> Option<hesslab_pipeline::Estimate> {
        // Class-mean gradients (P × C, and their Q), the Lanczos basis and the operator cache.
        let (dim, cache) = hesslab_hessian::operator_estimate(inputs)?;
        let classes = inputs.get("dataset").and_then(|d| d.classes).unwrap_or(1);
        let m = (2 * p.k + 20).max(40) as u64;
        let vectors = (m + p.k as u64).saturating_add(classes.saturating_mul(2));
        Some(hesslab_pipeline::Estimate::f64s(dim.saturating_mul(vectors), format!("{vectors} vectors of length {dim}")).plus(cache))
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let model = Mlp::read(ctx, "model")?;
        let ds = Dataset::read(ctx, "dataset")?;
        let spec = OperatorSpec { operator: CurvatureKind::Hessian, samples: p.samples, max_samples: 0, tensors: vec![] };
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
            rows.push((*r, *val, proj));
        }
        ctx.write(
            "overlap",
            batch(
                vec![u32_field("rank"), f64_field("eigenvalue"), f64_field("overlap")],
                vec![u32_array(rows.iter().map(|r| r.0)), f64_array(rows.iter().map(|r| r.1)), f64_array(rows.iter().map(|r| r.2))],
            )?,
            &BTreeMap::new(),
        )?;
        Plot::new("Top Hessian eigenvectors in the class-mean gradient span", "rank", "overlap (0..1)")
            .points("overlap", rows.iter().map(|r| (r.0 as f64, r.2)).collect())
            .line("", rows.iter().map(|r| (r.0 as f64, r.2)).collect())
            .write(ctx, "class_structure")?;
        Ok(())
    }
}

// ------------------------------------------------------------------ interpolation

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InterpolateParams {
    /// Grid start (α for a line between models, t for a direction).
    pub from: f64,
    /// Grid end.
    pub to: f64,
    /// Grid points.
    pub points: usize,
}
impl Default for InterpolateParams {
    fn default() -> Self {
        InterpolateParams { from: -1.0, to: 2.0, points: 61 }
    }
}

pub struct Interpolate;

impl StageKind for Interpolate {
    type Params = InterpolateParams;
    const KIND: &'static str = "interpolate";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Train/test loss and accuracy along w(α) = (1 − α)·w_A + α·w_B (S18 Fig 8), or, with `eigenvectors` instead of `model_b`, along w_A + t·v (top eigenvector).";
    fn inputs() -> Vec<PortSpec> {
        vec![
            model_port().renamed("model_a"),
            model_port().renamed("model_b").optional(),
            eigenvectors_port().renamed("eigenvectors"),
            dataset_port(),
        ]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new(
            "curve",
            "alpha Float64, train_loss, train_accuracy, test_loss, test_accuracy Float64",
            vec![
                f64_field("alpha"),
                f64_field("train_loss"),
                f64_field("train_accuracy"),
                f64_field("test_loss"),
                f64_field("test_accuracy"),
            ],
        )]
    }
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !(2..=100_000).contains(&p.points) {
            e.push(("points".into(), "points must be between 2 and 100000".into()));
        }
        if p.from >= p.to {
            e.push(("to".into(), format!("`to` ({}) must be larger than `from` ({})", p.from, p.to)));
        }
        e
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let a = Mlp::read(ctx, "model_a")?;
        let ds = Dataset::read(ctx, "dataset")?;
        let (tr, te) = (ds.train(), ds.test());
        let (dir, along_line) = if ctx.input_opt("model_b").is_some() {
            let b = Mlp::read(ctx, "model_b")?;
            if b.arch != a.arch {
                return Err(StageError::msg("model_a and model_b have different architectures"));
            }
            (b.params.iter().zip(&a.params).map(|(x, y)| x - y).collect::<Vec<f64>>(), true)
        } else if let Some(ev) = ctx.input_opt("eigenvectors") {
            let art = ev.read()?;
            let v = list_f64_values(&art.batch, "vector").map_err(|m| StageError::from(art.column_error(m)))?;
            let v = v.into_iter().next().ok_or_else(|| StageError::msg("the eigenvectors artifact is empty"))?;
            if v.len() != a.num_params() {
                return Err(StageError::msg(format!("eigenvector has {} entries, the model {} parameters", v.len(), a.num_params())));
            }
            (v, false)
        } else {
            return Err(StageError::msg("connect `model_b` (line between two solutions) or `eigenvectors` (direction)"));
        };
        let mut rows = Vec::new();
        for i in 0..p.points {
            let t = p.from + (p.to - p.from) * i as f64 / (p.points - 1) as f64;
            let w: Vec<f64> = a.params.iter().zip(&dir).map(|(x, d)| x + t * d).collect();
            let m = Mlp::new(a.arch.clone(), w);
            let (l1, a1) = m.evaluate(tr.x.as_ref(), &tr.y);
            let (l2, a2) = m.evaluate(te.x.as_ref(), &te.y);
            rows.push([t, l1, a1, l2, a2]);
        }
        let col = |j: usize| f64_array(rows.iter().map(|r| r[j]));
        let mut meta = BTreeMap::new();
        meta.insert("mode".to_string(), if along_line { "line" } else { "eigenvector" }.to_string());
        ctx.write(
            "curve",
            batch(
                vec![
                    f64_field("alpha"),
                    f64_field("train_loss"),
                    f64_field("train_accuracy"),
                    f64_field("test_loss"),
                    f64_field("test_accuracy"),
                ],
                vec![col(0), col(1), col(2), col(3), col(4)],
            )?,
            &meta,
        )?;
        let xl = if along_line { "α  (w = (1 − α)·w_A + α·w_B)" } else { "t  (w = w_A + t·v₁)" };
        let mut plot = Plot::new("Loss along the line", xl, "loss")
            .line("train loss", rows.iter().map(|r| (r[0], r[1])).collect())
            .line("test loss", rows.iter().map(|r| (r[0], r[3])).collect());
        if along_line {
            plot = plot.vline(0.0, "w_A (α = 0)").vline(1.0, "w_B (α = 1)");
        }
        plot.write(ctx, "interpolation_loss")?;
        Plot::new("Accuracy along the line", xl, "accuracy")
            .line("train accuracy", rows.iter().map(|r| (r[0], r[2])).collect())
            .line("test accuracy", rows.iter().map(|r| (r[0], r[4])).collect())
            .write(ctx, "interpolation_accuracy")?;
        Ok(())
    }
}

// ------------------------------------------------------------------ training curves

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CurvesParams {}

pub struct TrainingCurves;

impl StageKind for TrainingCurves {
    type Params = CurvesParams;
    const KIND: &'static str = "training_curves";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Train/test loss and accuracy over steps; with `continued` (the log of a run that used init_from), both phases on one axis with the switch marked (S18 Fig 7).";
    fn inputs() -> Vec<PortSpec> {
        vec![log_port(), log_port().renamed("continued").optional()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new("files", "plots only (loss.png/svg, accuracy.png/svg)", vec![])]
    }
    fn run(_: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let read = |port: &str| -> Result<Option<Vec<[f64; 5]>>, StageError> {
            let Some(i) = ctx.input_opt(port) else {
                return Ok(None);
            };
            let a = i.read()?;
            let e = |m: String| StageError::from(a.column_error(m));
            let step = u64_values(&a.batch, "step").map_err(e)?;
            let cols: Vec<Vec<f64>> = ["train_loss", "test_loss", "train_accuracy", "test_accuracy"]
                .iter()
                .map(|c| f64_values(&a.batch, c))
                .collect::<Result<_, _>>()
                .map_err(e)?;
            Ok(Some((0..step.len()).map(|r| [step[r] as f64, cols[0][r], cols[1][r], cols[2][r], cols[3][r]]).collect()))
        };
        let mut rows = read("log")?.unwrap_or_default();
        let switch = rows.last().map(|r| r[0]);
        let cont = read("continued")?;
        if let Some(c) = &cont {
            rows.extend(c.iter().filter(|r| Some(r[0]) != switch).copied());
        }
        for (name, (a, b), ylabel) in [("loss", (1, 2), "loss"), ("accuracy", (3, 4), "accuracy")] {
            let mut p = Plot::new(&format!("Training {name}"), "step", ylabel)
                .line(&format!("train {name}"), rows.iter().map(|r| (r[0], r[a])).collect())
                .line(&format!("test {name}"), rows.iter().map(|r| (r[0], r[b])).collect());
            if let (Some(s), Some(_)) = (switch, &cont) {
                p = p.vline(s, "switch (phase I → II)");
            }
            p.write(ctx, name)?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ heat map and density

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HeatmapParams {
    /// Image side in pixels (large matrices are shown by block maxima).
    pub size: u32,
}
impl Default for HeatmapParams {
    fn default() -> Self {
        HeatmapParams { size: 800 }
    }
}

pub struct Heatmap;

impl StageKind for Heatmap {
    type Params = HeatmapParams;
    const KIND: &'static str = "heatmap";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Heat map of a dense matrix (S16 Fig 5): |entry| on a log scale over 8 decades, red positive, blue negative.";
    fn inputs() -> Vec<PortSpec> {
        vec![matrix_port()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new("files", "heatmap.png", vec![])]
    }
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        if p.size > crate::plots::MAX_HEATMAP_SIDE {
            vec![("size".into(), format!("size must be ≤ {} pixels", crate::plots::MAX_HEATMAP_SIDE))]
        } else {
            vec![]
        }
    }
    fn estimate(p: &Self::Params, inputs: &hesslab_pipeline::InputFacts) -> Option<hesslab_pipeline::Estimate> {
        let dim = inputs.get("matrix")?.dim?;
        let side = p.size as u64;
        Some(hesslab_hessian::dense_estimate(dim).plus(hesslab_pipeline::Estimate { bytes: side * side * 3, what: "image".into() }))
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let m = read_matrix_input(ctx, "matrix")?;
        let png = heatmap_png(&m.matrix, p.size).map_err(StageError::msg)?;
        ctx.write_file("heatmap.png", &png)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DensityPlotParams {}

pub struct DensityPlot;

impl StageKind for DensityPlot {
    type Params = DensityPlotParams;
    const KIND: &'static str = "density_plot";
    const VERSION: u32 = 1;
    const DOC: &'static str =
        "Plot an SLQ spectral density, with the exact eigenvalue distribution (histogram) overlaid when `eigenvalues` are connected.";
    fn inputs() -> Vec<PortSpec> {
        vec![density_port(), eigenvalues_port().optional()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new("files", "density.png/svg", vec![])]
    }
    fn run(_: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let d = ctx.read("density")?;
        let e = |m: String| StageError::from(d.column_error(m));
        let x = f64_values(&d.batch, "x").map_err(e)?;
        let y = f64_values(&d.batch, "density").map_err(e)?;
        let mut plot = Plot::new("Spectral density (SLQ)", "eigenvalue", "log10 density")
            .line("SLQ", x.iter().zip(&y).map(|(a, b)| (*a, (b.max(1e-12)).log10())).collect());
        if ctx.input_opt("eigenvalues").is_some() {
            let (_, ev) = read_eigenvalues(&ctx.read("eigenvalues")?)?;
            let (lo, hi) = (x[0], x[x.len() - 1]);
            let bins = 80;
            let w = (hi - lo) / bins as f64;
            let c = crate::plots::bin_counts(ev.iter().copied().filter(|&v| v < hi), lo, w, bins);
            let n = ev.len() as f64;
            plot = plot.points(
                "exact (histogram)",
                c.iter()
                    .enumerate()
                    .filter(|(_, k)| **k > 0)
                    .map(|(i, k)| (lo + (i as f64 + 0.5) * w, (*k as f64 / (n * w)).log10()))
                    .collect(),
            );
        }
        plot.write(ctx, "density")
    }
}

// ------------------------------------------------------------------ Marchenko–Pastur

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MarchenkoPasturParams {
    /// Largest eigenvalues left out of the variance fit (the expected outliers).
    pub outliers: usize,
}
impl Default for MarchenkoPasturParams {
    fn default() -> Self {
        MarchenkoPasturParams { outliers: 1 }
    }
}

pub struct MarchenkoPastur;

/// Marchenko–Pastur density of the eigenvalues of (1/N) XᵀX, X N×M with i.i.d. entries of
/// variance σ², ratio α = M/N (continuous part; mass 1 − 1/α sits at 0 when α > 1).
pub fn marchenko_pastur_density(x: f64, alpha: f64, sigma2: f64) -> f64 {
    let (lm, lp) = (sigma2 * (1.0 - alpha.sqrt()).powi(2), sigma2 * (1.0 + alpha.sqrt()).powi(2));
    if x <= lm || x >= lp || x <= 0.0 {
        return 0.0;
    }
    ((lp - x) * (x - lm)).sqrt() / (2.0 * std::f64::consts::PI * sigma2 * alpha * x)
}

impl StageKind for MarchenkoPastur {
    type Params = MarchenkoPasturParams;
    const KIND: &'static str = "marchenko_pastur";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Fit a Marchenko–Pastur law (ratio α = P/N from the spectrum and the training set) to the bulk of a spectrum and count eigenvalues above its right edge (S18 App. B); plot histogram and density.";
    fn inputs() -> Vec<PortSpec> {
        vec![eigenvalues_port(), dataset_port()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new(
            "fit",
            "one row: alpha, sigma2, lambda_minus, lambda_plus Float64; above_edge UInt64 (eigenvalues > λ₊)",
            vec![f64_field("alpha"), f64_field("sigma2"), f64_field("lambda_minus"), f64_field("lambda_plus"), u64_field("above_edge")],
        )]
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let a = ctx.read("eigenvalues")?;
        let (_, desc) = read_eigenvalues(&a)?;
        let ds = Dataset::read(ctx, "dataset")?;
        let m = desc.len();
        let n = ds.train().len();
        let alpha = m as f64 / n as f64;
        // E[λ] of the continuous part times its mass equals σ²: trace/M = σ² for a Wishart matrix.
        let bulk: f64 = desc[p.outliers.min(m)..].iter().sum::<f64>() / (m - p.outliers.min(m)).max(1) as f64;
        let sigma2 = bulk;
        let (lm, lp) = (sigma2 * (1.0 - alpha.sqrt()).powi(2), sigma2 * (1.0 + alpha.sqrt()).powi(2));
        let above = desc.iter().filter(|&&x| x > lp).count();
        ctx.write(
            "fit",
            batch(
                vec![f64_field("alpha"), f64_field("sigma2"), f64_field("lambda_minus"), f64_field("lambda_plus"), u64_field("above_edge")],
                vec![f64_array([alpha]), f64_array([sigma2]), f64_array([lm]), f64_array([lp]), u64_array([above as u64])],
            )?,
            &BTreeMap::new(),
        )?;
        // Histogram of the positive bulk (normalized over all M eigenvalues) vs the MP density.
        let hi = lp * 1.3;
        let bins = 60;
        let w = hi / bins as f64;
        let c = crate::plots::bin_counts(desc.iter().copied().filter(|&v| v > 1e-12 * desc[0].abs() && v < hi), 0.0, w, bins);
        let hist: Vec<(f64, f64)> = c.iter().enumerate().map(|(i, k)| ((i as f64 + 0.5) * w, *k as f64 / (m as f64 * w))).collect();
        let curve: Vec<(f64, f64)> =
            (1..400).map(|i| hi * i as f64 / 400.0).map(|x| (x, marchenko_pastur_density(x, alpha, sigma2))).collect();
        Plot::new(&format!("Bulk vs Marchenko–Pastur (α = {alpha:.2}, {above} above λ₊)"), "eigenvalue", "density")
            .points("eigenvalues (histogram)", hist)
            .line("Marchenko–Pastur", curve)
            .vline(lp, "λ₊")
            .write(ctx, "marchenko_pastur")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn marchenko_pastur_density_integrates_to_the_continuous_mass() {
        for alpha in [0.2f64, 0.5, 2.0] {
            let steps = 200_000;
            let hi = (1.0 + alpha.sqrt()).powi(2);
            let s: f64 = (0..steps)
                .map(|i| super::marchenko_pastur_density((i as f64 + 0.5) * hi / steps as f64, alpha, 1.0) * hi / steps as f64)
                .sum();
            let mass = if alpha > 1.0 { 1.0 / alpha } else { 1.0 };
            assert!((s - mass).abs() < 2e-3, "alpha {alpha}: {s} vs {mass}");
        }
    }
}
