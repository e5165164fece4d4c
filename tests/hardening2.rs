//! Hostile files and trees, round 2 (issue #35): one test per class of the review. Each builds
//! its hostile file or tree itself (bombs at test time, small on disk), runs the `hesslab`
//! binary, and asserts the error, the exit code, that a sibling directory outside `--out` is
//! unchanged, and — for the bombs — the child's peak RSS under `--max-memory 1G`.
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{SMALL, parquet_page_bomb, run_measured, snapshot, write_port};

const GIB: u64 = 1 << 30;
const T: Duration = Duration::from_secs(120);

/// A fresh directory with `out/` (the output tree) and `sibling/` (must never change).
fn sandbox(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-hard2-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("sibling/keep")).unwrap();
    std::fs::write(d.join("sibling/keep/precious.txt"), b"precious").unwrap();
    d
}

/// The sibling directory holds exactly what `sandbox` put there.
fn untouched(d: &Path) {
    let snap = snapshot(&d.join("sibling"));
    let names: Vec<String> = snap.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(names, ["keep", "keep/precious.txt"], "something outside --out changed: {snap:?}");
    assert_eq!(std::fs::read(d.join("sibling/keep/precious.txt")).unwrap(), b"precious");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run hesslab in `dir`; (code, stdout + stderr, peak RSS).
fn hesslab(dir: &Path, args: &[&str]) -> (i32, String, u64) {
    let (code, out, err, peak) = run_measured(args, dir, T);
    (code, format!("{out}{err}"), peak)
}

fn assert_fails(what: &str, (code, text, _): &(i32, String, u64), expect: &[&str]) {
    assert!(*code != 0, "{what}: exit 0\n{text}");
    assert!(!text.contains("panicked") && !text.contains("internal error"), "{what}: a panic\n{text}");
    for e in expect {
        assert!(text.contains(e), "{what}: no `{e}` in\n{text}");
    }
}

fn small(d: &Path) -> PathBuf {
    let p = d.join("p.toml");
    std::fs::write(&p, SMALL).unwrap();
    let r = hesslab(d, &["run", "p.toml", "--out", "out"]);
    assert_eq!(r.0, 0, "{}", r.1);
    p
}

// 1 ------------------------------------------------------------------ symlinks in the output tree
#[test]
fn c1_links_inside_the_output_tree_are_refused_or_replaced_never_followed() {
    let d = sandbox("links");
    small(&d);
    let member = d.join("out/small/main");
    // A member directory that is a link elsewhere: `run --force` must not rename or delete there.
    std::fs::rename(&member, d.join("sibling/member")).unwrap();
    std::os::unix::fs::symlink(d.join("sibling/member"), &member).unwrap();
    let before = snapshot(&d.join("sibling"));
    let r = hesslab(&d, &["run", "p.toml", "--out", "out", "--force"]);
    assert_fails("member link", &r, &["out/small/main is a symbolic link", "never through a link out of it"]);
    let r = hesslab(&d, &["exec", "p.toml", "--out", "out", "--instance", "main/eigen", "--force"]);
    assert_fails("member link, exec", &r, &["is a symbolic link"]);
    assert_eq!(snapshot(&d.join("sibling")), before, "the link's target changed");
    std::fs::remove_file(&member).unwrap();
    std::fs::rename(d.join("sibling/member"), &member).unwrap();

    // A stage directory that is a link, with a leftover-looking file in its target: neither
    // `run` nor `exec`'s leftover cleanup may touch it.
    std::fs::create_dir_all(d.join("sibling/eig")).unwrap();
    std::fs::write(d.join("sibling/eig/eigenvalues.parquet.tmp-123"), b"not ours").unwrap();
    std::fs::remove_dir_all(member.join("eigen")).unwrap();
    std::os::unix::fs::symlink(d.join("sibling/eig"), member.join("eigen")).unwrap();
    let before = snapshot(&d.join("sibling"));
    let r = hesslab(&d, &["exec", "p.toml", "--out", "out", "--instance", "main/eigen"]);
    assert_fails("stage link, exec", &r, &["out/small/main/eigen is a symbolic link"]);
    let r = hesslab(&d, &["run", "p.toml", "--out", "out", "--force"]);
    assert_fails("stage link, run", &r, &["out/small/main/eigen is a symbolic link"]);
    assert_eq!(snapshot(&d.join("sibling")), before, "the link's target changed");
    std::fs::remove_file(member.join("eigen")).unwrap();

    // Dangling links in place of the lock file and the engine's lock files: replaced, the
    // targets never created.
    for name in ["hesslab.lock", ".hesslab.lock.flock", ".hesslab-run.lock"] {
        let p = d.join("out/small").join(name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(d.join("sibling").join(format!("created-by-{name}")), &p).unwrap();
    }
    let r = hesslab(&d, &["run", "p.toml", "--out", "out"]);
    assert_eq!(r.0, 0, "{}", r.1);
    assert!(r.1.contains("was a symbolic link; replaced"), "{}", r.1);
    for name in ["hesslab.lock", ".hesslab.lock.flock", ".hesslab-run.lock"] {
        let m = std::fs::symlink_metadata(d.join("out/small").join(name)).unwrap();
        assert!(m.is_file(), "{name} is a file of its own now");
    }
    assert_eq!(snapshot(&d.join("sibling")), before, "a link's target was created");
    let _ = std::fs::remove_dir_all(&d);
}

// 2 ------------------------------------------------------------------ bombs
#[test]
fn c2_parquet_page_size_bombs_are_refused_before_allocating() {
    let d = sandbox("pagebomb");
    let bomb = d.join("eigenvalues.parquet");
    parquet_page_bomb(&bomb, "eigenvalue");
    assert!(std::fs::metadata(&bomb).unwrap().len() < 2000);
    let before = snapshot(&d.join("sibling"));
    for args in [vec!["show", s(&bomb), "--max-memory", "1G"], vec!["plot", s(&bomb), "--max-memory", "1G", "--out", "figs"]] {
        let r = hesslab(&d, &args);
        assert_fails(&format!("{args:?}"), &r, &["eigenvalues.parquet", "needs about 2.0 GiB", "1.0 GiB is allowed by --max-memory"]);
        assert!(r.2 < GIB, "{args:?}: peak RSS {} MB", r.2 >> 20);
    }
    // The `table` stage reading it.
    std::fs::write(d.join("t.toml"), format!("[stages.t]\nkind = \"table\"\npath = {:?}\nlabel = \"eigenvalue\"\n", s(&bomb))).unwrap();
    let r = hesslab(&d, &["run", "t.toml", "--out", "out", "--max-memory", "1G"]);
    assert_fails("table", &r, &["stage `t`", "eigenvalues.parquet", "needs about 2.0 GiB"]);
    assert!(r.2 < GIB, "table: peak RSS {} MB", r.2 >> 20);
    assert_eq!(snapshot(&d.join("sibling")), before);
    untouched(&d);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn c2_forty_million_rows_are_estimated_before_they_are_decoded() {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
    let d = sandbox("rows");
    let p = d.join("rows.parquet");
    let (f, l): (ArrayRef, ArrayRef) =
        (std::sync::Arc::new(Float64Array::from(vec![0.5; 1 << 20])), std::sync::Arc::new(Int64Array::from(vec![1i64; 1 << 20])));
    let batch = RecordBatch::try_from_iter([("f", f), ("label", l)]).unwrap();
    let mut w = hesslab_pipeline::ArtifactWriter::create(&p, batch.schema(), &Default::default()).unwrap();
    for _ in 0..38 {
        w.write(&batch).unwrap(); // 38 × 2²⁰ ≈ 4.0e7 rows, run-length encoded
    }
    w.finish().unwrap();
    assert!(std::fs::metadata(&p).unwrap().len() < 2 << 20, "{} bytes", std::fs::metadata(&p).unwrap().len());
    std::fs::write(d.join("t.toml"), format!("[stages.t]\nkind = \"table\"\npath = {:?}\n", s(&p))).unwrap();
    let r = hesslab(&d, &["run", "t.toml", "--out", "out", "--max-memory", "1G"]);
    assert_fails("table", &r, &["table", "rows.parquet", "needs about", "39845888 rows", "1.0 GiB is allowed by --max-memory"]);
    assert!(r.2 < GIB, "table: peak RSS {} MB", r.2 >> 20);
    // `show` decodes only the rows it prints.
    let r = hesslab(&d, &["show", s(&p), "--max-memory", "1G"]);
    assert!(r.0 == 0 && r.1.contains("39845888 rows"), "{}", r.1);
    assert!(r.2 < 256 << 20, "show: peak RSS {} MB", r.2 >> 20);
    untouched(&d);
    let _ = std::fs::remove_dir_all(&d);
}

/// `n` bytes of `byte`, gzip-compressed, streamed to `path` (a few MB on disk).
fn gzip_of(path: &Path, prefix: &[u8], byte: u8, n: u64) {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    gz.write_all(prefix).unwrap();
    let chunk = vec![byte; 1 << 20];
    for _ in 0..n >> 20 {
        gz.write_all(&chunk).unwrap();
    }
    gz.finish().unwrap();
}

#[test]
fn c2_gzip_bombs_stop_at_the_cap() {
    let d = sandbox("gzip");
    // digits CSV: 3 GiB of digits decompressed.
    let csv = d.join("digits.csv.gz");
    gzip_of(&csv, b"", b'7', 2 * GIB);
    assert!(std::fs::metadata(&csv).unwrap().len() < 16 << 20);
    std::fs::write(d.join("g.toml"), format!("[stages.d]\nkind = \"digits\"\npath = {:?}\n", s(&csv))).unwrap();
    let r = hesslab(&d, &["run", "g.toml", "--out", "out", "--max-memory", "1G"]);
    assert_fails("digits", &r, &["digits.csv.gz", "the decompressed text is larger than 128.0 MiB", "allowed by --max-memory"]);
    assert!(r.2 < GIB, "digits: peak RSS {} MB", r.2 >> 20);
    // IDX: a header that claims 60 000 × 28 × 28 images but a 3 GiB payload, and one that
    // claims more than the budget.
    let header = |dims: &[u32]| {
        let mut h = vec![0u8, 0, 8, dims.len() as u8];
        dims.iter().for_each(|x| h.extend(x.to_be_bytes()));
        h
    };
    let images = d.join("images.gz");
    gzip_of(&images, &header(&[60000, 28, 28]), 0, 2 * GIB);
    let labels = d.join("labels");
    let mut l = header(&[60000]);
    l.extend(vec![1u8; 60000]);
    std::fs::write(&labels, l).unwrap();
    let pipe = format!("[stages.d]\nkind = \"idx\"\nimages = {:?}\nlabels = {:?}\n", s(&images), s(&labels));
    std::fs::write(d.join("i.toml"), &pipe).unwrap();
    let r = hesslab(&d, &["run", "i.toml", "--out", "out", "--max-memory", "1G"]);
    assert_fails("idx, long payload", &r, &["images.gz", "more data than its header's [60000, 28, 28]"]);
    assert!(r.2 < GIB, "idx: peak RSS {} MB", r.2 >> 20);
    gzip_of(&images, &header(&[4_000_000, 28, 28]), 0, 0);
    let r = hesslab(&d, &["run", "i.toml", "--out", "out", "--max-memory", "1G"]);
    assert_fails("idx, huge header", &r, &["images.gz", "the header's size needs about", "1.0 GiB is allowed by --max-memory"]);
    assert!(r.2 < GIB / 4, "idx: peak RSS {} MB", r.2 >> 20);
    untouched(&d);
    let _ = std::fs::remove_dir_all(&d);
}

// 3 ------------------------------------------------------------------ devices and FIFOs
#[test]
fn c3_devices_and_fifos_are_refused_as_inputs_without_blocking() {
    let d = sandbox("devices");
    let fifo = d.join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let r = hesslab(&d, &["validate", "/dev/zero"]);
    assert_fails("validate /dev/zero", &r, &["/dev/zero is a character device; inputs must be regular files"]);
    let r = hesslab(&d, &["validate", s(&fifo)]);
    assert_fails("validate fifo", &r, &["is a FIFO"]);
    for (kind, key, path, extra) in [
        ("digits", "path", "/dev/zero", ""),
        ("table", "path", "/dev/zero", ""),
        ("table", "path", s(&fifo), ""),
        ("idx", "images", s(&fifo), "labels = \"/dev/zero\"\n"),
        ("cifar10", "files", "/dev/zero", ""),
    ] {
        let value = if kind == "cifar10" { format!("[{path:?}]") } else { format!("{path:?}") };
        std::fs::write(d.join("x.toml"), format!("[stages.d]\nkind = \"{kind}\"\n{key} = {value}\n{extra}")).unwrap();
        for cmd in ["validate", "run"] {
            let r = hesslab(&d, &[cmd, "x.toml", "--out", "out"][..if cmd == "run" { 4 } else { 2 }]);
            assert_fails(&format!("{cmd} {kind}.{key} = {path}"), &r, &[&format!("key `stages.d.{key}`"), "inputs must be regular files"]);
        }
    }
    // A lock entry whose output names a device or a path out of the stage directory: the
    // run treats the entry as stale (no read of /dev/zero, no spin) and reruns the stage.
    small(&d);
    let lock_path = d.join("out/small/hesslab.lock");
    let mut lock: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    let outputs = lock["stages"]["main/eigen"]["outputs"].as_object_mut().unwrap();
    let entry = outputs.values().next().unwrap().clone();
    outputs.clear();
    outputs.insert("/dev/zero".into(), entry.clone());
    outputs.insert("../../../../sibling/keep/precious.txt".into(), entry);
    std::fs::write(&lock_path, serde_json::to_string(&lock).unwrap()).unwrap();
    let before = snapshot(&d.join("sibling"));
    let r = hesslab(&d, &["run", "p.toml", "--out", "out", "--verbose"]);
    assert!(r.0 == 0 && r.1.contains("running  eigen [main]"), "{}", r.1);
    assert_eq!(snapshot(&d.join("sibling")), before);
    let _ = std::fs::remove_dir_all(&d);
}

// 4 ------------------------------------------------------------------ lying artifacts
#[test]
fn c4_a_model_whose_metadata_lies_is_estimated_from_its_architecture() {
    use hesslab_pipeline::Port;
    let d = sandbox("lying");
    let arch = hesslab_model::Architecture {
        sizes: vec![4, 200, 200, 3],
        activation: hesslab_model::Activation::Tanh,
        bias: true,
        loss: hesslab_model::LossKind::CrossEntropy,
    };
    let p = arch.num_params();
    let net = hesslab_model::Network::from(hesslab_model::Mlp::new(arch, vec![0.01; p]));
    let m = hesslab_artifacts::Model { net, steps: 0, final_train_loss: 1.0, train_state: None, warning: None, imported: None };
    let path = d.join("model.parquet");
    write_port::<hesslab_artifacts::Model>(&path, &m, |meta| {
        meta.insert("num_params".into(), "10".into());
    });
    let facts = hesslab_pipeline::read_facts(&path, &hesslab_pipeline::port::<hesslab_artifacts::Model>()).unwrap();
    assert_eq!(facts.params, Some(p as u64), "P from what will be allocated, not from `num_params`");
    let a = hesslab_pipeline::read_artifact(&path, None).unwrap();
    let e = hesslab_artifacts::Model::decode(&a).unwrap_err().to_string();
    assert!(e.contains("metadata `num_params` says 10 parameters, the file holds 41803"), "{e}");
    // The dense Hessian of that model is estimated at its real size (and so refused by it).
    use hesslab_pipeline::StageKind;
    let mut inputs = hesslab_pipeline::InputFacts::new();
    inputs.insert("model".into(), facts);
    inputs.insert("dataset".into(), hesslab_pipeline::Facts { rows: Some(60), classes: Some(3), dim: Some(4), ..Default::default() });
    let est = hesslab_stages::CurvatureDense::estimate(&Default::default(), &inputs).unwrap();
    assert!(est.bytes >= 8 * (p as u64) * (p as u64), "{est}");
    untouched(&d);
    let _ = std::fs::remove_dir_all(&d);
}

// 5 ------------------------------------------------------------------ divergence that "succeeded"
#[test]
fn c5_divergence_fails_with_the_step_and_the_loss_unless_asked_for() {
    let d = sandbox("diverge");
    let text = SMALL.replace("max_steps = 20", "max_steps = 50\nlr = 1e3");
    std::fs::write(d.join("p.toml"), &text).unwrap();
    let r = hesslab(&d, &["run", "p.toml", "--out", "out"]);
    assert_fails("lr = 1e3", &r, &["stage `train`", "training diverged at step", "(lr = 1000): loss = ", "divergence_factor"]);
    assert!(!d.join("out/small/main/summary").exists(), "nothing downstream of a diverged run");
    // Studying the blow-up: the multiple off, the run goes on while the numbers are finite.
    let r = hesslab(&d, &["run", "p.toml", "--out", "out", "--set", "train.divergence_factor=0", "--set", "train.max_steps=2"]);
    assert_eq!(r.0, 0, "{}", r.1);
    // Non-finite from the start: the inputs are blamed, not the learning rate.
    std::fs::write(d.join("big.csv"), "a,b,label\n1e300,2e300,0\n-1e300,1e300,1\n3e300,1,0\n1,2e300,1\n").unwrap();
    std::fs::write(
        d.join("b.toml"),
        format!(
            "[stages.t]\nkind = \"table\"\npath = {:?}\ntest_fraction = 0.0\n[stages.train]\nkind = \"train\"\ndataset = \"t.dataset\"\nhidden = [3]\nloss = \"mse\"\n",
            s(&d.join("big.csv"))
        ),
    )
    .unwrap();
    let r = hesslab(&d, &["run", "b.toml", "--out", "out"]);
    assert_fails("1e300 inputs", &r, &["at the initial parameters", "largest |input| = 3e300", "rescale the inputs"]);
    assert!(!r.1.contains("lower the learning rate"), "{}", r.1);
    let r = hesslab(&d, &["validate", "p.toml", "--set", "train.divergence_factor=0.5"]);
    assert_fails("factor 0.5", &r, &["key `stages.train.divergence_factor`", "0 (off) or a finite number ≥ 1"]);
    untouched(&d);
    let _ = std::fs::remove_dir_all(&d);
}

// 6 ------------------------------------------------------------------ garbage numbers
fn eigenvalues_file(path: &Path, values: Vec<Option<f64>>) {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt32Array};
    let n = values.len() as u32;
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("rank", std::sync::Arc::new(UInt32Array::from((0..n).collect::<Vec<_>>()))),
        ("eigenvalue", std::sync::Arc::new(Float64Array::from(values))),
        ("residual", std::sync::Arc::new(Float64Array::from(vec![None::<f64>; n as usize]))),
    ];
    let b = RecordBatch::try_from_iter_with_nullable(cols.into_iter().map(|(n, a)| (n, a, true))).unwrap();
    hesslab_pipeline::write_batches_atomic(path, b.schema(), &[b], &Default::default()).unwrap();
}

#[test]
fn c6_garbage_numbers_are_refused_where_they_are_read() {
    use hesslab_artifacts::{Eigenvalues, Matrix, Trajectory};
    use hesslab_pipeline::{Port, read_artifact};
    let d = sandbox("garbage");
    let ev = d.join("eigenvalues.parquet");
    for (values, expect) in [
        (vec![Some(3.0), Some(f64::NAN), Some(1.0)], "column `eigenvalue` row 1 is NaN"),
        (vec![Some(3.0), None, Some(1.0)], "column `eigenvalue` row 1 is null"),
        (vec![Some(f64::INFINITY), Some(1.0)], "row 0 is inf"),
        (vec![Some(1.0), Some(3.0), Some(2.0)], "eigenvalues are not sorted: rank 0 is 1 but rank 1 is 3"),
    ] {
        eigenvalues_file(&ev, values);
        let e = Eigenvalues::decode(&read_artifact(&ev, None).unwrap()).unwrap_err().to_string();
        assert!(e.contains(expect), "{e}");
        let r = hesslab(&d, &["plot", s(&ev), "--out", "figs"]);
        assert_fails("plot", &r, &[expect]);
    }
    // A NaN matrix, and an asymmetric one.
    let dense = |a: faer::Mat<f64>| Matrix {
        dense: hesslab_hessian::DenseMatrix { matrix: std::sync::Arc::new(a), operator: "hessian".into(), symmetry_error: 0.0 },
        num_samples: None,
        loss: None,
        tensors: vec![],
        architecture: None,
        training_warning: None,
    };
    let mp = d.join("matrix.parquet");
    for (m, expect) in [
        (faer::Mat::from_fn(3, 3, |i, j| if i == 1 && j == 2 { f64::NAN } else { 1.0 }), "holds NaN"),
        (
            faer::Mat::from_fn(3, 3, |i, j| if i == 0 && j == 1 { 2.0 } else { 1.0 }),
            "the matrix is not symmetric: max|A − Aᵀ| / max|A| = 5.000e-1",
        ),
    ] {
        write_port::<Matrix>(&mp, &dense(m), |_| {});
        let e = Matrix::read(hesslab_pipeline::ArtifactReader::open(&mp, None).unwrap()).unwrap_err().to_string();
        assert!(e.contains(expect), "{e}");
    }
    // A NaN trajectory snapshot.
    let t = Trajectory {
        snapshots: vec![(0, vec![0.5, 0.5]), (10, vec![0.5, f64::NAN])],
        optimizer: None,
        architecture: Some(common::tiny_model().arch()),
    };
    let tp = d.join("trajectory.parquet");
    write_port::<Trajectory>(&tp, &t, |_| {});
    let e = Trajectory::decode(&read_artifact(&tp, None).unwrap()).unwrap_err().to_string();
    assert!(e.contains("the snapshot of step 10 holds NaN at parameter 1"), "{e}");
    // Parameters that make a result meaningless, at validate time.
    std::fs::write(d.join("p.toml"), SMALL).unwrap();
    let r = hesslab(&d, &["validate", "p.toml", "--set", "train.loss=\"logistic\""]);
    assert_fails("logistic, 3 classes", &r, &["key `stages.train.loss`", "needs 2 classes, the dataset has 3"]);
    let r = hesslab(&d, &["validate", "p.toml", "--set", "data.classes=1"]);
    assert_fails("one class", &r, &["key `stages.train.dataset`", "a classifier needs at least 2"]);
    // A logistic model on 3-class data at the curvature stage (trained on other data).
    let two = SMALL
        .replace("classes = 3", "classes = 2")
        .replace("[stages.hessian]", "[stages.data3]\nkind = \"gaussian_mixture\"\nclasses = 3\ndim = 4\nsamples = 60\n[stages.hessian]")
        .replace(
            "model = \"train.model\"\ndataset = \"data.dataset\"\n[stages.eigen]",
            "model = \"train.model\"\ndataset = \"data3.dataset\"\n[stages.eigen]",
        );
    std::fs::write(d.join("l.toml"), two.replace("hidden = [5]", "hidden = [5]\nloss = \"logistic\"")).unwrap();
    let r = hesslab(&d, &["run", "l.toml", "--out", "out"]);
    assert_fails("logistic model, 3-class data", &r, &["stage `hessian`", "the model's loss is \"logistic\"", "the dataset has 3 classes"]);
    // An all-NaN log draws nothing: said, not blank axes.
    let log = hesslab_artifacts::Log {
        metrics: hesslab_model::TrainLog {
            step: vec![0, 1],
            epoch: vec![0.0, 1.0],
            train_loss: vec![f64::NAN; 2],
            train_acc: vec![f64::NAN; 2],
            test_loss: vec![f64::NAN; 2],
            test_acc: vec![f64::NAN; 2],
            grad_norm: vec![f64::NAN; 2],
            ..Default::default()
        },
        architecture: None,
        lr: None,
        continued: None,
        warning: None,
    };
    let lp = d.join("log.parquet");
    write_port::<hesslab_artifacts::Log>(&lp, &log, |_| {});
    let r = hesslab(&d, &["plot", s(&lp), "--out", "figs"]);
    assert_fails("all-NaN log", &r, &["nothing to draw", "no finite values"]);
    untouched(&d);
    let _ = std::fs::remove_dir_all(&d);
}

// 7 ------------------------------------------------------------------ caching across versions
#[test]
fn c7_outputs_of_another_hesslab_version_are_rerun_and_the_reason_said() {
    let d = sandbox("version");
    small(&d);
    let lock_path = d.join("out/small/hesslab.lock");
    let mut lock: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    let entry = &mut lock["stages"]["main/eigen"];
    assert_eq!(entry["hesslab_version"], env!("CARGO_PKG_VERSION"));
    // What an older hesslab recorded: its version, and a key computed without this one.
    entry["hesslab_version"] = "0.1.0".into();
    entry["key"] = "0123abcd".into();
    std::fs::write(&lock_path, serde_json::to_string(&lock).unwrap()).unwrap();
    let r = hesslab(&d, &["run", "p.toml", "--out", "out", "--verbose"]);
    assert_eq!(r.0, 0, "{}", r.1);
    assert!(
        r.1.contains(&format!("rerun    eigen [main] (its outputs were made by hesslab 0.1.0; this is {})", env!("CARGO_PKG_VERSION"))),
        "{}",
        r.1
    );
    assert!(r.1.contains("skipped  train [main] (up to date)"), "{}", r.1);
    untouched(&d);
    let _ = std::fs::remove_dir_all(&d);
}

// 8 ------------------------------------------------------------------ small ones
#[test]
fn c8_small_ones() {
    let d = sandbox("small");
    let p = small(&d);
    // An invalid-JSON lock is said, kept and rebuilt.
    let lock = d.join("out/small/hesslab.lock");
    std::fs::write(&lock, b"{ not json").unwrap();
    let r = hesslab(&d, &["run", s(&p), "--out", "out"]);
    assert_eq!(r.0, 0, "{}", r.1);
    assert!(r.1.contains("is not a valid lock file") && r.1.contains("kept as") && r.1.contains("hesslab.lock.invalid"), "{}", r.1);
    assert_eq!(std::fs::read(d.join("out/small/hesslab.lock.invalid")).unwrap(), b"{ not json");
    assert!(serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&lock).unwrap()).is_ok());
    // --set with a line break in the value.
    let r = hesslab(&d, &["validate", s(&p), "--set", "train.lr=0.1\nmax_steps = 5"]);
    assert_fails("--set newline", &r, &["the value contains a line break"]);
    // Too large, not "negative".
    let heat = SMALL.to_string() + "[stages.heat]\nkind = \"heatmap\"\nmatrix = \"hessian.matrix\"\nsize = 5000000000\n";
    std::fs::write(d.join("h.toml"), heat).unwrap();
    let r = hesslab(&d, &["validate", "h.toml"]);
    assert_fails("too large", &r, &["key `stages.heat.size`", "5000000000 is too large; expected an integer from 0 to 4294967295"]);
    assert!(!r.1.contains("non-negative"), "{}", r.1);
    // `plot`'s default output is not the cached stage directory.
    let eig = d.join("out/small/main/eigen/eigenvalues.parquet");
    let before = snapshot(&d.join("out/small/main/eigen"));
    let r = hesslab(&d, &["plot", s(&eig)]);
    assert_eq!(r.0, 0, "{}", r.1);
    assert!(d.join("plots/main/eigen/top.png").exists(), "{}", r.1);
    assert_eq!(snapshot(&d.join("out/small/main/eigen")), before);
    // An IDX header error is the data's, not `train.hidden`'s.
    let images = d.join("images");
    std::fs::write(&images, [0u8, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 28]).unwrap();
    std::fs::write(
        d.join("i.toml"),
        format!(
            "[stages.d]\nkind = \"idx\"\nimages = {:?}\nlabels = {:?}\n[stages.t]\nkind = \"train\"\ndataset = \"d.dataset\"\nhidden = [4]\n",
            s(&images),
            s(&images)
        ),
    )
    .unwrap();
    let r = hesslab(&d, &["validate", "i.toml"]);
    assert_fails("idx header", &r, &["key `stages.d.images`", "[5, 0, 28]"]);
    assert!(!r.1.contains("stages.t.hidden"), "{}", r.1);
    untouched(&d);
    let _ = std::fs::remove_dir_all(&d);
}
