//! Convolutional networks: gradient and Hessian-vector products against central finite
//! differences for every layer type, stride and padding; dense H symmetric, H = G + R, G PSD;
//! structural checks against the MLP; bit-identical results on 1 and 2 threads.
use faer::Mat;
use hesslab_data::{Split, rng::Rng};
use hesslab_hessian::*;
use hesslab_model::*;

fn layers(toml_list: &str) -> Vec<LayerSpec> {
    let t: toml::Table = toml::from_str(&format!("layers = {toml_list}")).unwrap();
    t["layers"].clone().try_into().unwrap()
}

fn net(input: [usize; 3], spec: &str, loss: LossKind, seed: u64, n: usize) -> (Network, Split) {
    let arch = NetArch::new(Shape::Image { c: input[0], h: input[1], w: input[2] }, layers(spec), loss).unwrap();
    let m = initialize_network(&arch, Init::Normal, 0.5, 1.0, seed);
    let mut rng = Rng::new(seed + 3);
    let d = input.iter().product();
    let x = Mat::from_fn(n, d, |_, _| rng.normal());
    let c = m.output_dim();
    let y = (0..n).map(|_| rng.below(c) as u32).collect();
    (m, Split { x, y, num_classes: c })
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    num / b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300)
}

fn dense(m: &Network, d: &Split, kind: CurvatureKind) -> Mat<f64> {
    let cv = ModelCurvature::new(m.clone(), d.clone(), kind);
    let p = cv.dim();
    let mut out = Mat::<f64>::zeros(p, p);
    cv.apply_block(Mat::<f64>::identity(p, p).as_ref(), out.as_mut());
    out
}

/// Every layer type, strides and paddings, both activations.
const CASES: &[&str] = &[
    r#"[{ conv2d = { out_channels = 3, kernel_size = 3 } }, "ACT", { max_pool2d = 2 }, "flatten", { linear = 4 }, "ACT", { linear = 3 }]"#,
    r#"[{ conv2d = { out_channels = 2, kernel_size = 3, stride = 2, padding = 1 } }, "ACT", { avg_pool2d = 2 }, "flatten", { linear = 3 }]"#,
    r#"[{ conv2d = { out_channels = 2, kernel_size = [2, 3], stride = [1, 2], padding = [1, 0], bias = false } }, "ACT", { conv2d = { out_channels = 3, kernel_size = 2 } }, { max_pool2d = { kernel_size = 2, stride = 1 } }, "flatten", { linear = 3 }]"#,
    r#"[{ avg_pool2d = { kernel_size = 3, stride = 2 } }, { conv2d = { out_channels = 3, kernel_size = 2, padding = 1 } }, "ACT", "flatten", { linear = { out_features = 3, bias = false } }]"#,
    // Activations straight before overlapping max poolings, the first on the input itself.
    r#"["ACT", { max_pool2d = { kernel_size = 2, stride = 1 } }, { conv2d = { out_channels = 3, kernel_size = 2 } }, "ACT", { max_pool2d = { kernel_size = 3, stride = 2 } }, "flatten", { linear = 3 }]"#,
];

#[test]
fn gradient_and_hvp_match_central_differences() {
    let mut seed = 1;
    for case in CASES {
        for act in ["relu", "tanh"] {
            for loss in [LossKind::CrossEntropy, LossKind::Mse] {
                seed += 1;
                let spec = case.replace("ACT", act);
                let (m, d) = net([2, 7, 7], &spec, loss, seed, 11);
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
                assert!(e < 1e-6, "{spec} {loss:?}: gradient relative error {e:e}");
                let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
                let mut rng = Rng::new(seed);
                for _ in 0..2 {
                    let v: Vec<f64> = (0..p).map(|_| rng.normal()).collect();
                    let hv = op.apply_vec(&v);
                    let fd = finite_difference_hvp(&m, &d, &v, 1e-5);
                    let e = rel(&hv, &fd);
                    assert!(e < 1e-6, "{spec} {loss:?}: HVP relative error {e:e}");
                }
            }
        }
    }
}

#[test]
fn dense_hessian_is_symmetric_splits_into_gauss_newton_plus_residual_and_g_is_psd() {
    for (i, case) in CASES.iter().enumerate() {
        let (m, d) = net([2, 7, 7], &case.replace("ACT", "tanh"), LossKind::CrossEntropy, 40 + i as u64, 9);
        let h = dense(&m, &d, CurvatureKind::Hessian);
        let g = dense(&m, &d, CurvatureKind::GaussNewton);
        let r = dense(&m, &d, CurvatureKind::Residual);
        let p = h.nrows();
        let scale = (0..p).flat_map(|j| (0..p).map(move |i| (i, j))).map(|(i, j)| h[(i, j)].abs()).fold(0.0, f64::max);
        let (mut asym, mut split) = (0.0f64, 0.0f64);
        for j in 0..p {
            for i in 0..p {
                asym = asym.max((h[(i, j)] - h[(j, i)]).abs());
                split = split.max((h[(i, j)] - g[(i, j)] - r[(i, j)]).abs());
            }
        }
        assert!(asym <= 1e-12 * scale, "case {i}: asymmetry {asym:e} (scale {scale:e})");
        assert!(split <= 1e-12 * scale, "case {i}: |H − G − R| = {split:e}");
        let ev = g.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
        let top = ev.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
        assert!(ev.iter().all(|&e| e >= -1e-12 * top), "case {i}: G has eigenvalue {:e}", ev[0]);
        assert!(r.self_adjoint_eigenvalues(faer::Side::Lower).unwrap().iter().any(|&e| e.abs() > 1e-8 * top), "case {i}: R vanished");
    }
}

#[test]
fn empirical_fisher_is_the_mean_outer_product_of_per_sample_gradients() {
    let (m, d) = net([1, 5, 5], &CASES[0].replace("ACT", "tanh"), LossKind::CrossEntropy, 7, 6);
    let f = dense(&m, &d, CurvatureKind::EmpiricalFisher);
    let p = m.num_params();
    let mut want = Mat::<f64>::zeros(p, p);
    for i in 0..d.len() {
        let s = d.subset(&[i]);
        let (_, g) = m.loss_grad(s.x.as_ref(), &s.y);
        for a in 0..p {
            for b in 0..p {
                want[(a, b)] += g[a] * g[b] / d.len() as f64;
            }
        }
    }
    let e = rel(
        &f.col_iter().flat_map(|c| c.iter().copied().collect::<Vec<_>>()).collect::<Vec<_>>(),
        &want.col_iter().flat_map(|c| c.iter().copied().collect::<Vec<_>>()).collect::<Vec<_>>(),
    );
    assert!(e < 1e-12, "relative error {e:e}");
}

#[test]
fn one_by_one_convolutions_on_one_pixel_are_the_mlp() {
    let spec =
        r#"[{ conv2d = { out_channels = 5, kernel_size = 1 } }, "tanh", { conv2d = { out_channels = 3, kernel_size = 1 } }, "flatten"]"#;
    let (conv, d) = net([4, 1, 1], spec, LossKind::CrossEntropy, 3, 13);
    let arch = Architecture { sizes: vec![4, 5, 3], activation: Activation::Tanh, bias: true, loss: LossKind::CrossEntropy };
    let mlp = Network::from(Mlp::new(arch, conv.params().to_vec()));
    assert!(conv.as_graph().is_some());
    let (lc, gc) = conv.loss_grad(d.x.as_ref(), &d.y);
    let (lm, gm) = mlp.loss_grad(d.x.as_ref(), &d.y);
    assert!((lc - lm).abs() <= 1e-14 * lm.abs(), "loss {lc} vs {lm}");
    assert!(rel(&gc, &gm) < 1e-13, "gradient {:e}", rel(&gc, &gm));
    for kind in [CurvatureKind::Hessian, CurvatureKind::GaussNewton, CurvatureKind::Residual, CurvatureKind::GradientCovariance] {
        let (hc, hm) = (dense(&conv, &d, kind), dense(&mlp, &d, kind));
        let p = hc.nrows();
        let diff = (0..p).flat_map(|j| (0..p).map(move |i| (i, j))).map(|(i, j)| (hc[(i, j)] - hm[(i, j)]).abs()).fold(0.0, f64::max);
        let scale = (0..p).flat_map(|j| (0..p).map(move |i| (i, j))).map(|(i, j)| hm[(i, j)].abs()).fold(0.0, f64::max);
        assert!(diff <= 1e-13 * scale, "{kind:?}: max difference {diff:e}");
    }
}

#[test]
fn average_pooling_over_the_whole_image_is_the_channel_mean() {
    let seq = GraphArch::new(
        Shape::Image { c: 3, h: 4, w: 5 },
        layers(r#"[{ avg_pool2d = { kernel_size = [4, 5] } }, "flatten"]"#),
        LossKind::Mse,
    )
    .unwrap();
    let s = GraphNet::new(std::sync::Arc::new(seq), vec![]);
    let mut rng = Rng::new(5);
    let x = Mat::from_fn(7, 60, |_, _| rng.normal());
    let out = s.forward_with(&[], x.as_ref());
    for i in 0..7 {
        for c in 0..3 {
            let mean = (0..20).map(|p| x[(i, c * 20 + p)]).sum::<f64>() / 20.0;
            assert!((out.output()[(i, c)] - mean).abs() < 1e-15, "sample {i} channel {c}");
        }
    }
}

#[test]
fn convnet_products_are_bit_identical_on_one_and_two_threads() {
    let (m, d) = net([1, 8, 8], &CASES[0].replace("ACT", "tanh"), LossKind::CrossEntropy, 9, 600);
    let p = m.num_params();
    let v = Mat::from_fn(p, 3, |i, j| ((i * 7 + j * 13) % 11) as f64 - 5.0);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
            let mut out = Mat::<f64>::zeros(p, 3);
            op.apply_block(v.as_ref(), out.as_mut());
            let (_, g) = m.loss_grad(d.x.as_ref(), &d.y);
            (out, g)
        })
    };
    let ((a, ga), (b, gb)) = (run(1), run(2));
    assert!(ga.iter().zip(&gb).all(|(x, y)| x.to_bits() == y.to_bits()));
    for j in 0..3 {
        for i in 0..p {
            assert_eq!(a[(i, j)].to_bits(), b[(i, j)].to_bits());
        }
    }
}

/// Sharpness tracking takes the log's full-batch loss, gradient and accuracy from the probe's
/// operator (or its single pass): they must be bit-identical to the training pass (so tracking
/// changes no log value), for the sequential and the fully connected kernels, on more samples
/// than one chunk.
#[test]
fn sharpness_probe_gives_the_training_pass_bit_for_bit() {
    let spec =
        r#"[{ conv2d = { out_channels = 3, kernel_size = 3, padding = 1 } }, "tanh", { max_pool2d = 2 }, "flatten", { linear = 4 }]"#;
    let (conv, d) = net([2, 6, 6], spec, LossKind::CrossEntropy, 5, 700);
    let arch = Architecture { sizes: vec![72, 9, 4], activation: Activation::Sigmoid, bias: true, loss: LossKind::Mse };
    let mlp = Network::from(initialize(&arch, Init::KaimingUniform, 0.0, 0.0, 6));
    for m in [conv, mlp] {
        let mut probe = HessianProbe::new(d.clone());
        let (l, g, a) = SharpnessProbe::prepare(&mut probe, &m).unwrap();
        let (l0, g0, a0) = m.loss_grad_accuracy_at(m.params(), d.x.as_ref(), &d.y);
        assert_eq!(l.to_bits(), l0.to_bits(), "{}", m.describe());
        assert_eq!(a.to_bits(), a0.to_bits(), "{}", m.describe());
        assert!(g.iter().zip(&g0).all(|(x, y)| x.to_bits() == y.to_bits()), "{}: gradient differs", m.describe());
        // And its product is the operator's.
        let v: Vec<f64> = (0..m.num_params()).map(|i| (i as f64 * 0.37).sin()).collect();
        let hv = SharpnessProbe::hvp(&mut probe, &v).unwrap();
        let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
        assert_eq!(hv, op.apply_vec(&v));
        // A measurement's single pass (prepare and one product together, no operator kept for
        // the MLP) gives the same four results bit for bit.
        let ((l1, g1, a1), hv1) = SharpnessProbe::prepare_with_product(&mut probe, &m, &v).unwrap();
        assert_eq!((l1.to_bits(), a1.to_bits()), (l0.to_bits(), a0.to_bits()), "{}", m.describe());
        assert!(g1.iter().zip(&g0).all(|(x, y)| x.to_bits() == y.to_bits()), "{}: gradient differs", m.describe());
        assert!(hv1.iter().zip(&hv).all(|(x, y)| x.to_bits() == y.to_bits()), "{}: product differs", m.describe());
    }
}

/// Convolutions run tile by tile over the samples (~256 KB of unfolded input per tile): a
/// network whose first convolution unfolds one sample per tile and whose second unfolds six,
/// on nine samples, so every tiled kernel of the gradient and the R-operator (forward tangent,
/// weight terms, second-order terms) spans several tiles. The gradient and the HVP match
/// central differences, a block product equals its single-vector products, and G + R = H.
#[test]
fn products_spanning_several_convolution_tiles_match_finite_differences() {
    let spec = r#"[{ conv2d = { out_channels = 4, kernel_size = 5, padding = 2 } }, "tanh", { max_pool2d = 2 },
        { conv2d = { out_channels = 3, kernel_size = 3, padding = 1 } }, "tanh", "flatten", { linear = 3 }]"#;
    let (m, d) = net([2, 24, 24], spec, LossKind::CrossEntropy, 21, 9);
    let p = m.num_params();
    let mut rng = Rng::new(8);
    let v = Mat::from_fn(p, 3, |_, _| rng.normal());
    let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
    let mut hv = Mat::<f64>::zeros(p, 3);
    op.apply_block(v.as_ref(), hv.as_mut());
    for j in 0..3 {
        let col: Vec<f64> = v.col(j).iter().copied().collect();
        let got: Vec<f64> = hv.col(j).iter().copied().collect();
        let fd = finite_difference_hvp(&m, &d, &col, 1e-5);
        assert!(rel(&got, &fd) < 1e-6, "column {j}: HVP vs finite differences {:e}", rel(&got, &fd));
        assert!(rel(&op.apply_vec(&col), &got) < 1e-13, "block vs single product");
        let g = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::GaussNewton).apply_vec(&col);
        let r = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Residual).apply_vec(&col);
        let sum: Vec<f64> = g.iter().zip(&r).map(|(a, b)| a + b).collect();
        assert!(rel(&sum, &got) < 1e-12, "G + R vs H: {:e}", rel(&sum, &got));
    }
    // The gradient, by fourth-order central differences of the loss (h = 1e-4: truncation
    // ~h⁴, rounding ~1e-16/h = 1e-12, where the two-point stencil at h = 1e-6 was only good
    // to ~2e-9, the size of the tolerance on small coordinates) on a few coordinates of every
    // tensor.
    let (_, grad) = m.loss_grad(d.x.as_ref(), &d.y);
    let loss_at = |i: usize, h: f64| {
        let mut w = m.params().to_vec();
        w[i] += h;
        m.loss_grad_at(&w, d.x.as_ref(), &d.y).0
    };
    for i in (0..p).step_by(37) {
        let h = 1e-4;
        let fd = (8.0 * (loss_at(i, h) - loss_at(i, -h)) - (loss_at(i, 2.0 * h) - loss_at(i, -2.0 * h))) / (12.0 * h);
        assert!((fd - grad[i]).abs() <= 1e-6 * grad[i].abs().max(1e-3), "gradient {i}: {} vs {fd}", grad[i]);
    }
}
