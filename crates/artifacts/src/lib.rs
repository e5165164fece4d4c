//! The artifacts hesslab stages exchange — the public contract that Arrow tools (DuckDB,
//! Polars, pyarrow) read. Each port is one Rust type implementing [`hesslab_pipeline::Port`]:
//! its name, Arrow schema, metadata keys and Parquet encoding are written here once, and
//! `hesslab stages`, the engine's port compatibility check and the README's artifact table
//! are generated from them ([`all`], [`markdown_table`]).
#![warn(missing_docs)]

mod analysis;
mod batched;
mod dataset;
mod ensemble;
mod matrix;
mod model;
mod optimizer_state;
mod spectra;
mod spread;
mod training;

pub use analysis::{
    Curve, CurvePoint, Decomposition, Fit, FitRow, Overlap, OverlapRow, PairedAccuracy, Spectra, SpectrumRow, Summary, SummaryRow, Table,
};
pub use dataset::Dataset;
pub use ensemble::{Ensemble, EnsembleMember};
pub use matrix::Matrix;
pub use model::{Log, Model, Trajectory};
pub use spectra::{Density, Eigenvalues, Eigenvectors, NodeRow, Nodes, OperatorInfo, Trace, TraceRow};
pub use spread::{RankSpread, Spread, Stats};
pub use training::{SnapshotDensity, SnapshotEigenvalue, TrainingDensity, TrainingSpectrum, TrainingStep, TrainingSteps};

use hesslab_pipeline::columns::Rows;
use hesslab_pipeline::{Artifact, Encoded, MetaKey, PortSpec, StageError, port_type_name};
use std::collections::BTreeMap;
use std::fmt::Display;

/// Every artifact type, in the order of the README's table.
pub fn all() -> Vec<PortSpec> {
    use hesslab_pipeline::port;
    vec![
        port::<Dataset>(),
        port::<Model>(),
        port::<Log>(),
        port::<Trajectory>(),
        port::<Matrix>(),
        port::<Eigenvalues>(),
        port::<Eigenvectors>(),
        port::<Density>(),
        port::<Nodes>(),
        port::<Trace>(),
        port::<Summary>(),
        port::<Table>(),
        port::<Spread>(),
        port::<RankSpread>(),
        port::<Spectra>(),
        port::<Decomposition>(),
        port::<Overlap>(),
        port::<Curve>(),
        port::<Fit>(),
        port::<Ensemble>(),
        port::<TrainingSpectrum>(),
        port::<TrainingSteps>(),
        port::<TrainingDensity>(),
    ]
}

/// The README's artifact table (Markdown), generated from the types; `writers` names the
/// stage kinds that write an artifact type.
pub fn markdown_table(writers: impl Fn(&str) -> Vec<String>) -> String {
    let mut md = String::from("| artifact | written by | columns | metadata |\n|---|---|---|---|\n");
    for p in all() {
        let cols: Vec<String> = p.schema().fields().iter().map(|f| format!("`{}: {}`", f.name(), port_type_name(f.data_type()))).collect();
        let meta: Vec<String> = p.metadata.iter().map(|k| format!("`{}` ({})", k.key, cell(k.doc))).collect();
        let by: Vec<String> = writers(p.artifact).iter().map(|k| format!("`{k}`")).collect();
        md.push_str(&format!("| `{}` | {} | {} — {} | {} |\n", p.artifact, by.join(", "), cols.join(", "), cell(p.doc), meta.join("; ")));
    }
    md
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Metadata being assembled for an artifact: values go in by their typed key.
#[derive(Default)]
pub(crate) struct Meta(pub(crate) BTreeMap<String, String>);

impl Meta {
    pub(crate) fn new() -> Self {
        Meta::default()
    }
    pub(crate) fn put(&mut self, key: MetaKey, value: impl Display) {
        self.0.insert(key.key.to_string(), value.to_string());
    }
    pub(crate) fn put_opt(&mut self, key: MetaKey, value: Option<impl Display>) {
        if let Some(v) = value {
            self.put(key, v);
        }
    }
    /// A float in Rust's `{:e}` form, the form every float in hesslab metadata takes.
    pub(crate) fn put_f64(&mut self, key: MetaKey, value: f64) {
        self.0.insert(key.key.to_string(), format!("{value:e}"));
    }
}

/// Carried from `train` down to every spectrum and summary of the network it trained.
pub(crate) const TRAINING_WARNING: MetaKey = MetaKey {
    key: "training_warning",
    doc: "present when the network these numbers come from looks untrained (a final training accuracy at chance level, a training loss that did not fall): why, as `train` said it",
};

/// A metadata value parsed as `T`, `None` when missing or malformed.
pub(crate) fn parsed<T: std::str::FromStr>(a: &hesslab_pipeline::Artifact, key: MetaKey) -> Option<T> {
    a.meta(key.key).and_then(|s| s.parse().ok())
}

/// Rows declared with [`hesslab_pipeline::rows!`] as one batch with `meta`.
pub(crate) fn encode_rows<R: Rows>(rows: &[R], meta: BTreeMap<String, String>) -> Result<Encoded<'static>, StageError> {
    Ok(Encoded::one(R::batch(rows).map_err(StageError::msg)?, meta))
}

/// The rows of an artifact, a column error naming the file.
pub(crate) fn decode_rows<R: Rows>(a: &Artifact) -> Result<Vec<R>, StageError> {
    R::read(&a.batch).map_err(|m| StageError::from(a.column_error(m)))
}

/// The one row of a one-row artifact (`what` names it in the error).
pub(crate) fn decode_one<R: Rows>(a: &Artifact, what: &str) -> Result<R, StageError> {
    decode_rows(a)?.into_iter().next().ok_or_else(|| StageError::from(a.column_error(format!("{what} has no rows"))))
}

/// The `Port` of an artifact that is rows and the operator they are of (`rows`, `info`): schema,
/// encoder and decoder all from the row type, metadata from [`OperatorInfo`].
macro_rules! operator_rows_port {
    ($ty:ident, $row:ty, $name:literal, $doc:literal, $keys:expr) => {
        impl hesslab_pipeline::Port for $ty {
            type Value = Self;
            const NAME: &'static str = $name;
            const DOC: &'static str = $doc;
            const METADATA: &'static [hesslab_pipeline::MetaKey] = $keys;
            fn schema() -> arrow_schema::Schema {
                arrow_schema::Schema::new(<$row as hesslab_pipeline::columns::Rows>::fields())
            }
            fn encode(v: &Self) -> Result<hesslab_pipeline::Encoded<'_>, hesslab_pipeline::StageError> {
                crate::encode_rows(&v.rows, v.info.meta().0)
            }
            fn facts(rows: u64, meta: &std::collections::BTreeMap<String, String>) -> hesslab_pipeline::Facts {
                crate::spectra::operator_facts(rows, meta)
            }
            fn decode(a: &hesslab_pipeline::Artifact) -> Result<Self, hesslab_pipeline::StageError> {
                Ok($ty { rows: crate::decode_rows(a)?, info: crate::spectra::OperatorInfo::read(a) })
            }
        }
    };
}
pub(crate) use operator_rows_port;

/// The `Port` of an artifact that is a list of rows and nothing else (`struct T(pub Vec<Row>)`).
macro_rules! table_port {
    ($ty:ident, $row:ty, $name:literal, $doc:literal) => {
        impl hesslab_pipeline::Port for $ty {
            type Value = Self;
            const NAME: &'static str = $name;
            const DOC: &'static str = $doc;
            fn schema() -> arrow_schema::Schema {
                arrow_schema::Schema::new(<$row as hesslab_pipeline::columns::Rows>::fields())
            }
            fn encode(v: &Self) -> Result<hesslab_pipeline::Encoded<'_>, hesslab_pipeline::StageError> {
                crate::encode_rows(&v.0, Default::default())
            }
            fn decode(a: &hesslab_pipeline::Artifact) -> Result<Self, hesslab_pipeline::StageError> {
                Ok($ty(crate::decode_rows(a)?))
            }
        }
    };
}
pub(crate) use table_port;
