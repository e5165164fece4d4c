//! The three outlier counters on planted spectra: k outliers above a bulk.
use hesslab_analysis::*;
use hesslab_data::rng::Rng;

fn planted(k: usize, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    // Bulk: a decaying edge near zero (Marchenko–Pastur-like), some negatives.
    let mut v: Vec<f64> = (0..n).map(|_| 0.01 * rng.uniform().powi(3) - 0.001 * rng.uniform()).collect();
    for i in 0..k {
        v[i] = 0.05 + 0.5 * (k - i) as f64 / k as f64 * rng.uniform_in(0.8, 1.2);
    }
    v.sort_by(|a, b| b.total_cmp(a));
    v
}

#[test]
fn counters_find_k_outliers_on_planted_spectra() {
    for k in [2, 5, 10, 20, 50] {
        for seed in 0..3 {
            let v = planted(k, 4000, seed + 10 * k as u64);
            let c = count_outliers(&v, 120, None);
            assert_eq!(c.ratio, k, "k = {k} seed {seed}: ratio {c:?}");
            assert!((c.heuristic as i64 - k as i64).abs() <= 1, "k = {k} seed {seed}: heuristic {c:?}");
            let fixed = count_outliers(&v, 120, Some(0.03));
            assert_eq!(fixed.heuristic, k);
            assert_eq!(fixed.cutoff, 0.03);
        }
    }
    // The gap counter finds the largest jump: plant one clearly separated group.
    let mut v = planted(5, 1000, 1);
    for x in v.iter_mut().take(5) {
        *x += 1.0;
    }
    assert_eq!(count_outliers(&v, 120, None).gap, 5);
}

#[test]
fn summary_counts_signs_and_moments() {
    let v = vec![3.0, 1.0, 1e-9, 0.0, -1e-9, -0.5];
    let s = summarize(&v, 10, &SummaryParams { zero_tol: 1e-6, ..Default::default() });
    assert_eq!((s.positive, s.negative, s.near_zero), (2, 1, 3));
    assert_eq!(s.dim, 10);
    assert!((s.mean - 3.5 / 6.0).abs() < 1e-15);
    assert_eq!(s.max, 3.0);
    assert_eq!(s.min, -0.5);
}

/// The same counters on matrices: A = Q diag(planted) Qᵀ with a random orthogonal Q, through
/// faer's dense self-adjoint solver (the path the pipelines take), must still give k.
#[test]
fn counters_find_k_outliers_on_matrices_built_with_k() {
    let n = 400;
    for k in [2, 5, 10, 20] {
        let v = planted(k, n, 100 + k as u64);
        let mut rng = Rng::new(7 + k as u64);
        let g = faer::Mat::<f64>::from_fn(n, n, |_, _| rng.normal());
        let q = g.qr().compute_Q();
        let a = &q * faer::Mat::<f64>::from_fn(n, n, |i, j| if i == j { v[i] } else { 0.0 }) * q.transpose();
        let mut ev = a.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
        ev.reverse();
        for (x, y) in ev.iter().zip(&v) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
        let c = count_outliers(&ev, 120, None);
        assert_eq!(c.ratio, k, "k = {k}: {c:?}");
        assert!(c.heuristic.abs_diff(k) <= 1, "k = {k}: {c:?}");
    }
}
