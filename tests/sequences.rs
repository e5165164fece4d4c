//! Sequences (#40, the layers): token embeddings, learned position embeddings, causal
//! multi-head attention (a pre-LN nanoGPT block written by hand), per-position linear layers,
//! activations and layer norms on [T, d], residual blocks on sequences and the last position
//! as a classifier's input. Each network's gradient
//! and Hessian-vector products against central finite differences, the dense Hessian
//! symmetric with H = G + R, Lanczos equal to the dense spectrum, and the architecture JSON
//! round trip with PyTorch's tensor names.
mod common;
use common::curvature::{check_lanczos, check_structure, dense, layers, rel};
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

fn cases() -> Vec<(&'static str, Shape, &'static str, LossKind, bool)> {
    vec![
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
        let fd: Vec<f64> = (0..p)
            .map(|i| {
                let (mut wp, mut wm) = (m.params().to_vec(), m.params().to_vec());
                wp[i] += 1e-6;
                wm[i] -= 1e-6;
                (m.loss_grad_at(&wp, d.x.as_ref(), &d.y).0 - m.loss_grad_at(&wm, d.x.as_ref(), &d.y).0) / 2e-6
            })
            .collect();
        let e = rel(&g, &fd);
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
