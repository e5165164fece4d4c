//! The first hour of a new user (#44): a run says its results out loud, and a network that
//! plainly did not train is said to be one — on stderr, in the result block, in the log's
//! metadata and at the top of the report.
mod common;
use common::{SMALL, run_measured};
use hesslab_artifacts::{Log, Summary};
use hesslab_pipeline::{Port, read_artifact};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn sandbox(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-first-hour-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `hesslab run` on SMALL with `--set`s; (exit code, stdout, stderr).
fn run(d: &Path, set: &[&str]) -> (i32, String, String) {
    std::fs::write(d.join("p.toml"), SMALL).unwrap();
    let mut args = vec!["run", "p.toml", "--out", "out"];
    for s in set {
        args.extend(["--set", s]);
    }
    let (code, out, err, _) = run_measured(&args, d, Duration::from_secs(120));
    (code, out, err)
}

#[test]
fn run_ends_with_the_results_in_words() {
    let d = sandbox("results");
    let (code, out, err) = run(&d, &["train.max_steps=300", "train.lr=0.5"]);
    assert_eq!(code, 0, "{out}{err}");
    let block = &out[out.find("results:\n").unwrap_or_else(|| panic!("no result block in\n{out}"))..];
    let summary = Summary::decode(&read_artifact(&d.join("out/small/main/summary/summary.parquet"), None).unwrap()).unwrap().row;
    let log = Log::decode(&read_artifact(&d.join("out/small/main/train/log.parquet"), None).unwrap()).unwrap();
    // The numbers are the artifacts' own.
    let want = format!(
        "main/summary  P = {}: largest eigenvalue {:.4}, outliers {} (elbow), {} (gap), {} (ratio); {} negative",
        summary.dim, summary.max, summary.outliers_heuristic, summary.outliers_gap, summary.outliers_ratio, summary.negative
    );
    assert!(block.contains(&want), "`{want}` not in\n{block}");
    let loss = log.metrics.train_loss.last().unwrap();
    assert!(block.contains(&format!("main/train    training loss {loss:.4} and accuracy")), "{block}");
    assert!(log.warning.is_none() && !out.contains("warning") && !err.contains("warning"), "a trained network warned:\n{out}{err}");
    assert!(read_artifact(&d.join("out/small/main/summary/summary.parquet"), None).unwrap().meta("training_warning").is_none());
    let report = std::fs::read_to_string(d.join("out/small/report.html")).unwrap();
    assert!(report.contains("<h2>Results</h2>") && report.contains(&format!("largest eigenvalue {:.4}", summary.max)), "report");
    assert!(!report.contains("<h2>Warnings</h2>"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_network_at_chance_level_is_said_to_be_untrained_everywhere() {
    let d = sandbox("chance");
    // A learning rate too small to move anything in 20 steps: accuracy stays at chance.
    let (code, out, err) = run(&d, &["train.lr=1e-9"]);
    assert_eq!(code, 0, "{out}{err}");
    let log = Log::decode(&read_artifact(&d.join("out/small/main/train/log.parquet"), None).unwrap()).unwrap();
    let w = log.warning.expect("the log's metadata says it");
    assert!(w.contains("looks untrained") && w.contains("at chance level"), "{w}");
    assert!(err.contains(&format!("warning: train {w}")) || err.contains(&w), "stderr:\n{err}");
    assert!(out.contains(&format!("warning: main/train: {w}")), "result block:\n{out}");
    let report = std::fs::read_to_string(d.join("out/small/report.html")).unwrap();
    assert!(report.contains("<h2>Warnings</h2>") && report.contains("looks untrained"), "report");
    // Carried down to the spectrum and its summary (the model, the matrix, the eigenvalues).
    let meta = |p: &str| read_artifact(&d.join("out/small/main").join(p), None).unwrap().meta("training_warning").map(str::to_string);
    for p in ["train/model.parquet", "hessian/matrix.parquet", "eigen/eigenvalues.parquet", "summary/summary.parquet"] {
        assert_eq!(meta(p).as_deref(), Some(w.as_str()), "{p}");
    }
    let summary = Summary::decode(&read_artifact(&d.join("out/small/main/summary/summary.parquet"), None).unwrap()).unwrap();
    assert_eq!(summary.training_warning.as_deref(), Some(w.as_str()));
    assert!(out.contains("of a network that looks untrained"), "the summary's result line says it:\n{out}");
    // A loss that rose is said too.
    let (code, out, err) = run(&d, &["train.lr=60", "train.divergence_factor=0", "train.max_steps=40"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("its training loss did not fall"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

/// `validate` (and `run`, before any stage) says that a named input file is missing, at its key.
#[test]
fn validate_refuses_a_missing_input_file_at_its_key() {
    let d = sandbox("missing");
    let toml = "[pipeline]\nname = \"m\"\n[stages.data]\nkind = \"idx\"\nimages = \"nowhere/train-images.gz\"\nlabels = \"nowhere/labels.gz\"\n[stages.tab]\nkind = \"table\"\npath = \"absent.csv\"\n";
    std::fs::write(d.join("m.toml"), toml).unwrap();
    for cmd in ["validate", "run"] {
        let (code, out, err, _) =
            run_measured(&[cmd, "m.toml", "--out", "out"][..if cmd == "run" { 4 } else { 2 }], &d, Duration::from_secs(60));
        assert_ne!(code, 0, "{cmd}: {out}{err}");
        for (line, key, path) in [(5, "images", "nowhere/train-images.gz"), (6, "labels", "nowhere/labels.gz"), (9, "path", "absent.csv")] {
            let want = format!(
                "m.toml:{line}:1: key `stages.{}.{key}`: `{path}` does not exist (relative to the current directory",
                if key == "path" { "tab" } else { "data" }
            );
            assert!(err.contains(&want), "{cmd}: `{want}` not in\n{err}");
        }
        assert!(!d.join("out/m/main").exists(), "{cmd}: a stage ran");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Ctrl-C says what was kept and how to resume, exits 130, and the rerun resumes.
#[test]
fn ctrl_c_says_what_was_kept_and_how_to_resume() {
    let d = sandbox("interrupt");
    let slow = SMALL.replace("max_steps = 20", "max_steps = 100000000\nlog_every = 1000");
    std::fs::write(d.join("p.toml"), &slow).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_hesslab"))
        .args(["run", "p.toml", "--out", "out"])
        .current_dir(&d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the data stage is done, training is under way.
    let t0 = std::time::Instant::now();
    while !d.join("out/small/main/data/dataset.parquet").exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the data stage never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: the stages that finished are kept in out/small") && err.contains("run the same command again to resume"),
        "{err}"
    );
    assert!(!d.join("out/small/main/train").exists(), "the interrupted stage left its directory");
    // The rerun skips what finished.
    let (code, o, e) = run(&d, &["train.max_steps=10"]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("1 skipped (up to date)"), "{o}");
    let _ = std::fs::remove_dir_all(&d);
}

/// The report shows each spectrum once — the summary's figures, not again the eigenvalue
/// stage's — in the order of what they show (the whole spectrum, its top, its negative part,
/// its histogram), not alphabetically (histogram first).
#[test]
fn the_report_shows_each_spectrum_once_in_reading_order() {
    let d = sandbox("report");
    let (code, out, err) = run(&d, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(d.join("out/small/main/eigen/top.png").exists(), "the eigen stage still draws its figures");
    let report = std::fs::read_to_string(d.join("out/small/report.html")).unwrap();
    let figures: Vec<&str> =
        report.match_indices("<figcaption><b>").map(|(i, _)| &report[i + 15..i + 15 + report[i + 15..].find('<').unwrap()]).collect();
    assert_eq!(figures, ["spectrum.png", "top.png", "negative.png", "histogram.png"], "{figures:?}");
    assert!(report.contains("stage <code>summary</code>") && !report.contains("stage <code>eigen</code> (kind"), "captions");
    assert!(report.contains("shown with their summary"), "the eigen section says where its figures went");
    let _ = std::fs::remove_dir_all(&d);
}

/// A dense solve's caption lists what applied to it, not the Lanczos parameters.
#[test]
fn a_dense_solve_is_not_captioned_with_lanczos_parameters() {
    let d = sandbox("caption");
    let (code, out, err) = run(&d, &["summary.plots=false"]);
    assert_eq!(code, 0, "{out}{err}");
    let report = std::fs::read_to_string(d.join("out/small/report.html")).unwrap();
    let caption = &report[report.find("stage <code>eigen</code>").unwrap_or_else(|| panic!("no eigen caption"))..];
    let params = &caption[..caption.find("</small>").unwrap()];
    assert!(params.contains("&quot;solver&quot;:&quot;dense&quot;") || params.contains("\"solver\":\"dense\""), "{params}");
    for lanczos in ["tol", "max_iter", "max_dim", "max_seconds", "\"k\"", "which"] {
        assert!(!params.contains(lanczos), "`{lanczos}` in a dense solve's caption: {params}");
    }
    let _ = std::fs::remove_dir_all(&d);
}
