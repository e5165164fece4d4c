//! What solvers write: `eigenvalues`, `eigenvectors`, `density`, `nodes`, `trace`.
use crate::{Meta, parsed};
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, Encoded, Facts, MetaKey, Port, StageError};
use std::collections::BTreeMap;
use std::sync::Arc;

const OPERATOR: MetaKey = MetaKey { key: "operator", doc: "the operator (hessian, gauss_newton, …)" };
const DIM: MetaKey = MetaKey { key: "dim", doc: "its side P" };
const SOLVER: MetaKey = MetaKey { key: "solver", doc: "dense, lanczos or power" };
const WHICH: MetaKey = MetaKey { key: "which", doc: "largest, smallest or magnitude" };
const APPLICATIONS: MetaKey = MetaKey { key: "operator_applications", doc: "operator-vector products used" };
const RESTARTS: MetaKey = MetaKey { key: "restarts", doc: "Lanczos restarts" };
const MAX_RESIDUAL: MetaKey = MetaKey { key: "max_residual", doc: "Lanczos: largest ‖Av − λv‖" };
const ORTHOGONALITY: MetaKey = MetaKey { key: "orthogonality_error", doc: "Lanczos: max|VᵀV − I|" };
const SIGMA: MetaKey = MetaKey { key: "sigma", doc: "Gaussian broadening width (absolute)" };
const COUNT_THRESHOLD: MetaKey = MetaKey { key: "count_above_threshold", doc: "the threshold of `count_above`" };
const COUNT_ABOVE: MetaKey = MetaKey { key: "count_above", doc: "estimated number of eigenvalues above it" };

/// What a spectral artifact was computed from and how (metadata shared by the solver outputs;
/// fields a solver does not report stay `None` and are not written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatorInfo {
    /// The operator's name.
    pub operator: String,
    /// Its side P.
    pub dim: usize,
    /// The eigensolver.
    pub solver: Option<String>,
    /// Which end of the spectrum.
    pub which: Option<String>,
    /// Operator-vector products used.
    pub operator_applications: Option<u64>,
    /// Lanczos restarts.
    pub restarts: Option<usize>,
    /// Lanczos: the largest residual.
    pub max_residual: Option<f64>,
    /// Lanczos: loss of orthogonality of the returned vectors.
    pub orthogonality_error: Option<f64>,
    /// SLQ: the absolute broadening width.
    pub sigma: Option<f64>,
    /// SLQ: the eigenvalue count above `count_above.0` is `count_above.1`.
    pub count_above: Option<(f64, f64)>,
    /// Why the network the operator belongs to looks untrained, when `train` said so.
    pub training_warning: Option<String>,
}

impl OperatorInfo {
    pub(crate) fn meta(&self) -> Meta {
        let mut m = Meta::new();
        m.put(OPERATOR, &self.operator);
        m.put(DIM, self.dim);
        m.put_opt(SOLVER, self.solver.as_ref());
        m.put_opt(WHICH, self.which.as_ref());
        m.put_opt(APPLICATIONS, self.operator_applications);
        m.put_opt(RESTARTS, self.restarts);
        m.put_opt(crate::TRAINING_WARNING, self.training_warning.as_ref());
        let floats = [(MAX_RESIDUAL, self.max_residual), (ORTHOGONALITY, self.orthogonality_error), (SIGMA, self.sigma)];
        for (key, v) in floats {
            if let Some(v) = v {
                m.put_f64(key, v);
            }
        }
        if let Some((threshold, count)) = self.count_above {
            m.put_f64(COUNT_THRESHOLD, threshold);
            m.put(COUNT_ABOVE, format!("{count:.3}"));
        }
        m
    }
    pub(crate) fn read(a: &Artifact) -> Self {
        OperatorInfo {
            operator: a.meta(OPERATOR.key).unwrap_or("").to_string(),
            dim: parsed(a, DIM).unwrap_or(0),
            solver: a.meta(SOLVER.key).map(str::to_string),
            which: a.meta(WHICH.key).map(str::to_string),
            operator_applications: parsed(a, APPLICATIONS),
            restarts: parsed(a, RESTARTS),
            max_residual: parsed(a, MAX_RESIDUAL),
            orthogonality_error: parsed(a, ORTHOGONALITY),
            sigma: parsed(a, SIGMA),
            count_above: parsed(a, COUNT_THRESHOLD).zip(parsed(a, COUNT_ABOVE)),
            training_warning: a.meta(crate::TRAINING_WARNING.key).map(str::to_string),
        }
    }
}

/// Rows and the operator's side, from the `dim` key.
pub(crate) fn operator_facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
    Facts { rows: Some(rows), dim: meta.get(DIM.key).and_then(|v| v.parse().ok()), ..Facts::default() }
}

const RANK: &str = "rank";
const EIGENVALUE: &str = "eigenvalue";
const RESIDUAL: &str = "residual";

/// Eigenvalues by rank: the `eigenvalues` port.
#[derive(Debug, Clone)]
pub struct Eigenvalues {
    /// Rank of each value (0 = the largest of the operator, where known); decoding sorts by it.
    pub ranks: Vec<u32>,
    /// The eigenvalues.
    pub values: Vec<f64>,
    /// ‖Av − λv‖ where computed, `None` where exact.
    pub residuals: Vec<Option<f64>>,
    /// What they are eigenvalues of.
    pub info: OperatorInfo,
}

const SPECTRUM_KEYS: &[MetaKey] =
    &[OPERATOR, DIM, SOLVER, WHICH, APPLICATIONS, RESTARTS, MAX_RESIDUAL, ORTHOGONALITY, crate::TRAINING_WARNING];

impl Port for Eigenvalues {
    type Value = Self;
    const NAME: &'static str = "eigenvalues";
    const DOC: &'static str = "rank UInt32 (0 = largest), eigenvalue Float64, residual Float64 (‖Av − λv‖; null where exact)";
    const METADATA: &'static [MetaKey] = SPECTRUM_KEYS;
    fn schema() -> Schema {
        Schema::new(vec![u32_field(RANK), f64_field(EIGENVALUE), f64_null_field(RESIDUAL)])
    }
    /// Non-finite eigenvalues are refused here too: a stage that computed them has failed.
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        if let Some((i, x)) = first_non_finite(&v.values) {
            return Err(StageError::msg(format!(
                "eigenvalue {i} is {x}: the solver's input was not finite (check the matrix, model or trajectory it came from)"
            )));
        }
        let batch = RecordBatch::try_new(
            Arc::new(Self::schema()),
            vec![u32_array(v.ranks.iter().copied()), f64_array(v.values.iter().copied()), f64_opt_array(v.residuals.iter().copied())],
        )
        .map_err(StageError::other)?;
        Ok(Encoded::one(batch, v.info.meta().0))
    }
    fn facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
        operator_facts(rows, meta)
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let ranks = u32_values(&a.batch, RANK).map_err(err)?;
        let values = finite_f64_values(&a.batch, EIGENVALUE).map_err(err)?;
        let residuals = f64_opt_values(&a.batch, RESIDUAL).map_err(err)?;
        let mut rows: Vec<(u32, f64, Option<f64>)> = ranks.into_iter().zip(values).zip(residuals).map(|((r, v), e)| (r, v, e)).collect();
        rows.sort_by_key(|r| r.0);
        // Rank 0 is the largest: by rank the values never increase (in magnitude, for a
        // largest-magnitude solve such as deflated power iteration), and no rank repeats.
        if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(err(format!("rank {} appears twice", w[0].0)));
        }
        let info = OperatorInfo::read(a);
        let by_value = rows.windows(2).find(|w| w[1].1 > w[0].1);
        let by_magnitude = rows.windows(2).any(|w| w[1].1.abs() > w[0].1.abs());
        if let Some(w) = by_value
            && (info.which.as_deref() != Some("magnitude") || by_magnitude)
        {
            return Err(err(format!(
                "eigenvalues are not sorted: rank {} is {} but rank {} is {} (rank 0 is the largest)",
                w[0].0, w[0].1, w[1].0, w[1].1
            )));
        }
        Ok(Eigenvalues {
            ranks: rows.iter().map(|r| r.0).collect(),
            values: rows.iter().map(|r| r.1).collect(),
            residuals: rows.iter().map(|r| r.2).collect(),
            info,
        })
    }
}

/// Eigenvectors by rank: the `eigenvectors` port.
#[derive(Debug, Clone)]
pub struct Eigenvectors {
    /// (rank, unit-norm vector).
    pub vectors: Vec<(u32, Vec<f64>)>,
    /// What they are eigenvectors of.
    pub info: OperatorInfo,
}

const VECTOR: &str = "vector";

impl Port for Eigenvectors {
    type Value = Self;
    const NAME: &'static str = "eigenvectors";
    const DOC: &'static str = "rank UInt32, vector List<Float64> (unit norm)";
    const METADATA: &'static [MetaKey] = SPECTRUM_KEYS;
    fn schema() -> Schema {
        Schema::new(vec![u32_field(RANK), list_f64_field(VECTOR)])
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let batch = RecordBatch::try_new(
            Arc::new(Self::schema()),
            vec![u32_array(v.vectors.iter().map(|v| v.0)), list_f64_array(v.vectors.iter().map(|v| v.1.as_slice()))],
        )
        .map_err(StageError::other)?;
        Ok(Encoded::one(batch, v.info.meta().0))
    }
    fn facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
        operator_facts(rows, meta)
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let ranks = u32_values(&a.batch, RANK).map_err(err)?;
        let vectors = list_f64_values(&a.batch, VECTOR).map_err(err)?;
        Ok(Eigenvectors { vectors: ranks.into_iter().zip(vectors).collect(), info: OperatorInfo::read(a) })
    }
}

const X: &str = "x";
const DENSITY: &str = "density";
const DENSITY_KEYS: &[MetaKey] = &[OPERATOR, DIM, SIGMA, APPLICATIONS, COUNT_THRESHOLD, COUNT_ABOVE, crate::TRAINING_WARNING];

/// A smoothed spectral density on a grid: the `density` port.
#[derive(Debug, Clone)]
pub struct Density {
    /// Grid points.
    pub x: Vec<f64>,
    /// Density at each point (integrates to 1).
    pub density: Vec<f64>,
    /// The operator and the broadening.
    pub info: OperatorInfo,
}

impl Port for Density {
    type Value = Self;
    const NAME: &'static str = "density";
    const DOC: &'static str = "x Float64, density Float64 (Gaussian-broadened, integrates to 1)";
    const METADATA: &'static [MetaKey] = DENSITY_KEYS;
    fn schema() -> Schema {
        Schema::new(vec![f64_field(X), f64_field(DENSITY)])
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let batch =
            RecordBatch::try_new(Arc::new(Self::schema()), vec![f64_array(v.x.iter().copied()), f64_array(v.density.iter().copied())])
                .map_err(StageError::other)?;
        Ok(Encoded::one(batch, v.info.meta().0))
    }
    fn facts(rows: u64, meta: &BTreeMap<String, String>) -> Facts {
        operator_facts(rows, meta)
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        Ok(Density {
            x: finite_f64_values(&a.batch, X).map_err(err)?,
            density: finite_f64_values(&a.batch, DENSITY).map_err(err)?,
            info: OperatorInfo::read(a),
        })
    }
}

hesslab_pipeline::rows! {
    /// One Gauss quadrature node of one SLQ probe: a row of `nodes`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct NodeRow {
        /// Index of the probe vector.
        pub probe: u32,
        /// The node (a Ritz value).
        pub node: f64,
        /// Its weight (the squared first component); a probe's weights sum to 1.
        pub weight: f64,
    }
}

/// Gauss quadrature nodes and weights of every SLQ probe: the `nodes` port.
#[derive(Debug, Clone)]
pub struct Nodes {
    /// One row per node.
    pub rows: Vec<NodeRow>,
    /// The operator.
    pub info: OperatorInfo,
}

impl Nodes {
    /// Probe vectors behind the rows (one more than the largest probe index; 1 when empty).
    pub fn probes(&self) -> usize {
        self.rows.iter().map(|r| r.probe as usize + 1).max().unwrap_or(1)
    }
}

crate::operator_rows_port!(Nodes, NodeRow, "nodes", "probe UInt32, node Float64 (Ritz value), weight Float64", DENSITY_KEYS);

hesslab_pipeline::rows! {
    /// One trace estimate: a row of `trace`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct TraceRow {
        /// hutchinson, hutch++ or exact.
        pub estimator: String,
        /// The estimate.
        pub value: f64,
        /// Its standard error (0 when exact).
        pub stderr: f64,
        /// Operator-vector products it used.
        pub probes: u64,
    }
}

/// Trace estimates: the `trace` port.
#[derive(Debug, Clone)]
pub struct Trace {
    /// One row per estimator.
    pub rows: Vec<TraceRow>,
    /// The operator.
    pub info: OperatorInfo,
}

crate::operator_rows_port!(
    Trace,
    TraceRow,
    "trace",
    "estimator Utf8 (hutchinson, hutch++, exact), value Float64, stderr Float64, probes UInt64",
    &[OPERATOR, DIM]
);
