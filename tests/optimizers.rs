//! Every optimizer and schedule against `torch.optim` (committed fixture made by
//! `scripts/torch_optim.py`): the same convnet, data and initial parameters, 50 full-batch
//! steps; hesslab's parameters equal PyTorch's to 1e-10 (relative to max(1, |θ|)).
mod common;
use faer::Mat;
use hesslab_data::Split;
use hesslab_model::{LossKind, NetArch, Network, Shape, TrainParams, train};
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
        let log = train(&mut net, &params(case, steps), &data, &empty(&data), 1, 0, &Progress::hidden()).unwrap();
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
    let log = hesslab_model::train_tracking_sharpness(&mut net, &p, &data, &empty, 1, 0, &Progress::hidden(), Some(&mut probe)).unwrap();
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
