//! Spectra along training, one row per (snapshot step, …): `training_spectrum`,
//! `training_steps`, `training_density` (written by `spectra_along_training`).
use crate::OperatorInfo;
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, Encoded, MetaKey, Port, StageError};
use std::collections::BTreeMap;
use std::sync::Arc;

const STEP: &str = "step";
const TRAIN_LOSS: &str = "train_loss";
const APPLICATIONS: &str = "applications";
const COLD_APPLICATIONS: &str = "cold_applications";
const OUTLIERS: &str = "outliers";
const PRE_SHARPNESS: &str = "preconditioned_sharpness";
const PRE_RESIDUAL: &str = "preconditioned_residual";

const SPECTRUM_KEYS: &[MetaKey] = &[
    MetaKey { key: "operator", doc: "the operator (hessian, gauss_newton, …)" },
    MetaKey { key: "dim", doc: "its side P" },
    MetaKey { key: "which", doc: "largest, smallest or magnitude" },
];

const DENSITY_KEYS: &[MetaKey] = &[
    MetaKey { key: "operator", doc: "the operator (hessian, gauss_newton, …)" },
    MetaKey { key: "dim", doc: "its side P" },
    MetaKey { key: "sigma", doc: "Gaussian broadening width (absolute)" },
];

hesslab_pipeline::rows! {
    /// One eigenvalue at one snapshot: a row of `training_spectrum`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct SnapshotEigenvalue {
        /// Training step of the snapshot.
        pub step: u64,
        /// Rank, 0 = largest.
        pub rank: u32,
        /// The eigenvalue.
        pub eigenvalue: f64,
        /// Its residual ‖Hv − λv‖.
        pub residual: f64,
    }
}

/// The top (or bottom) k eigenvalues at every training snapshot: the `training_spectrum` port.
#[derive(Debug, Clone, Default)]
pub struct TrainingSpectrum {
    /// By step, then rank.
    pub rows: Vec<SnapshotEigenvalue>,
    /// The operator.
    pub info: OperatorInfo,
}

crate::operator_rows_port!(
    TrainingSpectrum,
    SnapshotEigenvalue,
    "training_spectrum",
    "step UInt64, rank UInt32 (0 = largest), eigenvalue Float64, residual Float64, per snapshot",
    SPECTRUM_KEYS
);

/// One snapshot's row of `training_steps`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingStep {
    /// The training step of the snapshot.
    pub step: u64,
    /// Loss over the samples the operator averages.
    pub train_loss: f64,
    /// Operator-vector products the (warm-started) eigensolver used.
    pub applications: u64,
    /// Products a cold (random-start) solve used, when it was also run for comparison.
    pub cold_applications: Option<u64>,
    /// Outliers by the elbow count, when asked.
    pub outliers: Option<u64>,
    /// For a trajectory of Adam, AdamW or RMSprop: the top eigenvalue of P^{-1/2} H P^{-1/2}
    /// with P the optimizer's preconditioner at the snapshot (none before the first update).
    pub preconditioned_sharpness: Option<f64>,
    /// Its relative residual ‖Av − λv‖/|λ|.
    pub preconditioned_residual: Option<f64>,
}

/// Per snapshot: loss, eigensolver cost (warm and, optionally, cold), outlier count: the
/// `training_steps` port.
#[derive(Debug, Clone, Default)]
pub struct TrainingSteps(pub Vec<TrainingStep>);

impl Port for TrainingSteps {
    type Value = Self;
    const NAME: &'static str = "training_steps";
    const DOC: &'static str = "step UInt64, train_loss Float64, applications UInt64 (warm start), cold_applications UInt64? (cold start, when compared), outliers UInt64? (elbow count); for a trajectory of Adam, AdamW or RMSprop also preconditioned_sharpness Float64? (top eigenvalue of P^{-1/2} H P^{-1/2}, P the optimizer's preconditioner at the snapshot; null before the first update) and preconditioned_residual Float64?";
    fn schema() -> Schema {
        Schema::new(vec![
            u64_field(STEP),
            f64_field(TRAIN_LOSS),
            u64_field(APPLICATIONS),
            u64_null_field(COLD_APPLICATIONS),
            u64_null_field(OUTLIERS),
            f64_optional_field(PRE_SHARPNESS),
            f64_optional_field(PRE_RESIDUAL),
        ])
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let r = &v.0;
        let mut columns = vec![
            u64_array(r.iter().map(|r| r.step)),
            f64_array(r.iter().map(|r| r.train_loss)),
            u64_array(r.iter().map(|r| r.applications)),
            u64_opt_array(r.iter().map(|r| r.cold_applications)),
            u64_opt_array(r.iter().map(|r| r.outliers)),
        ];
        let mut schema = Self::schema();
        if r.iter().all(|r| r.preconditioned_sharpness.is_none()) {
            // Without them the file is exactly what it was before the columns.
            schema = Schema::new(
                schema.fields().iter().filter(|f| ![PRE_SHARPNESS, PRE_RESIDUAL].contains(&f.name().as_str())).cloned().collect::<Vec<_>>(),
            );
        } else {
            columns.push(f64_opt_array(r.iter().map(|r| r.preconditioned_sharpness)));
            columns.push(f64_opt_array(r.iter().map(|r| r.preconditioned_residual)));
        }
        let batch = RecordBatch::try_new(Arc::new(schema), columns).map_err(StageError::other)?;
        Ok(Encoded::one(batch, BTreeMap::new()))
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let step = u64_values(&a.batch, STEP).map_err(err)?;
        let loss = f64_values(&a.batch, TRAIN_LOSS).map_err(err)?;
        let apps = u64_values(&a.batch, APPLICATIONS).map_err(err)?;
        let cold = u64_opt_values(&a.batch, COLD_APPLICATIONS).map_err(err)?;
        let out = u64_opt_values(&a.batch, OUTLIERS).map_err(err)?;
        let optional = |c: &str| -> Result<Vec<Option<f64>>, StageError> {
            if a.batch.column_by_name(c).is_some() { f64_opt_values(&a.batch, c).map_err(err) } else { Ok(vec![None; step.len()]) }
        };
        let (pre, pre_r) = (optional(PRE_SHARPNESS)?, optional(PRE_RESIDUAL)?);
        Ok(TrainingSteps(
            (0..step.len())
                .map(|i| TrainingStep {
                    step: step[i],
                    train_loss: loss[i],
                    applications: apps[i],
                    cold_applications: cold[i],
                    outliers: out[i],
                    preconditioned_sharpness: pre[i],
                    preconditioned_residual: pre_r[i],
                })
                .collect(),
        ))
    }
}

hesslab_pipeline::rows! {
    /// The density at one grid point of one snapshot: a row of `training_density`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct SnapshotDensity {
        /// Training step of the snapshot.
        pub step: u64,
        /// The grid point.
        pub x: f64,
        /// The density there.
        pub density: f64,
    }
}

/// The SLQ spectral density at every snapshot on one shared grid: the `training_density` port.
#[derive(Debug, Clone, Default)]
pub struct TrainingDensity {
    /// By step, then grid point.
    pub rows: Vec<SnapshotDensity>,
    /// The operator and the broadening.
    pub info: OperatorInfo,
}

crate::operator_rows_port!(
    TrainingDensity,
    SnapshotDensity,
    "training_density",
    "step UInt64, x Float64, density Float64 (per snapshot, one grid for all)",
    DENSITY_KEYS
);
