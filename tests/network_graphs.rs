//! Networks that are graphs, not chains: a residual MLP (tanh, MSE), a residual convnet with a
//! projection shortcut (ReLU, CE), a named-node graph with `concat`, `add` and SiLU, an MLP
//! through every smooth activation (GELU exact and tanh, softplus, ELU, leaky ReLU) with layer
//! norms, and a convnet with a layer norm over [C, H, W] ending in global average pooling. For
//! each: the gradient and Hessian-vector products against central finite differences, the
//! dense Hessian symmetric, H = G + R, G positive semi-definite, Lanczos' top eigenvalues equal
//! to the dense spectrum (with residuals), and the architecture JSON and tensor names as
//! PyTorch's `parameters()` of the equivalent module.
mod common;
use common::curvature::{central_difference_gradient, check_lanczos, check_structure, dense, layers, rel};
use faer::Mat;
use hesslab_data::{Split, rng::Rng};
use hesslab_hessian::{CurvatureKind, LinearOperator, ModelCurvature, finite_difference_hvp};
use hesslab_model::{Init, LossKind, NetArch, Network, Shape, initialize_network};

fn net(input: Shape, spec: &str, loss: LossKind, seed: u64, n: usize) -> (Network, Split) {
    let arch = NetArch::new(input, layers(spec), loss).unwrap();
    let m = initialize_network(&arch, Init::Normal, 0.5, 1.0, seed);
    let mut rng = Rng::new(seed + 3);
    let x = Mat::from_fn(n, input.size(), |_, _| rng.normal());
    let c = m.output_dim();
    let y = (0..n).map(|_| rng.below(c) as u32).collect();
    (m, Split { x, y, num_classes: c })
}

const RESIDUAL_MLP: &str = r#"[{ linear = 6 }, "tanh", { residual = [{ linear = 5 }, "tanh", { linear = 6 }] }, "tanh", { residual = [{ linear = 6 }] }, { linear = 3 }]"#;
const RESIDUAL_CONVNET: &str = r#"[
    { conv2d = { out_channels = 3, kernel_size = 3, padding = 1 } }, "relu",
    { residual = { body = [{ conv2d = { out_channels = 4, kernel_size = 3, stride = 2, padding = 1 } }, "relu",
                           { conv2d = { out_channels = 4, kernel_size = 3, padding = 1 } }],
                   shortcut = [{ conv2d = { out_channels = 4, kernel_size = 1, stride = 2, bias = false } }] } },
    "relu", { residual = [{ conv2d = { out_channels = 4, kernel_size = 3, padding = 1 } }] },
    { avg_pool2d = 3 }, "flatten", { linear = 3 }]"#;
const GRAPH: &str = r#"[{ graph = [
    { name = "h", layer = { linear = 4 } },
    { name = "s", layer = "silu" },
    { name = "g", layer = { linear = 3 }, inputs = ["input"] },
    { name = "t", layer = "tanh", inputs = ["g"] },
    { name = "cat", layer = "concat", inputs = ["s", "t"] },
    { name = "p", layer = { linear = 7 } },
    { name = "sum", layer = "add", inputs = ["p", "cat"] },
]}, "sigmoid", { linear = 3 }]"#;

const ACTIVATIONS_MLP: &str = r#"[{ linear = 6 }, "layer_norm", "gelu", { linear = 6 }, { gelu = { approximate = "tanh" } }, { linear = 5 }, "softplus",
    { linear = 5 }, { layer_norm = { elementwise_affine = false } }, "elu", { linear = 4 }, { leaky_relu = 0.2 }, { linear = 3 }]"#;
const POOLED_CONVNET: &str = r#"[{ conv2d = { out_channels = 3, kernel_size = 3, padding = 1 } }, "layer_norm", "silu",
    { residual = [{ conv2d = { out_channels = 3, kernel_size = 3, padding = 1 } }, "gelu"] }, "global_avg_pool", { linear = 3 }]"#;

fn cases() -> Vec<(&'static str, Shape, &'static str, LossKind)> {
    vec![
        ("activations MLP", Shape::Flat(5), ACTIVATIONS_MLP, LossKind::Mse),
        ("global-pooled convnet", Shape::Image { c: 2, h: 5, w: 5 }, POOLED_CONVNET, LossKind::CrossEntropy),
        ("residual MLP", Shape::Flat(5), RESIDUAL_MLP, LossKind::Mse),
        ("residual convnet", Shape::Image { c: 2, h: 6, w: 6 }, RESIDUAL_CONVNET, LossKind::CrossEntropy),
        ("graph", Shape::Flat(5), GRAPH, LossKind::CrossEntropy),
    ]
}

#[test]
fn gradient_and_hvp_match_central_differences() {
    for (i, (what, input, spec, loss)) in cases().into_iter().enumerate() {
        let (m, d) = net(input, spec, loss, 10 + i as u64, 13);
        assert!(m.as_graph().is_some(), "{what} is evaluated as a graph");
        let p = m.num_params();
        let (_, g) = m.loss_grad(d.x.as_ref(), &d.y);
        let e = rel(&g, &central_difference_gradient(&m, &d));
        assert!(e < 1e-6, "{what}: gradient relative error {e:e}");
        let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
        assert!(rel(op.mean_gradient(), &g) < 1e-14, "{what}: the operator's gradient is the gradient");
        let mut rng = Rng::new(i as u64);
        for _ in 0..3 {
            let v: Vec<f64> = (0..p).map(|_| rng.normal()).collect();
            let hv = op.apply_vec(&v);
            let fd = finite_difference_hvp(&m, &d, &v, 1e-5);
            let e = rel(&hv, &fd);
            assert!(e < 1e-6, "{what}: HVP relative error {e:e}");
        }
    }
}

#[test]
fn dense_hessian_is_symmetric_is_g_plus_r_and_lanczos_finds_its_top() {
    for (i, (what, input, spec, loss)) in cases().into_iter().enumerate() {
        let (m, d) = net(input, spec, loss, 30 + i as u64, 11);
        let op = |kind| ModelCurvature::new(m.clone(), d.clone(), kind);
        let (h, g, r) = (dense(&op(CurvatureKind::Hessian)), dense(&op(CurvatureKind::GaussNewton)), dense(&op(CurvatureKind::Residual)));
        let scale = check_structure(what, &h, &g, &r);
        let ev_r = r.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
        assert!(ev_r.iter().any(|&e| e.abs() > 1e-8 * scale), "{what}: R vanished");
        // Lanczos on the matrix-free operator against the dense solver on the same operator.
        check_lanczos(what, &op(CurvatureKind::Hessian), &h, 4);
    }
}

#[test]
fn tensor_names_follow_pytorch_parameters_and_the_architecture_round_trips() {
    let (m, _) = net(Shape::Image { c: 2, h: 6, w: 6 }, RESIDUAL_CONVNET, LossKind::CrossEntropy, 1, 2);
    let names: Vec<String> = m.tensors().into_iter().map(|t| t.0).collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.body.0.weight",
            "layers.1.body.0.bias",
            "layers.1.body.1.weight",
            "layers.1.body.1.bias",
            "layers.1.shortcut.0.weight",
            "layers.2.body.0.weight",
            "layers.2.body.0.bias",
            "layers.3.weight",
            "layers.3.bias",
        ]
    );
    // Contiguous, in order, covering every parameter.
    let tensors = m.tensors();
    assert_eq!(tensors[0].2.start, 0);
    assert!(tensors.windows(2).all(|w| w[0].2.end == w[1].2.start));
    assert_eq!(tensors.last().unwrap().2.end, m.num_params());
    let json = m.arch().to_json();
    assert_eq!(json["modules"][2]["module"], "Residual");
    assert_eq!(json["modules"][2]["shortcut"][0]["module"], "Conv2d");
    assert_eq!(json["modules"][2]["shortcut"][0]["stride"], serde_json::json!([2, 2]));
    for spec in [RESIDUAL_CONVNET, RESIDUAL_MLP, GRAPH] {
        let input = if spec == RESIDUAL_CONVNET { Shape::Image { c: 2, h: 6, w: 6 } } else { Shape::Flat(5) };
        let arch = NetArch::new(input, layers(spec), LossKind::CrossEntropy).unwrap();
        let back = NetArch::from_json(&arch.to_json()).unwrap();
        assert_eq!(back.to_json(), arch.to_json());
        assert_eq!(back.tensors(), arch.tensors());
        assert_eq!(back.describe(), arch.describe());
    }
}

#[test]
fn a_residual_block_adds_its_input_to_its_body() {
    // x + body(x) with body = one linear layer: the output is x + Wx + b, computed by hand.
    let (m, d) = net(Shape::Flat(3), r#"[{ residual = [{ linear = 3 }] }]"#, LossKind::Mse, 4, 5);
    let g = m.as_graph().unwrap();
    let out = g.outputs(m.params(), d.x.as_ref());
    let w = m.params();
    for s in 0..5 {
        for o in 0..3 {
            let want = d.x[(s, o)] + (0..3).map(|i| w[o * 3 + i] * d.x[(s, i)]).sum::<f64>() + w[9 + o];
            assert!((out[(s, o)] - want).abs() < 1e-14, "sample {s} output {o}");
        }
    }
    let stored = g.forward_with(m.params(), d.x.as_ref());
    assert_eq!(stored.output().to_owned(), out, "tiled evaluation equals the stored forward pass");
}

#[test]
fn malformed_graphs_say_what_and_where() {
    let err = |input: Shape, spec: &str| NetArch::new(input, layers(spec), LossKind::Mse).unwrap_err().to_string();
    let e = err(Shape::Flat(4), r#"[{ residual = [{ linear = 3 }] }, { linear = 2 }]"#);
    assert!(e.contains("layers[0] (residual)") && e.contains("differs from the shortcut's [4]"), "{e}");
    let e = err(
        Shape::Flat(4),
        r#"[{ graph = [{ name = "a", layer = { linear = 3 } }, { name = "b", layer = "add", inputs = ["a", "zz"] }] }]"#,
    );
    assert!(e.contains("input `zz` is not an earlier node; known: input, a"), "{e}");
    let e = err(
        Shape::Flat(4),
        r#"[{ graph = [{ name = "a", layer = { linear = 3 } }, { name = "b", layer = { linear = 2 }, inputs = ["input"] }] }]"#,
    );
    assert!(e.contains("node `a`'s output is never read"), "{e}");
    let e = err(
        Shape::Flat(4),
        r#"[{ graph = [{ name = "a", layer = { linear = 3 } }, { name = "b", layer = "add", inputs = ["a", "input"] }] }]"#,
    );
    assert!(e.contains("add's inputs differ in shape: [3] and [4]"), "{e}");
    let e = err(Shape::Flat(4), r#"[{ linear = 3 }, "add"]"#);
    assert!(e.contains("layers[1] (add): add takes two or more inputs"), "{e}");
    let e = err(
        Shape::Image { c: 2, h: 4, w: 4 },
        r#"[{ residual = { body = [{ conv2d = { out_channels = 2, kernel_size = 3 } }] } }, "flatten", { linear = 2 }]"#,
    );
    assert!(e.contains("differs from the shortcut's [2, 4, 4]") && e.contains("projection"), "{e}");
    let e = err(Shape::Flat(4), r#"[{ residual = { body = [{ linear = 4 }, { linear = { out_features = 3, in_features = 5 } }] } }]"#);
    assert!(e.contains("layers[0].body[1] (linear): linear declares in_features = 5"), "{e}");
}

/// PyTorch's numbers for two trained networks (scripts/torch_fixtures.sh: the README's container
/// modules, forward-over-reverse HVPs in `torch.func`, float64): a residual convnet with a
/// SiLU/concat/add graph, and a convnet through GELU (both forms), ELU, leaky ReLU, softplus and
/// global average pooling. hesslab's loss, gradient, tensor order and every Hessian eigenvalue
/// (dense, P = 2066 and 1918) agree.
#[test]
fn trained_graph_networks_match_pytorch() {
    use hesslab_pipeline::{Plan, Port, RunOptions, Runner, read_artifact};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for name in ["resnet_digits", "activations_digits"] {
        let out = std::env::temp_dir().join(format!("hesslab-torch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut pf = hesslab_pipeline::PipelineFile::load(&root.join(format!("tests/fixtures/{name}.toml")), &[]).unwrap();
        pf.out = out.clone();
        let plan = Plan::build(pf, &hesslab::registry()).unwrap();
        Runner::run(&plan, &RunOptions::default()).unwrap();
        let main = out.join(name).join("main");
        let text = std::fs::read_to_string(root.join(format!("tests/fixtures/torch_{name}.json"))).unwrap();
        let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
        let floats = |k: &str| -> Vec<f64> { fixture[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };

        let m = hesslab_artifacts::Model::decode(&read_artifact(&main.join("train/model.parquet"), None).unwrap()).unwrap();
        let names: Vec<String> = m.net.tensors().into_iter().map(|t| t.0).collect();
        let torch_names: Vec<String> = fixture["tensors"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(names, torch_names, "{name}: the rows torch loaded, in parameters() order");
        let ds = hesslab_artifacts::Dataset::decode(&read_artifact(&main.join("data/dataset.parquet"), None).unwrap()).unwrap();
        let train = ds.train();
        let (loss, grad) = m.net.loss_grad(train.x.as_ref(), &train.y);
        let torch_loss = fixture["loss"].as_f64().unwrap();
        assert!((loss - torch_loss).abs() <= 1e-12 * torch_loss, "{name}: loss {loss} vs torch {torch_loss}");
        let e = rel(&grad, &floats("grad"));
        assert!(e <= 1e-10, "{name}: gradient relative difference {e:e}");

        let a = read_artifact(&main.join("eigen/eigenvalues.parquet"), None).unwrap();
        let ev = <hesslab_artifacts::Eigenvalues as Port>::decode(&a).unwrap().values;
        let torch_ev = floats("eigenvalues");
        assert_eq!(ev.len(), torch_ev.len());
        let worst = ev.iter().zip(&torch_ev).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / torch_ev[0].abs();
        assert!(worst <= 1e-10, "{name}: largest eigenvalue difference {worst:e} × λ₁");
        assert!(ev.iter().any(|&l| l < -1e-6 * ev[0]), "{name}: a negative tail, as trained networks have");
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn pytorch_entries_with_other_fixed_arguments_are_refused() {
    let arch = |act: serde_json::Value| {
        let v = serde_json::json!({"input_shape": [3], "loss": "cross_entropy", "modules": [
            {"module": "Linear", "in_features": 3, "out_features": 4, "bias": true}, act,
            {"module": "Linear", "in_features": 4, "out_features": 2, "bias": true}]});
        NetArch::from_json(&v)
    };
    assert!(arch(serde_json::json!({"module": "ELU", "alpha": 1.0})).is_ok());
    assert!(arch(serde_json::json!({"module": "Softplus", "beta": 1, "threshold": 20})).is_ok());
    let e = arch(serde_json::json!({"module": "ELU", "alpha": 0.5})).unwrap_err();
    assert!(e.contains("ELU with alpha = 0.5: hesslab's `elu` has alpha = 1"), "{e}");
    let e = arch(serde_json::json!({"module": "Softplus", "beta": 2.0, "threshold": 20.0})).unwrap_err();
    assert!(e.contains("Softplus with beta = 2.0"), "{e}");
}
