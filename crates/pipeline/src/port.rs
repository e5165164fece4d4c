//! Ports: the typed artifacts stages exchange, and their declared Arrow schemas.
use crate::{Artifact, ArtifactReader, Facts, StageError};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema, SchemaRef};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One metadata key an artifact type writes, with what it means (for `hesslab stages` and the
/// README's artifact table).
#[derive(Clone, Copy, Debug)]
pub struct MetaKey {
    /// The key, as Arrow and Parquet readers see it.
    pub key: &'static str,
    /// What the value holds.
    pub doc: &'static str,
}

/// An artifact type: the Rust value a port carries, its Arrow schema, its metadata keys, and
/// how the value is stored in and read back from Parquet. Stages read and write through
/// `StageContext::read::<P>` / `write::<P>`, so the columns and keys of an artifact are spelled
/// only in its `Port` implementation.
pub trait Port: 'static {
    /// The value stages work with (a math type such as a dataset, or a small struct).
    type Value: Clone + Send + Sync + 'static;
    /// The artifact type's name, which is also the usual port name (`"eigenvalues"`).
    const NAME: &'static str;
    /// One line on the columns, for `hesslab stages` and the README.
    const DOC: &'static str;
    /// The metadata keys this type writes besides the engine's `hesslab.*` keys.
    const METADATA: &'static [MetaKey] = &[];
    /// The declared schema: these columns must be present with these types (a
    /// `FixedSizeList` of size 0 means any size). Extra columns are allowed.
    fn schema() -> Schema;
    /// The value as Arrow batches with its metadata.
    fn encode(value: &Self::Value) -> Result<Encoded<'_>, StageError>;
    /// The value from an artifact whose schema has already been checked against `schema()`.
    fn decode(artifact: &Artifact) -> Result<Self::Value, StageError>;
    /// The value from a file opened with its schema checked. The default reads every row
    /// into one batch and calls [`Port::decode`]; a type too large to hold twice (a dense
    /// matrix) decodes batch by batch instead.
    fn read(reader: ArtifactReader) -> Result<Self::Value, StageError> {
        Self::decode(&reader.into_artifact()?)
    }
    /// What an artifact of this type holds (sizes for memory estimates), from its row count
    /// and metadata alone, without reading its rows.
    fn facts(rows: u64, _metadata: &BTreeMap<String, String>) -> Facts {
        Facts { rows: Some(rows), ..Facts::default() }
    }
}

/// A value encoded for writing: the actual schema (concrete list sizes), the metadata, and
/// the batches, produced lazily so a large artifact (a dense matrix) streams.
pub struct Encoded<'a> {
    /// The schema of the batches.
    pub schema: SchemaRef,
    /// Key-value metadata of the artifact type (the engine adds its own keys).
    pub metadata: BTreeMap<String, String>,
    /// The rows, in order.
    pub batches: Box<dyn Iterator<Item = Result<RecordBatch, StageError>> + 'a>,
}

impl<'a> Encoded<'a> {
    /// A value that is one batch.
    pub fn one(batch: RecordBatch, metadata: BTreeMap<String, String>) -> Self {
        Encoded { schema: batch.schema(), metadata, batches: Box::new(std::iter::once(Ok(batch))) }
    }
}

/// A named input or output of a stage kind, with the artifact type it carries. Built in
/// constant context (`const OUTPUTS: &[PortSpec] = &[port::<Dataset>()]`).
///
/// A `FixedSizeList` of size 0 in a declared schema means "any size" (the size depends on the
/// data, e.g. the feature dimension). Extra columns in an actual file are allowed.
#[derive(Clone, Copy, Debug)]
pub struct PortSpec {
    /// The port's name in this stage kind (`"init_from"`).
    pub name: &'static str,
    /// The artifact type (`Port::NAME`), `"files"` for plots and reports.
    pub artifact: &'static str,
    /// One line on the columns.
    pub doc: &'static str,
    /// The artifact type's metadata keys.
    pub metadata: &'static [MetaKey],
    /// An input that takes the port of every sweep member (`"stage.port[*]"`).
    pub many: bool,
    /// An input that may be left unset, or an output a stage may not write.
    pub optional: bool,
    declared: fn() -> Schema,
    facts: fn(u64, &BTreeMap<String, String>) -> Facts,
}

/// The artifact type name of plot and report outputs.
pub const FILES: &str = "files";

impl PortSpec {
    /// The port of artifact type `P`, named after it.
    pub const fn of<P: Port>() -> Self {
        PortSpec {
            name: P::NAME,
            artifact: P::NAME,
            doc: P::DOC,
            metadata: P::METADATA,
            many: false,
            optional: false,
            declared: P::schema,
            facts: P::facts,
        }
    }
    /// Plots and reports written as files: `doc` says which.
    pub const fn files(doc: &'static str) -> Self {
        PortSpec {
            name: FILES,
            artifact: FILES,
            doc,
            metadata: &[],
            many: false,
            optional: false,
            declared: Schema::empty,
            facts: no_facts,
        }
    }
    /// An input that gathers every sweep member's artifact.
    pub const fn many(mut self) -> Self {
        self.many = true;
        self
    }
    /// An input that may be left unset, or an output that is not always written.
    pub const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
    /// The same artifact type under another port name (e.g. a `model` input called `init_from`).
    pub const fn renamed(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }
    /// The declared Arrow schema (empty for files).
    pub fn schema(&self) -> SchemaRef {
        Arc::new((self.declared)())
    }
    /// What an artifact of this port holds, from its row count and metadata.
    pub fn facts(&self, rows: u64, metadata: &BTreeMap<String, String>) -> Facts {
        (self.facts)(rows, metadata)
    }
    /// A port that carries files other than Parquet (plots, reports).
    pub fn is_files(&self) -> bool {
        self.artifact == FILES
    }
}

fn no_facts(_: u64, _: &BTreeMap<String, String>) -> Facts {
    Facts::default()
}

/// `PortSpec::of::<P>()`, the short form stage kinds use in `INPUTS` / `OUTPUTS`.
pub const fn port<P: Port>() -> PortSpec {
    PortSpec::of::<P>()
}

/// Does `actual` satisfy `declared`? Returns the first offending column with an explanation.
pub fn check_schema(declared: &Schema, actual: &Schema) -> Result<(), String> {
    for f in declared.fields() {
        match actual.field_with_name(f.name()) {
            Err(_) if f.metadata().get(crate::columns::OPTIONAL_COLUMN).is_some_and(|v| v == "true") => {}
            Err(_) => {
                return Err(format!(
                    "column `{}` is missing (expected {}); columns present: [{}]",
                    f.name(),
                    type_name(f.data_type()),
                    actual.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            Ok(a) => {
                if !type_matches(f.data_type(), a.data_type()) {
                    return Err(format!(
                        "column `{}` has type {}, expected {}",
                        f.name(),
                        type_name(a.data_type()),
                        type_name(f.data_type())
                    ));
                }
            }
        }
    }
    Ok(())
}

fn type_matches(decl: &DataType, actual: &DataType) -> bool {
    match (decl, actual) {
        (DataType::FixedSizeList(d, n), DataType::FixedSizeList(a, m)) => (*n == 0 || n == m) && type_matches(d.data_type(), a.data_type()),
        (DataType::List(d), DataType::List(a)) | (DataType::List(d), DataType::LargeList(a)) => type_matches(d.data_type(), a.data_type()),
        (DataType::Utf8, DataType::LargeUtf8) | (DataType::Utf8, DataType::Utf8View) => true,
        _ => decl == actual,
    }
}

/// A short human name of an Arrow type, as the README documents it.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::FixedSizeList(f, 0) => {
            format!("FixedSizeList<{}>(any)", type_name(f.data_type()))
        }
        DataType::FixedSizeList(f, n) => {
            format!("FixedSizeList<{}>({n})", type_name(f.data_type()))
        }
        DataType::List(f) => format!("List<{}>", type_name(f.data_type())),
        DataType::Float64 => "Float64".into(),
        DataType::UInt32 => "UInt32".into(),
        DataType::UInt64 => "UInt64".into(),
        DataType::Int64 => "Int64".into(),
        DataType::Utf8 => "Utf8".into(),
        DataType::Boolean => "Boolean".into(),
        other => format!("{other:?}"),
    }
}
