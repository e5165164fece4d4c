//! Every optimizer and schedule against `torch.optim` (committed fixture made by
//! `scripts/torch_optim.py`): the same convnet, data and initial parameters, 50 full-batch
//! steps; hesslab's parameters equal PyTorch's to 1e-10 (relative to max(1, |θ|)).
mod common;
use faer::Mat;
use hesslab_data::Split;
use hesslab_model::{LossKind, NetArch, Network, Shape, Start, TrainParams, train};
use hesslab_progress::Progress;
use serde_json::{Value, json};

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/torch_optim.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The fixture's network at its initial parameters and its data.
fn setup(f: &Value) -> (Network, Split) {
    let layers = serde_json::from_value(f["layers"].clone()).unwrap();
    let arch = NetArch::new(Shape::Image { c: 1, h: 6, w: 6 }, layers, LossKind::CrossEntropy).unwrap();
    let net = Network::new(arch, floats(&f["initial"]));
    let rows: Vec<Vec<f64>> = serde_json::from_value(f["x"].clone()).unwrap();
    let x = Mat::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j]);
    let y: Vec<u32> = serde_json::from_value(f["y"].clone()).unwrap();
    (net, Split { x, y, num_classes: 3 })
}

/// `train`'s parameters for one case: the fixture's keys over full-batch, 50 steps.
fn params(case: &Value, steps: u64) -> TrainParams {
    let mut p = json!({"batch_size": 0, "max_steps": steps, "log_every": steps});
    for (k, v) in case["train"].as_object().unwrap() {
        p[k] = v.clone();
    }
    serde_json::from_value(p).unwrap_or_else(|e| panic!("{}: {e}", case["name"]))
}

#[test]
fn fifty_steps_of_every_optimizer_and_schedule_equal_pytorchs() {
    let f = fixture();
    let steps = f["steps"].as_u64().unwrap();
    let empty = |d: &Split| Split { x: Mat::zeros(0, d.x.ncols()), y: vec![], num_classes: 3 };
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 14);
    let mut failed = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (mut net, data) = setup(&f);
        let start = net.params().to_vec();
        let log = train(&mut net, &params(case, steps), &data, &empty(&data), 1, &Start::default(), &Progress::hidden()).unwrap();
        let want = floats(&case["params"]);
        let d = net.params().iter().zip(&want).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f64::max);
        let moved = net.params().iter().zip(&start).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        eprintln!("{name:28} within {d:.1e} of torch.optim (moved {moved:.2})");
        if d > 1e-10 {
            failed.push(format!("{name}: parameters after {steps} steps differ from PyTorch's by {d:e}"));
        }
        assert!(moved > 1e-2, "{name}: training moved nothing");
        // The first logged loss is PyTorch's first loss (the same network and data).
        let l0 = case["losses"][0].as_f64().unwrap();
        assert!((log.train_loss[0] - l0).abs() <= 1e-12 * l0, "{name}: initial loss");
        if name.starts_with("muon") {
            let g = log.optimizer_groups.as_ref().expect("Muon says which tensors went where");
            assert_eq!(g["muon"], json!(["layers.0.weight", "layers.1.weight", "layers.2.weight"]), "{name}");
            assert_eq!(g["adamw"], json!(["layers.0.bias", "layers.1.bias", "layers.2.bias"]), "{name}");
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn optimizer_tables_refuse_unknown_arguments_and_names() {
    let bad = |opt: Value| serde_json::from_value::<TrainParams>(json!({ "optimizer": opt })).unwrap_err().to_string();
    let e = bad(json!({"adam": {"momentum": 0.9}}));
    assert!(e.contains("optimizer `adam`") && e.contains("unknown field `momentum`"), "{e}");
    let e = bad(json!("adagrad"));
    assert!(e.contains("unknown optimizer `adagrad`; known: sgd, adam, adamw, rmsprop, muon"), "{e}");
    // AdamW's default weight decay is PyTorch's 0.01, Adam's 0.
    let p: TrainParams = serde_json::from_value(json!({"optimizer": "adamw"})).unwrap();
    assert!(serde_json::to_string(&p).unwrap().contains(r#""weight_decay":0.01"#));
    // Plain SGD serializes as before optimizers existed (cache keys and metadata unchanged).
    let p: TrainParams = serde_json::from_value(json!({"lr": 0.1})).unwrap();
    assert!(!serde_json::to_string(&p).unwrap().contains("optimizer"));
}

/// Adam's preconditioned sharpness (Cohen et al. 2022), tracked during training, is the top
/// eigenvalue of the dense P^{-1/2} H P^{-1/2} at the last step's weights and preconditioner;
/// the matrix-free operator equals the dense product and Lanczos on it the dense top.
#[test]
fn preconditioned_sharpness_is_the_top_eigenvalue_of_the_dense_preconditioned_hessian() {
    use hesslab_hessian::{CurvatureKind, HessianProbe, LinearOperator, ModelCurvature, Preconditioned};
    let f = fixture();
    let (net0, data) = setup(&f);
    let (lr, steps) = (0.01, 40usize);
    let p: TrainParams = serde_json::from_value(json!({
        "layers": f["layers"], "lr": lr, "optimizer": "adam", "batch_size": 0,
        "max_steps": steps, "log_every": 1, "sharpness_every": 1
    }))
    .unwrap();
    let empty = Split { x: Mat::zeros(0, data.x.ncols()), y: vec![], num_classes: 3 };
    let mut net = net0.clone();
    let mut probe = HessianProbe::new(data.clone());
    let log =
        hesslab_model::train_tracking_sharpness(&mut net, &p, &data, &empty, 1, &Start::default(), &Progress::hidden(), Some(&mut probe))
            .unwrap();
    assert_eq!(log.preconditioned_sharpness.len(), steps, "one measurement per step after the first update");
    assert!((log.preconditioned_threshold.unwrap() - 38.0 / lr).abs() <= 1e-12 * 38.0 / lr, "threshold (2 + 2β₁)/((1 − β₁)η)");
    // The same 40 Adam steps by hand: the trainer's parameters, and its final preconditioner.
    let mut adam = p.optimizer_config().build(&net0.tensors(), net0.num_params());
    let mut w = net0.clone();
    for _ in 0..steps {
        let (_, g) = w.loss_grad(data.x.as_ref(), &data.y);
        let mut params = w.params().to_vec();
        adam.step(&mut params, &g, lr);
        *w.params_mut() = params;
    }
    assert_eq!(w.params(), net.params(), "the trainer's steps are Adam's");
    let pc = adam.preconditioner().unwrap();
    let h = common::curvature::dense(&ModelCurvature::new(net.clone(), data.clone(), CurvatureKind::Hessian));
    let n = h.nrows();
    let d: Vec<f64> = pc.iter().map(|x| 1.0 / x.sqrt()).collect();
    let a = Mat::<f64>::from_fn(n, n, |i, j| d[i] * h[(i, j)] * d[j]);
    let ev = a.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
    let top = ev.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let op = Preconditioned::inverse_sqrt(std::sync::Arc::new(ModelCurvature::new(net.clone(), data.clone(), CurvatureKind::Hessian)), &pc);
    let dense_op = common::curvature::dense(&op);
    let scale = (0..n).flat_map(|j| (0..n).map(move |i| (i, j))).map(|(i, j)| a[(i, j)].abs()).fold(0.0, f64::max);
    let gap = (0..n).flat_map(|j| (0..n).map(move |i| (i, j))).map(|(i, j)| (dense_op[(i, j)] - a[(i, j)]).abs()).fold(0.0, f64::max);
    assert!(gap <= 1e-13 * scale, "the matrix-free P^-1/2 H P^-1/2 differs from the dense product by {gap:e}");
    let lp = hesslab_eigen::LanczosParams { k: 1, tol: 1e-12, dense_below: 0, seed: 2, ..Default::default() };
    let (pairs, _) = hesslab_eigen::LanczosSolver::solve(&op, &lp, &Progress::hidden()).unwrap();
    assert!((pairs.values[0] - top).abs() <= 1e-10 * top, "Lanczos {} vs dense {top}", pairs.values[0]);
    let (_, tracked, residual) = *log.preconditioned_sharpness.last().unwrap();
    let plain = log.sharpness.last().unwrap().1;
    eprintln!(
        "preconditioned sharpness: tracked {tracked} (residual {residual:.1e}), dense {top}; plain sharpness {plain}; 38/η = {}",
        38.0 / lr
    );
    // The tracked estimate is a Rayleigh quotient (≤ the top eigenvalue) within its reported
    // residual of it; Lanczos on the same operator above is the exact value.
    assert!(tracked <= top * (1.0 + 1e-12), "a Rayleigh quotient {tracked} above λ_max {top}");
    assert!(top - tracked <= residual * tracked.abs(), "tracked {tracked} (residual {residual:e}) vs the dense top {top}");
    assert!(op.dim() == net.num_params() && (tracked - plain).abs() > 1e-3 * plain, "P changes the spectrum");
}

/// `case`'s training over `steps` mini-batch updates (batches of 8 of the 24 samples, so the
/// halfway point falls inside an epoch), with every schedule's horizon fixed at 100 steps (a
/// horizon of `max_steps` would be each run's own).
fn minibatch(case: &Value, steps: u64) -> TrainParams {
    let mut case = case.clone();
    if let Some(s) = case["train"].get_mut("schedule").and_then(Value::as_object_mut) {
        for table in s.values_mut() {
            if table.get("t_max").is_none()
                && (table.get("warmup").is_some() || table.as_object().is_some_and(|t| t.is_empty() || t.contains_key("min_factor")))
            {
                table["t_max"] = json!(100);
            }
        }
    }
    TrainParams { batch_size: 8, log_every: 10, snapshot_every: 25, ..params(&case, steps) }
}

#[test]
fn fifty_steps_then_fifty_more_equal_a_hundred_for_every_optimizer() {
    use hesslab_artifacts::Model;
    use hesslab_pipeline::Port;
    let f = fixture();
    let empty = |d: &Split| Split { x: Mat::zeros(0, d.x.ncols()), y: vec![], num_classes: 3 };
    let dir = scratch("resume");
    let mut kinds = std::collections::BTreeSet::new();
    for case in f["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (net0, data) = setup(&f);
        let mut whole = net0.clone();
        let log100 = train(&mut whole, &minibatch(case, 100), &data, &empty(&data), 7, &Start::default(), &Progress::hidden()).unwrap();
        let mut half = net0.clone();
        let log50 = train(&mut half, &minibatch(case, 50), &data, &empty(&data), 7, &Start::default(), &Progress::hidden()).unwrap();
        // Through the model artifact, as `init_from` reads it.
        let saved = Model {
            net: half,
            steps: 50,
            final_train_loss: f64::NAN,
            train_state: log50.final_state.clone(),
            warning: None,
            imported: None,
        };
        let path = dir.join(format!("{name}.parquet"));
        common::write_port::<Model>(&path, &saved, |_| {});
        let read = Model::decode(&hesslab_pipeline::read_artifact(&path, None).unwrap()).unwrap();
        assert_eq!(read.train_state, log50.final_state, "{name}: the optimizer state round-trips through Parquet");
        let state = read.train_state.unwrap();
        kinds.insert(state.optimizer.name());
        let mut rest = read.net;
        // Another seed for the continuation: the saved run's seed and batch order take over.
        let start = Start { steps: 50, optimizer: Some(&state.state), batches: Some(state.batches) };
        let log = train(&mut rest, &minibatch(case, 50), &data, &empty(&data), 99, &start, &Progress::hidden()).unwrap();
        assert!(rest.params() == whole.params(), "{name}: 50 + 50 steps differ from 100 steps");
        assert_eq!(log.final_state, log100.final_state, "{name}: the optimizer state after 50 + 50 steps");
        let at = |l: &hesslab_model::TrainLog, s: u64| l.train_loss[l.step.iter().position(|&x| x == s).unwrap()];
        assert_eq!(at(&log, 80).to_bits(), at(&log100, 80).to_bits(), "{name}: logged loss at step 80");
        assert_eq!(log.snapshot_states.last(), log100.snapshot_states.last(), "{name}: the last snapshot's optimizer state");
        // A fresh optimizer on the same weights is another run (the test can fail).
        let mut fresh = saved.net.clone();
        train(&mut fresh, &minibatch(case, 50), &data, &empty(&data), 7, &Start::at(50), &Progress::hidden()).unwrap();
        assert!(fresh.params() != whole.params(), "{name}: without the saved state the continuation differs");
    }
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["adam", "adamw", "muon", "rmsprop", "sgd"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh scratch directory for test `name`.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hesslab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run the pipeline `toml` with outputs under `dir/out`; the full error chain on failure.
fn run_pipeline(dir: &std::path::Path, toml: &str) -> Result<(), String> {
    use hesslab_pipeline::{PipelineFile, Plan, RunOptions, Runner};
    let file = dir.join("pipeline.toml");
    std::fs::write(&file, toml).unwrap();
    let mut pf = PipelineFile::load(&file, &[]).unwrap();
    pf.out = dir.join("out");
    let plan = Plan::build(pf, &hesslab::registry()).unwrap();
    Runner::run(&plan, &RunOptions::default()).map(|_| ()).map_err(|e| common::full_error(&e))
}

/// The same through a pipeline: `train` writes the optimizer state with the model, and a
/// second `train` with `init_from` and `resume = "exact"` continues it (dropout masks and
/// mini-batch order included) to the parameters, optimizer rows and log of one long run.
#[test]
fn a_pipeline_continues_every_optimizer_exactly_through_init_from() {
    use hesslab_artifacts::{Log, Model, Trajectory};
    use hesslab_pipeline::{Port, read_artifact};
    let dir = scratch("resume-pipeline");
    let optimizers = [
        ("sgd", r#"{ sgd = { momentum = 0.9, nesterov = true } }"#, 0.05),
        ("adam", r#""adam""#, 0.01),
        ("adamw", r#"{ adamw = { amsgrad = true } }"#, 0.01),
        ("rmsprop", r#"{ rmsprop = { centered = true, momentum = 0.5 } }"#, 0.002),
        ("muon", r#""muon""#, 0.02),
    ];
    let mut toml =
        String::from("[pipeline]\nname = \"resume\"\n[stages.data]\nkind = \"gaussian_mixture\"\nclasses = 3\ndim = 5\nsamples = 90\n");
    let common = r#"layers = [{ linear = 6 }, "tanh", { dropout = 0.2 }, { linear = 3 }]
batch_size = 16
log_every = 5
snapshot_every = 25
schedule = { warmup_cosine = { warmup = 10, t_max = 100 } }"#;
    for (name, opt, lr) in optimizers {
        for (stage, steps, extra) in [
            ("whole", 100, "seed = 5\n"),
            ("half", 50, "seed = 5\n"),
            // Its own seed: the saved run's takes over.
            ("rest", 50, "seed = 6\ninit_from = \"half_NAME.model\"\nresume = \"exact\"\n"),
        ] {
            toml += &format!(
                "[stages.{stage}_{name}]\nkind = \"train\"\ndataset = \"data.dataset\"\noptimizer = {opt}\nlr = {lr}\nmax_steps = {steps}\n{common}\n{}",
                extra.replace("NAME", name)
            );
        }
    }
    run_pipeline(&dir, &toml).unwrap();
    let out = dir.join("out/resume/main");
    let read = |p: String| read_artifact(&out.join(p), None).unwrap();
    for (name, _, _) in optimizers {
        let whole = Model::decode(&read(format!("whole_{name}/model.parquet"))).unwrap();
        let rest = Model::decode(&read(format!("rest_{name}/model.parquet"))).unwrap();
        let half = Model::decode(&read(format!("half_{name}/model.parquet"))).unwrap();
        assert!(whole.net.params() != half.net.params(), "{name}: the halves differ");
        assert!(rest.net.params() == whole.net.params(), "{name}: 50 + 50 steps differ from 100");
        assert_eq!(rest.steps, 100, "{name}");
        let (ws, rs) = (whole.train_state.unwrap(), rest.train_state.unwrap());
        assert_eq!(ws, rs, "{name}: optimizer state and batch order after 50 + 50 steps");
        assert_eq!(ws.state.steps, 100, "{name}");
        let log = |s: &str| Log::decode(&read(format!("{s}_{name}/log.parquet"))).unwrap();
        let (lw, lr) = (log("whole"), log("rest"));
        assert_eq!(lr.continued.as_deref(), Some("exact"), "{name}");
        let tail = lw.metrics.step.iter().position(|&s| s == 50).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&lr.metrics.train_loss), bits(&lw.metrics.train_loss[tail..]), "{name}: losses from step 50");
        let traj = |s: &str| Trajectory::decode(&read(format!("{s}_{name}/trajectory.parquet"))).unwrap();
        let (tw, tr) = (traj("whole"), traj("rest"));
        let (cw, sw) = tw.optimizer.expect("a stateful optimizer's trajectory carries its state");
        assert_eq!(cw.name(), name);
        let sr = tr.optimizer.unwrap().1;
        assert_eq!(sw.last(), sr.last(), "{name}: the last snapshot's optimizer state");
        assert_eq!(tw.snapshots.last(), tr.snapshots.last(), "{name}: the last snapshot");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `resume`: the default continues the optimizer state only when the same optimizer made it
/// (else a fresh one, said in the log); "exact" refuses what cannot continue exactly.
#[test]
fn resume_says_what_it_continued_and_refuses_what_cannot_continue_exactly() {
    use hesslab_artifacts::Log;
    use hesslab_pipeline::{Port, read_artifact};
    let dir = scratch("resume-modes");
    let head = "[pipeline]\nname = \"modes\"\n[stages.data]\nkind = \"gaussian_mixture\"\nclasses = 3\ndim = 4\nsamples = 60\n[stages.first]\nkind = \"train\"\ndataset = \"data.dataset\"\nhidden = [4]\noptimizer = \"adam\"\nlr = 0.01\nbatch_size = 10\nmax_steps = 20\n";
    let next = |name: &str, extra: &str| {
        format!(
            "[stages.{name}]\nkind = \"train\"\ndataset = \"data.dataset\"\ninit_from = \"first.model\"\nhidden = [4]\nlr = 0.01\nmax_steps = 5\nbatch_size = 10\n{extra}\n"
        )
    };
    let run = |toml: String| run_pipeline(&dir, &toml);
    let toml = format!(
        "{head}{}{}{}",
        next("same", "optimizer = \"adam\""),
        next("other", "optimizer = \"adamw\""),
        next("weights", "optimizer = \"adam\"\nresume = \"weights\"")
    );
    run(toml).unwrap();
    let continued =
        |s: &str| Log::decode(&read_artifact(&dir.join(format!("out/modes/main/{s}/log.parquet")), None).unwrap()).unwrap().continued;
    assert_eq!(continued("same").as_deref(), Some("optimizer"));
    assert_eq!(continued("other").as_deref(), Some("weights"), "adamw does not continue adam's state");
    assert_eq!(continued("weights").as_deref(), Some("weights"));
    let e = run(format!("{head}{}", next("exact", "optimizer = \"adamw\"\nresume = \"exact\""))).unwrap_err();
    assert!(e.contains("resume = \"exact\" needs the optimizer that trained the `init_from` model") && e.contains("adamw"), "{e}");
    let e = run(format!(
        "{head}{}",
        next("exact", "optimizer = \"adam\"\nresume = \"exact\"\nbatch_size = 20").replace("batch_size = 10\nop", "op")
    ))
    .unwrap_err();
    assert!(e.contains("continuing exactly needs the run's 48 samples in batches of 10; here 48 in batches of 20"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `spectra_along_training` on an Adam trajectory: the preconditioner of each snapshot comes
/// from the optimizer state the trajectory carries, and its preconditioned sharpness is the
/// top eigenvalue of the dense P^{-1/2} H P^{-1/2} there (none at step 0, before any update).
#[test]
fn spectra_along_training_measure_the_preconditioned_sharpness_of_each_snapshot() {
    use hesslab_artifacts::{Dataset, TrainingSteps, Trajectory};
    use hesslab_hessian::{CurvatureKind, ModelCurvature};
    use hesslab_pipeline::{Port, read_artifact};
    let dir = scratch("precond-along");
    let toml = r#"[pipeline]
name = "along"
[stages.data]
kind = "gaussian_mixture"
classes = 3
dim = 5
samples = 80
[stages.train]
kind = "train"
dataset = "data.dataset"
hidden = [6]
activation = "tanh"
optimizer = { adam = { betas = [0.9, 0.99] } }
lr = 0.01
max_steps = 30
snapshot_every = 10
log_every = 10
[stages.along]
kind = "spectra_along_training"
trajectory = "train.trajectory"
dataset = "data.dataset"
k = 3
outliers = false
"#;
    run_pipeline(&dir, toml).unwrap();
    let out = dir.join("out/along/main");
    let read = |p: &str| read_artifact(&out.join(p), None).unwrap();
    let steps = TrainingSteps::decode(&read("along/training_steps.parquet")).unwrap().0;
    let traj = Trajectory::decode(&read("train/trajectory.parquet")).unwrap();
    let ds = Dataset::decode(&read("data/dataset.parquet")).unwrap();
    assert_eq!(steps.iter().map(|s| s.step).collect::<Vec<_>>(), [0, 10, 20, 30]);
    assert!(steps[0].preconditioned_sharpness.is_none(), "no preconditioner before the first update");
    let arch = traj.architecture.clone().unwrap();
    let (config, states) = traj.optimizer.clone().unwrap();
    for (i, s) in steps.iter().enumerate().skip(1) {
        let mut o = config.build(&arch.tensors(), arch.num_params());
        o.load_state(&states[i]).unwrap();
        assert_eq!(states[i].steps, s.step);
        let pc = o.preconditioner().unwrap();
        let net = Network::new(arch.clone(), traj.snapshots[i].1.clone());
        let h = common::curvature::dense(&ModelCurvature::new(net, ds.train(), CurvatureKind::Hessian));
        let d: Vec<f64> = pc.iter().map(|x| 1.0 / x.sqrt()).collect();
        let n = h.nrows();
        let a = Mat::<f64>::from_fn(n, n, |i, j| d[i] * h[(i, j)] * d[j]);
        let top = a.self_adjoint_eigenvalues(faer::Side::Lower).unwrap().into_iter().fold(f64::NEG_INFINITY, f64::max);
        let got = s.preconditioned_sharpness.unwrap();
        eprintln!("step {}: preconditioned sharpness {got} (dense {top}, residual {:?})", s.step, s.preconditioned_residual);
        assert!((got - top).abs() <= 1e-8 * top.abs(), "step {}: {got} vs the dense {top}", s.step);
    }
    let png = std::fs::read(out.join("along/preconditioned_along_training.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `init_ensemble` trains its members with `train`'s optimizers and schedules: member 0 with
/// Adam under a cosine schedule is the same network trained by hand (its Hessian's top
/// eigenvalue to 1e-10), and differs from plain GD's.
#[test]
fn init_ensemble_members_train_with_the_given_optimizer() {
    use hesslab_artifacts::{Dataset, Ensemble, Model};
    use hesslab_hessian::{CurvatureKind, ModelCurvature};
    use hesslab_model::{Init, initialize_network};
    use hesslab_pipeline::{Port, derive_seed, read_artifact};
    let dir = scratch("ensemble-optimizer");
    let ensemble = |name: &str, extra: &str| {
        format!(
            "[stages.{name}]\nkind = \"init_ensemble\"\nmodel = \"train.model\"\ndataset = \"data.dataset\"\nseed = 11\nmembers = 3\ninit = \"normal\"\ninit_std = 0.3\nsteps = 8\nlr = 0.01\ntop = 1\n{extra}\n"
        )
    };
    let toml = format!(
        "[pipeline]\nname = \"ens\"\n[stages.data]\nkind = \"gaussian_mixture\"\nclasses = 3\ndim = 4\nsamples = 60\n[stages.train]\nkind = \"train\"\ndataset = \"data.dataset\"\nhidden = [5]\nmax_steps = 1\n{}{}",
        ensemble("adam", "optimizer = \"adam\"\nschedule = { cosine = { t_max = 8 } }"),
        ensemble("gd", "")
    );
    run_pipeline(&dir, &toml).unwrap();
    let read = |p: &str| read_artifact(&dir.join("out/ens/main").join(p), None).unwrap();
    let (adam, gd) = (Ensemble::decode(&read("adam/ensemble.parquet")).unwrap(), Ensemble::decode(&read("gd/ensemble.parquet")).unwrap());
    assert!(adam.draw.contains("\"optimizer\"") && adam.draw.contains("cosine"), "{}", adam.draw);
    let arch = Model::decode(&read("train/model.parquet")).unwrap().net.arch();
    let ds = Dataset::decode(&read("data/dataset.parquet")).unwrap();
    let mut net = initialize_network(&arch, Init::Normal, 0.3, 1.0, derive_seed(11, "member 0"));
    let p: TrainParams = serde_json::from_value(json!({
        "optimizer": "adam", "schedule": {"cosine": {"t_max": 8}}, "lr": 0.01, "max_steps": 8, "batch_size": 0, "log_every": 8
    }))
    .unwrap();
    let empty = Split { x: Mat::zeros(0, 4), y: vec![], num_classes: 3 };
    train(&mut net, &p, &ds.train(), &empty, derive_seed(11, "member 0"), &Start::default(), &Progress::hidden()).unwrap();
    let h = common::curvature::dense(&ModelCurvature::new(net, ds.train(), CurvatureKind::Hessian));
    let top = h.self_adjoint_eigenvalues(faer::Side::Lower).unwrap().into_iter().fold(f64::NEG_INFINITY, f64::max);
    let got = adam.members[0].top[0];
    assert!((got - top).abs() <= 1e-10 * top.abs(), "ensemble member 0 {got} vs by hand {top}");
    assert!((gd.members[0].top[0] - got).abs() > 1e-6 * top.abs(), "Adam's members are GD's");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A saved batch order that no run could have written (a planted model file) is an error,
/// not a slice past the end or a replay of 2⁶⁴ shuffles.
#[test]
fn an_impossible_saved_batch_order_is_refused() {
    let f = fixture();
    let case = &f["cases"][2];
    let (mut net, data) = setup(&f);
    let empty = Split { x: Mat::zeros(0, data.x.ncols()), y: vec![], num_classes: 3 };
    let log = train(&mut net, &minibatch(case, 10), &data, &empty, 7, &Start::default(), &Progress::hidden()).unwrap();
    let s = log.final_state.unwrap();
    for batches in
        [hesslab_model::BatchOrder { cursor: usize::MAX, ..s.batches }, hesslab_model::BatchOrder { shuffles: u64::MAX, ..s.batches }]
    {
        let start = Start { steps: 10, optimizer: Some(&s.state), batches: Some(batches) };
        let e = train(&mut net.clone(), &minibatch(case, 5), &data, &empty, 7, &start, &Progress::hidden()).unwrap_err().to_string();
        assert!(e.contains("cannot come from 10 updates on 24 samples"), "{e}");
    }
}
