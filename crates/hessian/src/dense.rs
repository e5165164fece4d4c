//! Dense materialization of curvature operators, and the `curvature_dense` stage.
use crate::{LinearOperator, ModelCurvature};
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use faer::Mat;
use hesslab_data::{Dataset, dataset_port};
use hesslab_model::{Mlp, model_port};
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, PortSpec, Progress, StageContext, StageError, StageKind};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A dense symmetric matrix with what it is.
#[derive(Debug, Clone)]
pub struct DenseMatrix {
    pub matrix: Arc<Mat<f64>>,
    pub operator: String,
    /// max|A − Aᵀ| / max|A| before symmetrization.
    pub symmetry_error: f64,
}

pub fn matrix_port() -> PortSpec {
    PortSpec::new(
        "matrix",
        "dense symmetric matrix: row UInt32, values FixedSizeList<Float64>(P) (row i of the P×P matrix)",
        vec![u32_field("row"), fixed_f64_field("values", 0)],
    )
}

/// Materialize `A` column by column. For a network operator the column blocks run in
/// parallel (each block's products are sequential inside), otherwise blocks use the
/// operator's own parallelism. Returns the matrix and its relative symmetry error, after
/// symmetrizing it.
pub fn materialize(
    op: &dyn LinearOperator,
    curvature: Option<(&ModelCurvature, Option<&[usize]>)>,
    block: usize,
    progress: &Progress,
) -> (Mat<f64>, f64) {
    let p = op.dim();
    let block = block.max(1);
    let mut a = Mat::<f64>::zeros(p, p);
    let bar = progress.bar(p as u64, "Hessian columns");
    let fill = |c0: usize, mut cols: faer::MatMut<'_, f64>| {
        let k = cols.ncols();
        match curvature {
            Some((cv, index)) => {
                let full = cv.dim();
                let mut e = Mat::<f64>::zeros(full, k);
                for j in 0..k {
                    let i = index.map(|ix| ix[c0 + j]).unwrap_or(c0 + j);
                    e[(i, j)] = 1.0;
                }
                match index {
                    // All parameters: the products land directly in the destination columns.
                    None => cv.apply_block_sequential(e.as_ref(), cols.as_mut()),
                    Some(ix) => {
                        let mut r = Mat::<f64>::zeros(full, k);
                        cv.apply_block_sequential(e.as_ref(), r.as_mut());
                        for j in 0..k {
                            for (row, &i) in ix.iter().enumerate() {
                                cols[(row, j)] = r[(i, j)];
                            }
                        }
                    }
                }
            }
            None => {
                let mut e = Mat::<f64>::zeros(p, k);
                for j in 0..k {
                    e[(c0 + j, j)] = 1.0;
                }
                op.apply_block(e.as_ref(), cols);
            }
        }
        bar.inc(k as u64);
    };
    if curvature.is_some() {
        a.as_mut().par_col_chunks_mut(block).enumerate().for_each(|(b, cols)| fill(b * block, cols));
    } else {
        let mut c0 = 0;
        while c0 < p {
            let k = block.min(p - c0);
            fill(c0, a.as_mut().subcols_mut(c0, k));
            c0 += k;
        }
    }
    bar.finish_and_clear();
    let sym = symmetrize(&mut a);
    (a, sym)
}

/// Replace A by (A + Aᵀ)/2; return max|A − Aᵀ| / max|A| of the input.
pub fn symmetrize(a: &mut Mat<f64>) -> f64 {
    let p = a.nrows();
    let (mut maxdiff, mut maxabs) = (0.0f64, 0.0f64);
    for j in 0..p {
        for i in 0..=j {
            let (x, y) = (a[(i, j)], a[(j, i)]);
            maxdiff = maxdiff.max((x - y).abs());
            maxabs = maxabs.max(x.abs()).max(y.abs());
            let m = 0.5 * (x + y);
            a[(i, j)] = m;
            a[(j, i)] = m;
        }
    }
    if maxabs > 0.0 { maxdiff / maxabs } else { 0.0 }
}

/// Stream a square matrix into the `matrix` port, a few rows per batch.
pub fn write_matrix(ctx: &StageContext, port: &str, a: &Mat<f64>, meta: &BTreeMap<String, String>) -> Result<(), StageError> {
    let p = a.nrows();
    let schema = Arc::new(Schema::new(vec![u32_field("row"), fixed_f64_field("values", p as i32)]));
    let mut w = ctx.writer(port, schema.clone(), meta)?;
    let rows_per_batch = (1 << 20) / p.max(1) + 1;
    let mut r0 = 0;
    while r0 < p {
        let r1 = (r0 + rows_per_batch).min(p);
        let mut flat = Vec::with_capacity((r1 - r0) * p);
        for r in r0..r1 {
            // Symmetric: row r is column r, which is contiguous.
            flat.extend(a.col(r).iter().copied());
        }
        let b = RecordBatch::try_new(schema.clone(), vec![u32_array((r0..r1).map(|r| r as u32)), fixed_f64_array(&flat, p)])
            .map_err(StageError::other)?;
        w.write(&b)?;
        r0 = r1;
    }
    w.finish()?;
    Ok(())
}

/// Decode a `matrix` artifact (rows may come in any order; all must be present).
pub fn read_matrix(a: &Artifact) -> Result<DenseMatrix, StageError> {
    let err = |m: String| StageError::from(a.column_error(m));
    let rows = u32_values(&a.batch, "row").map_err(err)?;
    let (vals, p) = fixed_f64_values(&a.batch, "values").map_err(err)?;
    if rows.len() != p {
        return Err(err(format!("{} rows for a {p}×{p} matrix", rows.len())));
    }
    let mut m = Mat::<f64>::zeros(p, p);
    let mut seen = vec![false; p];
    for (k, &r) in rows.iter().enumerate() {
        let r = r as usize;
        if r >= p || seen[r] {
            return Err(err(format!("column `row`: row index {r} is out of range or repeated")));
        }
        seen[r] = true;
        for c in 0..p {
            m[(r, c)] = vals[k * p + c];
        }
    }
    let sym = symmetrize(&mut m);
    Ok(DenseMatrix { matrix: Arc::new(m), operator: a.meta("operator").unwrap_or("unknown").to_string(), symmetry_error: sym })
}

/// Read a matrix input, preferring the in-memory copy.
pub fn read_matrix_input(ctx: &StageContext, port: &str) -> Result<DenseMatrix, StageError> {
    let input = ctx.input(port)?;
    if let Some(m) = input.shared::<DenseMatrix>() {
        return Ok((*m).clone());
    }
    read_matrix(&input.read()?)
}

crate::operator_params! {
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CurvatureDenseParams {
    /// Columns per block (each block is one batched R-operator pass; 8 measured fastest here, small
    /// blocks keep the temporaries in cache).
    pub block_size: usize,
}
}

impl Default for CurvatureDenseParams {
    fn default() -> Self {
        CurvatureDenseParams {
            operator: crate::CurvatureKind::Hessian,
            samples: crate::SampleSet::Train,
            max_samples: 0,
            tensors: vec![],
            block_size: 8,
        }
    }
}

pub struct CurvatureDense;

impl StageKind for CurvatureDense {
    type Params = CurvatureDenseParams;
    const KIND: &'static str = "curvature_dense";
    const VERSION: u32 = 3;
    const DOC: &'static str = "Materialize a curvature operator (exact Hessian by R-operator, Gauss-Newton, residual, empirical Fisher, gradient covariance; optionally one parameter block) as a dense symmetric P×P matrix, using all cores; reports the symmetry error and symmetrizes.";
    fn inputs() -> Vec<PortSpec> {
        vec![model_port(), dataset_port()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![matrix_port()]
    }
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        if p.block_size == 0 { vec![("block_size".into(), "block_size must be ≥ 1".into())] } else { vec![] }
    }
    fn facts(_: &Self::Params, inputs: &hesslab_pipeline::InputFacts) -> hesslab_pipeline::Facts {
        let p = inputs.get("model").and_then(|m| m.params);
        hesslab_pipeline::Facts { rows: p, dim: p, ..Default::default() }
    }
    fn estimate(_: &Self::Params, inputs: &hesslab_pipeline::InputFacts) -> Option<hesslab_pipeline::Estimate> {
        // The matrix, plus one copy kept in memory for the stages that read it next.
        let (p, cache) = crate::operator_estimate(inputs)?;
        Some(crate::dense_estimate(p).plus(cache))
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let model = Mlp::read(ctx, "model")?;
        let ds = Dataset::read(ctx, "dataset")?;
        let built = p.spec().build(model, &ds, ctx.seed).map_err(StageError::msg)?;
        let (a, sym) = materialize(built.op.as_ref(), Some((&built.curvature, built.index.as_deref())), p.block_size, &ctx.progress);
        let mut meta = BTreeMap::new();
        meta.insert("operator".into(), p.operator.name().to_string());
        meta.insert("dim".into(), a.nrows().to_string());
        meta.insert("symmetry_error".into(), format!("{sym:e}"));
        meta.insert("num_samples".into(), built.curvature.num_samples().to_string());
        meta.insert("loss".into(), format!("{:e}", built.curvature.loss));
        meta.insert("tensors".into(), serde_json::to_string(&p.tensors).unwrap_or_default());
        meta.insert("architecture".into(), serde_json::to_string(&built.curvature.model.arch).unwrap_or_default());
        write_matrix(ctx, "matrix", &a, &meta)?;
        let dm = DenseMatrix { matrix: Arc::new(a), operator: p.operator.name().to_string(), symmetry_error: sym };
        ctx.share("matrix", Arc::new(dm));
        Ok(())
    }
}
