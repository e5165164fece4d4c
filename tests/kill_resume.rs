//! `hesslab run` killed with SIGKILL at random points (across every stage, fresh runs and
//! `--force` reruns): after each kill every artifact under its final name is whole, and after
//! each rerun every artifact is readable, the lock matches the files, nothing is left in
//! staging, and the outputs equal an uninterrupted run's bit for bit.
use hesslab_data::rng::Rng;
use hesslab_pipeline::read_artifact;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const PIPELINE: &str = r#"
[pipeline]
name = "killed"
seed = 5
[sweep]
train.activation = ["relu", "tanh"]
[stages.data]
kind = "gaussian_mixture"
classes = 5
dim = 30
samples = 600
[stages.train]
kind = "train"
dataset = "data.dataset"
hidden = [20, 20]
max_steps = 400
log_every = 20
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
[stages.table]
kind = "compare"
summaries = "summary.summary[*]"
"#;

fn hesslab(file: &Path, out: &Path, force: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hesslab"));
    c.arg("run").arg(file).arg("--out").arg(out).args(["--jobs", "2"]).stdout(Stdio::null()).stderr(Stdio::piped());
    if force {
        c.arg("--force");
    }
    c
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every Parquet artifact under its final name, decoded.
fn parquet_contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files(root)
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "parquet") && !p.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
        })
        .map(|p| {
            read_artifact(&p, None).unwrap_or_else(|e| panic!("artifact {} is not readable: {e}", p.display()));
            (p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap())
        })
        .collect()
}

fn check_lock(dir: &Path) {
    let lock: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("hesslab.lock")).unwrap()).unwrap();
    for (id, entry) in lock["stages"].as_object().unwrap() {
        for (name, h) in entry["outputs"].as_object().unwrap() {
            let p = dir.join(id).join(name);
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("lock names {} which is missing: {e}", p.display()));
            assert_eq!(hesslab_pipeline::sha256_hex(&bytes), h["sha256"].as_str().unwrap(), "lock hash of {}", p.display());
        }
    }
}

#[test]
fn sigkill_at_random_points_then_rerun_leaves_whole_artifacts_and_a_consistent_lock() {
    let root = std::env::temp_dir().join(format!("hesslab-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("killed.toml");
    std::fs::write(&file, PIPELINE).unwrap();

    let reference = root.join("reference");
    let t0 = Instant::now();
    let status = hesslab(&file, &reference, false).status().unwrap();
    let full = t0.elapsed();
    assert!(status.success());
    let expected = parquet_contents(&reference);
    assert!(expected.len() >= 10, "{expected:?}");

    let out = root.join("out");
    let mut rng = Rng::new(99);
    let points = 24;
    // Kill points are drawn over the measured run time; when a run had already finished at its
    // kill (a busy machine makes the first measurement long), the span shrinks and the point
    // does not count, so the 24 points all land mid-run.
    let mut span = full;
    let (mut killed_midway, mut attempts) = (0, 0);
    while killed_midway < points && attempts < 100 {
        attempts += 1;
        let i = killed_midway;
        let force = i % 2 == 1 && out.exists();
        if !force {
            let _ = std::fs::remove_dir_all(&out);
        }
        let delay = span.mul_f64(rng.uniform_in(0.02, 1.0));
        let mut child = hesslab(&file, &out, force).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_midway += 1;
        } else {
            span = span.mul_f64(0.7);
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Right after the kill: whatever carries a final name is whole.
        if out.exists() {
            let _ = parquet_contents(&out);
        }
        let rerun = hesslab(&file, &out, false).output().unwrap();
        assert!(rerun.status.success(), "point {i} ({delay:?}): rerun failed: {}", String::from_utf8_lossy(&rerun.stderr));
        let left: Vec<_> = files(&out)
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| hesslab_pipeline::cleanup::is_leftover(&n.to_string_lossy())))
            .collect();
        assert!(left.is_empty(), "point {i}: left in staging: {left:?}");
        check_lock(&out.join("killed"));
        let got = parquet_contents(&out);
        assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "point {i}");
        for (p, bytes) in &expected {
            assert!(got[p] == *bytes, "point {i}: {} differs from the uninterrupted run", p.display());
        }
    }
    eprintln!("{killed_midway} SIGKILLs mid-run in {attempts} attempts over a {:.2} s run", full.as_secs_f64());
    assert!(killed_midway >= 20, "only {killed_midway} kills landed mid-run");
    let _ = std::fs::remove_dir_all(&root);
}
