//! Helpers shared by the integration tests.
#![allow(dead_code)]
use hesslab_pipeline::Error;

pub mod curvature;

/// An error with its whole chain of sources, as the binary prints it.
pub fn full_error(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(" | ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// A small pipeline of every core stage (data, train, dense Hessian, eigenvalues, summary) that
/// runs in well under a second.
pub const SMALL: &str = r#"
[pipeline]
name = "small"
seed = 1
[stages.data]
kind = "gaussian_mixture"
classes = 3
dim = 4
samples = 60
[stages.train]
kind = "train"
dataset = "data.dataset"
hidden = [5]
max_steps = 20
[stages.hessian]
kind = "curvature_dense"
model = "train.model"
dataset = "data.dataset"
[stages.eigen]
kind = "eigenvalues"
matrix = "hessian.matrix"
[stages.summary]
kind = "spectrum_summary"
eigenvalues = "eigen.eigenvalues"
"#;

/// Write `value` as port `P`'s artifact at `path`, after `edit` changes its metadata (to plant
/// a lying entry).
pub fn write_port<P: hesslab_pipeline::Port>(
    path: &std::path::Path,
    value: &P::Value,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
) {
    let enc = P::encode(value).unwrap();
    let mut meta = enc.metadata.clone();
    edit(&mut meta);
    let batches: Vec<_> = enc.batches.map(|b| b.unwrap()).collect();
    hesslab_pipeline::write_batches_atomic(path, enc.schema, &batches, &meta).unwrap();
}

/// A 2→1 linear model with two parameters, for tests that need any valid model artifact.
pub fn tiny_model() -> hesslab_model::Network {
    use hesslab_model::{Activation, Architecture, LossKind, Mlp, Network};
    Network::from(Mlp::new(
        Architecture { sizes: vec![2, 1], activation: Activation::Relu, bias: false, loss: LossKind::Mse },
        vec![0.5, 0.5],
    ))
}

/// Run the `hesslab` binary with `args` in `cwd`; (exit code, stdout, stderr, peak RSS in bytes).
/// The peak is the child's `VmHWM` from `/proc/<pid>/status`, read every 2 ms until it exits
/// (the last reading comes within 2 ms of the end, and the mark only grows). Killed, and the
/// test failed, after `timeout`: a hang is a defect.
pub fn run_measured(args: &[&str], cwd: &std::path::Path, timeout: std::time::Duration) -> (i32, String, String, u64) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hesslab"))
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let ereader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let t0 = std::time::Instant::now();
    let mut peak = 0u64;
    let code = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kb) = text.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        {
            peak = peak.max(kb * 1024);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hesslab {args:?} hung (killed after {timeout:?})");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    (code, reader.join().unwrap(), ereader.join().unwrap(), peak)
}

/// Every path below `root` (links not followed) with its kind, size and content hash: a
/// snapshot to show that nothing there changed.
pub fn snapshot(root: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let what = if m.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".into()
            } else {
                format!("file {} {}", m.len(), hesslab_pipeline::sha256_hex(&std::fs::read(&p).unwrap()))
            };
            out.insert(rel, what);
        }
    }
    out
}

/// A Parquet file of one non-null Float64 column `name` (one value, uncompressed plain page)
/// whose page header then claims `uncompressed_page_size = 2³¹ − 1` with Snappy compression:
/// the reader zero-fills a buffer of that size for the page. Made by re-encoding the page
/// header (Thrift compact protocol) to the original header's exact length, padded with an
/// unknown binary field that readers skip, so every offset in the footer stays right.
pub fn parquet_page_bomb(path: &std::path::Path, name: &str) {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    let batch = RecordBatch::try_from_iter([(name, std::sync::Arc::new(Float64Array::from(vec![1.5])) as ArrayRef)]).unwrap();
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_write_page_header_statistics(true)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
        .build();
    let mut bytes = Vec::new();
    let mut w = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    // The column chunk starts right after the 4-byte magic, with the data page's header.
    std::fs::write(path, &bytes).unwrap();
    let meta = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&std::fs::File::open(path).unwrap()).unwrap();
    let col = meta.row_group(0).column(0);
    assert_eq!(col.data_page_offset(), 4);
    let mut pos = 4usize;
    let varint = |pos: &mut usize| {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = bytes[*pos];
            *pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return v;
            }
        }
    };
    let mut fields = [0i64; 3];
    for f in &mut fields {
        assert_eq!(bytes[pos], 0x15, "field header of an i32");
        pos += 1;
        let z = varint(&mut pos);
        *f = (z >> 1) as i64 ^ -((z & 1) as i64);
    }
    let compressed = fields[2] as usize;
    let header_len = col.compressed_size() as usize - compressed;
    let zz = |v: i64| -> Vec<u8> {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    };
    let mut h = Vec::new();
    for v in [0i64, i32::MAX as i64, compressed as i64] {
        h.push(0x15);
        h.extend(zz(v));
    }
    // data_page_header (field 5): num_values 1, PLAIN, RLE levels.
    h.push(0x2c);
    for v in [1i64, 0, 3, 3] {
        h.push(0x15);
        h.extend(zz(v));
    }
    h.push(0);
    // Padding: field 15, binary, of the length that makes the header as long as before.
    let pad = header_len - h.len() - 3;
    assert!(pad < 128, "the original header leaves room for the padding");
    h.push(0xa8);
    h.push(pad as u8);
    h.extend(std::iter::repeat_n(b'x', pad));
    h.push(0);
    assert_eq!(h.len(), header_len);
    let mut out = bytes.clone();
    out[4..4 + header_len].copy_from_slice(&h);
    std::fs::write(path, out).unwrap();
}
