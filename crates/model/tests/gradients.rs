//! Gradients against central finite differences; parameter counts; initialization layout.
use faer::Mat;
use hesslab_data::rng::Rng;
use hesslab_model::*;

fn random_case(seed: u64, sizes: Vec<usize>, act: Activation, loss: LossKind, bias: bool, n: usize) -> (Mlp, Mat<f64>, Vec<u32>) {
    let arch = Architecture { sizes: sizes.clone(), activation: act, bias, loss };
    let m = initialize(&arch, Init::Normal, 0.7, 1.0, seed);
    let mut rng = Rng::new(seed + 1);
    let x = Mat::from_fn(n, sizes[0], |_, _| rng.normal());
    let classes = if loss == LossKind::Logistic { 2 } else { *sizes.last().unwrap() };
    let y = (0..n).map(|_| rng.below(classes) as u32).collect();
    (m, x, y)
}

fn fd_grad(m: &Mlp, x: &Mat<f64>, y: &[u32], eps: f64) -> Vec<f64> {
    (0..m.num_params())
        .map(|i| {
            let mut wp = m.params.clone();
            wp[i] += eps;
            let mut wm = m.params.clone();
            wm[i] -= eps;
            let lp = m.loss_grad_at(&wp, x.as_ref(), y).0;
            let lm = m.loss_grad_at(&wm, x.as_ref(), y).0;
            (lp - lm) / (2.0 * eps)
        })
        .collect()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    num / den
}

#[test]
fn gradient_matches_central_differences_for_every_activation_and_loss() {
    let acts = [Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::Identity];
    let losses = [LossKind::CrossEntropy, LossKind::Mse, LossKind::Logistic];
    let mut seed = 10;
    for act in acts {
        for loss in losses {
            for bias in [true, false] {
                seed += 1;
                let out = if loss == LossKind::Logistic { 1 } else { 3 };
                let (m, x, y) = random_case(seed, vec![4, 5, 3, out], act, loss, bias, 9);
                let (_, g) = m.loss_grad(x.as_ref(), &y);
                let fd = fd_grad(&m, &x, &y, 1e-6);
                let e = rel_err(&g, &fd);
                assert!(e < 1e-6, "{act:?} {loss:?} bias={bias}: relative error {e:e}");
            }
        }
    }
}

#[test]
fn gradient_property_over_random_shapes() {
    let mut rng = Rng::new(99);
    for case in 0..12 {
        let depth = 1 + rng.below(3);
        let mut sizes = vec![1 + rng.below(5)];
        for _ in 0..depth {
            sizes.push(1 + rng.below(6));
        }
        *sizes.last_mut().unwrap() = 2 + rng.below(3);
        let act = [Activation::Tanh, Activation::Sigmoid, Activation::Relu][case % 3];
        let n = 1 + rng.below(300); // crosses the chunk boundary sometimes
        let (m, x, y) = random_case(1000 + case as u64, sizes.clone(), act, LossKind::CrossEntropy, case % 2 == 0, n);
        let (_, g) = m.loss_grad(x.as_ref(), &y);
        let fd = fd_grad(&m, &x, &y, 1e-6);
        let e = rel_err(&g, &fd);
        assert!(e < 1e-6, "shape {sizes:?} n={n} {act:?}: relative error {e:e}");
    }
}

#[test]
fn s18_e2_parameter_counts() {
    for (k, p) in [(2, 4022), (5, 4115), (10, 4270), (20, 4580), (50, 5510)] {
        let a = Architecture { sizes: vec![100, 30, 30, k], activation: Activation::Relu, bias: true, loss: LossKind::CrossEntropy };
        assert_eq!(a.num_params(), p, "k = {k}");
    }
}

#[test]
fn layout_is_pytorch_order() {
    let a = Architecture { sizes: vec![3, 2, 4], activation: Activation::Tanh, bias: true, loss: LossKind::CrossEntropy };
    let t = a.tensors();
    let names: Vec<&str> = t.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]);
    assert_eq!(t[0].2, 0..6);
    assert_eq!(t[1].2, 6..8);
    assert_eq!(t[2].1, vec![4, 2]);
    // W is (out × in) row-major: output o of layer 0 is Σ_i W[o, i] x_i + b[o].
    let mut params = vec![0.0; a.num_params()];
    params[1] = 1.0; // W[0, 1]
    params[6] = 0.5; // b[0]
    params[3 + 2] = 2.0; // W[1, 2]
    let m = Mlp::new(Architecture { activation: Activation::Identity, ..a }, params);
    let x = Mat::from_fn(1, 3, |_, j| (j + 1) as f64);
    let f = m.forward(x.as_ref());
    assert_eq!(f.z[0][(0, 0)], 2.0 + 0.5);
    assert_eq!(f.z[0][(0, 1)], 6.0);
}

#[test]
fn output_jacobian_matches_finite_differences() {
    let (m, x, _) = random_case(5, vec![3, 4, 2], Activation::Tanh, LossKind::CrossEntropy, true, 1);
    let j = m.output_jacobian(x.as_ref());
    let eps = 1e-6;
    for q in 0..m.num_params() {
        let mut wp = m.params.clone();
        wp[q] += eps;
        let mut wm = m.params.clone();
        wm[q] -= eps;
        let fp = m.forward_with(&wp, x.as_ref());
        let fm = m.forward_with(&wm, x.as_ref());
        for c in 0..2 {
            let fd = (fp.output()[(0, c)] - fm.output()[(0, c)]) / (2.0 * eps);
            assert!((fd - j[(c, q)]).abs() < 1e-7, "J[{c},{q}] {} vs {fd}", j[(c, q)]);
        }
    }
}
