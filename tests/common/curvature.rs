//! Checks every network test makes of its curvature operators.
use faer::Mat;
use hesslab_eigen::{DenseParams, DenseSolver, LanczosParams, LanczosSolver};
use hesslab_hessian::{LinearOperator, ModelCurvature};
use hesslab_model::LayerSpec;
use hesslab_progress::Progress;

/// A `layers = [...]` list from its TOML text.
pub fn layers(toml_list: &str) -> Vec<LayerSpec> {
    let t: toml::Table = toml::from_str(&format!("layers = {toml_list}")).unwrap();
    t["layers"].clone().try_into().unwrap()
}

/// ‖a − b‖ / ‖b‖.
pub fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    num / b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300)
}

/// The operator as a dense matrix (applied to the identity).
pub fn dense(op: &dyn LinearOperator) -> Mat<f64> {
    let p = op.dim();
    let mut out = Mat::<f64>::zeros(p, p);
    op.apply_block(Mat::<f64>::identity(p, p).as_ref(), out.as_mut());
    out
}

/// Dense H, G and R of one network: H symmetric and H = G + R to 1e-12 of max|H|, G positive
/// semi-definite; returns max|H|.
pub fn check_structure(what: &str, h: &Mat<f64>, g: &Mat<f64>, r: &Mat<f64>) -> f64 {
    let p = h.nrows();
    let scale = (0..p).flat_map(|j| (0..p).map(move |i| (i, j))).map(|(i, j)| h[(i, j)].abs()).fold(0.0, f64::max);
    let (mut asym, mut split) = (0.0f64, 0.0f64);
    for j in 0..p {
        for i in 0..p {
            asym = asym.max((h[(i, j)] - h[(j, i)]).abs());
            split = split.max((h[(i, j)] - g[(i, j)] - r[(i, j)]).abs());
        }
    }
    assert!(asym <= 1e-12 * scale, "{what}: asymmetry {asym:e} (scale {scale:e})");
    assert!(split <= 1e-12 * scale, "{what}: |H − G − R| = {split:e}");
    let ev_g = g.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
    let top_g = ev_g.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
    assert!(ev_g.iter().all(|&e| e >= -1e-12 * top_g), "{what}: G has eigenvalue {:e}", ev_g[0]);
    scale
}

/// Lanczos' top-k on the matrix-free operator equal to the dense solver's on `h` (1e-9·λ₁),
/// with residuals below 1e-8·λ₁.
pub fn check_lanczos(what: &str, op: &ModelCurvature, h: &Mat<f64>, k: usize) {
    let (dense_pairs, _) = DenseSolver::solve(h, &DenseParams::default()).unwrap();
    let lp = LanczosParams { k, tol: 1e-10, dense_below: 0, seed: 3, ..Default::default() };
    let (pairs, info) = LanczosSolver::solve(op, &lp, &Progress::hidden()).unwrap();
    let l1 = dense_pairs.values[0].abs();
    assert!(info.max_residual <= 1e-8 * l1, "{what}: Lanczos residual {:e}", info.max_residual);
    for j in 0..k {
        let (a, b) = (pairs.values[j], dense_pairs.values[j]);
        assert!((a - b).abs() <= 1e-9 * l1, "{what}: λ{j} Lanczos {a} vs dense {b}");
    }
}

/// The gradient of the mean loss of `d` at `m`'s parameters by central differences (step 1e-6).
pub fn central_difference_gradient(m: &hesslab_model::Network, d: &hesslab_data::Split) -> Vec<f64> {
    (0..m.num_params())
        .map(|i| {
            let (mut wp, mut wm) = (m.params().to_vec(), m.params().to_vec());
            wp[i] += 1e-6;
            wm[i] -= 1e-6;
            (m.loss_grad_at(&wp, d.x.as_ref(), &d.y).0 - m.loss_grad_at(&wm, d.x.as_ref(), &d.y).0) / 2e-6
        })
        .collect()
}
