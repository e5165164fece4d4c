//! Contracts written once (#37): the tagged solver configuration means what the flat keys mean,
//! refuses what the solver would not take, and never lets a setting be given twice.
mod common;
use common::run_measured;
use hesslab_artifacts::Eigenvalues;
use hesslab_pipeline::{Port, read_artifact};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn sandbox(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-contracts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A trained mixture network and one matrix-free `eigenvalues` stage configured by `solver`.
fn pipeline(solver: &str) -> String {
    format!(
        r#"
[pipeline]
name = "tagged"
seed = 3
[stages.data]
kind = "gaussian_mixture"
classes = 3
dim = 6
samples = 90
[stages.train]
kind = "train"
dataset = "data.dataset"
hidden = [8]
max_steps = 200
lr = 0.5
[stages.eigen]
kind = "eigenvalues"
model = "train.model"
dataset = "data.dataset"
plot = false
{solver}
"#
    )
}

fn run(d: &Path, file: &str, src: &str, cmd: &str) -> (i32, String) {
    std::fs::write(d.join(file), src).unwrap();
    let args: &[&str] = if cmd == "run" { &[cmd, file, "--out", "out"] } else { &[cmd, file] };
    let (code, out, err, _) = run_measured(args, d, Duration::from_secs(120));
    (code, format!("{out}{err}"))
}

fn values(d: &Path) -> Vec<f64> {
    Eigenvalues::decode(&read_artifact(&d.join("out/tagged/main/eigen/eigenvalues.parquet"), None).unwrap()).unwrap().values
}

#[test]
fn tagged_solver_settings_equal_the_flat_keys() {
    for (flat, tagged) in [
        ("solver = \"lanczos\"\nk = 5\ntol = 1e-11\nmax_iter = 50", "solver = { lanczos = { k = 5, tol = 1e-11, max_restarts = 50 } }"),
        ("solver = \"lanczos\"\nk = 4\nwhich = \"smallest\"", "solver = { lanczos = { k = 4, which = \"smallest\" } }"),
        ("solver = \"power\"\nk = 3\ntol = 1e-9", "solver = { power = { k = 3, tol = 1e-9 } }"),
        ("solver = \"dense\"\npartial = true\nk = 6", "solver = { dense = { partial = true, k = 6 } }"),
        // A setting left out of the tagged table takes the flat key.
        ("solver = \"lanczos\"\nk = 7", "solver = { lanczos = {} }\nk = 7"),
    ] {
        let a = sandbox("flat");
        let b = sandbox("tag");
        let (ca, oa) = run(&a, "p.toml", &pipeline(flat), "run");
        let (cb, ob) = run(&b, "p.toml", &pipeline(tagged), "run");
        assert_eq!((ca, cb), (0, 0), "{flat}: {oa}\n{tagged}: {ob}");
        let (va, vb) = (values(&a), values(&b));
        assert!(!va.is_empty());
        assert_eq!(va, vb, "{flat} vs {tagged}");
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }
    // The same setting through the two forms differs from another value: the comparison can fail.
    let a = sandbox("differs");
    let (c, o) = run(&a, "p.toml", &pipeline("solver = { lanczos = { k = 4, which = \"largest\" } }"), "run");
    assert_eq!(c, 0, "{o}");
    let largest = values(&a);
    let _ = std::fs::remove_dir_all(&a);
    let a = sandbox("differs2");
    run(&a, "p.toml", &pipeline("solver = { lanczos = { k = 4, which = \"smallest\" } }"), "run");
    assert_ne!(largest, values(&a));
    let _ = std::fs::remove_dir_all(&a);
}

#[test]
fn tagged_solver_mistakes_are_errors_at_their_place() {
    let d = sandbox("errors");
    for (solver, want) in [
        // A key the solver does not take names the keys it does.
        ("solver = { power = { max_dim = 30 } }", &["p.toml:", "max_dim", "k", "tol", "max_iter"][..]),
        ("solver = { lanczos = { max_iter = 30 } }", &["max_iter", "max_restarts"]),
        ("solver = { qr = { k = 3 } }", &["qr", "dense", "lanczos", "power"]),
        ("solver = \"qr\"", &["qr", "dense", "lanczos", "power"]),
        ("solver = 3", &["solver", "lanczos = { k = 20"]),
        // Given twice: refused at the flat key, whatever the two values.
        ("solver = { lanczos = { k = 5 } }\nk = 6", &["p.toml:22", "`stages.eigen.k`", "given twice", "solver.lanczos.k"]),
        ("solver = { lanczos = { max_restarts = 5 } }\nmax_iter = 6", &["max_iter", "given twice", "solver.lanczos.max_restarts"]),
        ("solver = { lanczos = { tol = 0.0 } }", &["p.toml:21:", "`stages.eigen.solver`", "`solver.lanczos.tol`: tol must be > 0"]),
        ("solver = { power = { k = 0 } }", &["`stages.eigen.solver`", "`solver.power.k`: k must be ≥ 1"]),
    ] {
        let (code, out) = run(&d, "p.toml", &pipeline(solver), "validate");
        assert_ne!(code, 0, "{solver} validated:\n{out}");
        assert!(!out.contains("panicked"), "{out}");
        for w in want {
            assert!(out.contains(w), "{solver}: `{w}` not in\n{out}");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// The workspace's internal dependency graph as `cargo metadata` reports it (normal
/// dependencies only), one line per crate: `hesslab-x → hesslab-a, hesslab-b`.
fn crate_graph() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut lines = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap();
        let mut deps: Vec<&str> = pkg["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null() && d["name"].as_str().unwrap().starts_with("hesslab-"))
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        deps.sort();
        deps.dedup();
        lines.push(if deps.is_empty() { format!("{name} → (none)") } else { format!("{name} → {}", deps.join(", ")) });
    }
    lines.sort();
    lines.join("\n")
}

#[test]
fn crate_boundaries_hold_and_developing_prints_the_graph() {
    let graph = crate_graph();
    let deps =
        |c: &str| graph.lines().find(|l| l.starts_with(&format!("{c} → "))).unwrap_or_else(|| panic!("{c} not in\n{graph}")).to_string();
    let eigen = deps("hesslab-eigen");
    for not in ["hesslab-hessian", "hesslab-model", "hesslab-pipeline"] {
        assert!(!eigen.contains(not), "{eigen}");
    }
    let figures = deps("hesslab-figures");
    for not in ["hesslab-pipeline", "hesslab-artifacts"] {
        assert!(!figures.contains(not), "{figures}");
    }
    for math in ["hesslab-data", "hesslab-model", "hesslab-hessian", "hesslab-linop"] {
        assert!(!deps(math).contains("hesslab-pipeline"), "{}", deps(math));
    }
    let developing = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/DEVELOPING.md")).unwrap();
    assert!(
        developing.contains(&format!("```text\n{graph}\n```")),
        "docs/DEVELOPING.md does not print the current graph; put this in its `Crates` section:\n```text\n{graph}\n```"
    );
}
