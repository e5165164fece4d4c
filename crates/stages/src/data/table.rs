//! `table`: any Parquet or CSV table with feature columns and a label column.
use super::DATASET;
use hesslab_artifacts::Dataset;
use hesslab_data::{MAX_CLASSES, TEST, TRAIN, subsample};
use hesslab_pipeline::{PortSpec, StageContext, StageError, StageKind, columns, port_type_name, read_artifact};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn read_file(path: &str) -> Result<Vec<u8>, StageError> {
    std::fs::read(path).map_err(|e| StageError::msg(format!("cannot read table `{path}`: {e}")))
}

/// Parameters of the `table` importer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TableParams {
    /// A .parquet or .csv file (CSV: header row, numeric features).
    pub path: String,
    /// Name of the integer class-label column.
    pub label: String,
    /// Feature columns; empty means every other numeric column.
    pub features: Vec<String>,
    /// Optional column with "train"/"test"; otherwise `test_fraction` splits by class.
    pub split_column: Option<String>,
    /// Fraction of each class held out as the test split (when no split column).
    pub test_fraction: f64,
}
impl Default for TableParams {
    fn default() -> Self {
        TableParams { path: String::new(), label: "label".into(), features: vec![], split_column: None, test_fraction: 0.2 }
    }
}

/// `table`: import a Parquet or CSV table.
pub struct TableStage;

struct Table {
    names: Vec<String>,
    cols: Vec<Vec<String>>,
    /// Columns that were present but of a type this stage cannot read, with that type.
    unsupported: Vec<(String, String)>,
}

fn read_csv(path: &str) -> Result<Table, StageError> {
    let bytes = read_file(path)?;
    // A byte-order mark (Excel writes one) is not part of the first column's name.
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
    // The csv crate handles quoted fields (commas and newlines inside quotes), which a split on
    // commas did not.
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
    let bad = |e: csv::Error| {
        let at = e.position().map(|p| format!(" line {}", p.line())).unwrap_or_default();
        StageError::msg(format!("`{path}`{at}: {e}"))
    };
    let names: Vec<String> = reader.headers().map_err(bad)?.iter().map(str::to_string).collect();
    if names.is_empty() || names.iter().all(|n| n.is_empty()) {
        return Err(StageError::msg(format!("`{path}` is empty")));
    }
    let mut cols = vec![Vec::new(); names.len()];
    for record in reader.records() {
        let record = record.map_err(bad)?;
        if record.iter().all(|c| c.is_empty()) {
            continue; // blank line
        }
        for (c, v) in record.iter().enumerate() {
            cols[c].push(v.to_string());
        }
    }
    Ok(Table { names, cols, unsupported: Vec::new() })
}

/// The values of a numeric column of type `T` as text (nulls as ""), or None for another type.
fn primitive_strings<T: arrow_array::ArrowPrimitiveType>(c: &dyn arrow_array::Array) -> Option<Vec<String>>
where
    T::Native: ToString,
{
    arrow_array::cast::AsArray::as_primitive_opt::<T>(c).map(|x| x.iter().map(|v| v.map(|v| v.to_string()).unwrap_or_default()).collect())
}

fn read_parquet_table(path: &str) -> Result<Table, StageError> {
    let a = read_artifact(std::path::Path::new(path), None)?;
    let mut names = Vec::new();
    let mut cols = Vec::new();
    let mut unsupported = Vec::new();
    for (i, f) in a.batch.schema().fields().iter().enumerate() {
        let c = a.batch.column(i);
        use arrow_array::types::*;
        let cast = primitive_strings::<Float64Type>(c.as_ref())
            .or_else(|| primitive_strings::<Float32Type>(c.as_ref()))
            .or_else(|| primitive_strings::<Int64Type>(c.as_ref()))
            .or_else(|| primitive_strings::<Int32Type>(c.as_ref()))
            .or_else(|| primitive_strings::<Int16Type>(c.as_ref()))
            .or_else(|| primitive_strings::<Int8Type>(c.as_ref()))
            .or_else(|| primitive_strings::<UInt64Type>(c.as_ref()))
            .or_else(|| primitive_strings::<UInt32Type>(c.as_ref()))
            .or_else(|| primitive_strings::<UInt16Type>(c.as_ref()))
            .or_else(|| primitive_strings::<UInt8Type>(c.as_ref()))
            .or_else(|| {
                arrow_array::cast::AsArray::as_boolean_opt(c.as_ref())
                    .map(|b| b.iter().map(|v| v.map(|v| if v { "1" } else { "0" }.to_string()).unwrap_or_default()).collect())
            })
            .or_else(|| columns::utf8_values(&a.batch, f.name()).ok());
        match cast {
            Some(v) => {
                names.push(f.name().clone());
                cols.push(v);
            }
            None => unsupported.push((f.name().clone(), port_type_name(f.data_type()))),
        }
    }
    Ok(Table { names, cols, unsupported })
}

impl StageKind for TableStage {
    type Params = TableParams;
    const KIND: &'static str = "table";
    /// 2: datasets carry their sample `shape`.
    const VERSION: u32 = 2;
    const DOC: &'static str = "Import a Parquet or CSV table: numeric feature columns and an integer label column (optional split column).";
    const OUTPUTS: &'static [PortSpec] = &[DATASET];
    fn check(p: &TableParams) -> Vec<(String, String)> {
        if p.path.is_empty() { vec![("path".into(), "path of the table is required".into())] } else { vec![] }
    }
    fn run(p: &TableParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let t = if p.path.ends_with(".parquet") { read_parquet_table(&p.path)? } else { read_csv(&p.path)? };
        let find = |name: &str| {
            t.names.iter().position(|n| n == name).ok_or_else(|| match t.unsupported.iter().find(|(n, _)| n == name) {
                Some((_, ty)) => StageError::msg(format!(
                    "table `{}`: column `{name}` has type {ty}, which `table` cannot read (integers, floats, booleans and text are read)",
                    p.path
                )),
                None => StageError::msg(format!("table `{}` has no column `{name}`; columns: {}", p.path, t.names.join(", "))),
            })
        };
        let li = find(&p.label)?;
        let si = p.split_column.as_deref().map(find).transpose()?;
        let feats: Vec<usize> = if p.features.is_empty() {
            (0..t.names.len()).filter(|&i| i != li && Some(i) != si).collect()
        } else {
            p.features.iter().map(|f| find(f)).collect::<Result<_, _>>()?
        };
        if feats.is_empty() {
            return Err(StageError::msg(format!(
                "table `{}` has no feature column besides the label{}",
                p.path,
                if t.unsupported.is_empty() { String::new() } else { format!(" (unreadable columns: {:?})", t.unsupported) }
            )));
        }
        let rows = t.cols.first().map(|c| c.len()).unwrap_or(0);
        let mut y = Vec::with_capacity(rows);
        for (r, v) in t.cols[li].iter().enumerate() {
            let l: f64 = v.parse().map_err(|_| StageError::msg(format!("column `{}` row {r}: `{v}` is not a class label", p.label)))?;
            if l < 0.0 || l.fract() != 0.0 {
                return Err(StageError::msg(format!("column `{}` row {r}: `{v}` is not a non-negative integer label", p.label)));
            }
            if l >= MAX_CLASSES as f64 {
                return Err(StageError::msg(format!(
                    "column `{}` row {r}: label {v} is too large (labels are 0..{} here)",
                    p.label, MAX_CLASSES
                )));
            }
            y.push(l as u32);
        }
        let mut x = Vec::with_capacity(rows * feats.len());
        for r in 0..rows {
            for &f in &feats {
                let v = &t.cols[f][r];
                x.push(v.parse::<f64>().map_err(|_| StageError::msg(format!("column `{}` row {r}: `{v}` is not a number", t.names[f])))?);
            }
        }
        let k = y.iter().copied().max().map(|m| m as usize + 1).unwrap_or(0);
        let d = feats.len();
        let (x, y, split) = match si {
            Some(si) => {
                let mut split = Vec::with_capacity(rows);
                for (r, s) in t.cols[si].iter().enumerate() {
                    match s.as_str() {
                        TRAIN => split.push(true),
                        TEST => split.push(false),
                        other => {
                            return Err(StageError::msg(format!(
                                "column `{}` row {r}: `{other}` is neither \"{TRAIN}\" nor \"{TEST}\"",
                                t.names[si]
                            )));
                        }
                    }
                }
                (x, y, split)
            }
            None => subsample(x, y, d, k, 0, p.test_fraction, ctx.seed),
        };
        let ds = hesslab_data::Dataset {
            dim: d,
            shape: vec![d],
            num_classes: k,
            x,
            y,
            split,
            feature_names: feats.iter().map(|&f| t.names[f].clone()).collect(),
            info: serde_json::json!({"generator": "table", "params": p}),
        };
        ctx.write::<Dataset>(DATASET.name, &ds)
    }
}
