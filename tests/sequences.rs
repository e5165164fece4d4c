//! Sequences (#40, the layers): token embeddings, learned position embeddings, causal
//! multi-head attention (a pre-LN nanoGPT block written by hand), per-position linear layers,
//! activations and layer norms on [T, d], residual blocks on sequences and the last position
//! as a classifier's input. Each network's gradient
//! and Hessian-vector products against central finite differences, the dense Hessian
//! symmetric with H = G + R, Lanczos equal to the dense spectrum, and the architecture JSON
//! round trip with PyTorch's tensor names.
mod common;
use common::curvature::{central_difference_gradient, check_lanczos, check_structure, dense, layers, rel};
use faer::Mat;
use hesslab_data::{Split, rng::Rng};
use hesslab_hessian::{CurvatureKind, LinearOperator, ModelCurvature, finite_difference_hvp};
use hesslab_model::{Init, LossKind, NetArch, Network, Shape, initialize_network};

const VOCAB: usize = 7;

/// Token ids 0..VOCAB at `t` positions (`tokens`), or N(0, 1) sequences of shape `input`.
fn net(input: Shape, spec: &str, loss: LossKind, seed: u64, n: usize, tokens: bool) -> (Network, Split) {
    let arch = NetArch::new(input, layers(spec), loss).unwrap();
    let m = initialize_network(&arch, Init::Normal, 0.5, 1.0, seed);
    let mut rng = Rng::new(seed + 3);
    let x = Mat::from_fn(n, input.size(), |_, _| if tokens { rng.below(VOCAB) as f64 } else { rng.normal() });
    let c = m.output_dim();
    let y = (0..n).map(|_| rng.below(c) as u32).collect();
    (m, Split { x, y, num_classes: c })
}

const TOKENS: &str = r#"[{ embedding = { num_embeddings = 7, embedding_dim = 4 } }, { position_embedding = { max_len = 6 } },
    { residual = ["layer_norm", { linear = 6 }, "gelu", { linear = 4 }] }, "layer_norm", "last_position", { linear = 3 }]"#;
const SEQUENCE: &str = r#"[{ linear = 5 }, "tanh", { layer_norm = { elementwise_affine = false } }, { residual = [{ linear = 5 }, "silu"] },
    "last_position", { linear = 3 }]"#;

/// nanoGPT's block by hand: x + c_proj(attention(c_attn(ln_1(x)))), x + mlp(ln_2(x)).
const ATTENTION: &str = r#"[{ embedding = { num_embeddings = 7, embedding_dim = 4 } }, { position_embedding = { max_len = 5 } },
    { residual = ["layer_norm", { linear = 12 }, { causal_attention = { heads = 2 } }, { linear = 4 }] },
    { residual = ["layer_norm", { linear = 8 }, "gelu", { linear = 4 }] },
    "layer_norm", "last_position", { linear = { out_features = 3, bias = false } }]"#;

/// nanoGPT's GPT from the shorthand (2 layers), read at the last position.
const GPT: &str =
    r#"[{ transformer = { vocab_size = 7, n_layer = 2, n_embd = 4, n_head = 2, block_size = 5, mlp_ratio = 2 } }, "last_position"]"#;

fn cases() -> Vec<(&'static str, Shape, &'static str, LossKind, bool)> {
    vec![
        ("2-layer GPT (shorthand)", Shape::Flat(4), GPT, LossKind::CrossEntropy, true),
        ("attention block", Shape::Flat(4), ATTENTION, LossKind::CrossEntropy, true),
        ("token network", Shape::Flat(4), TOKENS, LossKind::CrossEntropy, true),
        ("sequence network", Shape::Seq { t: 3, d: 4 }, SEQUENCE, LossKind::Mse, false),
    ]
}

#[test]
fn sequence_layers_have_exact_gradients_and_hessian_vector_products() {
    for (i, (what, input, spec, loss, tokens)) in cases().into_iter().enumerate() {
        let (m, d) = net(input, spec, loss, 10 + i as u64, 9, tokens);
        let p = m.num_params();
        let (_, g) = m.loss_grad(d.x.as_ref(), &d.y);
        let e = rel(&g, &central_difference_gradient(&m, &d));
        assert!(e < 1e-6, "{what}: gradient relative error {e:e}");
        let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
        let mut rng = Rng::new(i as u64);
        for _ in 0..3 {
            let v: Vec<f64> = (0..p).map(|_| rng.normal()).collect();
            let e = rel(&op.apply_vec(&v), &finite_difference_hvp(&m, &d, &v, 1e-5));
            assert!(e < 1e-6, "{what}: HVP relative error {e:e}");
        }
    }
}

#[test]
fn sequence_hessians_are_g_plus_r_and_lanczos_finds_their_top() {
    for (i, (what, input, spec, loss, tokens)) in cases().into_iter().enumerate() {
        let (m, d) = net(input, spec, loss, 30 + i as u64, 7, tokens);
        let op = |kind| ModelCurvature::new(m.clone(), d.clone(), kind);
        let (h, g, r) = (dense(&op(CurvatureKind::Hessian)), dense(&op(CurvatureKind::GaussNewton)), dense(&op(CurvatureKind::Residual)));
        let scale = check_structure(what, &h, &g, &r);
        let ev_r = r.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
        assert!(ev_r.iter().any(|&e| e.abs() > 1e-8 * scale), "{what}: R vanished");
        check_lanczos(what, &op(CurvatureKind::Hessian), &h, 4);
    }
}

/// The shorthand is nanoGPT's GPT: its parameter count, `parameters()` order and names.
#[test]
fn the_transformer_shorthand_is_nanogpts_gpt() {
    let arch = NetArch::new(Shape::Flat(4), layers(GPT), LossKind::CrossEntropy).unwrap();
    let (v, d, l, block, ratio) = (7, 4, 2, 5, 2);
    let per_block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (ratio * d * d + ratio * d) + (ratio * d * d + d);
    assert_eq!(arch.num_params(), v * d + block * d + l * per_block + 2 * d + v * d);
    let names: Vec<String> = arch.tensors().into_iter().map(|t| t.0).collect();
    assert_eq!(
        &names[..8],
        [
            "layers.0.wte.weight",
            "layers.0.wpe.weight",
            "layers.0.h0_attn.body.0.weight",
            "layers.0.h0_attn.body.0.bias",
            "layers.0.h0_attn.body.1.c_attn.weight",
            "layers.0.h0_attn.body.1.c_attn.bias",
            "layers.0.h0_attn.body.1.c_proj.weight",
            "layers.0.h0_attn.body.1.c_proj.bias",
        ]
    );
    assert_eq!(names.last().unwrap(), "layers.0.lm_head.weight");
    assert_eq!(arch.output_dim(), v);
    let e = NetArch::new(
        Shape::Flat(4),
        layers(r#"[{ transformer = { vocab_size = 7, n_layer = 1, n_embd = 6, n_head = 4, block_size = 5 } }, "last_position"]"#),
        LossKind::CrossEntropy,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not 3 × d with d divisible by heads = 4"), "{e}");
}

#[test]
fn token_networks_name_tensors_as_pytorch_and_refuse_what_they_cannot_compute() {
    let arch = NetArch::new(Shape::Flat(4), layers(TOKENS), LossKind::CrossEntropy).unwrap();
    let names: Vec<String> = arch.tensors().into_iter().map(|t| format!("{} {:?}", t.0, t.1)).collect();
    assert_eq!(
        names,
        [
            "layers.0.weight [7, 4]",
            "layers.1.weight [6, 4]",
            "layers.2.body.0.weight [4]",
            "layers.2.body.0.bias [4]",
            "layers.2.body.1.weight [6, 4]",
            "layers.2.body.1.bias [6]",
            "layers.2.body.2.weight [4, 6]",
            "layers.2.body.2.bias [4]",
            "layers.3.weight [4]",
            "layers.3.bias [4]",
            "layers.4.weight [3, 4]",
            "layers.4.bias [3]"
        ]
    );
    // The architecture JSON round trip (LayerNorm over a position's features: [d]).
    let json = arch.to_json();
    assert_eq!(json["modules"][0], serde_json::json!({"module": "Embedding", "num_embeddings": 7, "embedding_dim": 4}));
    assert_eq!(json["modules"][3]["normalized_shape"], serde_json::json!([4]));
    assert_eq!(NetArch::from_json(&json).unwrap(), arch);
    // A token id outside the vocabulary poisons the loss instead of reading another row.
    let (m, mut d) = net(Shape::Flat(4), TOKENS, LossKind::CrossEntropy, 1, 5, true);
    d.x[(2, 1)] = VOCAB as f64;
    assert!(m.loss_grad(d.x.as_ref(), &d.y).0.is_nan());
    d.x[(2, 1)] = 1.5;
    assert!(m.loss_grad(d.x.as_ref(), &d.y).0.is_nan());
    // What a sequence cannot go through (yet), said by name.
    let err = |spec: &str| NetArch::new(Shape::Seq { t: 3, d: 4 }, layers(spec), LossKind::Mse).unwrap_err().to_string();
    assert!(err(r#"["flatten", { linear = 3 }]"#).contains("flatten of a sequence [T, d] is not supported yet"));
    assert!(err(r#"["batch_norm", "last_position", { linear = 3 }]"#).contains("use layer_norm"));
    assert!(err(r#"[{ linear = 3 }]"#).contains("ends with"), "a sequence output needs last_position");
    let e = NetArch::new(
        Shape::Flat(9),
        layers(
            r#"[{ embedding = { num_embeddings = 5, embedding_dim = 2 } }, { position_embedding = 8 }, "last_position", { linear = 2 }]"#,
        ),
        LossKind::Mse,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("9 positions, more than max_len = 8"), "{e}");
}

/// nanoGPT's own GPT in PyTorch (scripts/gpt_fixtures.py: its model.py classes, untied, float64)
/// and hesslab's `transformer` shorthand with the same parameters, read at the last position:
/// the same `parameters()` shapes in the same order, and loss, gradient and two
/// Hessian-vector products (torch.func, forward over reverse) equal to 1e-10.
#[test]
fn the_transformer_equals_nanogpt_in_pytorch() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/torch_gpt.json")).unwrap();
    let f: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let c = &f["config"];
    let spec = format!(
        r#"[{{ transformer = {{ vocab_size = {}, n_layer = {}, n_embd = {}, n_head = {}, block_size = {} }} }}, "last_position"]"#,
        c["vocab_size"], c["n_layer"], c["n_embd"], c["n_head"], c["block_size"]
    );
    let tokens: Vec<Vec<f64>> = f["tokens"].as_array().unwrap().iter().map(floats).collect();
    let (n, t) = (tokens.len(), tokens[0].len());
    let arch = NetArch::new(Shape::Flat(t), layers(&spec), LossKind::CrossEntropy).unwrap();
    let ours: Vec<Vec<usize>> = arch.tensors().into_iter().map(|x| x.1).collect();
    let torch: Vec<Vec<usize>> =
        f["shapes"].as_array().unwrap().iter().map(|s| floats(s).into_iter().map(|x| x as usize).collect()).collect();
    assert_eq!(ours, torch, "parameters() shapes in order ({:?})", f["names"]);
    let m = Network::new(arch, floats(&f["params"]));
    let x = Mat::from_fn(n, t, |i, j| tokens[i][j]);
    let y: Vec<u32> = floats(&f["targets"]).into_iter().map(|v| v as u32).collect();
    let vocab = c["vocab_size"].as_u64().unwrap() as usize;
    let (loss, grad) = m.loss_grad(x.as_ref(), &y);
    let torch_loss = f["loss"].as_f64().unwrap();
    assert!((loss - torch_loss).abs() <= 1e-12 * torch_loss, "loss {loss} vs torch {torch_loss}");
    let e = rel(&grad, &floats(&f["grad"]));
    assert!(e <= 1e-10, "gradient relative difference {e:e}");
    let op = ModelCurvature::new(m.clone(), Split { x, y, num_classes: vocab }, CurvatureKind::Hessian);
    let p = m.num_params();
    let vs: [Vec<f64>; 2] = [(0..p).map(|i| (i as f64 + 1.0).sin()).collect(), (0..p).map(|i| (3.0 * i as f64).cos() / 2.0).collect()];
    for (v, hv) in vs.iter().zip(f["hvps"].as_array().unwrap()) {
        let e = rel(&op.apply_vec(v), &floats(hv));
        assert!(e <= 1e-10, "HVP relative difference {e:e}");
        eprintln!(
            "nanoGPT (P = {p}): loss within {:.1e}, gradient {:.1e}, HVP {e:.1e}",
            (loss - torch_loss).abs() / torch_loss,
            rel(&grad, &floats(&f["grad"]))
        );
    }
}
