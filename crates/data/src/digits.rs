//! `digits`: the UCI optical-digits test split (1797 8×8 images, 10 classes), vendored in
//! `data/optdigits/` under CC BY 4.0 and compiled into the binary so it is always available.
use crate::{DataError, Dataset, Result, rng::Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

static DIGITS_GZ: &[u8] = include_bytes!("../../../data/optdigits/digits.csv.gz");

/// How pixel values are scaled.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum PixelScaling {
    /// Raw counts 0..16.
    None,
    /// Divide by 16 (values in [0, 1]).
    Unit,
    /// Zero mean, unit variance per pixel (training statistics).
    Standardize,
}

/// Parameters of the `digits` stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DigitsParams {
    /// Number of examples to keep (train + test), stratified by class; 0 keeps all 1797.
    pub n: usize,
    /// Fraction of each class held out as the test split.
    pub test_fraction: f64,
    /// Pixel scaling: "none", "unit" (÷16) or "standardize".
    pub scale: PixelScaling,
    /// Read this digits.csv(.gz) instead of the vendored copy (65 integers per row).
    pub path: Option<String>,
}

impl Default for DigitsParams {
    fn default() -> Self {
        DigitsParams { n: 0, test_fraction: 0.2, scale: PixelScaling::Unit, path: None }
    }
}

/// Parse "64 pixels, label" rows.
pub fn parse_digits_csv(text: &str) -> Result<(Vec<f64>, Vec<u32>), String> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let vals: Result<Vec<f64>, _> = line.split(',').map(|s| s.trim().parse::<f64>()).collect();
        let vals = vals.map_err(|e| format!("line {}: {e}", i + 1))?;
        if vals.len() != 65 {
            return Err(format!("line {}: expected 65 values, found {}", i + 1, vals.len()));
        }
        let label = vals[64];
        if !(0.0..=9.0).contains(&label) || label.fract() != 0.0 {
            return Err(format!("line {}: label {label} is not in 0..9", i + 1));
        }
        x.extend_from_slice(&vals[..64]);
        y.push(label as u32);
    }
    Ok((x, y))
}

/// Bytes parsing holds per byte of digits text: the text, 65 numbers of ~2.5 characters each
/// as f64, and the subsample's copy.
const DIGITS_BYTES_PER_BYTE: u64 = 8;

/// The text of `bytes`, gunzipped when they start with the gzip magic; decompression stops
/// with an error past `cap` bytes (a gzip bomb ends there, not in an exhausted memory).
pub fn gunzip(bytes: &[u8], cap: u64) -> Result<String, String> {
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        hesslab_limits::read_capped(flate2::read::GzDecoder::new(bytes), cap, "the decompressed text").map_err(|e| format!("gzip: {e}"))?
    } else {
        bytes.to_vec()
    };
    String::from_utf8(text).map_err(|e| e.to_string())
}

/// Keep `n` examples stratified by class (0 = all) and mark a per-class test fraction.
/// Returns (index, is_train) in class order.
pub fn stratified_split(y: &[u32], num_classes: usize, n: usize, test_fraction: f64, rng: &mut Rng) -> Vec<(usize, bool)> {
    let total = y.len();
    let n = if n == 0 || n > total { total } else { n };
    let mut out = Vec::new();
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &c) in y.iter().enumerate() {
        by_class[c as usize].push(i);
    }
    // Largest-remainder allocation of n over classes in proportion to their sizes.
    let quotas: Vec<f64> = by_class.iter().map(|v| v.len() as f64 * n as f64 / total as f64).collect();
    let mut take: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
    let mut rest: Vec<usize> = (0..num_classes).collect();
    rest.sort_by(|&a, &b| (quotas[b] - quotas[b].floor()).total_cmp(&(quotas[a] - quotas[a].floor())).then(a.cmp(&b)));
    let mut left = n - take.iter().sum::<usize>();
    for c in rest {
        if left == 0 {
            break;
        }
        if take[c] < by_class[c].len() {
            take[c] += 1;
            left -= 1;
        }
    }
    for (c, idx) in by_class.iter_mut().enumerate() {
        rng.shuffle(idx);
        let m = take[c];
        let n_test = ((m as f64) * test_fraction).round() as usize;
        let mut chosen: Vec<usize> = idx[..m].to_vec();
        chosen.sort_unstable();
        for (j, &i) in chosen.iter().enumerate() {
            out.push((i, j >= n_test));
        }
    }
    out
}

/// The digits dataset as `p` asks: the vendored copy or `p.path`, a stratified subsample of
/// `p.n` examples with a per-class test fraction, pixels scaled.
pub fn load_digits(p: &DigitsParams, seed: u64) -> Result<Dataset> {
    let bytes = match &p.path {
        Some(path) => crate::error::read_file(path, "digits file", DIGITS_BYTES_PER_BYTE)?,
        None => DIGITS_GZ.to_vec(),
    };
    // What parsing may hold: the memory budget, less the compressed bytes.
    let (budget, source) = hesslab_limits::memory_budget();
    let cap = budget / DIGITS_BYTES_PER_BYTE;
    let where_ = p.path.as_deref().map(|f| format!(" `{f}`")).unwrap_or_default();
    let text = gunzip(&bytes, cap).map_err(|e| {
        DataError::Invalid(format!(
            "digits data{where_}: {e} (1/{DIGITS_BYTES_PER_BYTE} of the {} that {source})",
            hesslab_limits::human_bytes(budget)
        ))
    })?;
    let (x, y) = parse_digits_csv(&text).map_err(|e| DataError::Invalid(format!("digits data: {e}")))?;
    let mut rng = Rng::new(seed);
    let keep = stratified_split(&y, 10, p.n, p.test_fraction, &mut rng);
    let scale = if p.scale == PixelScaling::Unit { 1.0 / 16.0 } else { 1.0 };
    let mut ds = Dataset {
        dim: 64,
        shape: vec![1, 8, 8],
        num_classes: 10,
        x: keep.iter().flat_map(|&(i, _)| x[i * 64..(i + 1) * 64].iter().map(|v| v * scale)).collect(),
        y: keep.iter().map(|&(i, _)| y[i]).collect(),
        split: keep.iter().map(|&(_, t)| t).collect(),
        feature_names: (0..64).map(|j| format!("pixel_{}_{}", j / 8, j % 8)).collect(),
        info: serde_json::json!({"generator": "digits", "params": p, "seed": seed,
            "source": "UCI Optical Recognition of Handwritten Digits (CC BY 4.0)"}),
    };
    if p.scale == PixelScaling::Standardize {
        ds.standardize();
    }
    Ok(ds)
}
