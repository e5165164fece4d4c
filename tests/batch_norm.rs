//! BatchNorm in both curvature modes and dropout: a BN convnet with a residual block, global
//! pooling and a BatchNorm1d on the pooled features, and a BN MLP with dropout and a
//! non-affine BatchNorm. In `eval` mode (running statistics, set to random values here) and in
//! `batch` mode (the batch's statistics, derivatives through them): the gradient and the
//! Hessian-vector products against central finite differences of that mode's loss, the dense
//! Hessian symmetric, H = G + R, G positive semi-definite, Lanczos equal to dense; in batch
//! mode the same products for every chunking of the samples; training updates the running
//! statistics and draws the same dropout masks on a rerun.
mod common;
use common::curvature::{check_lanczos, check_structure, dense, layers, rel};
use faer::Mat;
use hesslab_data::{Split, rng::Rng};
use hesslab_hessian::{BatchNormMode, CurvatureKind, LinearOperator, ModelCurvature};
use hesslab_model::{Init, LossKind, NetArch, Network, PassMode, Shape, initialize_network};
use hesslab_progress::Progress;

const BN_CONVNET: &str = r#"[
    { conv2d = { out_channels = 3, kernel_size = 3, padding = 1 } }, "batch_norm", "relu",
    { residual = [{ conv2d = { out_channels = 3, kernel_size = 3, padding = 1 } }, "batch_norm", "tanh",
                  { conv2d = { out_channels = 3, kernel_size = 3, padding = 1, bias = false } }, { batch_norm = { eps = 1e-3 } }] },
    "relu", "global_avg_pool", "batch_norm", { linear = 3 }]"#;
const BN_MLP: &str = r#"[{ linear = 6 }, "batch_norm", "tanh", { dropout = 0.3 }, { linear = 5 }, { batch_norm = { affine = false } }, "softplus", { linear = 3 }]"#;

fn cases() -> Vec<(&'static str, Shape, &'static str, LossKind)> {
    vec![
        ("BN convnet", Shape::Image { c: 2, h: 5, w: 5 }, BN_CONVNET, LossKind::CrossEntropy),
        ("BN MLP", Shape::Flat(4), BN_MLP, LossKind::Mse),
    ]
}

/// The network with γ, β and the running statistics away from their initial values.
fn net(input: Shape, spec: &str, loss: LossKind, seed: u64, n: usize) -> (Network, Split) {
    let arch = NetArch::new(input, layers(spec), loss).unwrap();
    let mut m = initialize_network(&arch, Init::Normal, 0.5, 1.0, seed);
    let mut rng = Rng::new(seed + 7);
    for (name, _, r, buffer) in m.state_dict() {
        if buffer && name.ends_with("running_var") {
            m.buffers_mut()[r].iter_mut().for_each(|v| *v = 0.3 + rng.uniform());
        } else if buffer && name.ends_with("running_mean") {
            m.buffers_mut()[r].iter_mut().for_each(|v| *v = 0.5 * rng.normal());
        } else if !buffer && name.contains("weight") && m.params()[r.clone()].len() <= 3 {
            m.params_mut()[r].iter_mut().for_each(|v| *v = 1.0 + 0.3 * rng.normal());
        }
    }
    let x = Mat::from_fn(n, input.size(), |_, _| rng.normal());
    let c = m.output_dim();
    let y = (0..n).map(|_| rng.below(c) as u32).collect();
    (m, Split { x, y, num_classes: c })
}

fn mode(b: BatchNormMode) -> PassMode {
    b.pass_mode()
}

fn op(m: &Network, d: &Split, kind: CurvatureKind, b: BatchNormMode, rows: Option<usize>) -> ModelCurvature {
    ModelCurvature::with_options(m.clone(), d.clone(), kind, b, rows).unwrap()
}

const MODES: [BatchNormMode; 2] = [BatchNormMode::Eval, BatchNormMode::Batch];

#[test]
fn gradient_and_hvp_match_central_differences_in_both_modes() {
    for (i, (what, input, spec, loss)) in cases().into_iter().enumerate() {
        let (m, d) = net(input, spec, loss, 40 + i as u64, 12);
        let p = m.num_params();
        for b in MODES {
            let at = |w: &[f64]| m.loss_grad_accuracy_mode(w, d.x.as_ref(), &d.y, mode(b));
            let (_, g, _) = at(m.params());
            let fd: Vec<f64> = (0..p)
                .map(|i| {
                    let (mut wp, mut wm) = (m.params().to_vec(), m.params().to_vec());
                    wp[i] += 1e-6;
                    wm[i] -= 1e-6;
                    (at(&wp).0 - at(&wm).0) / 2e-6
                })
                .collect();
            let e = rel(&g, &fd);
            assert!(e < 1e-6, "{what} {b:?}: gradient relative error {e:e}");
            let o = op(&m, &d, CurvatureKind::Hessian, b, None);
            assert!(rel(o.mean_gradient(), &g) < 1e-13, "{what} {b:?}: the operator's gradient is the gradient");
            let mut rng = Rng::new(i as u64);
            for _ in 0..3 {
                let v: Vec<f64> = (0..p).map(|_| rng.normal()).collect();
                let hv = o.apply_vec(&v);
                let shifted = |s: f64| -> Vec<f64> { at(&m.params().iter().zip(&v).map(|(w, d)| w + s * d).collect::<Vec<_>>()).1 };
                let (gp, gm) = (shifted(1e-5), shifted(-1e-5));
                let fd: Vec<f64> = gp.iter().zip(&gm).map(|(a, b)| (a - b) / 2e-5).collect();
                let e = rel(&hv, &fd);
                assert!(e < 1e-6, "{what} {b:?}: HVP relative error {e:e}");
            }
        }
        // A training pass (batch statistics and, in the MLP, dropout masks of one seed) is a
        // smooth function of the parameters for its fixed masks: its gradient too.
        let train = |w: &[f64]| m.loss_grad_accuracy_mode(w, d.x.as_ref(), &d.y, PassMode::Train { seed: 17 });
        let (_, g, _) = train(m.params());
        let fd: Vec<f64> = (0..p)
            .map(|i| {
                let (mut wp, mut wm) = (m.params().to_vec(), m.params().to_vec());
                wp[i] += 1e-6;
                wm[i] -= 1e-6;
                (train(&wp).0 - train(&wm).0) / 2e-6
            })
            .collect();
        let e = rel(&g, &fd);
        assert!(e < 1e-6, "{what} train mode: gradient relative error {e:e}");
        // The two modes differ (the running statistics are not the batch's).
        let (ge, gb) =
            (op(&m, &d, CurvatureKind::Hessian, BatchNormMode::Eval, None), op(&m, &d, CurvatureKind::Hessian, BatchNormMode::Batch, None));
        assert!(rel(ge.mean_gradient(), gb.mean_gradient()) > 1e-3, "{what}: eval and batch gradients coincide");
    }
}

#[test]
fn batch_mode_products_do_not_depend_on_the_chunking() {
    for (i, (what, input, spec, loss)) in cases().into_iter().enumerate() {
        let n = 23;
        let (m, d) = net(input, spec, loss, 50 + i as u64, n);
        let p = m.num_params();
        let mut rng = Rng::new(5);
        let v = Mat::from_fn(p, 3, |_, _| rng.normal());
        for kind in [CurvatureKind::Hessian, CurvatureKind::GaussNewton, CurvatureKind::Residual] {
            let whole = op(&m, &d, kind, BatchNormMode::Batch, Some(n));
            let mut ref_out = Mat::<f64>::zeros(p, 3);
            whole.apply_block(v.as_ref(), ref_out.as_mut());
            for rows in [1, 4, 7, 22] {
                let o = op(&m, &d, kind, BatchNormMode::Batch, Some(rows));
                assert!((o.loss - whole.loss).abs() <= 1e-14 * whole.loss.abs(), "{what}: loss with {rows}-row chunks");
                assert!(rel(o.mean_gradient(), whole.mean_gradient()) <= 1e-12, "{what}: gradient with {rows}-row chunks");
                let mut out = Mat::<f64>::zeros(p, 3);
                o.apply_block(v.as_ref(), out.as_mut());
                for j in 0..3 {
                    let (a, b): (Vec<f64>, Vec<f64>) = (0..p).map(|r| (out[(r, j)], ref_out[(r, j)])).unzip();
                    let e = rel(&a, &b);
                    assert!(e <= 1e-12, "{what} {}: {rows}-row chunks differ from one chunk by {e:e}", kind.name());
                }
            }
        }
        let err =
            ModelCurvature::with_options(m.clone(), d.clone(), CurvatureKind::EmpiricalFisher, BatchNormMode::Batch, None).err().unwrap();
        assert!(err.to_string().contains("per-sample gradients"), "{err}");
    }
}

#[test]
fn dense_hessian_is_symmetric_is_g_plus_r_and_lanczos_finds_its_top_in_both_modes() {
    for (i, (what, input, spec, loss)) in cases().into_iter().enumerate() {
        let (m, d) = net(input, spec, loss, 60 + i as u64, 10);
        for b in MODES {
            let what = format!("{what} {b:?}");
            let ops = |kind| op(&m, &d, kind, b, None);
            let (h, g, r) =
                (dense(&ops(CurvatureKind::Hessian)), dense(&ops(CurvatureKind::GaussNewton)), dense(&ops(CurvatureKind::Residual)));
            check_structure(&what, &h, &g, &r);
            check_lanczos(&what, &op(&m, &d, CurvatureKind::Hessian, b, Some(3)), &h, 4);
        }
    }
}

#[test]
fn training_updates_running_statistics_and_draws_the_same_dropout_masks() {
    let (mut m, d) = net(Shape::Flat(4), BN_MLP, LossKind::Mse, 70, 16);
    let fresh = m.arch().graph().initial_buffers();
    m.buffers_mut().copy_from_slice(&fresh);
    let before = m.buffers().to_vec();
    let mut again = m.clone();
    let (l1, g1) = m.train_loss_grad(d.x.as_ref(), &d.y, 9);
    let (l2, g2) = again.train_loss_grad(d.x.as_ref(), &d.y, 9);
    assert_eq!(
        (l1.to_bits(), g1.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
        (l2.to_bits(), g2.iter().map(|x| x.to_bits()).collect())
    );
    let (l3, _) = m.clone().train_loss_grad(d.x.as_ref(), &d.y, 10);
    assert_ne!(l1, l3, "another step's seed draws other dropout masks");
    // running_mean = 0.9 · 0 + 0.1 · batch mean; running_var = 0.9 · 1 + 0.1 · unbiased var;
    // num_batches_tracked counts the step.
    let sd = m.state_dict();
    let (_, _, mean_r, _) = sd.iter().find(|t| t.0 == "layers.1.running_mean").unwrap().clone();
    let (_, _, var_r, _) = sd.iter().find(|t| t.0 == "layers.1.running_var").unwrap().clone();
    let (_, _, count_r, _) = sd.iter().find(|t| t.0 == "layers.1.num_batches_tracked").unwrap().clone();
    let z = m.as_graph().unwrap().forward_with(m.params(), d.x.as_ref());
    let x = &z.vals[1];
    for c in 0..6 {
        let col: Vec<f64> = (0..16).map(|r| x[(r, c)]).collect();
        let mu = col.iter().sum::<f64>() / 16.0;
        let var = col.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / 15.0;
        assert!((m.buffers()[mean_r.start + c] - 0.1 * mu).abs() < 1e-14);
        assert!((m.buffers()[var_r.start + c] - (0.9 + 0.1 * var)).abs() < 1e-14);
    }
    assert_eq!(m.buffers()[count_r.start], before[count_r.start] + 1.0);
    // Evaluation ignores dropout and uses the running statistics: the Hessian's loss.
    let ev = m.loss_grad_accuracy_mode(m.params(), d.x.as_ref(), &d.y, PassMode::Eval).0;
    let cv = op(&m, &d, CurvatureKind::Hessian, BatchNormMode::Eval, None);
    assert_eq!(ev.to_bits(), cv.loss.to_bits());
}

/// The committed PyTorch fixture (scripts/torch_batch_norm.py): a BN convnet's state_dict,
/// inputs and labels, torch's loss, gradient and HVP in both modes, and the state after 20
/// momentum-SGD steps in train mode.
struct TorchFixture {
    json: serde_json::Value,
    net: Network,
    data: Split,
}

fn load_state(net: &mut Network, state: &serde_json::Value) {
    let rows = state.as_array().unwrap();
    let ours = net.state_dict();
    assert_eq!(rows.len(), ours.len(), "state_dict entries");
    for (row, (name, shape, range, buffer)) in rows.iter().zip(ours) {
        // hesslab numbers the entries with tensors (`layers.K`), torch's Sequential every
        // module: the order and the tensor's own name agree.
        let torch_name = row[0].as_str().unwrap();
        assert_eq!(torch_name.rsplit('.').next(), name.rsplit('.').next(), "state_dict order: torch {torch_name}, hesslab {name}");
        let dims: Vec<usize> = serde_json::from_value(row[1].clone()).unwrap();
        assert_eq!(dims, shape, "{name}'s shape");
        let vals: Vec<f64> = serde_json::from_value(row[2].clone()).unwrap();
        let dst = if buffer { &mut net.buffers_mut()[range] } else { &mut net.params_mut()[range] };
        dst.copy_from_slice(&vals);
    }
}

fn torch_fixture() -> TorchFixture {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/torch_batch_norm.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let arch = NetArch::from_json(&json["architecture"]).unwrap();
    let mut net = Network::new(arch.clone(), vec![0.0; arch.num_params()]);
    load_state(&mut net, &json["state_dict"]);
    let rows: Vec<Vec<f64>> = serde_json::from_value(json["x"].clone()).unwrap();
    let x = Mat::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j]);
    let y: Vec<u32> = serde_json::from_value(json["y"].clone()).unwrap();
    TorchFixture { json, net, data: Split { x, y, num_classes: 3 } }
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn loss_gradient_and_hvp_equal_pytorchs_in_both_modes() {
    let TorchFixture { json, net, data } = torch_fixture();
    let v = floats(&json["v"]);
    for b in MODES {
        let t = &json[b.name()];
        let o = op(&net, &data, CurvatureKind::Hessian, b, Some(5));
        let loss = t["loss"].as_f64().unwrap();
        assert!((o.loss - loss).abs() <= 1e-12 * loss, "{b:?}: loss {} vs torch {loss}", o.loss);
        let e = rel(o.mean_gradient(), &floats(&t["grad"]));
        assert!(e <= 1e-10, "{b:?}: gradient differs from torch's by {e:e}");
        let eg = e;
        let e = rel(&o.apply_vec(&v), &floats(&t["hvp"]));
        eprintln!("{b:?}: gradient within {eg:.1e}, HVP within {e:.1e} of torch's (relative)");
        assert!(e <= 1e-10, "{b:?}: HVP differs from torch's by {e:e}");
    }
}

#[test]
fn twenty_sgd_steps_with_batch_norm_equal_pytorchs() {
    let TorchFixture { json, mut net, data } = torch_fixture();
    let sgd = &json["sgd"];
    let p = hesslab_model::TrainParams {
        batch_size: 0,
        lr: sgd["lr"].as_f64().unwrap(),
        momentum: sgd["momentum"].as_f64().unwrap(),
        max_steps: sgd["steps"].as_u64().unwrap() as usize,
        log_every: 5,
        ..Default::default()
    };
    let empty = Split { x: Mat::zeros(0, data.x.ncols()), y: vec![], num_classes: 3 };
    hesslab_model::train(&mut net, &p, &data, &empty, 1, &hesslab_model::Start::default(), &Progress::hidden()).unwrap();
    let mut want = net.clone();
    load_state(&mut want, &sgd["state_dict"]);
    let diff = |a: &[f64], b: &[f64]| {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / b.iter().fold(1.0f64, |m, x| m.max(x.abs()))
    };
    let (dp, db) = (diff(net.params(), want.params()), diff(net.buffers(), want.buffers()));
    eprintln!("after 20 steps: parameters within {dp:.1e}, running statistics within {db:.1e} of torch's");
    assert!(dp <= 1e-10, "parameters after 20 steps differ from torch's by {dp:e}");
    assert!(db <= 1e-10, "running statistics after 20 steps differ from torch's by {db:e}");
    assert!(diff(net.params(), torch_fixture().net.params()) > 1e-3, "training moved the parameters");
}
