//! Arrays a PyTorch or NumPy user already has: `x` (samples × any shape), `y` (one integer
//! class per sample) and an optional `split` (per sample: 0/false = train, 1/true = test), from
//! a `.npz` archive (`numpy.savez`, stored or `savez_compressed`) or a `.safetensors` file
//! (`safetensors.torch.save_file`). Every size a file states is checked against the bytes it
//! has and against the memory budget before anything is allocated.
use crate::MAX_CLASSES;
use crate::error::{DataError, Result, read_file};
use std::collections::BTreeMap;

/// What [`load_tensors`] read.
#[derive(Debug, Clone)]
pub struct TensorData {
    /// Features, samples × prod(shape), row-major (C order, as NumPy and PyTorch store them).
    pub x: Vec<f64>,
    /// The shape of one sample (the array's shape without its first axis; `[1]` for 1-D `x`).
    pub shape: Vec<usize>,
    /// Class labels.
    pub y: Vec<u32>,
    /// Per sample `true` for the test split, when the file has a split array.
    pub test: Option<Vec<bool>>,
    /// The element type `x` was stored as (`float32` values are widened to float64).
    pub x_dtype: String,
}

/// One array as a file holds it: element type, shape and little-endian bytes.
#[derive(Debug)]
struct RawArray<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: std::borrow::Cow<'a, [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F64,
    F32,
    F16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "float64",
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U64 => "uint64",
            Dtype::U32 => "uint32",
            Dtype::U16 => "uint16",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
        }
    }
    /// NumPy's `descr` (`<f4`, `|u1`, …); big-endian data is refused by name.
    fn from_numpy(descr: &str) -> std::result::Result<Dtype, String> {
        // (By char: a multi-byte first character is not a byte order, and must not split a char.)
        let (order, code) = descr.split_at(descr.chars().next().map_or(0, char::len_utf8));
        if order == ">" && !code.ends_with('1') {
            return Err(format!("dtype `{descr}` is big-endian; save it little-endian (`a.astype(a.dtype.newbyteorder('<'))`)"));
        }
        Ok(match code {
            "f8" => Dtype::F64,
            "f4" => Dtype::F32,
            "f2" => Dtype::F16,
            "i8" => Dtype::I64,
            "i4" => Dtype::I32,
            "i2" => Dtype::I16,
            "i1" => Dtype::I8,
            "u8" => Dtype::U64,
            "u4" => Dtype::U32,
            "u2" => Dtype::U16,
            "u1" => Dtype::U8,
            "b1" => Dtype::Bool,
            _ => return Err(format!("dtype `{descr}` is not a number type this loader reads (floats, integers, bool)")),
        })
    }
    fn from_safetensors(d: safetensors::Dtype) -> std::result::Result<Dtype, String> {
        use safetensors::Dtype as S;
        Ok(match d {
            S::F64 => Dtype::F64,
            S::F32 => Dtype::F32,
            S::F16 => Dtype::F16,
            S::I64 => Dtype::I64,
            S::I32 => Dtype::I32,
            S::I16 => Dtype::I16,
            S::I8 => Dtype::I8,
            S::U64 => Dtype::U64,
            S::U32 => Dtype::U32,
            S::U16 => Dtype::U16,
            S::U8 => Dtype::U8,
            S::BOOL => Dtype::Bool,
            other => return Err(format!("dtype {other:?} is not a number type this loader reads (floats, integers, bool)")),
        })
    }
}

impl RawArray<'_> {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Every element as f64 (integers above 2⁵³ lose their last bits, as in `float(x)`).
    fn to_f64(&self) -> Vec<f64> {
        let b = &self.bytes[..];
        let w = self.dtype.size();
        let each = |i: usize| -> [u8; 8] {
            let mut a = [0u8; 8];
            a[..w].copy_from_slice(&b[i * w..(i + 1) * w]);
            a
        };
        (0..self.len())
            .map(|i| {
                let a = each(i);
                match self.dtype {
                    Dtype::F64 => f64::from_le_bytes(a),
                    Dtype::F32 => f32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                    Dtype::F16 => half_to_f64(u16::from_le_bytes([a[0], a[1]])),
                    Dtype::I64 => i64::from_le_bytes(a) as f64,
                    Dtype::I32 => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                    Dtype::I16 => i16::from_le_bytes([a[0], a[1]]) as f64,
                    Dtype::I8 => a[0] as i8 as f64,
                    Dtype::U64 => u64::from_le_bytes(a) as f64,
                    Dtype::U32 => u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                    Dtype::U16 => u16::from_le_bytes([a[0], a[1]]) as f64,
                    Dtype::U8 => a[0] as f64,
                    Dtype::Bool => (a[0] != 0) as u8 as f64,
                }
            })
            .collect()
    }
}

/// IEEE half precision to f64.
pub(crate) fn half_to_f64(h: u16) -> f64 {
    let (sign, exp, frac) = ((h >> 15) as i32, ((h >> 10) & 0x1f) as i32, (h & 0x3ff) as f64);
    let s = if sign == 1 { -1.0 } else { 1.0 };
    match exp {
        0 => s * frac * 2f64.powi(-24),
        31 if frac == 0.0 => s * f64::INFINITY,
        31 => f64::NAN,
        e => s * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

fn malformed(path: &str, format: &'static str, message: impl Into<String>) -> DataError {
    DataError::Malformed { format, path: path.to_string(), message: message.into() }
}

/// One `.npy` array: magic, version, the header's Python dict, then the data.
fn parse_npy<'a>(bytes: &'a [u8], what: &str) -> std::result::Result<RawArray<'a>, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{what} is not a .npy array (no \\x93NUMPY magic)"));
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("{what}: .npy version {v} is not one this loader reads (1, 2, 3)")),
    };
    let header = bytes.get(start..start.saturating_add(len)).ok_or_else(|| format!("{what}: the header runs past the end of the file"))?;
    let header = std::str::from_utf8(header).map_err(|_| format!("{what}: the header is not text"))?;
    let value = |key: &str| -> std::result::Result<&str, String> {
        let at = ["'", "\""]
            .iter()
            .find_map(|q| header.find(&format!("{q}{key}{q}")))
            .ok_or_else(|| format!("{what}: the header has no `{key}`"))?;
        let rest = &header[at + key.len() + 2..];
        Ok(rest.trim_start().strip_prefix(':').ok_or_else(|| format!("{what}: `{key}` has no value"))?.trim_start())
    };
    let descr = value("descr")?;
    let quote = descr
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| format!("{what}: `descr` is not a string (structured arrays are not read)"))?;
    let descr = &descr[1..descr[1..].find(quote).map(|e| e + 1).ok_or_else(|| format!("{what}: `descr` is not closed"))?];
    let dtype = Dtype::from_numpy(descr).map_err(|m| format!("{what}: {m}"))?;
    if value("fortran_order")?.starts_with("True") {
        return Err(format!("{what} is stored in Fortran order; save `np.ascontiguousarray(a)`"));
    }
    let shape = value("shape")?;
    let inner = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| format!("{what}: `shape` is not a tuple"))?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().map_err(|_| format!("{what}: shape entry `{s}` is not a size")))
        .collect::<std::result::Result<_, _>>()?;
    let data = &bytes[start + len..];
    check_size(&shape, dtype, data.len(), what)?;
    Ok(RawArray { dtype, shape, bytes: std::borrow::Cow::Borrowed(data) })
}

/// The bytes a shape of `dtype` needs equal the bytes there are (a lying shape is refused).
fn check_size(shape: &[usize], dtype: Dtype, have: usize, what: &str) -> std::result::Result<(), String> {
    let need = shape.iter().try_fold(dtype.size(), |a, &d| a.checked_mul(d));
    match need {
        Some(n) if n == have => Ok(()),
        Some(n) => Err(format!("{what}: shape {shape:?} of {} needs {n} bytes, the file has {have}", dtype.name())),
        None => Err(format!("{what}: shape {shape:?} is too large")),
    }
}

/// The members of a ZIP archive (`.npz`) by name: stored or deflated, no ZIP64.
fn unzip(bytes: &[u8], path: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let bad = |m: String| malformed(path, ".npz archive", m);
    let u16_at = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as usize);
    let u32_at = |b: &[u8], i: usize| b.get(i..i + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
    let tail = bytes.len().saturating_sub(65_557);
    let eocd = (tail..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| bad("no end-of-archive record: not a ZIP file (numpy.savez writes one), or truncated".into()))?;
    let entries = u16_at(bytes, eocd + 10).unwrap_or(0);
    let mut at = u32_at(bytes, eocd + 16).ok_or_else(|| bad("truncated end record".into()))?;
    if at == 0xffff_ffff {
        return Err(bad("ZIP64 archives (over 4 GiB) are not read".into()));
    }
    let mut out = BTreeMap::new();
    for _ in 0..entries {
        let h = bytes.get(at..at + 46).ok_or_else(|| bad(format!("central directory entry at byte {at} runs past the end")))?;
        if h[..4] != [0x50, 0x4b, 0x01, 0x02] {
            return Err(bad(format!("no central directory entry at byte {at}")));
        }
        let (method, packed, size) = (u16_at(h, 10).unwrap_or(0), u32_at(h, 20).unwrap_or(0), u32_at(h, 24).unwrap_or(0));
        let (n, e, c, local) =
            (u16_at(h, 28).unwrap_or(0), u16_at(h, 30).unwrap_or(0), u16_at(h, 32).unwrap_or(0), u32_at(h, 42).unwrap_or(0));
        let name =
            String::from_utf8_lossy(bytes.get(at + 46..at + 46 + n).ok_or_else(|| bad("entry name past the end".into()))?).to_string();
        at += 46 + n + e + c;
        if packed == 0xffff_ffff || size == 0xffff_ffff {
            return Err(bad(format!("member `{name}` is ZIP64 (over 4 GiB), not read")));
        }
        let lh = bytes.get(local..local + 30).ok_or_else(|| bad(format!("member `{name}`: local header past the end")))?;
        let start = local + 30 + u16_at(lh, 26).unwrap_or(0) + u16_at(lh, 28).unwrap_or(0);
        let data =
            bytes.get(start..start.saturating_add(packed)).ok_or_else(|| bad(format!("member `{name}` runs past the end (truncated?)")))?;
        let content = match method {
            0 => data.to_vec(),
            8 => hesslab_limits::read_capped(flate2::read::DeflateDecoder::new(data), size as u64, &format!("member `{name}`"))
                .map_err(|e| bad(format!("member `{name}`: {e}")))?,
            m => return Err(bad(format!("member `{name}` uses compression method {m}; numpy writes stored (0) or deflate (8)"))),
        };
        if content.len() != size {
            return Err(bad(format!("member `{name}` holds {} bytes, its header says {size}", content.len())));
        }
        out.insert(name.strip_suffix(".npy").unwrap_or(&name).to_string(), content);
    }
    Ok(out)
}

/// One named array of a tensor file, every element widened to f64.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedArray {
    /// The element type the file stores (`float32`, `int64`, …).
    pub dtype: &'static str,
    /// Its shape (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// Its elements, row-major.
    pub values: Vec<f64>,
}

/// The element type and shape of one array, as a file's header states them.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayHeader {
    /// The element type (`float32`, `int64`, …).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// The arrays of `path` (`.npz` or `.safetensors`) by name, parsed in place (`f` sees them
/// before anything is widened), with the format's name for messages.
fn with_arrays<T>(path: &str, per_byte: u64, f: impl FnOnce(&'static str, &BTreeMap<String, RawArray<'_>>) -> Result<T>) -> Result<T> {
    let bytes = read_file(path, "tensor file", per_byte)?;
    if path.ends_with(".safetensors") {
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| malformed(path, "safetensors file", e.to_string()))?;
        let mut m = BTreeMap::new();
        for (name, view) in st.tensors() {
            let dtype =
                Dtype::from_safetensors(view.dtype()).map_err(|e| malformed(path, "safetensors file", format!("tensor `{name}`: {e}")))?;
            m.insert(name, RawArray { dtype, shape: view.shape().to_vec(), bytes: std::borrow::Cow::Borrowed(view.data()) });
        }
        f("safetensors file", &m)
    } else if path.ends_with(".npz") {
        let npz = unzip(&bytes, path)?;
        let mut m = BTreeMap::new();
        for (name, b) in &npz {
            m.insert(name.clone(), parse_npy(b, &format!("member `{name}`")).map_err(|e| malformed(path, ".npz archive", e))?);
        }
        f(".npz archive", &m)
    } else {
        Err(DataError::Invalid(format!("`{path}`: a tensors file ends in .npz (numpy.savez) or .safetensors")))
    }
}

/// Every array of `path` (`.npz` or `.safetensors`) by name, widened to f64 (a PyTorch
/// `state_dict` saved with `safetensors.torch.save_file`, say).
pub fn read_arrays(path: &str) -> Result<BTreeMap<String, NamedArray>> {
    with_arrays(path, 1, |_, arrays| {
        // The widened copy, checked before it is allocated (the file is already in memory).
        let values = arrays.values().fold(0u64, |s, a| s.saturating_add(a.len() as u64));
        hesslab_limits::check_memory(values.saturating_mul(8), format!("{values} tensor values as float64"))
            .map_err(|e| DataError::Invalid(format!("`{path}`: loading it {e}")))?;
        Ok(arrays
            .iter()
            .map(|(k, a)| (k.clone(), NamedArray { dtype: a.dtype.name(), shape: a.shape.clone(), values: a.to_f64() }))
            .collect())
    })
}

/// The names, element types and shapes a `.safetensors` file's header states, reading only
/// the header (a validation of a multi-gigabyte checkpoint reads kilobytes); the offsets are
/// checked against the file's size.
pub fn safetensors_header(path: &str) -> Result<BTreeMap<String, ArrayHeader>> {
    use std::io::Read;
    let bad = |m: String| malformed(path, "safetensors file", m);
    let read_err = |source| DataError::Read { what: "safetensors file", path: path.to_string(), source };
    let p = std::path::Path::new(path);
    let size = hesslab_limits::regular_file(p).map_err(read_err)?.len();
    let mut file = std::fs::File::open(p).map_err(read_err)?;
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|_| bad(format!("{size} bytes: too short for the 8-byte header length")))?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 || n.saturating_add(8) > size {
        return Err(bad(format!("the header claims {n} bytes, the file has {size} (truncated, or not a safetensors file)")));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| bad(format!("reading the header: {e}")))?;
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("the header is not a JSON object: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, t) in v {
        if name == "__metadata__" {
            continue;
        }
        let dtype = t.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| bad(format!("tensor `{name}` has no dtype")))?;
        let shape: Vec<usize> = t
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| bad(format!("tensor `{name}` has no shape list")))?;
        let offsets: [u64; 2] = t
            .get("data_offsets")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| bad(format!("tensor `{name}` has no data_offsets pair")))?;
        let st: safetensors::Dtype = serde_json::from_value(serde_json::Value::String(dtype.to_string()))
            .map_err(|_| bad(format!("tensor `{name}` has dtype `{dtype}`, not a safetensors dtype")))?;
        let d = Dtype::from_safetensors(st).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        let need = shape.iter().try_fold(d.size() as u64, |a, &x| a.checked_mul(x as u64));
        if need != offsets[1].checked_sub(offsets[0]) || offsets[1].saturating_add(8 + n) > size {
            return Err(bad(format!(
                "tensor `{name}`: shape {shape:?} of {} and data offsets {offsets:?} do not fit each other and the file's {size} bytes",
                d.name()
            )));
        }
        out.insert(name, ArrayHeader { dtype: d.name().to_string(), shape });
    }
    Ok(out)
}

/// Read `x`, `y` and (if the file has it) `split` from `path` (`.npz` or `.safetensors`),
/// under the array names given.
pub fn load_tensors(path: &str, x_name: &str, y_name: &str, split_name: &str) -> Result<TensorData> {
    // The file, then up to twice its size again as f64 values (x widened, the split's copy).
    with_arrays(path, 3, |format, arrays| select(path, format, arrays, x_name, y_name, split_name))
}

fn select(
    path: &str,
    format: &'static str,
    arrays: &BTreeMap<String, RawArray<'_>>,
    x_name: &str,
    y_name: &str,
    split_name: &str,
) -> Result<TensorData> {
    let names = || arrays.keys().cloned().collect::<Vec<_>>().join(", ");
    let get =
        |name: &str| arrays.get(name).ok_or_else(|| malformed(path, format, format!("it has no array `{name}`; it has: {}", names())));
    let (x, y) = (get(x_name)?, get(y_name)?);
    let n = *x.shape.first().ok_or_else(|| malformed(path, format, format!("`{x_name}` is a scalar; it needs one row per sample")))?;
    if y.shape != [n] && !(y.shape.len() == 2 && y.shape == [n, 1]) {
        return Err(malformed(
            path,
            format,
            format!("`{y_name}` has shape {:?}; it needs one class label per sample of `{x_name}` ({n},)", y.shape),
        ));
    }
    hesslab_limits::check_memory((x.len() as u64).saturating_mul(16), format!("{n} samples of `{x_name}` as float64"))
        .map_err(|e| DataError::Invalid(format!("`{path}`: loading it {e}")))?;
    let labels = y.to_f64();
    let mut ys = Vec::with_capacity(n);
    for (i, &l) in labels.iter().enumerate() {
        if !(l >= 0.0 && l.fract() == 0.0 && l < MAX_CLASSES as f64) {
            return Err(malformed(path, format, format!("`{y_name}`[{i}] = {l} is not a class label (an integer in 0..{MAX_CLASSES})")));
        }
        ys.push(l as u32);
    }
    let test = match arrays.get(split_name) {
        None => None,
        Some(s) if s.shape != [n] => {
            return Err(malformed(path, format, format!("`{split_name}` has shape {:?}; it needs one entry per sample ({n},)", s.shape)));
        }
        Some(s) => {
            let v = s.to_f64();
            if let Some(i) = v.iter().position(|&t| t != 0.0 && t != 1.0) {
                return Err(malformed(path, format, format!("`{split_name}`[{i}] = {}: 0 (or false) is train, 1 (or true) is test", v[i])));
            }
            Some(v.into_iter().map(|t| t == 1.0).collect())
        }
    };
    let xs = x.to_f64();
    if let Some(i) = xs.iter().position(|v| !v.is_finite()) {
        return Err(malformed(path, format, format!("`{x_name}` holds {} at flat index {i}; features must be finite", xs[i])));
    }
    let shape = if x.shape.len() == 1 { vec![1] } else { x.shape[1..].to_vec() };
    Ok(TensorData { x: xs, shape, y: ys, test, x_dtype: x.dtype.name().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(data);
        b
    }

    #[test]
    fn npy_headers_and_dtypes_read_as_numpy_writes_them() {
        let data: Vec<u8> = [1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = npy("<f4", "(3, 2)", &data);
        let a = parse_npy(&file, "x").unwrap();
        assert_eq!((a.dtype, a.shape.clone()), (Dtype::F32, vec![3, 2]));
        assert_eq!(a.to_f64(), vec![1.5, -2.0, 3.25, 0.0, 7.0, 8.0]);
        let file = npy("|u1", "(4,)", &[0, 9, 255, 3]);
        let one = parse_npy(&file, "y").unwrap();
        assert_eq!(one.to_f64(), vec![0.0, 9.0, 255.0, 3.0]);
        assert_eq!(half_to_f64(0x3c00), 1.0);
        assert_eq!(half_to_f64(0xc000), -2.0);
        // A lying shape, a truncated header, Fortran order and big-endian data are refused.
        assert!(parse_npy(&npy("<f4", "(4, 2)", &data), "x").unwrap_err().contains("needs 32 bytes, the file has 24"));
        assert!(parse_npy(&npy("<f4", "(3, 2)", &data)[..20], "x").unwrap_err().contains("past the end"));
        let mut fortran = npy("<f4", "(3, 2)", &data);
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[at..at + 5].copy_from_slice(b"True ");
        assert!(parse_npy(&fortran, "x").unwrap_err().contains("Fortran order"));
        assert!(parse_npy(&npy(">f8", "(3,)", &[0; 24]), "x").unwrap_err().contains("big-endian"));
        assert!(parse_npy(b"not an array", "x").unwrap_err().contains("magic"));
        assert!(parse_npy(&npy("é4", "(3,)", &[0; 12]), "x").unwrap_err().contains("not a number type"));
    }
}
