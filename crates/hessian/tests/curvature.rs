//! Curvature operators against finite differences and dense identities.
use faer::{Mat, Side};
use hesslab_data::{Split, rng::Rng};
use hesslab_hessian::*;
use hesslab_model::*;
use hesslab_progress::Progress;
use std::sync::Arc;

fn case(seed: u64, sizes: Vec<usize>, act: Activation, loss: LossKind, bias: bool, n: usize) -> (Network, Split) {
    let arch = Architecture { sizes: sizes.clone(), activation: act, bias, loss };
    let m = Network::from(initialize(&arch, Init::Normal, 0.6, 1.0, seed));
    let mut rng = Rng::new(seed + 7);
    let x = Mat::from_fn(n, sizes[0], |_, _| rng.normal());
    let classes = if loss == LossKind::Logistic { 2 } else { *sizes.last().unwrap() };
    let y = (0..n).map(|_| rng.below(classes) as u32).collect();
    (m, Split { x, y, num_classes: classes })
}

fn dense(m: &Network, d: &Split, kind: CurvatureKind) -> Mat<f64> {
    let cv = ModelCurvature::new(m.clone(), d.clone(), kind);
    materialize(&cv, Some((&cv, None)), 7, &Progress::hidden()).0
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    num / b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300)
}

fn max_abs(a: &Mat<f64>) -> f64 {
    let mut m = 0.0f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            m = m.max(a[(i, j)].abs());
        }
    }
    m
}

fn max_abs_diff(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
    let mut m = 0.0f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            m = m.max((a[(i, j)] - b[(i, j)]).abs());
        }
    }
    m
}

#[test]
fn hvp_matches_finite_differences_for_every_activation_and_loss_at_init_and_trained() {
    let acts = [Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::Identity];
    let losses = [LossKind::CrossEntropy, LossKind::Mse, LossKind::Logistic];
    let mut seed = 100;
    for act in acts {
        for loss in losses {
            seed += 1;
            let out = if loss == LossKind::Logistic { 1 } else { 3 };
            let (mut m, d) = case(seed, vec![4, 6, 5, out], act, loss, true, 12);
            for point in ["init", "trained"] {
                if point == "trained" {
                    let lr = if act == Activation::Sigmoid { 0.5 } else { 0.05 };
                    let p = TrainParams { lr, max_steps: 200, ..Default::default() };
                    train(&mut m, &p, &d, &d, 1, &hesslab_model::Start::default(), &Progress::hidden()).unwrap();
                }
                let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
                let mut rng = Rng::new(seed);
                for _ in 0..3 {
                    let v: Vec<f64> = (0..m.num_params()).map(|_| rng.normal()).collect();
                    let hv = op.apply_vec(&v);
                    let fd = finite_difference_hvp(&m, &d, &v, 1e-5);
                    let e = rel(&hv, &fd);
                    assert!(e < 1e-6, "{act:?} {loss:?} at {point}: relative error {e:e}");
                }
            }
        }
    }
}

#[test]
fn hvp_property_over_random_shapes_and_blocks() {
    let mut rng = Rng::new(5);
    for case_i in 0..10 {
        let depth = 1 + rng.below(3);
        let mut sizes = vec![1 + rng.below(4)];
        for _ in 0..depth {
            sizes.push(1 + rng.below(5));
        }
        *sizes.last_mut().unwrap() = 2 + rng.below(3);
        let n = 1 + rng.below(280);
        let act = [Activation::Tanh, Activation::Sigmoid][case_i % 2];
        let (m, d) = case(200 + case_i as u64, sizes.clone(), act, LossKind::CrossEntropy, case_i % 3 != 0, n);
        let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
        let p = m.num_params();
        let k = 1 + rng.below(4);
        let v = Mat::from_fn(p, k, |_, _| rng.normal());
        let mut hv = Mat::<f64>::zeros(p, k);
        op.apply_block(v.as_ref(), hv.as_mut());
        for j in 0..k {
            let col: Vec<f64> = v.col(j).iter().copied().collect();
            let fd = finite_difference_hvp(&m, &d, &col, 1e-5);
            let got: Vec<f64> = hv.col(j).iter().copied().collect();
            let e = rel(&got, &fd);
            assert!(e < 1e-6, "sizes {sizes:?} n {n} column {j}: {e:e}");
            // A block product equals the single-vector product.
            let single = op.apply_vec(&col);
            assert!(rel(&single, &got) < 1e-13);
        }
    }
}

#[test]
fn dense_hessian_is_symmetric_and_splits_into_gauss_newton_plus_residual() {
    for (act, loss) in
        [(Activation::Tanh, LossKind::CrossEntropy), (Activation::Sigmoid, LossKind::Mse), (Activation::Relu, LossKind::CrossEntropy)]
    {
        let (m, d) = case(11, vec![5, 6, 4, 3], act, loss, true, 40);
        let p = m.num_params();
        let cv = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
        let (h, sym) = materialize(&cv, Some((&cv, None)), 5, &Progress::hidden());
        assert!(sym < 1e-12, "{act:?}: symmetry error {sym:e}");
        let g = dense(&m, &d, CurvatureKind::GaussNewton);
        let r = dense(&m, &d, CurvatureKind::Residual);
        let mut gr = g.clone();
        gr += &r;
        let err = max_abs_diff(&h, &gr) / max_abs(&h);
        assert!(err < 1e-12, "{act:?}: H - (G + R) relative {err:e}");
        // G is positive semidefinite.
        let ev = g.self_adjoint_eigenvalues(Side::Lower).unwrap();
        assert!(ev[0] >= -1e-12 * ev[p - 1], "{act:?}: smallest eigenvalue of G {}", ev[0]);
        if loss == LossKind::CrossEntropy {
            // rank(G) ≤ N (C − 1): softmax probabilities sum to one.
            let tol = 1e-10 * ev[p - 1];
            let rank = ev.iter().filter(|&&x| x > tol).count();
            assert!(rank <= 40 * 2, "rank(G) = {rank}");
        }
    }
}

#[test]
fn rank_of_gauss_newton_is_at_most_n_times_c_minus_one() {
    // Over-parametrized: P = 5·20 + 20 + 20·4 + 4 = 204 > N (C − 1) = 10·3 = 30.
    let (m, d) = case(12, vec![5, 20, 4], Activation::Tanh, LossKind::CrossEntropy, true, 10);
    let g = dense(&m, &d, CurvatureKind::GaussNewton);
    let ev = g.self_adjoint_eigenvalues(Side::Lower).unwrap();
    let top = *ev.last().unwrap();
    let rank = ev.iter().filter(|&&x| x > 1e-10 * top).count();
    assert!(rank <= 30, "rank {rank}");
    assert!(rank >= 20, "rank {rank} unexpectedly small");
}

#[test]
fn logistic_regression_has_zero_residual_and_linear_mse_is_xtx() {
    // Logistic regression: f is linear in w, so ∇²f = 0 and R = 0 exactly.
    let (m, d) = case(13, vec![6, 1], Activation::Identity, LossKind::Logistic, true, 30);
    let r = dense(&m, &d, CurvatureKind::Residual);
    assert_eq!(max_abs(&r), 0.0);
    let h = dense(&m, &d, CurvatureKind::Hessian);
    let g = dense(&m, &d, CurvatureKind::GaussNewton);
    assert!(max_abs_diff(&h, &g) <= 1e-15 * max_abs(&h));
    // Linear regression with MSE: H = [X 1]ᵀ[X 1] / N.
    let (m, d) = case(14, vec![5, 1], Activation::Identity, LossKind::Mse, true, 25);
    let h = dense(&m, &d, CurvatureKind::Hessian);
    let n = 25.0;
    let xa = Mat::from_fn(25, 6, |i, j| if j < 5 { d.x[(i, j)] } else { 1.0 });
    let closed = xa.transpose() * &xa * faer::Scale(1.0 / n);
    assert!(max_abs_diff(&h, &closed) < 1e-13 * max_abs(&closed), "{}", max_abs_diff(&h, &closed));
}

#[test]
fn dense_hessian_equals_finite_difference_gradient_columns() {
    let (m, d) = case(15, vec![3, 5, 4, 3], Activation::Tanh, LossKind::CrossEntropy, true, 20);
    let p = m.num_params();
    let h = dense(&m, &d, CurvatureKind::Hessian);
    let eps = 1e-5;
    let mut fd = Mat::<f64>::zeros(p, p);
    for j in 0..p {
        let mut wp = m.params().to_vec();
        wp[j] += eps;
        let mut wm = m.params().to_vec();
        wm[j] -= eps;
        let gp = m.loss_grad_at(&wp, d.x.as_ref(), &d.y).1;
        let gm = m.loss_grad_at(&wm, d.x.as_ref(), &d.y).1;
        for i in 0..p {
            fd[(i, j)] = (gp[i] - gm[i]) / (2.0 * eps);
        }
    }
    let err = max_abs_diff(&h, &fd);
    assert!(err < 1e-6, "max |H - H_fd| = {err:e}");
}

#[test]
fn fisher_and_covariance_match_per_sample_gradients() {
    let (m, d) = case(16, vec![3, 4, 3], Activation::Sigmoid, LossKind::CrossEntropy, true, 300);
    let p = m.num_params();
    let n = d.len();
    let mut grads = Vec::new();
    for i in 0..n {
        let s = d.subset(&[i]);
        grads.push(m.loss_grad(s.x.as_ref(), &s.y).1);
    }
    let mean: Vec<f64> = (0..p).map(|q| grads.iter().map(|g| g[q]).sum::<f64>() / n as f64).collect();
    let f = dense(&m, &d, CurvatureKind::EmpiricalFisher);
    let c = dense(&m, &d, CurvatureKind::GradientCovariance);
    let ef = Mat::from_fn(p, p, |a, b| grads.iter().map(|g| g[a] * g[b]).sum::<f64>() / n as f64);
    let ec = Mat::from_fn(p, p, |a, b| ef[(a, b)] - mean[a] * mean[b]);
    assert!(max_abs_diff(&f, &ef) < 1e-12 * max_abs(&ef));
    assert!(max_abs_diff(&c, &ec) < 1e-12 * max_abs(&ef));
}

#[test]
fn restriction_to_a_tensor_is_the_principal_submatrix() {
    let (m, d) = case(17, vec![3, 4, 2], Activation::Tanh, LossKind::CrossEntropy, true, 15);
    let h = dense(&m, &d, CurvatureKind::Hessian);
    let spec = OperatorSpec { tensors: vec!["layers.1.weight".into()], ..Default::default() };
    let idx = spec.index(&m).unwrap().unwrap();
    assert_eq!(idx, (16..24).collect::<Vec<_>>()); // after layers.0 (12 weights + 4 biases)
    let cv = Arc::new(ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian));
    let r = Restricted { inner: cv.clone(), index: idx.clone() };
    let (sub, _) = materialize(&r, Some((&cv, Some(&idx))), 3, &Progress::hidden());
    let (sub2, _) = materialize(&r, None, 3, &Progress::hidden());
    for a in 0..idx.len() {
        for b in 0..idx.len() {
            assert!((sub[(a, b)] - h[(idx[a], idx[b])]).abs() < 1e-14);
            assert!((sub2[(a, b)] - h[(idx[a], idx[b])]).abs() < 1e-14);
        }
    }
    assert!(spec.index(&m).is_ok());
    let bad = OperatorSpec { tensors: vec!["layers.9.weight".into()], ..Default::default() };
    assert!(bad.index(&m).unwrap_err().to_string().contains("layers.1.bias"));
}

#[test]
fn parallel_and_sequential_application_agree_bit_for_bit() {
    let (m, d) = case(18, vec![6, 8, 3], Activation::Tanh, LossKind::CrossEntropy, true, 700);
    let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
    let p = m.num_params();
    let mut rng = Rng::new(1);
    let v = Mat::from_fn(p, 3, |_, _| rng.normal());
    let mut a = Mat::<f64>::zeros(p, 3);
    let mut b = Mat::<f64>::zeros(p, 3);
    op.apply_block(v.as_ref(), a.as_mut());
    op.apply_block_sequential(v.as_ref(), b.as_mut());
    for j in 0..3 {
        for i in 0..p {
            assert_eq!(a[(i, j)].to_bits(), b[(i, j)].to_bits());
        }
    }
}

#[test]
fn cached_loss_and_mean_gradient_equal_the_model_s_bit_for_bit() {
    let (m, d) = case(19, vec![4, 7, 3], Activation::Tanh, LossKind::CrossEntropy, true, 600);
    let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::GradientCovariance);
    let (loss, grad) = m.loss_grad(d.x.as_ref(), &d.y);
    assert_eq!(op.loss.to_bits(), loss.to_bits());
    assert!(op.mean_gradient().iter().zip(&grad).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// The `FaerLinOp` adapter lets faer's matrix-free solvers use our operators: conjugate
/// gradient on (G + I) for a network's Gauss-Newton matrix, materialized as a dense operator.
#[test]
fn faer_conjugate_gradient_runs_on_our_operators() {
    use faer::matrix_free::IdentityPrecond;
    use faer::matrix_free::conjugate_gradient::{CgParams, conjugate_gradient, conjugate_gradient_scratch};
    let (m, d) = case(20, vec![3, 5, 3], Activation::Tanh, LossKind::CrossEntropy, true, 50);
    let mut g = dense(&m, &d, CurvatureKind::GaussNewton);
    let p = g.nrows();
    for i in 0..p {
        g[(i, i)] += 1.0;
    }
    let op = FaerLinOp(Arc::new(DenseOperator::new(Arc::new(g.clone()), "G + I")));
    let b = Mat::from_fn(p, 1, |i, _| (i as f64).sin());
    let mut x = Mat::<f64>::zeros(p, 1);
    let par = faer::Par::Seq;
    let mut buf = faer::dyn_stack::MemBuffer::new(conjugate_gradient_scratch(IdentityPrecond { dim: p }, op.clone(), 1, par));
    let params = CgParams { max_iters: 500, abs_tolerance: 0.0, rel_tolerance: 1e-12, ..Default::default() };
    conjugate_gradient(
        x.as_mut(),
        IdentityPrecond { dim: p },
        op,
        b.as_ref(),
        params,
        |_| {},
        par,
        faer::dyn_stack::MemStack::new(&mut buf),
    )
    .unwrap();
    let r = &g * &x - &b;
    let rn = (0..p).map(|i| r[(i, 0)].powi(2)).sum::<f64>().sqrt();
    assert!(rn < 1e-10, "residual {rn}");
}

/// A wide block on a P = 55 660 network is applied in column blocks of bounded memory: the
/// result is bit-identical on 1 and 2 threads and equals column-at-a-time products.
#[test]
fn wide_blocks_are_split_without_changing_the_product() {
    let (m, d) = case(21, vec![784, 70, 10], Activation::Tanh, LossKind::CrossEntropy, true, 300);
    let p = m.num_params();
    assert_eq!(p, 55_660);
    let k = 40;
    let v = Mat::from_fn(p, k, |i, j| (((i * 7 + j * 13) % 11) as f64 - 5.0) / 5.0);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
            let mut out = Mat::<f64>::zeros(p, k);
            op.apply_block(v.as_ref(), out.as_mut());
            out
        })
    };
    let (one, two) = (run(1), run(2));
    assert!((0..k).all(|j| (0..p).all(|i| one[(i, j)].to_bits() == two[(i, j)].to_bits())));
    let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
    let scale = max_abs(&one);
    for j in [0, 17, k - 1] {
        let mut col = Mat::<f64>::zeros(p, 1);
        op.apply_block(v.as_ref().subcols(j, 1), col.as_mut());
        let diff = (0..p).map(|i| (col[(i, 0)] - one[(i, j)]).abs()).fold(0.0, f64::max);
        assert!(diff <= 1e-13 * scale, "column {j}: {diff:e}");
    }
}

/// Dense materialization applies blocks of unit vectors, where the operator skips the zero
/// R-forward below the touched layer and multiplies by the few nonzeros directly instead of a
/// matrix product; a product with a dense random block takes the full matrix-product path. The
/// two must agree: H·R from the materialized H equals the operator applied to R. Layers are
/// wide enough (20 → 16 → 12 → 5) that the sparse path runs; blocks of 7 straddle layers.
#[test]
fn unit_vector_blocks_and_dense_blocks_give_the_same_operator() {
    for act in [Activation::Tanh, Activation::Relu] {
        let (m, d) = case(31, vec![20, 16, 12, 5], act, LossKind::CrossEntropy, true, 60);
        let p = m.num_params();
        let mut rng = Rng::new(3);
        let r = Mat::from_fn(p, 3, |_, _| rng.normal());
        for kind in [CurvatureKind::Hessian, CurvatureKind::GaussNewton, CurvatureKind::Residual] {
            let h = dense(&m, &d, kind);
            let op = ModelCurvature::new(m.clone(), d.clone(), kind);
            let mut hr = Mat::<f64>::zeros(p, 3);
            op.apply_block(r.as_ref(), hr.as_mut());
            let want = &h * &r;
            let e = max_abs_diff(&want, &hr) / max_abs(&want);
            assert!(e < 1e-12, "{act:?} {kind:?}: relative difference {e:e}");
        }
    }
}

/// A single product (no operator kept, no mean gradient built) is the operator's product bit
/// for bit, for every curvature kind (the gradient covariance still builds the gradient).
#[test]
fn one_off_product_equals_the_operator_s_bit_for_bit() {
    for act in [Activation::Tanh, Activation::Relu] {
        // 600 samples: three chunks of 256 rows, summed in chunk order by both paths.
        let (m, d) = case(41, vec![6, 9, 7, 4], act, LossKind::CrossEntropy, true, 600);
        let mut rng = Rng::new(9);
        let v: Vec<f64> = (0..m.num_params()).map(|_| rng.normal()).collect();
        for kind in [
            CurvatureKind::Hessian,
            CurvatureKind::GaussNewton,
            CurvatureKind::Residual,
            CurvatureKind::EmpiricalFisher,
            CurvatureKind::GradientCovariance,
        ] {
            let once = hessian_vector_product(&m, d.clone(), kind, &v);
            let kept = ModelCurvature::new(m.clone(), d.clone(), kind).apply_vec(&v);
            assert!(once.iter().zip(&kept).all(|(a, b)| a.to_bits() == b.to_bits()), "{act:?} {kind:?}");
        }
    }
}
