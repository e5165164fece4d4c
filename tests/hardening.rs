//! Hostile input, one test per finding of the hardening review (issue #10): each failed (panic,
//! hang, stray write, silent loss, unclear message) before the fix and passes now.
use hesslab_pipeline::{Error, PipelineFile, Plan, RunOptions, Runner, StageContext, StageError, StageKind, read_artifact};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::{SMALL, full_error};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-hard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn build(text: &str, set: &[&str]) -> Result<Plan, Error> {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    PipelineFile::parse(Path::new("p.toml"), text.to_string(), &set).and_then(|pf| Plan::build(pf, &hesslab::registry()))
}

fn validate_err(text: &str, set: &[&str]) -> String {
    match build(text, set) {
        Ok(_) => panic!("validated, expected an error:\n{text}\n--set {set:?}"),
        Err(e) => full_error(&e),
    }
}

fn run_text(text: &str, out: &Path, opts: RunOptions) -> Result<(), String> {
    let mut pf = PipelineFile::parse(Path::new("p.toml"), text.to_string(), &[]).map_err(|e| full_error(&e))?;
    pf.out = out.to_path_buf();
    let plan = Plan::build(pf, &hesslab::registry()).map_err(|e| full_error(&e))?;
    Runner::run(&plan, &opts).map(|_| ()).map_err(|e| full_error(&e))
}

/// Every file and directory below `root`, relative.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn leftovers(root: &Path) -> Vec<PathBuf> {
    tree(root).into_iter().filter(|p| p.file_name().is_some_and(|n| hesslab_pipeline::cleanup::is_leftover(&n.to_string_lossy()))).collect()
}

// 1 ------------------------------------------------------------------ plan panics
#[test]
fn f1_a_dependency_without_a_valid_kind_is_a_diagnostic_not_a_panic() {
    let base = "[stages.data]\n{KIND}\n[stages.train]\nkind = \"train\"\ndataset = \"data.dataset\"\n";
    for (kind, expect) in [
        ("kind = \"gaussian_mixtur\"", "unknown stage kind `gaussian_mixtur` (did you mean `gaussian_mixture`?)"),
        ("", "stage has no `kind"),
        ("kind = 5", "`kind` must be a string"),
    ] {
        let text = base.replace("{KIND}", kind);
        for cmd in ["validate", "dag"] {
            let e = validate_err(&text, &[]);
            assert!(e.contains(expect), "{cmd}: {e}");
        }
    }
    let e = validate_err(&base.replace("{KIND}", "kind = \"gaussian_mixture\""), &["data.kind=bogus"]);
    assert!(e.contains("unknown stage kind `bogus`"), "{e}");
    // A cycle through a stage without a kind, too.
    let e = validate_err("[stages.a]\nkind = \"train\"\ndataset = \"b.dataset\"\n[stages.b]\nkind = \"nope\"\nx = \"a.model\"\n", &[]);
    assert!(e.contains("unknown stage kind `nope`"), "{e}");
}

// 2 ------------------------------------------------------------------ panics inside stages
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct NoParams {}

struct Panics;
impl StageKind for Panics {
    type Params = NoParams;
    const KIND: &'static str = "test_panics";
    const VERSION: u32 = 1;
    const DOC: &'static str = "panics (test)";
    const OUTPUTS: &'static [hesslab_pipeline::PortSpec] = &[hesslab_pipeline::port::<hesslab_artifacts::Dataset>()];
    fn run(_: &NoParams, ctx: &mut StageContext) -> Result<(), StageError> {
        ctx.write_file("partial.txt", b"half").unwrap();
        let v: Vec<u32> = Vec::new();
        let _ = v[3]; // an index out of bounds, as a bug would
        Ok(())
    }
}

#[test]
fn f2_a_panicking_stage_is_an_error_naming_it_and_never_a_hang() {
    let t = tmp("panic");
    let text = format!(
        "[pipeline]\nname = \"p\"\nout = \"{}\"\n[stages.boom]\nkind = \"test_panics\"\n[stages.slow]\nkind = \"gaussian_mixture\"\nsamples = 20000\ndim = 50\n[stages.after]\nkind = \"train\"\ndataset = \"boom.dataset\"\n",
        t.display()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reg = hesslab::registry();
        reg.add::<Panics>();
        let pf = PipelineFile::parse(Path::new("p.toml"), text, &[]).unwrap();
        let plan = Plan::build(pf, &reg).unwrap();
        let _ = tx.send(Runner::run(&plan, &RunOptions { jobs: 2, ..Default::default() }).map(|_| ()).map_err(|e| full_error(&e)));
    });
    let result = rx.recv_timeout(Duration::from_secs(120)).expect("the run hung after a panic in a stage");
    let e = result.expect_err("a panicking stage must fail the run");
    assert!(
        e.contains("internal error in stage `boom` (kind test_panics") && e.contains("index out of bounds") && e.contains("please report"),
        "{e}"
    );
    assert!(!t.join("p/main/boom").exists() && !t.join("p/main/after").exists(), "{:?}", tree(&t));
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn f2_the_reported_panic_triggers_are_errors() {
    // hidden = [i64::MAX]: a parameter error at validate, not a capacity overflow.
    let e = validate_err(
        "[stages.d]\nkind = \"digits\"\n[stages.t]\nkind = \"train\"\ndataset = \"d.dataset\"\nhidden = [9223372036854775807]\n",
        &[],
    );
    assert!(e.contains("key `stages.t.hidden`") && e.contains("larger than"), "{e}");
    // heat map sizes whose pixel count overflowed u32.
    let e = validate_err(
        "[stages.h]\nkind = \"heatmap\"\nmatrix = \"x.matrix\"\nsize = 4000000000\n[stages.x]\nkind = \"curvature_dense\"\nmodel = \"t.model\"\ndataset = \"d.dataset\"\n[stages.d]\nkind = \"digits\"\n[stages.t]\nkind = \"train\"\ndataset = \"d.dataset\"\n",
        &[],
    );
    assert!(e.contains("key `stages.h.size`"), "{e}");
    let big = faer::Mat::<f64>::identity(3, 3);
    assert!(hesslab_analysis::plots::heatmap_png(&big, u32::MAX).is_err());
    // A table with no numeric feature column.
    let t = tmp("table");
    std::fs::write(t.join("only_label.csv"), "label,name\n0,a\n1,b\n").unwrap();
    let text = format!("[stages.t]\nkind = \"table\"\npath = \"{}\"\nfeatures = []\n", t.join("only_label.csv").display());
    let e = run_text(&text.replace("features = []\n", ""), &t.join("out"), RunOptions { jobs: 2, ..Default::default() }).unwrap_err();
    assert!(e.contains("`name`") || e.contains("no feature column"), "{e}");
    std::fs::write(t.join("label_only.csv"), "label\n0\n1\n").unwrap();
    let text = format!("[stages.t]\nkind = \"table\"\npath = \"{}\"\n", t.join("label_only.csv").display());
    let e = run_text(&text, &t.join("out"), RunOptions { jobs: 2, ..Default::default() }).unwrap_err();
    assert!(e.contains("has no feature column besides the label"), "{e}");
    // A model artifact whose architecture (milestone-1 form or module list) is absurd.
    use hesslab_pipeline::Port;
    let m = hesslab_artifacts::Model {
        net: common::tiny_model(),
        steps: 0,
        final_train_loss: f64::NAN,
        train_state: None,
        warning: None,
        imported: None,
    };
    let legacy = |sizes: &str| format!(r#"{{"sizes":{sizes},"activation":"relu","bias":false,"loss":"mse"}}"#);
    let modules = |m: &str, shape: &str| format!(r#"{{"modules":{m},"input_shape":{shape},"loss":"mse"}}"#);
    let linear = r#"{"module":"Linear","in_features":2,"out_features":1,"bias":false}"#;
    let hostile = [
        legacy("[3]"),
        legacy("[]"),
        legacy("[4294967296, 4294967296]"),
        legacy("[2, 0, 1]"),
        modules("[]", "[2]"),
        modules(r#"[{"module":"Linear","in_features":3,"out_features":1,"bias":false}]"#, "[2]"),
        modules(r#"[{"module":"Conv2d","in_channels":1,"out_channels":1,"kernel_size":9}]"#, "[1,2,2]"),
        modules(r#"[{"module":"Linear","in_features":2,"out_features":4294967295}]"#, "[2]"),
        modules(&format!(r#"[{{"module":"Softmax"}},{linear}]"#), "[2]"),
        modules(&format!(r#"[{{"module":"Flatten"}},{{"module":"MaxPool2d","kernel_size":2}},{linear}]"#), "[2]"),
        modules(&format!("[{linear}]"), "[0,0,0,0]"),
        modules(&format!("[{linear}]"), "[4294967296,4294967296,4294967296]"),
        modules(r#""x""#, "[2]"),
    ];
    for sizes in &hostile {
        let p = t.join("model.parquet");
        common::write_port::<hesslab_artifacts::Model>(&p, &m, |meta| {
            meta.insert("architecture".into(), sizes.clone());
        });
        let a = read_artifact(&p, None).unwrap();
        let e = hesslab_artifacts::Model::decode(&a).err().unwrap_or_else(|| panic!("sizes {sizes} accepted")).to_string();
        assert!(e.contains("architecture"), "{sizes}: {e}");
    }
    let _ = std::fs::remove_dir_all(&t);
}

// 3 ------------------------------------------------------------------ names are data
#[test]
fn f3_hostile_names_are_rejected_at_validate() {
    for name in ["..", ".", "", "../x", "/abs/dir", "a/b", "a.b", "a b"] {
        let e = validate_err(&format!("[pipeline]\nname = {name:?}\n[stages.d]\nkind = \"digits\"\n"), &[]);
        assert!(e.contains("key `pipeline.name`"), "{name:?}: {e}");
        let e = validate_err(&format!("[stages.{name:?}]\nkind = \"digits\"\n"), &[]);
        assert!(e.contains("stage name"), "{name:?}: {e}");
    }
    let e = validate_err("[stages.d]\nkind = \"digits\"\n", &["pipeline.name=.."]);
    assert!(e.contains("pipeline name `..`"), "{e}");
    // Duplicate sweep values used to make two members with one directory.
    let e = validate_err("[sweep]\nd.n = [100, 100]\n[stages.d]\nkind = \"digits\"\n", &[]);
    assert!(e.contains("sweep value 100 appears more than once"), "{e}");
}

#[test]
fn f3_no_input_creates_or_deletes_a_file_outside_the_output_directory() {
    let root = tmp("contain");
    let sandbox = root.join("sandbox");
    std::fs::create_dir_all(sandbox.join("keep")).unwrap();
    std::fs::write(sandbox.join("keep/file"), b"precious").unwrap();
    std::fs::write(root.join("F.csv.gz"), b"not digits").unwrap();
    std::fs::write(root.join("F.csv"), b"a,label\n1,0\n2,1\n3,0\n4,1\n").unwrap();
    let out = sandbox.join("deep/er/out");
    let hostile =
        ["../../../../x", "../../keep", "/abs/dir", "..", ".", "", "a/b", "x\\y", "\u{0}", "../../F.csv.gz", ".staging-d-1", "report.html"];
    let before = tree(&root);
    for (i, h) in hostile.iter().enumerate() {
        let text = format!(
            "[pipeline]\nname = \"c{i}\"\n[sweep]\nd.scale = [\"unit\", \"raw\"]\nt.activation = [\"relu\"]\ns.zero_tol = [1e-6]\n[stages.d]\nkind = \"digits\"\nn = 100\n[stages.t]\nkind = \"train\"\ndataset = \"d.dataset\"\nhidden = [3]\nmax_steps = 2\n[stages.s]\nkind = \"table\"\npath = {h:?}\nlabel = {h:?}\n"
        );
        // Table paths are inputs (read, never written); a sweep over hostile strings only
        // names directories.
        let _ = run_text(&text, &out, RunOptions { jobs: 2, ..Default::default() });
        // (A sweep over a free-form string that is not a path: input paths that do not exist
        // are refused at validation now, before any member directory is made.)
        let swept = format!(
            "[pipeline]\nname = \"s{i}\"\n[sweep]\nd.label = [{h:?}, \"label\"]\n[stages.d]\nkind = \"table\"\npath = \"{}\"\n",
            root.join("F.csv").display()
        );
        let _ = run_text(&swept, &out, RunOptions { jobs: 2, ..Default::default() });
        for name in [*h, "ok"] {
            let named = format!("[pipeline]\nname = {name:?}\n[stages.{h:?}]\nkind = \"digits\"\nn = 50\n");
            let _ = run_text(&named, &out, RunOptions::default());
        }
    }
    let after = tree(&root);
    // New paths must lie inside --out (or be the directories leading to it, which the run creates).
    let outside: Vec<_> =
        after.iter().filter(|p| !before.contains(p) && !root.join(p).starts_with(&out) && !out.starts_with(root.join(p))).collect();
    assert!(outside.is_empty(), "files created outside --out: {outside:?}");
    let gone: Vec<_> = before.iter().filter(|p| !after.contains(p)).collect();
    assert!(gone.is_empty(), "files deleted: {gone:?}");
    assert_eq!(std::fs::read(sandbox.join("keep/file")).unwrap(), b"precious");
    // Hostile sweep values did run, under hashed directory names inside --out.
    let dirs: Vec<String> =
        std::fs::read_dir(out.join("s0")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(dirs.iter().any(|d| d.starts_with("d.label=x~")), "{dirs:?}");
    let lock = std::fs::read_to_string(out.join("s0/hesslab.lock")).unwrap();
    assert!(lock.contains("../../../../x"), "the lock maps hashed directories back to their values");
    let _ = std::fs::remove_dir_all(&root);
}

// 4 ------------------------------------------------------------------ estimates before allocating
#[test]
fn f4_a_stage_that_does_not_fit_fails_before_allocating_with_the_number() {
    let t = tmp("memory");
    let text = SMALL.replace("hidden = [5]", "hidden = [200, 200]");
    let plan = build(&text, &[]).unwrap();
    assert!(plan.describe().contains("memory≈") && plan.describe().contains("dense 41803×41803 matrix"), "{}", plan.describe());
    let e = run_text(&text, &t.join("out"), RunOptions { max_memory: Some(1 << 30), ..Default::default() }).unwrap_err();
    assert!(
        e.contains("stage `hessian` (kind curvature_dense, member `main`) needs about 13.0 GiB (dense 41803×41803 matrix")
            && e.contains("but 1.0 GiB is allowed by --max-memory")
            && e.contains("--max-memory"),
        "{e}"
    );
    // BatchNorm with batch statistics holds every sample's tangents at once: counted.
    let batch = build(&text, &["hessian.batch_norm=\"batch\""]).unwrap();
    assert!(batch.describe().contains("every sample's tangents (batch_norm = \"batch\")"), "{}", batch.describe());
    // Known from the plan (issue #44): refused before training spent its time.
    assert!(e.contains("checked before any stage ran"), "{e}");
    assert!(!t.join("out/small/main/train").exists(), "no stage ran");
    // `validate` says the same, at the stage's table.
    std::fs::write(t.join("big.toml"), &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hesslab"))
        .args(["validate", "big.toml", "--max-memory", "1G"])
        .current_dir(&t)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("big.toml:15:9: key `stages.hessian`: needs about 13.0 GiB")
            && err.contains("1.0 GiB is allowed by --max-memory"),
        "{err}"
    );
    // Absurd data sizes: the generator never starts.
    let e = run_text(
        "[stages.d]\nkind = \"gaussian_mixture\"\nsamples = 4000000000000\ndim = 1000000\n",
        &t.join("out"),
        RunOptions::default(),
    )
    .unwrap_err();
    assert!(e.contains("needs about more than 16 EiB") || e.contains("needs about"), "{e}");
    // A 1000×1000 sweep is refused at validate, quickly.
    let values: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let text = format!(
        "[sweep]\nd.n = [{0}]\nd.test_fraction = [{1}]\n[stages.d]\nkind = \"digits\"\n",
        values.join(","),
        (0..1000).map(|i| format!("{}", i as f64 / 2000.0)).collect::<Vec<_>>().join(",")
    );
    let t0 = Instant::now();
    let e = validate_err(&text, &[]);
    assert!(e.contains("expands to 1000000 members; at most 10000"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let _ = std::fs::remove_dir_all(&t);
}

// 5 ------------------------------------------------------------------ non-finite parameters
#[test]
fn f5_nan_and_infinite_parameters_are_named_at_validate() {
    for (stage, key) in [
        ("train", "init_std"),
        ("data", "mean_scale"),
        ("train", "target_loss"),
        ("train", "lr"),
        ("eigen", "tol"),
        ("eigen", "max_seconds"),
        ("summary", "zero_tol"),
        ("summary", "cutoff"),
    ] {
        for v in ["nan", "inf", "-inf"] {
            let e = validate_err(SMALL, &[&format!("{stage}.{key}={v}")]);
            assert!(e.contains(&format!("key `stages.{stage}.{key}`")) && e.contains("is not a finite number"), "{stage}.{key}={v}: {e}");
        }
    }
    for (set, key) in [("train.init_std=-1.0", "init_std"), ("train.target_loss=-1.0", "target_loss"), ("summary.cutoff=-0.5", "cutoff")] {
        let e = validate_err(SMALL, &[set]);
        assert!(e.contains(&format!("key `stages.{}`", set.split('=').next().unwrap())) && e.contains(key), "{set}: {e}");
    }
}

// 6 ------------------------------------------------------------------ leftovers
#[test]
fn f6_leftovers_of_killed_runs_are_removed_and_failed_writes_leave_nothing() {
    let t = tmp("leftovers");
    let out = t.join("out");
    run_text(SMALL, &out, RunOptions::default()).unwrap();
    let member = out.join("small/main");
    std::fs::create_dir_all(member.join(".staging-train-999999/x")).unwrap();
    std::fs::create_dir_all(member.join(".old-eigen-4")).unwrap();
    std::fs::write(member.join("hessian/matrix.parquet.tmp-123456"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(out.join("small/hesslab.lock.tmp-77"), b"{").unwrap();
    std::fs::write(out.join("small/report.html.tmp-78"), b"<").unwrap();
    run_text(SMALL, &out, RunOptions::default()).unwrap();
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
    // A failed atomic write (the destination is a directory) removes its temporary file.
    let dest = t.join("blocked.parquet");
    std::fs::create_dir_all(dest.join("inside")).unwrap();
    let b = arrow_array::RecordBatch::try_from_iter([(
        "v",
        std::sync::Arc::new(arrow_array::Float64Array::from(vec![1.0])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    assert!(hesslab_pipeline::write_batches_atomic(&dest, b.schema(), &[b], &Default::default()).is_err());
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
    let _ = std::fs::remove_dir_all(&t);
}

// 7 ------------------------------------------------------------------ linear validation
fn bad_stages(n: usize) -> String {
    (0..n).map(|i| format!("[stages.s{i}]\nkind = \"digits\"\nn = \"x\"\nwat = {i}\n")).collect()
}

#[test]
fn f7_validation_time_is_linear_in_the_number_of_problems() {
    let time = |n: usize| {
        let text = bad_stages(n);
        let t0 = Instant::now();
        let e = validate_err(&text, &[]);
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(e.matches("\n  ").count(), 2 * n, "every problem is reported");
        dt
    };
    let _ = time(200); // warm up
    let (t2k, t8k) = (time(2000), time(8000));
    // Quadratic growth would make the ratio ≥ 16; allow noise up to 8.
    assert!(t8k < 8.0 * t2k.max(0.05) && t8k < 30.0, "2000 bad stages: {t2k:.2}s, 8000: {t8k:.2}s");
}

// 8 ------------------------------------------------------------------ clear messages
#[test]
fn f8_messages_name_the_real_problem() {
    let t = tmp("messages");
    // A CSV with a byte-order mark: the first column keeps its name.
    std::fs::write(t.join("bom.csv"), "\u{feff}f1,f2,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n").unwrap();
    let text = format!(
        "[stages.t]\nkind = \"table\"\npath = \"{}\"\nfeatures = [\"f1\", \"f2\"]\ntest_fraction = 0.0\n",
        t.join("bom.csv").display()
    );
    run_text(&text, &t.join("out"), RunOptions::default()).unwrap();
    // Split values other than train/test.
    std::fs::write(t.join("split.csv"), "f1,label,part\n1,0,train\n2,1,Test\n").unwrap();
    let text = format!("[stages.t]\nkind = \"table\"\npath = \"{}\"\nsplit_column = \"part\"\n", t.join("split.csv").display());
    let e = run_text(&text, &t.join("out2"), RunOptions::default()).unwrap_err();
    assert!(e.contains("column `part` row 1: `Test` is neither \"train\" nor \"test\""), "{e}");
    // Parquet columns: unsigned and small integers and booleans are read; other types are named.
    use arrow_array::{ArrayRef, BooleanArray, DictionaryArray, Float64Array, RecordBatch, UInt64Array, types::Int32Type};
    use std::sync::Arc;
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("f", Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5, 3.5]))),
        ("flag", Arc::new(BooleanArray::from(vec![true, false, true, false]))),
        ("label", Arc::new(UInt64Array::from(vec![0u64, 1, 0, 1]))),
        ("dict", Arc::new(DictionaryArray::<Int32Type>::from_iter(["a", "b", "a", "b"]))),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let p = t.join("types.parquet");
    hesslab_pipeline::write_batches_atomic(&p, batch.schema(), &[batch], &Default::default()).unwrap();
    let ok = format!("[stages.t]\nkind = \"table\"\npath = \"{}\"\nfeatures = [\"f\", \"flag\"]\ntest_fraction = 0.0\n", p.display());
    run_text(&ok, &t.join("out3"), RunOptions::default()).unwrap();
    let e = run_text(&ok.replace("\"flag\"]", "\"dict\"]"), &t.join("out4"), RunOptions::default()).unwrap_err();
    assert!(e.contains("column `dict` has type Dictionary") && e.contains("cannot read"), "{e}");
    // A huge learning rate is printed in short form.
    let e = validate_err(SMALL, &["train.lr=-1e308"]);
    assert!(e.contains("-1e308") && !e.contains("00000000000"), "{e}");
    let e = run_text(&SMALL.replace("max_steps = 20", "max_steps = 20\nlr = 1e308"), &t.join("out5"), RunOptions::default()).unwrap_err();
    assert!(e.contains("lr = 1e308") && !e.contains("00000000000") && e.len() < 400, "{e}");
    let _ = std::fs::remove_dir_all(&t);
}

// 9 ------------------------------------------------------------------ the cache and same-size corruption
#[test]
fn f9_a_same_size_corruption_with_the_mtime_restored_is_detected() {
    let t = tmp("cache");
    let out = t.join("out");
    run_text(SMALL, &out, RunOptions::default()).unwrap();
    let p = out.join("small/main/data/dataset.parquet");
    let good = std::fs::read(&p).unwrap();
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&p, &bad).unwrap();
    std::fs::File::options().write(true).open(&p).unwrap().set_modified(mtime).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), mtime);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), good.len() as u64);
    run_text(SMALL, &out, RunOptions::default()).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), good, "the corrupted artifact was rebuilt");
    let _ = std::fs::remove_dir_all(&t);
}

/// `validate` reads IDX headers to check layer shapes; a FIFO named as the images file must not
/// block it (nothing ever writes to it here), and is refused as an input (issue #35: it would
/// block the run).
#[test]
fn validate_does_not_block_on_a_fifo_named_as_an_idx_file() {
    let t = tmp("fifo");
    let fifo = t.join("images");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let text = format!(
        "[stages.data]\nkind = \"idx\"\nimages = {:?}\nlabels = {:?}\n[stages.train]\nkind = \"train\"\ndataset = \"data.dataset\"\nlayers = [\"flatten\", {{ linear = 10 }}]\n",
        fifo.display().to_string(),
        fifo.display().to_string()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(build(&text, &[]).err().map(|e| full_error(&e)));
    });
    let e = rx.recv_timeout(Duration::from_secs(20)).expect("validate blocked on a FIFO").expect("a FIFO validated as an input");
    assert!(e.contains("key `stages.data.images`") && e.contains("is a FIFO (named pipe); inputs must be regular files"), "{e}");
    let _ = std::fs::remove_dir_all(&t);
}

/// Problems in `--set` overrides are located "in --set", not at a line of the file they never
/// were in, and a misspelt stage gets a suggestion (issue #44, messages).
#[test]
fn set_overrides_are_located_in_set_and_suggest_near_names() {
    let e = validate_err(SMALL, &["trian.lr=0.1"]);
    assert!(e.contains("p.toml: in --set: key `trian.lr`") && e.contains("no stage named `trian` (did you mean `train`?)"), "{e}");
    let e = validate_err(SMALL, &["train.lrr=0.1"]);
    assert!(e.contains("p.toml: in --set: key `stages.train.lrr`") && e.contains("(did you mean `lr`?)"), "{e}");
    let e = validate_err(SMALL, &["train.lr=-1"]);
    assert!(e.contains("p.toml: in --set: key `stages.train.lr`: lr must be > 0"), "{e}");
    // A problem in the file is still located at its line.
    let e = validate_err(&SMALL.replace("max_steps = 20", "max_steps = 20\nlr = -1"), &[]);
    assert!(e.contains("p.toml:15:1: key `stages.train.lr`") && !e.contains("in --set"), "{e}");
}

/// `hesslab show` names its columns: a one-row artifact (a summary) as name/value lines, a
/// table under a header of its column names (issue #44).
#[test]
fn show_names_the_columns() {
    let t = tmp("show");
    run_text(SMALL, &t.join("out"), RunOptions::default()).unwrap();
    let member = t.join("out/small/main");
    let s = hesslab::show::show(&member.join("summary/summary.parquet"), 10).unwrap();
    let rows = &s[s.find("rows:\n").unwrap()..];
    assert!(rows.lines().any(|l| l.trim_start().starts_with("outliers_gap ") && l.split_whitespace().nth(1).is_some()), "{s}");
    assert!(rows.lines().any(|l| l.trim_start().starts_with("num_eigenvalues ")), "{s}");
    let s = hesslab::show::show(&member.join("eigen/eigenvalues.parquet"), 3).unwrap();
    let rows: Vec<&str> = s[s.find("rows:\n").unwrap()..].lines().skip(1).collect();
    assert!(rows[0].split('|').map(str::trim).eq(["rank", "eigenvalue", "residual"]), "{s}");
    assert_eq!(rows.len(), 5, "header, 3 rows, the rest counted: {s}");
    assert!(rows[4].contains("more rows"), "{s}");
    let _ = std::fs::remove_dir_all(&t);
}

/// One missing bracket is one problem, not the parser's fifty follow-on complaints; a missing
/// file is said once, not once per error in the chain (issue #44).
#[test]
fn a_syntax_error_is_one_message_and_a_cause_is_said_once() {
    let broken = SMALL.replace("hidden = [5]", "hidden = [5, 6\nmax_steps = [1");
    let e = validate_err(&broken, &[]);
    assert!(e.starts_with("1 problem(s) found:") && e.contains("TOML syntax error") && e.contains("fix it first"), "{e}");
    let t = tmp("cause");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hesslab"))
        .args(["validate", "no-such-pipeline.toml"])
        .current_dir(&t)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.matches("No such file or directory").count() == 1, "{err}");
    let _ = std::fs::remove_dir_all(&t);
}

/// `hesslab stages` gives the real default of parameters a pipeline's serialized form omits,
/// and `dag` counts a trajectory's snapshots, not its dataset's samples (issue #44).
#[test]
fn stages_show_real_defaults_and_dag_counts_snapshots() {
    let s = hesslab::describe_stages(&hesslab::registry(), None).unwrap();
    for want in ["partial: boolean = false", "plot: boolean = true", "sharpness_every: integer = 0", "divergence_factor: number = 10000.0"]
    {
        assert!(s.contains(want), "no `{want}` in `hesslab stages`");
    }
    assert!(!s.contains(" = -\n"), "a parameter without its default:\n{s}");
    let text = SMALL.replace("max_steps = 20", "max_steps = 30\nsnapshot_every = 10")
        + "[stages.along]\nkind = \"spectra_along_training\"\ntrajectory = \"train.trajectory\"\ndataset = \"data.dataset\"\nk = 3\n";
    let d = build(&text, &[]).unwrap().describe();
    assert!(d.contains("(4 snapshots +"), "{d}");
}

/// Names a PyTorch user would write that hesslab does not have yet are "not supported yet",
/// with what is, rather than "unknown" (issue #44).
#[test]
fn pytorch_names_not_supported_yet_are_said_so() {
    let e = validate_err(&SMALL.replace("hidden = [5]", "hidden = [5]\noptimizer = \"adam\"\nweight_decay = 0.1\nscheduler = 1"), &[]);
    assert!(
        e.contains("parameter `weight_decay` is not supported yet by kind `train`: an optimizer's arguments go in its table")
            && e.contains("parameter `scheduler` is not supported yet by kind `train`: the schedule is `schedule`"),
        "{e}"
    );
    let e = validate_err(&SMALL.replace("hidden = [5]", "hidden = [5]\noptimizer = { adam = { nesterov = true } }"), &[]);
    assert!(e.contains("optimizer `adam`: unknown field `nesterov`"), "{e}");
    assert!(!e.contains("unknown parameter"), "{e}");
    let e = validate_err(&SMALL.replace("hidden = [5]", "layers = [\"group_norm\", { linear = 3 }]"), &[]);
    assert!(e.contains("layer `group_norm` (GroupNorm in PyTorch) is not supported yet; supported: relu"), "{e}");
    let e = validate_err(&SMALL.replace("hidden = [5]", "layers = [\"batch_norm1d\", { linear = 3 }]"), &[]);
    assert!(e.contains("layer `batch_norm1d` is written batch_norm (BatchNorm1d on vectors"), "{e}");
    let e = validate_err(&SMALL.replace("hidden = [5]", "layers = [\"relux\", { linear = 3 }]"), &[]);
    assert!(e.contains("unknown layer `relux`"), "{e}");
}
