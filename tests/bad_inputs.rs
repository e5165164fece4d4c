//! The bad-input corpus: every file in `tests/bad/` must fail with an error whose text
//! contains each of its `# expect:` lines, and must leave no partial artifact behind.
use hesslab_pipeline::{PipelineFile, Plan, RunOptions, Runner, read_artifact};
use std::path::{Path, PathBuf};

mod common;
use common::full_error;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bad")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-bad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("blocker"), b"not a directory").unwrap();
    d
}

fn leftovers(dir: &Path, found: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp-") || name.contains(".staging-") || name.contains(".old-") {
                found.push(p.clone());
            }
            if p.is_dir() {
                leftovers(&p, found);
            }
        }
    }
}

fn run_file(path: &Path) -> (Result<(), String>, PathBuf) {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let t = tmp(&name);
    let text = std::fs::read_to_string(path).unwrap().replace("{TMP}", t.to_str().unwrap());
    let file_name = Path::new(path.file_name().unwrap());
    let result = PipelineFile::parse(file_name, text, &[])
        .and_then(|pf| Plan::build(pf, &hesslab::registry()))
        .and_then(|plan| Runner::run(&plan, &RunOptions { jobs: 1, ..Default::default() }).map(|_| ()));
    (result.map_err(|e| full_error(&e)), t)
}

#[test]
fn every_broken_pipeline_fails_with_an_error_naming_the_problem() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus has only {} files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let (res, t) = run_file(f);
        let text = std::fs::read_to_string(f).unwrap().replace("{TMP}", t.to_str().unwrap());
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{} has no `# expect:` line", f.display());
        match res {
            Ok(()) => failures.push(format!("{}: succeeded, expected an error", f.display())),
            Err(msg) => {
                for e in &expects {
                    if !msg.contains(e) {
                        failures.push(format!("{}:\n    expected: {e}\n    got:      {msg}", f.display()));
                    }
                }
            }
        }
        let mut left = Vec::new();
        leftovers(&t, &mut left);
        if !left.is_empty() {
            failures.push(format!("{}: partial artifacts left: {left:?}", f.display()));
        }
        // A failing stage leaves no output directory of its own.
        if text.contains("failed: batch_size") && t.join("out").exists() {
            let train_dir = t.join("out/run_batch_too_large/main/train");
            assert!(!train_dir.exists(), "failed stage left {}", train_dir.display());
            assert!(t.join("out/run_batch_too_large/main/data/dataset.parquet").exists(), "the successful upstream artifact must be kept");
        }
        let _ = std::fs::remove_dir_all(&t);
    }
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}

fn write_small_dataset(dir: &Path) -> PathBuf {
    let text = format!(
        "[pipeline]\nout = \"{}\"\nname = \"p\"\n[stages.data]\nkind = \"gaussian_mixture\"\nclasses = 2\ndim = 3\nsamples = 20\n",
        dir.display()
    );
    let plan = Plan::build(PipelineFile::parse(Path::new("p.toml"), text, &[]).unwrap(), &hesslab::registry()).unwrap();
    Runner::run(&plan, &RunOptions::default()).unwrap();
    dir.join("p/main/data/dataset.parquet")
}

#[test]
fn truncated_parquet_is_a_clear_error_naming_the_file() {
    let t = tmp("truncated");
    let p = write_small_dataset(&t);
    let bytes = std::fs::read(&p).unwrap();
    let bad = t.join("truncated.parquet");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let e = full_error(&read_artifact(&bad, None).unwrap_err());
    assert!(e.contains("truncated.parquet") && e.contains("Parquet error"), "{e}");
    let empty = t.join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    assert!(full_error(&read_artifact(&empty, None).unwrap_err()).contains("empty.parquet"));
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn wrong_schema_names_the_column() {
    let t = tmp("schema");
    let p = write_small_dataset(&t);
    let declared = hesslab_pipeline::port::<hesslab_artifacts::Model>().schema();
    let e = full_error(&read_artifact(&p, Some(&declared)).unwrap_err());
    assert!(e.contains("column `tensor` is missing") && e.contains("dataset.parquet"), "{e}");
    let declared = arrow_schema::Schema::new(vec![hesslab_pipeline::columns::f64_field("y")]);
    let e = full_error(&read_artifact(&p, Some(&declared)).unwrap_err());
    assert!(e.contains("column `y` has type UInt32, expected Float64"), "{e}");
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn corrupted_output_is_detected_and_rebuilt() {
    let t = tmp("corrupt");
    let p = write_small_dataset(&t);
    let good = std::fs::read(&p).unwrap();
    std::fs::write(&p, &good[..good.len() - 10]).unwrap();
    let _ = write_small_dataset(&t); // reruns `data` because its output no longer matches the lock
    assert_eq!(std::fs::read(&p).unwrap(), good);
    let _ = std::fs::remove_dir_all(&t);
}
