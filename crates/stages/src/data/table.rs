//! `table`: any Parquet or CSV table with feature columns and a label column.
use super::DATASET;
use hesslab_artifacts::Dataset;
use hesslab_data::{MAX_CLASSES, TEST, TRAIN, subsample};
use hesslab_pipeline::{PortSpec, StageContext, StageError, StageKind, port_type_name};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// Bytes the import holds per value it reads: the examples, and the split's copy of them.
const BYTES_PER_VALUE: u64 = 16;

/// One cell as the reader found it.
enum Cell<'a> {
    Num(f64),
    Text(&'a str),
    Null,
}

impl Cell<'_> {
    fn text(&self) -> String {
        match self {
            Cell::Num(v) => v.to_string(),
            Cell::Text(t) => t.to_string(),
            Cell::Null => String::new(),
        }
    }
    fn number(&self) -> Option<f64> {
        match self {
            Cell::Num(v) => Some(*v),
            Cell::Text(t) => t.parse().ok(),
            Cell::Null => None,
        }
    }
}

/// The columns the stage takes, by position, and what it has read of them so far: rows are
/// turned into examples as they are read, so no cell is kept as text.
struct Rows {
    names: Vec<String>,
    label: usize,
    split: Option<usize>,
    features: Vec<usize>,
    x: Vec<f64>,
    y: Vec<u32>,
    is_train: Vec<bool>,
    rows: usize,
}

impl Rows {
    /// Find the columns `p` names among `names` (those of readable types); `unsupported` are
    /// the columns of other types, for the message.
    fn new(p: &TableParams, names: Vec<String>, unsupported: &[(String, String)]) -> Result<Rows, StageError> {
        let find = |name: &str| {
            names.iter().position(|n| n == name).ok_or_else(|| match unsupported.iter().find(|(n, _)| n == name) {
                Some((_, ty)) => StageError::msg(format!(
                    "table `{}`: column `{name}` has type {ty}, which `table` cannot read (integers, floats, booleans and text are read)",
                    p.path
                )),
                None => StageError::msg(format!("table `{}` has no column `{name}`; columns: {}", p.path, names.join(", "))),
            })
        };
        let label = find(&p.label)?;
        let split = p.split_column.as_deref().map(find).transpose()?;
        let features: Vec<usize> = if p.features.is_empty() {
            (0..names.len()).filter(|&i| i != label && Some(i) != split).collect()
        } else {
            p.features.iter().map(|f| find(f)).collect::<Result<_, _>>()?
        };
        if features.is_empty() {
            return Err(StageError::msg(format!(
                "table `{}` has no feature column besides the label{}",
                p.path,
                if unsupported.is_empty() { String::new() } else { format!(" (unreadable columns: {unsupported:?})") }
            )));
        }
        Ok(Rows { names, label, split, features, x: Vec::new(), y: Vec::new(), is_train: Vec::new(), rows: 0 })
    }

    /// Check that `rows` more rows fit the memory budget, then reserve them.
    fn reserve(&mut self, path: &str, rows: u64) -> Result<(), StageError> {
        let values = rows.saturating_add(self.rows as u64).saturating_mul(self.features.len() as u64 + 1);
        hesslab_limits::check_memory(
            values.saturating_mul(BYTES_PER_VALUE),
            format!("{} rows × {} columns", rows, self.features.len() + 1),
        )
        .map_err(|e| StageError::msg(format!("table `{path}`: importing it {e}")))?;
        self.x.reserve(rows as usize * self.features.len());
        self.y.reserve(rows as usize);
        Ok(())
    }

    /// Add one row; `cell(c)` is column c's value.
    fn push<'a>(&mut self, cell: impl Fn(usize) -> Cell<'a>) -> Result<(), StageError> {
        let r = self.rows;
        let c = cell(self.label);
        let name = &self.names[self.label];
        let l = c.number().ok_or_else(|| StageError::msg(format!("column `{name}` row {r}: `{}` is not a class label", c.text())))?;
        if l < 0.0 || l.fract() != 0.0 {
            return Err(StageError::msg(format!("column `{name}` row {r}: `{}` is not a non-negative integer label", c.text())));
        }
        if l >= MAX_CLASSES as f64 {
            return Err(StageError::msg(format!(
                "column `{name}` row {r}: label {} is too large (labels are 0..{MAX_CLASSES} here)",
                c.text()
            )));
        }
        self.y.push(l as u32);
        for &f in &self.features {
            let c = cell(f);
            let v =
                c.number().ok_or_else(|| StageError::msg(format!("column `{}` row {r}: `{}` is not a number", self.names[f], c.text())))?;
            self.x.push(v);
        }
        if let Some(si) = self.split {
            match cell(si).text().as_str() {
                TRAIN => self.is_train.push(true),
                TEST => self.is_train.push(false),
                other => {
                    return Err(StageError::msg(format!(
                        "column `{}` row {r}: `{other}` is neither \"{TRAIN}\" nor \"{TEST}\"",
                        self.names[si]
                    )));
                }
            }
        }
        self.rows += 1;
        Ok(())
    }
}

fn read_csv(p: &TableParams) -> Result<Rows, StageError> {
    let path = &p.path;
    let cannot = |e: std::io::Error| StageError::msg(format!("cannot read table `{path}`: {e}"));
    let file = hesslab_limits::open_regular(std::path::Path::new(path)).map_err(cannot)?;
    let size = file.metadata().map_err(cannot)?.len();
    let mut input = std::io::BufReader::new(file);
    // A byte-order mark (Excel writes one) is not part of the first column's name.
    let bom = std::io::BufRead::fill_buf(&mut input).map_err(cannot)?.starts_with("\u{feff}".as_bytes());
    if bom {
        std::io::BufRead::consume(&mut input, 3);
    }
    // The csv crate handles quoted fields (commas and newlines inside quotes), which a split on
    // commas did not.
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
    let bad = |e: csv::Error| {
        let at = e.position().map(|p| format!(" line {}", p.line())).unwrap_or_default();
        StageError::msg(format!("`{path}`{at}: {e}"))
    };
    let names: Vec<String> = reader.headers().map_err(bad)?.iter().map(str::to_string).collect();
    if names.is_empty() || names.iter().all(|n| n.is_empty()) {
        return Err(StageError::msg(format!("`{path}` is empty")));
    }
    let mut rows = Rows::new(p, names, &[])?;
    // Every row takes at least two bytes per column ("0,"), so the file's size bounds the rows.
    let most_rows = size / (2 * rows.names.len() as u64).max(1);
    hesslab_limits::check_memory(
        most_rows.saturating_mul(rows.features.len() as u64 + 1).saturating_mul(BYTES_PER_VALUE),
        format!("up to {most_rows} rows"),
    )
    .map_err(|e| StageError::msg(format!("table `{path}`: importing it {e}")))?;
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(bad)? {
        if record.iter().all(|c| c.is_empty()) {
            continue; // blank line
        }
        rows.push(|c| record.get(c).map_or(Cell::Null, Cell::Text))?;
    }
    Ok(rows)
}

/// A column of a Parquet batch, as the reader reads it.
enum Column<'a> {
    Num(Vec<Option<f64>>),
    Text(&'a arrow_array::StringArray),
}

/// A numeric column as f64 (nulls as `None`), or `None` for another type.
fn numbers<T: arrow_array::ArrowPrimitiveType>(c: &dyn arrow_array::Array) -> Option<Vec<Option<f64>>>
where
    T::Native: Into<f64>,
{
    arrow_array::cast::AsArray::as_primitive_opt::<T>(c).map(|x| x.iter().map(|v| v.map(Into::into)).collect())
}

/// 64-bit integers as f64 (labels and counts; exact below 2⁵³).
fn wide<T: arrow_array::ArrowPrimitiveType>(c: &dyn arrow_array::Array, f: fn(T::Native) -> f64) -> Option<Vec<Option<f64>>> {
    arrow_array::cast::AsArray::as_primitive_opt::<T>(c).map(|x| x.iter().map(|v| v.map(f)).collect())
}

fn column(c: &dyn arrow_array::Array) -> Option<Column<'_>> {
    use arrow_array::types::*;
    numbers::<Float64Type>(c)
        .or_else(|| numbers::<Float32Type>(c))
        .or_else(|| wide::<Int64Type>(c, |v| v as f64))
        .or_else(|| numbers::<Int32Type>(c))
        .or_else(|| numbers::<Int16Type>(c))
        .or_else(|| numbers::<Int8Type>(c))
        .or_else(|| wide::<UInt64Type>(c, |v| v as f64))
        .or_else(|| numbers::<UInt32Type>(c))
        .or_else(|| numbers::<UInt16Type>(c))
        .or_else(|| numbers::<UInt8Type>(c))
        .or_else(|| arrow_array::cast::AsArray::as_boolean_opt(c).map(|b| b.iter().map(|v| v.map(|v| if v { 1.0 } else { 0.0 })).collect()))
        .map(Column::Num)
        .or_else(|| arrow_array::cast::AsArray::as_string_opt::<i32>(c).map(Column::Text))
}

fn read_parquet_table(p: &TableParams) -> Result<Rows, StageError> {
    let reader = hesslab_pipeline::ArtifactReader::open(std::path::Path::new(&p.path), None)?;
    let schema = reader.schema().clone();
    let empty = arrow_array::RecordBatch::new_empty(schema.clone());
    let (mut names, mut unsupported) = (Vec::new(), Vec::new());
    for (i, f) in schema.fields().iter().enumerate() {
        match column(empty.column(i).as_ref()) {
            Some(_) => names.push(f.name().clone()),
            None => unsupported.push((f.name().clone(), port_type_name(f.data_type()))),
        }
    }
    let readable: Vec<usize> = (0..schema.fields().len()).filter(|&i| column(empty.column(i).as_ref()).is_some()).collect();
    let mut rows = Rows::new(p, names, &unsupported)?;
    // The footer's row count is checked before anything is decoded.
    rows.reserve(&p.path, reader.rows())?;
    for batch in reader.batches(1 << 16)? {
        let batch = batch?;
        let cols: Vec<Column> = readable.iter().map(|&i| column(batch.column(i).as_ref()).expect("type checked on the schema")).collect();
        for r in 0..batch.num_rows() {
            rows.push(|c| match &cols[c] {
                Column::Num(v) => v[r].map_or(Cell::Null, Cell::Num),
                Column::Text(t) => {
                    if arrow_array::Array::is_null(*t, r) {
                        Cell::Null
                    } else {
                        Cell::Text(t.value(r))
                    }
                }
            })?;
        }
    }
    Ok(rows)
}

impl StageKind for TableStage {
    type Params = TableParams;
    const KIND: &'static str = "table";
    /// 2: datasets carry their sample `shape`.
    const VERSION: u32 = 2;
    const DOC: &'static str = "Import a Parquet or CSV table: numeric feature columns and an integer label column (optional split column).";
    const OUTPUTS: &'static [PortSpec] = &[DATASET];
    fn input_files(p: &TableParams) -> Vec<String> {
        vec![p.path.clone()]
    }
    fn check(p: &TableParams) -> Vec<(String, String)> {
        if p.path.is_empty() {
            return vec![("path".into(), "path of the table is required".into())];
        }
        super::unreadable_input("path", &p.path).into_iter().collect()
    }
    fn run(p: &TableParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let t = if p.path.ends_with(".parquet") { read_parquet_table(p)? } else { read_csv(p)? };
        let k = t.y.iter().copied().max().map(|m| m as usize + 1).unwrap_or(0);
        let d = t.features.len();
        let feature_names = t.features.iter().map(|&f| t.names[f].clone()).collect();
        let (x, y, split) = match t.split {
            Some(_) => (t.x, t.y, t.is_train),
            None => subsample(t.x, t.y, d, k, 0, p.test_fraction, ctx.seed),
        };
        let ds = hesslab_data::Dataset {
            dim: d,
            shape: vec![d],
            num_classes: k,
            x,
            y,
            split,
            feature_names,
            info: serde_json::json!({"generator": "table", "params": p}),
        };
        ctx.write::<Dataset>(DATASET.name, &ds)
    }
}
