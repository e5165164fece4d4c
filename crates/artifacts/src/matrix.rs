//! The `matrix` port: a dense symmetric curvature matrix, one row per Parquet row. Written a
//! few rows per batch and read back batch by batch, so neither direction holds a second copy
//! of the matrix (or the Parquet reader's buffers for all of it).
use crate::Meta;
use crate::batched::{Batched, decode_whole, read_in_batches, rows_per_batch};
use crate::model::{ARCHITECTURE, network_facts, read_architecture};
use crate::{TRAINING_WARNING, parsed};
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use faer::Mat;
use hesslab_hessian::{DenseMatrix, symmetrize};
use hesslab_model::NetArch;
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, ArtifactReader, Encoded, Facts, MetaKey, Port, StageError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A dense symmetric curvature matrix: the `matrix` port.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// The matrix, the operator it is, and its symmetry error before symmetrization.
    pub dense: DenseMatrix,
    /// Samples the loss averaged over.
    pub num_samples: Option<usize>,
    /// The loss at the parameters.
    pub loss: Option<f64>,
    /// The tensors it is restricted to (empty = all parameters).
    pub tensors: Vec<String>,
    /// The network it belongs to.
    pub architecture: Option<NetArch>,
    /// Why that network looks untrained, when `train` said so.
    pub training_warning: Option<String>,
}

const ROW: &str = "row";
const VALUES: &str = "values";
const OPERATOR: MetaKey = MetaKey { key: "operator", doc: "hessian, gauss_newton, residual, empirical_fisher or gradient_covariance" };
const DIM: MetaKey = MetaKey { key: "dim", doc: "side P of the matrix" };
const SYMMETRY_ERROR: MetaKey = MetaKey { key: "symmetry_error", doc: "max|A − Aᵀ| / max|A| before symmetrizing" };
const NUM_SAMPLES: MetaKey = MetaKey { key: "num_samples", doc: "samples the loss averages over" };
const LOSS: MetaKey = MetaKey { key: "loss", doc: "the loss at these parameters" };
const TENSORS: MetaKey = MetaKey { key: "tensors", doc: "JSON list of the tensors it is restricted to ([] = all)" };

impl Port for Matrix {
    type Value = Self;
    const NAME: &'static str = "matrix";
    const DOC: &'static str = "dense symmetric matrix: row UInt32, values FixedSizeList<Float64>(P) (row i of the P×P matrix)";
    const METADATA: &'static [MetaKey] = &[OPERATOR, DIM, SYMMETRY_ERROR, NUM_SAMPLES, LOSS, TENSORS, ARCHITECTURE, TRAINING_WARNING];
    fn schema() -> Schema {
        Schema::new(vec![u32_field(ROW), fixed_f64_field(VALUES, 0)])
    }
    /// Streams a few rows per batch, so writing never holds a second copy of the matrix.
    fn encode(m: &Self) -> Result<Encoded<'_>, StageError> {
        let a: &Mat<f64> = &m.dense.matrix;
        let p = a.nrows();
        let schema = Arc::new(Schema::new(vec![u32_field(ROW), fixed_f64_field(VALUES, p as i32)]));
        let mut meta = Meta::new();
        meta.put(OPERATOR, &m.dense.operator);
        meta.put(DIM, p);
        meta.put_f64(SYMMETRY_ERROR, m.dense.symmetry_error);
        meta.put_opt(NUM_SAMPLES, m.num_samples);
        if let Some(loss) = m.loss {
            meta.put_f64(LOSS, loss);
        }
        meta.put(TENSORS, serde_json::to_string(&m.tensors).unwrap_or_default());
        meta.put_opt(TRAINING_WARNING, m.training_warning.as_ref());
        if let Some(arch) = &m.architecture {
            meta.put(ARCHITECTURE, arch.to_json().to_string());
        }
        let rows = rows_per_batch(p);
        let batch_schema = schema.clone();
        let batches = (0..p).step_by(rows).map(move |r0| {
            let r1 = (r0 + rows).min(p);
            let mut flat = Vec::with_capacity((r1 - r0) * p);
            for r in r0..r1 {
                // Symmetric: row r is column r, which is contiguous.
                flat.extend(a.col(r).iter().copied());
            }
            RecordBatch::try_new(batch_schema.clone(), vec![u32_array((r0..r1).map(|r| r as u32)), fixed_f64_array(&flat, p)])
                .map_err(StageError::other)
        });
        Ok(Encoded { schema, metadata: meta.0, batches: Box::new(batches) })
    }
    fn facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
        Facts { dim: meta.get(DIM.key).and_then(|v| v.parse().ok()), ..network_facts(rows, meta) }
    }
    /// Rows may come in any order; all must be present. The matrix is symmetrized and its
    /// symmetry error measured again.
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        decode_whole::<RowsRead>(a)
    }
    /// As [`Matrix::decode`], ~8 MB of rows at a time: the matrix plus ~100 MB of reader
    /// buffers, where reading every row into one batch first peaked at 4.6 × 8P² (670 MB at
    /// P = 4270).
    fn read(reader: ArtifactReader) -> Result<Self, StageError> {
        read_in_batches::<RowsRead>(reader)
    }
}

/// The largest relative asymmetry max|A − Aᵀ| / max|A| a `matrix` read accepts (it is then
/// symmetrized); hesslab writes exactly symmetric matrices, so anything above this is a matrix
/// that is not a curvature matrix at all.
pub const SYMMETRY_TOLERANCE: f64 = 1e-8;

/// The rows of a P × P matrix read so far.
struct RowsRead {
    m: Mat<f64>,
    seen: Vec<bool>,
}

impl Batched for RowsRead {
    const LIST_COLUMN: &'static str = VALUES;
    type Value = Matrix;

    /// Checks the row count before allocating P² values (a file whose schema claims a huge P
    /// gets an error, not an allocation failure).
    fn new(p: usize, rows: u64) -> Result<Self, String> {
        if rows != p as u64 {
            return Err(format!("{rows} rows for a {p}×{p} matrix"));
        }
        Ok(RowsRead { m: Mat::zeros(p, p), seen: vec![false; p] })
    }

    /// Row r of the file goes into column r: contiguous, and the matrix is symmetrized next,
    /// which treats A and Aᵀ alike (the same bits either way).
    fn add(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let p = self.m.nrows();
        let rows = u32_values(batch, ROW)?;
        let (vals, width) = fixed_f64_slice(batch, VALUES)?;
        if width != p {
            return Err(format!("column `{VALUES}` holds rows of {width} values in a {p}×{p} matrix"));
        }
        if let Some((i, v)) = first_non_finite(vals) {
            return Err(format!(
                "column `{VALUES}` row {} holds {v}: a matrix of curvature is finite",
                rows.get(i / p).copied().unwrap_or(0)
            ));
        }
        for (k, &r) in rows.iter().enumerate() {
            let r = r as usize;
            if r >= p || self.seen[r] {
                return Err(format!("column `{ROW}`: row index {r} is out of range or repeated"));
            }
            self.seen[r] = true;
            let col = self.m.col_mut(r).try_as_col_major_mut().expect("a Mat's columns are contiguous").as_slice_mut();
            col.copy_from_slice(&vals[k * p..(k + 1) * p]);
        }
        Ok(())
    }

    fn finish(self, a: &Artifact) -> Result<Matrix, String> {
        let p = self.m.nrows();
        let read = self.seen.iter().filter(|s| **s).count();
        if read != p {
            return Err(format!("{read} rows for a {p}×{p} matrix"));
        }
        let mut m = self.m;
        let symmetry_error = symmetrize(&mut m);
        if symmetry_error > SYMMETRY_TOLERANCE {
            return Err(format!(
                "the matrix is not symmetric: max|A − Aᵀ| / max|A| = {symmetry_error:.3e} > {SYMMETRY_TOLERANCE:e} (curvature matrices are symmetric; hesslab writes them symmetrized)"
            ));
        }
        let operator = a.meta(OPERATOR.key).unwrap_or("unknown").to_string();
        Ok(Matrix {
            dense: DenseMatrix { matrix: Arc::new(m), operator, symmetry_error },
            num_samples: parsed(a, NUM_SAMPLES),
            loss: parsed(a, LOSS),
            tensors: a.meta(TENSORS.key).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default(),
            architecture: read_architecture(a).ok(),
            training_warning: a.meta(TRAINING_WARNING.key).map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests;
