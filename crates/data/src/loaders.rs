//! Loaders for user-supplied data: MNIST IDX files, CIFAR-10 binary batches, and any
//! Parquet/CSV table with feature columns and a label column.
use crate::digits::stratified_split;
use crate::{Dataset, dataset_port, rng::Rng};
use hesslab_pipeline::columns;
use hesslab_pipeline::{PortSpec, StageContext, StageError, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn read_file(path: &str, what: &str) -> Result<Vec<u8>, StageError> {
    std::fs::read(path).map_err(|e| StageError::msg(format!("cannot read {what} `{path}`: {e}")))
}

fn subsample(x: Vec<f64>, y: Vec<u32>, d: usize, k: usize, n: usize, test_fraction: f64, seed: u64) -> (Vec<f64>, Vec<u32>, Vec<bool>) {
    let keep = stratified_split(&y, k, n, test_fraction, &mut Rng::new(seed));
    (
        keep.iter().flat_map(|&(i, _)| x[i * d..(i + 1) * d].iter().copied()).collect(),
        keep.iter().map(|&(i, _)| y[i]).collect(),
        keep.iter().map(|&(_, t)| t).collect(),
    )
}

// ---------------------------------------------------------------- IDX (MNIST)

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IdxParams {
    /// Path of the images file (e.g. train-images-idx3-ubyte), magic 0x00000803.
    pub images: String,
    /// Path of the labels file (e.g. train-labels-idx1-ubyte), magic 0x00000801.
    pub labels: String,
    /// Examples to keep (stratified by class); 0 keeps all.
    pub n: usize,
    /// Fraction of each class held out as the test split.
    pub test_fraction: f64,
    /// Divide pixels by 255.
    pub unit_scale: bool,
}
impl Default for IdxParams {
    fn default() -> Self {
        IdxParams { images: String::new(), labels: String::new(), n: 1000, test_fraction: 0.2, unit_scale: true }
    }
}

pub struct IdxImages;

/// Parse an IDX file: (dimensions, u8 payload).
pub fn parse_idx(bytes: &[u8], path: &str) -> Result<(Vec<usize>, Vec<u8>), StageError> {
    let bad = |m: String| StageError::msg(format!("malformed IDX file `{path}`: {m}"));
    if bytes.len() < 4 {
        return Err(bad(format!("{} bytes, too short for a header", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad(format!(
            "magic {:02x}{:02x}{:02x}{:02x} is not an unsigned-byte IDX file",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    let nd = bytes[3] as usize;
    if bytes.len() < 4 + 4 * nd {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> =
        (0..nd).map(|i| u32::from_be_bytes([bytes[4 + 4 * i], bytes[5 + 4 * i], bytes[6 + 4 * i], bytes[7 + 4 * i]]) as usize).collect();
    let Some(want) = dims.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) else {
        return Err(bad(format!("header dimensions {dims:?} overflow")));
    };
    let payload = &bytes[4 + 4 * nd..];
    if payload.len() != want {
        return Err(bad(format!("header says {dims:?} = {want} bytes of data, file has {}", payload.len())));
    }
    Ok((dims, payload.to_vec()))
}

impl StageKind for IdxImages {
    type Params = IdxParams;
    const KIND: &'static str = "idx";
    const VERSION: u32 = 1;
    const DOC: &'static str = "MNIST-style IDX image and label files from a local path, stratified subsample, test split.";
    fn inputs() -> Vec<PortSpec> {
        vec![]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![dataset_port()]
    }
    fn check(p: &IdxParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.images.is_empty() {
            e.push(("images".into(), "path of the IDX images file is required".into()));
        }
        if p.labels.is_empty() {
            e.push(("labels".into(), "path of the IDX labels file is required".into()));
        }
        e
    }
    fn run(p: &IdxParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let (dims, pix) = parse_idx(&read_file(&p.images, "IDX images file")?, &p.images)?;
        let (ldims, lab) = parse_idx(&read_file(&p.labels, "IDX labels file")?, &p.labels)?;
        if dims.is_empty() || ldims.len() != 1 || ldims[0] != dims[0] {
            return Err(StageError::msg(format!("IDX images {dims:?} and labels {ldims:?} do not match")));
        }
        let n = dims[0];
        let d: usize = dims[1..].iter().product();
        let s = if p.unit_scale { 1.0 / 255.0 } else { 1.0 };
        let x: Vec<f64> = pix.iter().map(|&b| b as f64 * s).collect();
        let y: Vec<u32> = lab.iter().map(|&b| b as u32).collect();
        let k = y.iter().copied().max().map(|m| m as usize + 1).unwrap_or(0).max(10);
        let (x, y, split) = subsample(x, y, d, k, p.n, p.test_fraction, ctx.seed);
        let _ = n;
        let ds = Dataset {
            dim: d,
            num_classes: k,
            x,
            y,
            split,
            feature_names: (0..d).map(|j| format!("pixel{j}")).collect(),
            info: serde_json::json!({"generator": "idx", "params": p}),
        };
        ds.write(ctx, "dataset")
    }
}

// ---------------------------------------------------------------- CIFAR-10

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CifarParams {
    /// CIFAR-10 binary batch files (data_batch_1.bin ...): records of 1 label byte + 3072 pixels.
    pub files: Vec<String>,
    /// Examples to keep (stratified by class); 0 keeps all.
    pub n: usize,
    /// Fraction of each class held out as the test split.
    pub test_fraction: f64,
}
impl Default for CifarParams {
    fn default() -> Self {
        CifarParams { files: vec![], n: 1000, test_fraction: 0.2 }
    }
}

pub struct Cifar10;

pub const CIFAR_RECORD: usize = 1 + 3072;

impl StageKind for Cifar10 {
    type Params = CifarParams;
    const KIND: &'static str = "cifar10";
    const VERSION: u32 = 1;
    const DOC: &'static str =
        "CIFAR-10 binary batches from local paths (pixels ÷255, channel-major 3×32×32), stratified subsample, test split.";
    fn inputs() -> Vec<PortSpec> {
        vec![]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![dataset_port()]
    }
    fn check(p: &CifarParams) -> Vec<(String, String)> {
        if p.files.is_empty() { vec![("files".into(), "list at least one CIFAR-10 binary batch file".into())] } else { vec![] }
    }
    fn facts(p: &CifarParams, _: &hesslab_pipeline::InputFacts) -> hesslab_pipeline::Facts {
        hesslab_pipeline::Facts { rows: (p.n > 0).then_some(p.n as u64), dim: Some(3072), classes: Some(10), ..Default::default() }
    }
    fn run(p: &CifarParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for f in &p.files {
            let b = read_file(f, "CIFAR-10 batch")?;
            if b.is_empty() || b.len() % CIFAR_RECORD != 0 {
                return Err(StageError::msg(format!(
                    "malformed CIFAR-10 batch `{f}`: {} bytes is not a multiple of the {CIFAR_RECORD}-byte record",
                    b.len()
                )));
            }
            for (r, rec) in b.chunks_exact(CIFAR_RECORD).enumerate() {
                if rec[0] > 9 {
                    return Err(StageError::msg(format!("malformed CIFAR-10 batch `{f}`: record {r} has label {}", rec[0])));
                }
                y.push(rec[0] as u32);
                x.extend(rec[1..].iter().map(|&v| v as f64 / 255.0));
            }
        }
        let (x, y, split) = subsample(x, y, 3072, 10, p.n, p.test_fraction, ctx.seed);
        let ds = Dataset {
            dim: 3072,
            num_classes: 10,
            x,
            y,
            split,
            feature_names: (0..3072).map(|j| format!("c{}_{}_{}", j / 1024, (j % 1024) / 32, j % 32)).collect(),
            info: serde_json::json!({"generator": "cifar10", "params": p}),
        };
        ds.write(ctx, "dataset")
    }
}

// ---------------------------------------------------------------- table

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

pub struct TableImport;

struct Table {
    names: Vec<String>,
    cols: Vec<Vec<String>>,
    /// Columns that were present but of a type this stage cannot read, with that type.
    unsupported: Vec<(String, String)>,
}

fn read_csv(path: &str) -> Result<Table, StageError> {
    let bytes = read_file(path, "table")?;
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
    let a = hesslab_pipeline::read_artifact(std::path::Path::new(path), None)?;
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
            None => unsupported.push((f.name().clone(), hesslab_pipeline::port_type_name(f.data_type()))),
        }
    }
    Ok(Table { names, cols, unsupported })
}

impl StageKind for TableImport {
    type Params = TableParams;
    const KIND: &'static str = "table";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Import a Parquet or CSV table: numeric feature columns and an integer label column (optional split column).";
    fn inputs() -> Vec<PortSpec> {
        vec![]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![dataset_port()]
    }
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
            if l >= crate::dataset::MAX_CLASSES as f64 {
                return Err(StageError::msg(format!(
                    "column `{}` row {r}: label {v} is too large (labels are 0..{} here)",
                    p.label,
                    crate::dataset::MAX_CLASSES
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
                        "train" => split.push(true),
                        "test" => split.push(false),
                        other => {
                            return Err(StageError::msg(format!(
                                "column `{}` row {r}: `{other}` is neither \"train\" nor \"test\"",
                                t.names[si]
                            )));
                        }
                    }
                }
                (x, y, split)
            }
            None => subsample(x, y, d, k, 0, p.test_fraction, ctx.seed),
        };
        let ds = Dataset {
            dim: d,
            num_classes: k,
            x,
            y,
            split,
            feature_names: feats.iter().map(|&f| t.names[f].clone()).collect(),
            info: serde_json::json!({"generator": "table", "params": p}),
        };
        ds.write(ctx, "dataset")
    }
}
