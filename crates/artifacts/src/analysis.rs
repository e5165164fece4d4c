//! What the analysis stages write: `summary`, `table`, `spectra`, `decomposition`, `overlap`,
//! `curve`, `fit`.
use crate::Meta;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, Encoded, MetaKey, Port, StageError};
use std::collections::BTreeMap;
use std::sync::Arc;

hesslab_pipeline::rows! {
    /// Statistics of one spectrum (S18 Table 1): one row of `summary`, and of `table`.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct SummaryRow {
        /// Eigenvalues summarized (< `dim` for a partial spectrum).
        pub num_eigenvalues: u64,
        /// Side P of the operator.
        pub dim: u64,
        /// Eigenvalues above `zero_tol`.
        pub positive: u64,
        /// Eigenvalues below −`zero_tol`.
        pub negative: u64,
        /// Eigenvalues with |λ| ≤ `zero_tol`.
        pub near_zero: u64,
        /// Outliers by the largest gap.
        pub outliers_gap: u64,
        /// Outliers by the largest ratio of consecutive eigenvalues.
        pub outliers_ratio: u64,
        /// Outliers above the heuristic cutoff.
        pub outliers_heuristic: u64,
        /// The absolute zero tolerance used.
        pub zero_tol: f64,
        /// Mean eigenvalue.
        pub mean: f64,
        /// Standard deviation of the eigenvalues.
        pub std: f64,
        /// Smallest eigenvalue.
        pub min: f64,
        /// Largest eigenvalue.
        pub max: f64,
        /// `negative` / `num_eigenvalues`.
        pub fraction_negative: f64,
        /// Sum of the eigenvalues.
        pub sum: f64,
        /// The heuristic cutoff.
        pub heuristic_cutoff: f64,
        /// Eigenvalues above `fixed_cutoff` (S18 Table 1's fixed threshold); None when not asked
        /// (and in files written before it existed).
        pub outliers_fixed: Option<u64>,
        /// The fixed threshold, when asked.
        pub fixed_cutoff: Option<f64>,
    }
}

impl SummaryRow {
    /// Every column's name and value (counts as f64; NaN for a null), in schema order.
    pub fn named_values(&self) -> Vec<(&'static str, f64)> {
        let counts = [
            self.num_eigenvalues,
            self.dim,
            self.positive,
            self.negative,
            self.near_zero,
            self.outliers_gap,
            self.outliers_ratio,
            self.outliers_heuristic,
        ]
        .map(|v| v as f64);
        let stats = [self.zero_tol, self.mean, self.std, self.min, self.max, self.fraction_negative, self.sum, self.heuristic_cutoff];
        let fixed = [self.outliers_fixed.map_or(f64::NAN, |v| v as f64), self.fixed_cutoff.unwrap_or(f64::NAN)];
        Self::COLUMNS.iter().map(|c| c.0).zip(counts.into_iter().chain(stats).chain(fixed)).collect()
    }
    /// Rows as a batch, after `leading` columns.
    fn batch(rows: &[SummaryRow], leading: Vec<(Field, ArrayRef)>) -> Result<RecordBatch, StageError> {
        let (mut fields, mut cols): (Vec<Field>, Vec<ArrayRef>) = leading.into_iter().unzip();
        fields.extend(Self::fields());
        cols.extend(Self::arrays(rows));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(StageError::other)
    }
}

const SOURCE_OPERATOR: MetaKey = MetaKey { key: "source_operator", doc: "operator of the summarized eigenvalues" };
const SOURCE_SOLVER: MetaKey = MetaKey { key: "source_solver", doc: "solver that computed them" };

/// One spectrum's statistics: the `summary` port.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The statistics.
    pub row: SummaryRow,
    /// Operator of the summarized eigenvalues.
    pub source_operator: String,
    /// Solver that computed them.
    pub source_solver: String,
    /// Why the network they come from looks untrained, when `train` said so.
    pub training_warning: Option<String>,
}

impl Port for Summary {
    type Value = Self;
    const NAME: &'static str = "summary";
    const DOC: &'static str = "one row: counts (num_eigenvalues, dim, positive, negative, near_zero, outliers_gap, outliers_ratio, outliers_heuristic: UInt64) and statistics (zero_tol, mean, std, min, max, fraction_negative, sum, heuristic_cutoff: Float64), then outliers_fixed UInt64 and fixed_cutoff Float64 (S18 Table 1's fixed-threshold count; null unless asked)";
    const METADATA: &'static [MetaKey] = &[SOURCE_OPERATOR, SOURCE_SOLVER, crate::TRAINING_WARNING];
    fn schema() -> Schema {
        Schema::new(SummaryRow::fields())
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let mut m = Meta::new();
        m.put(SOURCE_OPERATOR, &v.source_operator);
        m.put(SOURCE_SOLVER, &v.source_solver);
        m.put_opt(crate::TRAINING_WARNING, v.training_warning.as_ref());
        Ok(Encoded::one(SummaryRow::batch(std::slice::from_ref(&v.row), vec![])?, m.0))
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let row = crate::decode_one(a, "summary")?;
        Ok(Summary {
            row,
            source_operator: a.meta(SOURCE_OPERATOR.key).unwrap_or("").to_string(),
            source_solver: a.meta(SOURCE_SOLVER.key).unwrap_or("").to_string(),
            training_warning: a.meta(crate::TRAINING_WARNING.key).map(str::to_string),
        })
    }
}

const MEMBER: &str = "member";

/// Summaries of every sweep member side by side: the `table` port (written by `compare`).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Member names, one per row.
    pub members: Vec<String>,
    /// Sweep keys (`stage.param`) and each row's value, in column order.
    pub labels: Vec<(String, Vec<String>)>,
    /// The summary of each row.
    pub rows: Vec<SummaryRow>,
}

impl Port for Table {
    type Value = Self;
    const NAME: &'static str = "table";
    const DOC: &'static str = "member Utf8, one Utf8 column per sweep key, then the summary columns";
    fn schema() -> Schema {
        Schema::new(vec![utf8_field(MEMBER)])
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let mut leading = vec![(utf8_field(MEMBER), utf8_array(v.members.iter()))];
        for (k, vals) in &v.labels {
            leading.push((utf8_field(k), utf8_array(vals.iter())));
        }
        Ok(Encoded::one(SummaryRow::batch(&v.rows, leading)?, BTreeMap::new()))
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let members = utf8_values(&a.batch, MEMBER).map_err(err)?;
        let known: Vec<&str> = SummaryRow::COLUMNS.iter().map(|c| c.0).chain([MEMBER]).collect();
        let mut labels = Vec::new();
        for f in a.batch.schema().fields() {
            if !known.contains(&f.name().as_str()) {
                labels.push((f.name().clone(), utf8_values(&a.batch, f.name()).map_err(err)?));
            }
        }
        Ok(Table { members, labels, rows: crate::decode_rows(a)? })
    }
}

hesslab_pipeline::rows! {
    /// One eigenvalue of one operator in `spectra`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct SpectrumRow {
        /// hessian, gauss_newton or residual.
        pub operator: String,
        /// Rank, 0 = largest.
        pub rank: u32,
        /// The eigenvalue.
        pub eigenvalue: f64,
    }
}

/// Top eigenvalues of H, G and R side by side: the `spectra` port (written by `decomposition`).
#[derive(Debug, Clone, PartialEq)]
pub struct Spectra(pub Vec<SpectrumRow>);

crate::table_port!(Spectra, SpectrumRow, "spectra", "operator Utf8 (hessian, gauss_newton, residual), rank UInt32, eigenvalue Float64");

hesslab_pipeline::rows! {
    /// How much of H the Gauss-Newton term carries: the `decomposition` port (one row).
    #[derive(Debug, Clone, PartialEq)]
    pub struct Decomposition {
        /// Size of the compared top eigenspaces.
        pub k: u64,
        /// ‖U_HᵀU_G‖²_F / k.
        pub overlap_top_k: f64,
        /// ‖R‖ / ‖H‖ (spectral norms).
        pub residual_norm_ratio: f64,
        /// ‖R‖_F / ‖H‖_F, with the dense solver only.
        pub residual_fro_ratio: Option<f64>,
    }
}

impl Port for Decomposition {
    type Value = Self;
    const NAME: &'static str = "decomposition";
    const DOC: &'static str =
        "one row: k, overlap_top_k (‖U_HᵀU_G‖²_F/k), residual_norm_ratio (‖R‖/‖H‖, spectral), residual_fro_ratio (dense only, else null)";
    fn schema() -> Schema {
        Schema::new(Decomposition::fields())
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        crate::encode_rows(std::slice::from_ref(v), BTreeMap::new())
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        crate::decode_one(a, "decomposition")
    }
}

hesslab_pipeline::rows! {
    /// One top eigenvector's share in the spans of class means of gradients.
    #[derive(Debug, Clone, PartialEq)]
    pub struct OverlapRow {
        /// Rank, 0 = largest.
        pub rank: u32,
        /// Its eigenvalue.
        pub eigenvalue: f64,
        /// Squared norm of its projection (0..1) on the span of the C class-mean loss gradients
        /// δ_{c,c} (at a minimum these sum to ∇L ≈ 0; kept beside Papyan's means).
        pub overlap: f64,
        /// On the span of Papyan's C global class means δ_c = Ave_{c' ≠ c} δ_{c,c'}, where
        /// δ_{c,c'} = Ave_{i ∈ c} ∇θ ℓ(f(x_i), c') is the class-c mean of the loss gradient as if
        /// the label were c' (= Jᵢᵀ(pᵢ − e_{c'}); G = Ave_i Σ_{c'} p_{i,c'} δ_{i,c'} δ_{i,c'}ᵀ).
        pub overlap_global_means: Option<f64>,
        /// On the span of the C(C − 1) cross-class means δ_{c,c'}, c' ≠ c.
        pub overlap_cross_class_means: Option<f64>,
    }
}

/// Class structure of the top Hessian eigenvectors: the `overlap` port.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap(pub Vec<OverlapRow>);

crate::table_port!(
    Overlap,
    OverlapRow,
    "overlap",
    "rank UInt32, eigenvalue Float64, and the squared norm (0..1) of the eigenvector's projection on three spans: overlap Float64 (the C class-mean loss gradients), overlap_global_means Float64 (Papyan's C global class means of the logit-gradient vectors), overlap_cross_class_means Float64 (his C(C − 1) class/cross-class means); files written before the last two have nulls there"
);

hesslab_pipeline::rows! {
    /// Loss and accuracy at one point of a line through parameter space.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct CurvePoint {
        /// Position α (between models) or t (along a direction).
        pub alpha: f64,
        /// Training loss.
        pub train_loss: f64,
        /// Training accuracy.
        pub train_accuracy: f64,
        /// Test loss.
        pub test_loss: f64,
        /// Test accuracy.
        pub test_accuracy: f64,
    }
}

/// The loss along a line: the `curve` port (written by `interpolate`).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// The grid points in order.
    pub points: Vec<CurvePoint>,
    /// `line` (between two models) or `eigenvector` (along a direction).
    pub mode: String,
    /// Line mode: model B's test accuracy minus model A's, compared example by example.
    pub paired: Option<PairedAccuracy>,
}

/// Two models' test accuracies compared on the same examples (S18 E6: is the small-batch
/// solution better?): the difference and a 95 % interval from the per-example differences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedAccuracy {
    /// accuracy(B) − accuracy(A).
    pub difference: f64,
    /// Half-width of its 95 % interval, 1.96 · sd(dᵢ)/√n with dᵢ = [B right] − [A right].
    pub ci95: f64,
    /// Test examples compared.
    pub examples: u64,
}

impl PairedAccuracy {
    /// From the per-example correctness of A and B.
    pub fn of(a: &[bool], b: &[bool]) -> PairedAccuracy {
        let n = a.len().min(b.len());
        let d: Vec<f64> = a.iter().zip(b).map(|(&x, &y)| y as u8 as f64 - x as u8 as f64).collect();
        let mean = d.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 { d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { f64::NAN };
        PairedAccuracy { difference: mean, ci95: 1.96 * (var / n as f64).sqrt(), examples: n as u64 }
    }
}

const MODE: MetaKey = MetaKey { key: "mode", doc: "line (between two models) or eigenvector (along a direction)" };
const ACC_DIFF: MetaKey =
    MetaKey { key: "test_accuracy_difference", doc: "line mode: test accuracy of model_b minus model_a, on the same examples" };
const ACC_CI: MetaKey = MetaKey {
    key: "test_accuracy_difference_ci95",
    doc: "half-width of its 95 % interval from the per-example differences (1.96·sd/√n)",
};
const ACC_N: MetaKey = MetaKey { key: "test_examples", doc: "test examples compared" };

impl Port for Curve {
    type Value = Self;
    const NAME: &'static str = "curve";
    const DOC: &'static str = "alpha Float64, train_loss, train_accuracy, test_loss, test_accuracy Float64";
    const METADATA: &'static [MetaKey] = &[MODE, ACC_DIFF, ACC_CI, ACC_N];
    fn schema() -> Schema {
        Schema::new(CurvePoint::fields())
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let mut m = Meta::new();
        m.put(MODE, &v.mode);
        if let Some(pa) = v.paired {
            m.put_f64(ACC_DIFF, pa.difference);
            m.put_f64(ACC_CI, pa.ci95);
            m.put(ACC_N, pa.examples);
        }
        crate::encode_rows(&v.points, m.0)
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let points = crate::decode_rows(a)?;
        let num = |k: &MetaKey| a.meta(k.key).and_then(|s| s.parse::<f64>().ok());
        let paired = match (num(&ACC_DIFF), num(&ACC_CI), num(&ACC_N)) {
            (Some(difference), Some(ci95), Some(n)) => Some(PairedAccuracy { difference, ci95, examples: n as u64 }),
            _ => None,
        };
        Ok(Curve { points, mode: a.meta(MODE.key).unwrap_or("").to_string(), paired })
    }
}

hesslab_pipeline::rows! {
    /// A Marchenko–Pastur fit to the bulk of a spectrum.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct FitRow {
        /// Ratio P/N (fitted too with `fit_ratio`).
        pub alpha: f64,
        /// Fitted variance σ²: the one whose law is closest to the bulk in Kolmogorov–Smirnov
        /// distance (files before 0.2: the bulk's mean eigenvalue, now `sigma2_mean`).
        pub sigma2: f64,
        /// Left edge λ₋.
        pub lambda_minus: f64,
        /// Right edge λ₊.
        pub lambda_plus: f64,
        /// Eigenvalues above λ₊.
        pub above_edge: u64,
        /// The bulk's mean eigenvalue (trace/M), the moment estimate of σ² at ratio P/N.
        pub sigma2_mean: Option<f64>,
        /// Kolmogorov–Smirnov distance sup |F_bulk − F_MP| of the fitted law to the bulk.
        pub ks_distance: Option<f64>,
        /// 1.358/√n for the n bulk eigenvalues: the 5 % critical value were they independent
        /// draws from a fixed law (eigenvalues are not, and σ² is fitted: a yardstick only).
        pub ks_critical: Option<f64>,
    }
}

/// The `fit` port (written by `marchenko_pastur`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fit(pub FitRow);

impl Port for Fit {
    type Value = Self;
    const NAME: &'static str = "fit";
    const DOC: &'static str = "one row: alpha, sigma2 (fitted by least Kolmogorov–Smirnov distance), lambda_minus, lambda_plus Float64; above_edge UInt64 (eigenvalues > λ₊); sigma2_mean (the bulk mean, the moment estimate), ks_distance, ks_critical (1.358/√n, a yardstick) Float64, null in files before them";
    fn schema() -> Schema {
        Schema::new(FitRow::fields())
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        crate::encode_rows(std::slice::from_ref(&v.0), BTreeMap::new())
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        crate::decode_one(a, "fit").map(Fit)
    }
}
