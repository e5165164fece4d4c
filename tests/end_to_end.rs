//! The shipped pipelines, end to end: the quickstart's finding, reproducibility across runs
//! and --jobs, and the dense ↔ Lanczos swap agreeing on a real Hessian.
use hesslab_pipeline::columns::*;
use hesslab_pipeline::*;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(file: &str, out: &Path, set: &[&str], jobs: usize) -> Plan {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let mut pf = PipelineFile::load(&root().join(file), &set).unwrap();
    pf.out = out.to_path_buf();
    let plan = Plan::build(pf, &hesslab::registry()).unwrap();
    Runner::run(
        &plan,
        &RunOptions {
            jobs,
            ..Default::default()
        },
    )
    .unwrap();
    plan
}

fn eigenvalues(path: &Path) -> Vec<f64> {
    let a = read_artifact(path, None).unwrap();
    hesslab_eigen::read_eigenvalues(&a).unwrap().1
}

#[test]
fn quickstart_finds_ten_outliers_and_is_bit_identical_across_runs_and_jobs() {
    let (a, b) = (tmp("qs1"), tmp("qs2"));
    run("pipelines/quickstart.toml", &a, &[], 1);
    run("pipelines/quickstart.toml", &b, &[], 2);
    let s = read_artifact(&a.join("quickstart/main/summary/summary.parquet"), None).unwrap();
    let heuristic = u64_values(&s.batch, "outliers_heuristic").unwrap()[0];
    assert!(
        (9..=11).contains(&heuristic),
        "quickstart: {heuristic} outliers by the heuristic, expected 10 ± 1"
    );
    let h = read_artifact(&a.join("quickstart/main/hessian/matrix.parquet"), None).unwrap();
    let sym: f64 = h.meta("symmetry_error").unwrap().parse().unwrap();
    assert!(sym < 1e-12, "symmetry error {sym}");
    let train_loss: f64 = read_artifact(&a.join("quickstart/main/train/model.parquet"), None)
        .unwrap()
        .meta("final_train_loss")
        .unwrap()
        .parse()
        .unwrap();
    assert!(train_loss < 1e-3, "training loss {train_loss}");
    for f in [
        "data/dataset.parquet",
        "train/model.parquet",
        "train/log.parquet",
        "hessian/matrix.parquet",
        "eigen/eigenvalues.parquet",
        "summary/summary.parquet",
    ] {
        let x = std::fs::read(a.join("quickstart/main").join(f)).unwrap();
        let y = std::fs::read(b.join("quickstart/main").join(f)).unwrap();
        assert!(x == y, "{f} differs between runs");
    }
    // A model re-read from its artifact gives the same loss to the last bit.
    let m = hesslab_model::Mlp::from_artifact(
        &read_artifact(&a.join("quickstart/main/train/model.parquet"), None).unwrap(),
    )
    .unwrap();
    let ds = hesslab_data::Dataset::from_artifact(
        &read_artifact(&a.join("quickstart/main/data/dataset.parquet"), None).unwrap(),
    )
    .unwrap();
    let tr = ds.train();
    let (loss, _) = m.loss_grad(tr.x.as_ref(), &tr.y);
    let logged = f64_values(
        &read_artifact(&a.join("quickstart/main/train/log.parquet"), None)
            .unwrap()
            .batch,
        "train_loss",
    )
    .unwrap();
    assert_eq!(loss.to_bits(), logged.last().unwrap().to_bits());
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn dense_and_lanczos_agree_on_the_top_20_of_a_real_hessian() {
    let out = tmp("swap");
    run("pipelines/solver_swap.toml", &out, &[], 0);
    let dense = eigenvalues(&out.join("solver_swap/main/eigen/eigenvalues.parquet"));
    run(
        "pipelines/solver_swap.toml",
        &out,
        &["eigen.solver=\"lanczos\""],
        0,
    );
    let lz = read_artifact(
        &out.join("solver_swap/main/eigen/eigenvalues.parquet"),
        None,
    )
    .unwrap();
    assert_eq!(lz.meta("solver"), Some("lanczos"));
    let lanczos = hesslab_eigen::read_eigenvalues(&lz).unwrap().1;
    assert_eq!(lanczos.len(), 20);
    assert_eq!(dense.len(), 4270);
    for (i, (l, d)) in lanczos.iter().zip(&dense).enumerate() {
        assert!(
            (l - d).abs() <= 1e-8 * d.abs(),
            "rank {i}: lanczos {l} vs dense {d}"
        );
    }
    let res = f64_opt_values(&lz.batch, "residual").unwrap();
    assert!(res.iter().all(|r| r.is_some_and(|r| r < 1e-8 * dense[0])));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn every_shipped_pipeline_validates() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            let pf = PipelineFile::load(&p, &[]).unwrap();
            if let Err(e) = Plan::build(pf, &hesslab::registry()) {
                panic!("{}: {e}", p.display());
            }
            n += 1;
        }
    }
    assert!(n >= 10, "{n} pipelines");
}
