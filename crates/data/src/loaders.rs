//! Loaders for user-supplied data: MNIST IDX files and CIFAR-10 binary batches.
use crate::digits::stratified_split;
use crate::error::read_file;
use crate::{DataError, Dataset, Result, rng::Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stratified subsample of `n` of the rows of `x` (`d` features each) and `y` (`k`
/// classes; 0 keeps all) with a per-class test fraction: (x, y, is_train).
pub fn subsample(x: Vec<f64>, y: Vec<u32>, d: usize, k: usize, n: usize, test_fraction: f64, seed: u64) -> (Vec<f64>, Vec<u32>, Vec<bool>) {
    let keep = stratified_split(&y, k, n, test_fraction, &mut Rng::new(seed));
    (
        keep.iter().flat_map(|&(i, _)| x[i * d..(i + 1) * d].iter().copied()).collect(),
        keep.iter().map(|&(i, _)| y[i]).collect(),
        keep.iter().map(|&(_, t)| t).collect(),
    )
}

// ---------------------------------------------------------------- IDX (MNIST)

/// Parameters of the `idx` loader.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IdxParams {
    /// Path of the images file (e.g. train-images-idx3-ubyte), magic 0x00000803.
    pub images: String,
    /// Path of the labels file (e.g. train-labels-idx1-ubyte), magic 0x00000801.
    pub labels: String,
    /// Examples to keep (stratified by class, in proportion to the class sizes); 0 keeps all.
    pub n: usize,
    /// Keep exactly this many examples of every class, a class-balanced seeded subset (the
    /// papers' "1K MNIST" is 100 per class); 0 = off, `n` applies. Replaces `n` when > 0.
    pub samples_per_class: usize,
    /// Fraction of each class held out as the test split (only without `test_images`).
    pub test_fraction: f64,
    /// Divide pixels by 255.
    pub unit_scale: bool,
    /// A separate test set (e.g. t10k-images-idx3-ubyte): every one of its examples is the
    /// test split, and `images` gives only training examples (`test_fraction` is not used).
    pub test_images: String,
    /// The labels of `test_images`.
    pub test_labels: String,
    /// Replace every image by i.i.d. uniform pixels over the same range (S16 P2's random
    /// inputs), keeping the labels, the shape and the split; seeded.
    pub random_inputs: bool,
}
impl Default for IdxParams {
    fn default() -> Self {
        IdxParams {
            images: String::new(),
            labels: String::new(),
            n: 1000,
            samples_per_class: 0,
            test_fraction: 0.2,
            unit_scale: true,
            test_images: String::new(),
            test_labels: String::new(),
            random_inputs: false,
        }
    }
}

/// How many bytes loading an IDX payload of `n` bytes holds at its peak: the bytes, the pixels
/// as f64 and the subsample's copy of them.
pub const IDX_BYTES_PER_VALUE: u64 = 1 + 8 + 8;

/// The file's bytes as a stream, gunzipped when it is gzip-compressed (`*-ubyte.gz`,
/// recognised by its magic bytes, not its name). Only regular files are opened: reading a FIFO
/// or a device could block or never end.
fn idx_stream(path: &str, what: &'static str) -> Result<(Box<dyn std::io::Read>, &'static str)> {
    use std::io::Read;
    let read_err = |source| DataError::Read { what, path: path.to_string(), source };
    let f = hesslab_limits::open_regular(std::path::Path::new(path)).map_err(read_err)?;
    let mut r = std::io::BufReader::new(f);
    let mut head = Vec::with_capacity(2);
    (&mut r).take(2).read_to_end(&mut head).map_err(read_err)?;
    let gz = head == [0x1f, 0x8b];
    let rest = std::io::Cursor::new(head).chain(r);
    Ok(if gz { (Box::new(flate2::read::GzDecoder::new(rest)), "gzip IDX file") } else { (Box::new(rest), "IDX file") })
}

/// The dimensions of an IDX header read from `r`, or what is wrong with it.
fn idx_header(r: &mut dyn std::io::Read) -> std::result::Result<Vec<usize>, String> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(|e| format!("too short for a header ({e})"))?;
    if magic[..3] != [0, 0, 8] {
        return Err(format!("magic {:02x}{:02x}{:02x}{:02x} is not an unsigned-byte IDX file", magic[0], magic[1], magic[2], magic[3]));
    }
    (0..magic[3])
        .map(|_| {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|_| "truncated header".to_string()).map(|_| u32::from_be_bytes(b) as usize)
        })
        .collect()
}

/// Read an IDX file (gzip-compressed or not): (dimensions, u8 payload). The header is read
/// first and what the payload will take is checked against the memory budget before anything
/// is allocated; the payload is then read up to the size the header states and no further, so
/// a gzip bomb stops there.
pub fn read_idx(path: &str, what: &'static str) -> Result<(Vec<usize>, Vec<u8>)> {
    let (mut r, format) = idx_stream(path, what)?;
    let bad = |message: String| DataError::Malformed { format, path: path.to_string(), message };
    let dims = idx_header(&mut r).map_err(bad)?;
    let Some(want) = dims.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) else {
        return Err(bad(format!("header dimensions {dims:?} overflow")));
    };
    hesslab_limits::check_memory((want as u64).saturating_mul(IDX_BYTES_PER_VALUE), format!("{what} of {dims:?} bytes, as f64"))
        .map_err(|e| bad(format!("the header's size {e}")))?;
    let payload = hesslab_limits::read_capped(&mut r, want as u64, "the data").map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData if e.to_string().contains("larger than") => {
            bad(format!("the file has more data than its header's {dims:?} = {want} bytes"))
        }
        _ => bad(format!("cannot read: {e}")),
    })?;
    if payload.len() != want {
        return Err(bad(format!("header says {dims:?} = {want} bytes of data, file has {}", payload.len())));
    }
    Ok((dims, payload))
}

/// The dimensions in the header of an IDX file (gzip-compressed or not), reading only the
/// header: what a pipeline can know about the file before running.
pub fn idx_dims(path: &str) -> Option<Vec<usize>> {
    idx_header(&mut idx_stream(path, "IDX file").ok()?.0).ok()
}

/// Exactly `per_class` examples of every class (seeded), a per-class test fraction:
/// (index, is_train) in class order. Errors when a class has fewer.
pub fn balanced_split(y: &[u32], num_classes: usize, per_class: usize, test_fraction: f64, rng: &mut Rng) -> Result<Vec<(usize, bool)>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &c) in y.iter().enumerate() {
        by_class[c as usize].push(i);
    }
    if let Some((c, v)) = by_class.iter().enumerate().find(|(_, v)| v.len() < per_class) {
        return Err(DataError::Invalid(format!("samples_per_class = {per_class}, but class {c} has only {} examples", v.len())));
    }
    let mut out = Vec::with_capacity(per_class * num_classes);
    for idx in by_class.iter_mut() {
        rng.shuffle(idx);
        let n_test = ((per_class as f64) * test_fraction).round() as usize;
        let mut chosen = idx[..per_class].to_vec();
        chosen.sort_unstable();
        out.extend(chosen.iter().enumerate().map(|(j, &i)| (i, j >= n_test)));
    }
    Ok(out)
}

/// An images file and its labels: (dimensions, pixels, labels).
fn read_idx_pair(images: &str, labels: &str, unit_scale: bool) -> Result<(Vec<usize>, Vec<f64>, Vec<u32>)> {
    let (dims, pix) = read_idx(images, "IDX images file")?;
    let (ldims, lab) = read_idx(labels, "IDX labels file")?;
    if dims.is_empty() || ldims.len() != 1 || ldims[0] != dims[0] {
        return Err(DataError::Invalid(format!("IDX images {dims:?} and labels {ldims:?} do not match")));
    }
    let s = if unit_scale { 1.0 / 255.0 } else { 1.0 };
    Ok((dims, pix.iter().map(|&b| b as f64 * s).collect(), lab.iter().map(|&b| b as u32).collect()))
}

/// The images and labels `p` names, subsampled with `seed`.
pub fn load_idx(p: &IdxParams, seed: u64) -> Result<Dataset> {
    let (dims, x, y) = read_idx_pair(&p.images, &p.labels, p.unit_scale)?;
    let d: usize = dims[1..].iter().product();
    let test = if p.test_images.is_empty() { None } else { Some(read_idx_pair(&p.test_images, &p.test_labels, p.unit_scale)?) };
    let k = y.iter().chain(test.iter().flat_map(|t| &t.2)).copied().max().map(|m| m as usize + 1).unwrap_or(0).max(10);
    let test_fraction = if test.is_some() { 0.0 } else { p.test_fraction };
    let (mut x, mut y, mut split) = if p.samples_per_class > 0 {
        let keep = balanced_split(&y, k, p.samples_per_class, test_fraction, &mut Rng::new(seed))?;
        (
            keep.iter().flat_map(|&(i, _)| x[i * d..(i + 1) * d].iter().copied()).collect(),
            keep.iter().map(|&(i, _)| y[i]).collect(),
            keep.iter().map(|&(_, t)| t).collect::<Vec<bool>>(),
        )
    } else {
        subsample(x, y, d, k, p.n, test_fraction, seed)
    };
    if let Some((tdims, tx, ty)) = test {
        if tdims[1..] != dims[1..] {
            return Err(DataError::Invalid(format!("test images {tdims:?} and training images {dims:?} differ in shape")));
        }
        x.extend(tx);
        split.extend(std::iter::repeat_n(false, ty.len()));
        y.extend(ty);
    }
    if p.random_inputs {
        // A stream of its own: the selection above is the same with or without this option.
        let mut rng = Rng::new(seed ^ 0x7a9d_0000_0000_0001);
        let top = if p.unit_scale { 1.0 } else { 255.0 };
        x.iter_mut().for_each(|v| *v = rng.uniform() * top);
    }
    // Images are [rows, cols] per example: one channel.
    let shape = match dims[1..] {
        [h, w] => vec![1, h, w],
        [c, h, w] => vec![c, h, w],
        _ => vec![d],
    };
    let ds = Dataset {
        dim: d,
        shape,
        num_classes: k,
        x,
        y,
        split,
        feature_names: (0..d).map(|j| format!("pixel{j}")).collect(),
        info: serde_json::json!({"generator": "idx", "params": p}),
    };
    Ok(ds)
}

// ---------------------------------------------------------------- CIFAR-10

/// Parameters of the `cifar10` loader.
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

/// Bytes per CIFAR-10 record: a label and 3×32×32 pixels.
pub const CIFAR_RECORD: usize = 1 + 3072;
/// Bytes loading holds per byte of a CIFAR-10 batch: the file, the pixels as f64, the copy.
const CIFAR_BYTES_PER_BYTE: u64 = 1 + 8 + 8;

/// The CIFAR-10 batches `p` names, subsampled with `seed`.
pub fn load_cifar10(p: &CifarParams, seed: u64) -> Result<Dataset> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for f in &p.files {
        let b = read_file(f, "CIFAR-10 batch", CIFAR_BYTES_PER_BYTE)?;
        if b.is_empty() || b.len() % CIFAR_RECORD != 0 {
            let message = format!("{} bytes is not a multiple of the {CIFAR_RECORD}-byte record", b.len());
            return Err(DataError::Malformed { format: "CIFAR-10 batch", path: f.clone(), message });
        }
        for (r, rec) in b.chunks_exact(CIFAR_RECORD).enumerate() {
            if rec[0] > 9 {
                let message = format!("record {r} has label {}", rec[0]);
                return Err(DataError::Malformed { format: "CIFAR-10 batch", path: f.clone(), message });
            }
            y.push(rec[0] as u32);
            x.extend(rec[1..].iter().map(|&v| v as f64 / 255.0));
        }
    }
    let (x, y, split) = subsample(x, y, 3072, 10, p.n, p.test_fraction, seed);
    let ds = Dataset {
        dim: 3072,
        shape: vec![3, 32, 32],
        num_classes: 10,
        x,
        y,
        split,
        feature_names: (0..3072).map(|j| format!("c{}_{}_{}", j / 1024, (j % 1024) / 32, j % 32)).collect(),
        info: serde_json::json!({"generator": "cifar10", "params": p}),
    };
    Ok(ds)
}
