use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;

/// A named input or output of a stage kind, with the Arrow schema its artifact carries.
///
/// A `FixedSizeList` of size 0 in a declared schema means "any size" (the size depends on the
/// data, e.g. the feature dimension). Extra columns in an actual file are allowed.
#[derive(Clone, Debug)]
pub struct PortSpec {
    pub name: &'static str,
    pub doc: &'static str,
    pub schema: SchemaRef,
    /// An input that takes the port of every sweep member (`"stage.port[*]"`).
    pub many: bool,
    /// An input that may be left unset, or an output a stage may not write.
    pub optional: bool,
}

impl PortSpec {
    pub fn new(name: &'static str, doc: &'static str, fields: Vec<Field>) -> Self {
        PortSpec { name, doc, schema: Arc::new(Schema::new(fields)), many: false, optional: false }
    }
    pub fn many(mut self) -> Self {
        self.many = true;
        self
    }
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
    /// The same port under another name (e.g. a `model` input called `init`).
    pub fn renamed(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }
    /// A port that carries files other than Parquet (plots, reports): empty schema.
    pub fn is_files(&self) -> bool {
        self.schema.fields().is_empty()
    }
}

/// Does `actual` satisfy `declared`? Returns the first offending column with an explanation.
pub fn check_schema(declared: &Schema, actual: &Schema) -> Result<(), String> {
    for f in declared.fields() {
        match actual.field_with_name(f.name()) {
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
