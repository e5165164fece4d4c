//! The Slurm executor on a real (single-node) cluster: `scripts/slurm-local.sh up` starts one;
//! `scripts/test.sh` does so and sets HESSLAB_REQUIRE_SLURM=1, under which a missing cluster
//! fails these tests instead of skipping them.
//!
//! - a sweep of 8 members (a reduced S18 E2 grid) gives the local executor's Parquet bits, every
//!   job's lock entry survives jobs finishing together, and a second run submits nothing;
//! - a job cancelled with `scancel` mid-run is reported, leaves nothing half-written, and a
//!   rerun submits only that instance and its dependents;
//! - a stage that fails under Slurm: its dependents never start, the exit code is non-zero and
//!   the message names the stage and its log file.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cluster_up() -> bool {
    // A node that schedules: idle, mixed, allocated, or "completing" while another test's
    // cancelled jobs are cleaned up (the tests run concurrently; that state once made this
    // check fail in CI). Polled for a while, since states pass.
    let states = || Command::new("sinfo").args(["-h", "-o", "%T"]).output().ok().filter(|o| o.status.success());
    let schedules =
        |o: &Output| ["idle", "mixed", "allocated", "completing"].iter().any(|s| String::from_utf8_lossy(&o.stdout).contains(s));
    let deadline = Instant::now() + Duration::from_secs(30);
    let required = std::env::var_os("HESSLAB_REQUIRE_SLURM").is_some();
    let mut answer = states();
    // A controller that answers is waited for, and a silent one too when a cluster is required
    // (slurmctld can be busy for a moment); otherwise silence means "no cluster" at once.
    while Instant::now() < deadline && answer.as_ref().map_or(required, |o| !schedules(o)) {
        std::thread::sleep(Duration::from_millis(500));
        answer = states();
    }
    let up = answer.as_ref().is_some_and(schedules);
    if !up {
        assert!(!required, "HESSLAB_REQUIRE_SLURM is set but no Slurm node answers `sinfo` (scripts/slurm-local.sh up)");
        eprintln!("skipped: no Slurm cluster (scripts/slurm-local.sh up starts one)");
    }
    up
}

fn hesslab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hesslab"))
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("slurm-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn run_slurm(file: &Path, out: &Path, extra: &[&str]) -> Output {
    hesslab().arg("run").arg(file).arg("--out").arg(out).args(["--executor", "slurm"]).args(extra).output().unwrap()
}

/// The number in "submitted N Slurm job(s)".
fn submitted(o: &Output) -> usize {
    let t = text(o);
    let rest = t.split("submitted ").nth(1).unwrap_or_else(|| panic!("no submission line in:\n{t}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

fn parquet_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Every leftover name (staging, swapped-out and temporary files) below `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if hesslab_pipeline::cleanup::is_leftover(&name) {
                found.push(e.path());
            } else if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

fn submission(out_dir: &Path) -> BTreeMap<String, String> {
    let rec = hesslab_slurm::records::SubmissionRecord::load(out_dir);
    rec.jobs.into_iter().map(|(id, j)| (id, j.job_id)).collect()
}

#[test]
fn sweep_gives_the_local_bits_and_a_second_run_submits_nothing() {
    if !cluster_up() {
        return;
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/slurm_sweep.toml");
    let dir = fresh_dir("sweep");
    let local = hesslab().arg("run").arg(&file).arg("--out").arg(dir.join("local")).output().unwrap();
    assert!(local.status.success(), "{}", text(&local));

    let first = run_slurm(&file, &dir.join("slurm"), &["--wait"]);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(submitted(&first), 37, "{}", text(&first));

    let (a, b) = (parquet_files(&dir.join("local/slurm_sweep")), parquet_files(&dir.join("slurm/slurm_sweep")));
    let members = a.keys().filter_map(|p| p.components().next()).collect::<std::collections::BTreeSet<_>>().len();
    assert!(members >= 9, "8 members and `all`, got {members}");
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "the same artifacts");
    for (p, bytes) in &a {
        assert!(bytes == &b[p], "{} differs between the local and the Slurm run", p.display());
    }
    // 37 jobs recorded themselves in one lock file, many finishing together: none is lost.
    let lock = hesslab_pipeline::LockFile::load(&dir.join("slurm/slurm_sweep"));
    assert_eq!(lock.stages.len(), 37);

    let again = run_slurm(&file, &dir.join("slurm"), &["--wait"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(submitted(&again), 0, "{}", text(&again));
    let status = hesslab().arg("status").arg(&file).arg("--out").arg(dir.join("slurm")).output().unwrap();
    assert!(text(&status).contains("37 instance(s): 37 done"), "{}", text(&status));
    // The local executor reads the same lock: nothing to do either.
    let local_rerun = hesslab().arg("run").arg(&file).arg("--out").arg(dir.join("slurm")).output().unwrap();
    assert!(text(&local_rerun).contains(" 0 ran, 37 skipped"), "{}", text(&local_rerun));
}

/// Two members: one trains for a moment, the other long enough to be cancelled mid-run.
const SLOW_AND_FAST: &str = r#"
[pipeline]
name = "cancel"
seed = 3
[sweep]
train.max_steps = [40, 200000]
[stages.data]
kind = "gaussian_mixture"
classes = 3
dim = 20
samples = 600
[stages.train]
kind = "train"
dataset = "data.dataset"
hidden = [32, 32]
target_loss = 0.0
log_every = 1000
[stages.hessian]
kind = "curvature_dense"
model = "train.model"
dataset = "data.dataset"
[stages.eigen]
kind = "eigenvalues"
matrix = "hessian.matrix"
"#;

#[test]
fn a_cancelled_job_is_reported_and_only_it_and_its_dependents_are_resubmitted() {
    if !cluster_up() {
        return;
    }
    let dir = fresh_dir("cancel");
    let file = dir.join("cancel.toml");
    std::fs::write(&file, SLOW_AND_FAST).unwrap();
    let out = dir.join("out");
    let out_dir = out.join("cancel");
    let child = hesslab()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .args(["--executor", "slurm", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let slow = "train.max_steps=200000/train";
    // Wait until the slow training job has started (its record says so), then cancel it.
    let t0 = Instant::now();
    let job = loop {
        assert!(t0.elapsed() < Duration::from_secs(120), "the slow job never started");
        if let Some(id) = submission(&out_dir).get(slow).cloned()
            && hesslab_slurm::records::JobRecord::load(&out_dir, &id).is_some_and(|r| r.state == "running")
        {
            break id;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(1500)); // mid-training
    assert!(Command::new("scancel").arg(&job).status().unwrap().success());
    let waited = child.wait_with_output().unwrap();
    let msg = text(&waited);
    assert!(!waited.status.success(), "{msg}");
    assert!(msg.contains(&format!("stage `train` ({slow}) job {job} cancelled")), "{msg}");
    assert!(msg.contains(&format!("logs/train-{job}.out")), "{msg}");
    assert!(msg.contains("a job it depends on failed or was cancelled"), "the dependents are reported too:\n{msg}");
    // Nothing half-written: no leftovers, and the cancelled instance has no artifacts at all.
    assert_eq!(leftovers(&out_dir), Vec::<PathBuf>::new());
    assert!(!out_dir.join("train.max_steps=200000/train").exists());
    // The fast member finished in full.
    assert!(out_dir.join("train.max_steps=40/eigen/eigenvalues.parquet").exists());

    let status = hesslab().arg("status").arg(&file).arg("--out").arg(&out).output().unwrap();
    let st = text(&status);
    assert!(st.contains("cancelled while running"), "{st}");

    // The rerun submits the cancelled training and what depends on it, nothing else.
    let rerun = run_slurm(&file, &out, &[]);
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(submitted(&rerun), 3, "{}", text(&rerun));
    let jobs = submission(&out_dir);
    let resubmitted: Vec<&String> = jobs.keys().filter(|k| k.starts_with("train.max_steps=200000/")).collect();
    assert_eq!(resubmitted.len(), 3, "{jobs:?}");
    // A third submission while those are queued or running is refused.
    let third = run_slurm(&file, &out, &[]);
    assert!(!third.status.success() && text(&third).contains("still queued or running"), "{}", text(&third));
    for k in resubmitted {
        let _ = Command::new("scancel").arg(&jobs[k]).status();
    }
}

/// The Hessian job is given less memory than its estimate (a per-stage override in the
/// settings file), so it fails before allocating; eigen and summary depend on it.
const FAILING: &str = r#"
[pipeline]
name = "failing"
seed = 2
[stages.data]
kind = "gaussian_mixture"
classes = 2
dim = 30
samples = 200
[stages.train]
kind = "train"
dataset = "data.dataset"
hidden = [64, 16]
max_steps = 5
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

#[test]
fn a_failed_stage_stops_its_dependents_and_names_its_log() {
    if !cluster_up() {
        return;
    }
    let dir = fresh_dir("failing");
    let file = dir.join("failing.toml");
    std::fs::write(&file, FAILING).unwrap();
    let settings = dir.join("slurm.toml");
    std::fs::write(&settings, "[executor]\ncores = 1\n\n[stages.hessian]\nmemory = \"8M\"\n").unwrap();
    let out = dir.join("out");
    let o = run_slurm(&file, &out, &["--wait", "--settings", settings.to_str().unwrap()]);
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    let out_dir = out.join("failing");
    let jobs = submission(&out_dir);
    let hessian = &jobs["main/hessian"];
    let log = out_dir.join(format!("logs/hessian-{hessian}.out"));
    assert!(msg.contains(&format!("stage `hessian` (main/hessian) job {hessian} failed")), "{msg}");
    assert!(msg.contains(&log.display().to_string()), "{msg}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("allocated to this job"), "the log says why:\n{log_text}");
    // Its dependents never started: no record, no log, no artifacts.
    for stage in ["eigen", "summary"] {
        let id = &jobs[&format!("main/{stage}")];
        assert!(hesslab_slurm::records::JobRecord::load(&out_dir, id).is_none(), "{stage} started");
        assert!(!out_dir.join(format!("logs/{stage}-{id}.out")).exists());
        assert!(!out_dir.join("main").join(stage).exists());
        assert!(msg.contains(&format!("stage `{stage}` (main/{stage}) job {id} cancelled")), "{msg}");
    }
    assert!(out_dir.join("main/train/model.parquet").exists(), "upstream work is kept");
    assert_eq!(leftovers(&out_dir), Vec::<PathBuf>::new());
}

#[test]
fn exec_names_what_is_wrong_without_a_cluster() {
    let dir = fresh_dir("exec");
    let file = dir.join("failing.toml");
    std::fs::write(&file, FAILING).unwrap();
    let out = dir.join("out");
    let exec = |instance: &str| hesslab().arg("exec").arg(&file).arg("--out").arg(&out).args(["--instance", instance]).output().unwrap();
    let o = exec("main/eigne");
    assert!(!o.status.success() && text(&o).contains("no stage instance `main/eigne`"), "{}", text(&o));
    let o = exec("main/eigen");
    assert!(!o.status.success() && text(&o).contains("needs the outputs of `main/hessian`"), "{}", text(&o));
    let o = exec("main/data");
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("failing/main/data/dataset.parquet").exists());
    let o =
        hesslab().arg("exec").arg(&file).arg("--out").arg(&out).args(["--instance", "main/train", "--expect", "0000"]).output().unwrap();
    assert!(!o.status.success() && text(&o).contains("changed after this job was submitted"), "{}", text(&o));
}

/// A submission sbatch refuses (an unknown partition) names sbatch's command and the instance
/// once each, without one quoted command nested in another, and submits nothing.
#[test]
fn a_refused_submission_says_which_instance_without_nested_quotes() {
    if !cluster_up() {
        return;
    }
    let dir = fresh_dir("refused");
    let file = dir.join("failing.toml");
    std::fs::write(&file, FAILING).unwrap();
    let out = dir.join("out");
    let o = run_slurm(&file, &out, &["--partition", "no-such-partition"]);
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(msg.contains("(submitting `main/"), "{msg}");
    assert!(msg.contains("nothing runs"), "{msg}");
    assert!(!msg.contains("sbatch for `"), "nested quotes: {msg}");
}
