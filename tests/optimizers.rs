//! Every optimizer and schedule against `torch.optim` (committed fixture made by
//! `scripts/torch_optim.py`): the same convnet, data and initial parameters, 50 full-batch
//! steps; hesslab's parameters equal PyTorch's to 1e-10 (relative to max(1, |θ|)).
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
