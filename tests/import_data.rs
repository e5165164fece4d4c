//! Data from PyTorch and NumPy users (#41, the data half): the `tensors` stage reads the
//! committed files that numpy.savez, numpy.savez_compressed and safetensors.torch.save_file
//! wrote (scripts/tensors_fixtures.py) exactly, trains on them, and refuses every malformed file
//! with an error naming the file and what is wrong.
mod common;
use common::run_measured;
use hesslab_artifacts::Dataset;
use hesslab_pipeline::{Port, read_artifact};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tensors")
}

fn sandbox(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-import-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pipeline(path: &Path, extra: &str) -> String {
    format!(
        r#"
[pipeline]
name = "tensors"
seed = 2
[stages.data]
kind = "tensors"
path = "{}"
{extra}
[stages.train]
kind = "train"
dataset = "data.dataset"
hidden = [6]
max_steps = 30
"#,
        path.display()
    )
}

fn run(d: &Path, src: &str, cmd: &str) -> (i32, String) {
    std::fs::write(d.join("p.toml"), src).unwrap();
    let args: &[&str] = if cmd == "run" { &["run", "p.toml", "--out", "out"] } else { &[cmd, "p.toml"] };
    let (code, out, err, _) = run_measured(args, d, Duration::from_secs(120));
    (code, format!("{out}{err}"))
}

fn fsum(v: impl Iterator<Item = f64>) -> f64 {
    // Neumaier's compensated sum: agrees with Python's math.fsum to the last bits here.
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for x in v {
        let t = s + x;
        c += if s.abs() >= x.abs() { (s - t) + x } else { (x - t) + s };
        s = t;
    }
    s + c
}

#[test]
fn npz_and_safetensors_files_load_exactly_and_train() {
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    for file in ["images.npz", "table.npz", "torch.safetensors"] {
        let want = &expected[file];
        let d = sandbox(file);
        let (code, out) = run(&d, &pipeline(&fixtures().join(file), ""), "run");
        assert_eq!(code, 0, "{file}: {out}");
        let a = read_artifact(&d.join("out/tensors/main/data/dataset.parquet"), None).unwrap();
        let ds = Dataset::decode(&a).unwrap();
        let n = want["samples"].as_u64().unwrap() as usize;
        assert_eq!(ds.y.len(), n, "{file}");
        let shape: Vec<usize> = want["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(ds.shape, shape, "{file}");
        assert_eq!(ds.dim, shape.iter().product::<usize>());
        // The values are the file's (float32 widened exactly): sums over every sample, whatever
        // order the split put them in.
        let (sum, sq) = (want["x_sum"].as_f64().unwrap(), want["x_sq_sum"].as_f64().unwrap());
        assert!((fsum(ds.x.iter().copied()) - sum).abs() <= 1e-12 * sq.max(1.0), "{file}: sum");
        assert!((fsum(ds.x.iter().map(|v| v * v)) - sq).abs() <= 1e-12 * sq, "{file}: sum of squares");
        let first: Vec<f64> = want["first_row"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        // (To the last bit but one: serde_json's float parsing is not always correctly rounded.)
        let same = |row: &[f64]| row.iter().zip(&first).all(|(a, b)| (a - b).abs() <= 2.3e-16 * b.abs());
        assert!(ds.x.chunks(ds.dim).any(same), "{file}: the first sample is there");
        let mut counts = vec![0u64; ds.num_classes];
        ds.y.iter().for_each(|&l| counts[l as usize] += 1);
        let want_counts: Vec<u64> = want["label_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(counts, want_counts, "{file}");
        let test = ds.split.iter().filter(|t| !**t).count();
        match want["test_samples"].as_u64() {
            Some(t) => assert_eq!(test as u64, t, "{file}: the file's split"),
            None => assert!(test > 0 && test < n / 2, "{file}: test_fraction 0.2 split {test} of {n}"),
        }
        assert_eq!(ds.info["x_dtype"], want["x_dtype"], "{file}");
        assert_eq!(ds.info["widened_to_float64"], serde_json::json!(want["x_dtype"] != "float64"), "{file}");
        let _ = std::fs::remove_dir_all(&d);
    }
    // test_fraction = 0 keeps every sample for training.
    let d = sandbox("all-train");
    let (code, out) = run(&d, &pipeline(&fixtures().join("table.npz"), "test_fraction = 0.0"), "run");
    assert_eq!(code, 0, "{out}");
    let ds = Dataset::decode(&read_artifact(&d.join("out/tensors/main/data/dataset.parquet"), None).unwrap()).unwrap();
    assert!(ds.split.iter().all(|&t| t), "every sample in training");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn malformed_tensor_files_are_clear_errors() {
    let d = sandbox("bad");
    let images = std::fs::read(fixtures().join("images.npz")).unwrap();
    let safet = std::fs::read(fixtures().join("torch.safetensors")).unwrap();
    let replace = |bytes: &[u8], from: &[u8], to: &[u8]| {
        let at = bytes.windows(from.len()).position(|w| w == from).expect("pattern in fixture");
        let mut b = bytes.to_vec();
        b[at..at + from.len()].copy_from_slice(to);
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str, &[&str])> = vec![
        ("truncated.npz", images[..images.len() / 2].to_vec(), "", &["truncated.npz", "not a ZIP file", "truncated"]),
        // numpy.savez stores members uncompressed: the header's shape can be edited in place.
        (
            "lying.npz",
            replace(&images, b"(60, 1, 8, 8)", b"(61, 1, 8, 8)"),
            "",
            &["lying.npz", "member `x`", "needs", "bytes, the file has"],
        ),
        ("names.npz", images.clone(), "x = \"features\"", &["no array `features`", "it has: split, x, y"]),
        ("labels.npz", images.clone(), "y = \"x\"", &["`x` has shape [60, 1, 8, 8]", "one class label per sample"]),
        ("split.npz", images.clone(), "split = \"y\"", &["`y`[2] = 2", "0 (or false) is train"]),
        ("header.safetensors", safet[..6].to_vec(), "", &["header.safetensors", "safetensors file"]),
        ("lying.safetensors", replace(&safet, b"[40,6]", b"[41,6]"), "", &["lying.safetensors", "safetensors file"]),
    ];
    for (name, bytes, extra, want) in cases {
        std::fs::write(d.join(name), &bytes).unwrap();
        let (code, out) = run(&d, &pipeline(&d.join(name), extra), "run");
        assert_ne!(code, 0, "{name} loaded:\n{out}");
        assert!(!out.contains("panicked"), "{out}");
        for w in want {
            assert!(out.contains(w), "{name}: `{w}` not in\n{out}");
        }
    }
    // Refused by validate, before any stage runs: a missing file, another format.
    std::fs::write(d.join("data.npy"), b"\x93NUMPY").unwrap();
    for (path, want) in [(d.join("missing.npz"), "does not exist"), (d.join("data.npy"), "ends in .npz (numpy.savez) or .safetensors")] {
        let (code, out) = run(&d, &pipeline(&path, ""), "validate");
        assert_ne!(code, 0, "{out}");
        assert!(out.contains("stages.data.path") && out.contains(want), "`{want}` not in\n{out}");
    }
    let _ = std::fs::remove_dir_all(&d);
}
