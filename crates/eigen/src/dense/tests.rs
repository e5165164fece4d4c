//! The two-stage path against faer's one-stage solver and against planted spectra.
use super::*;
use hesslab_data::rng::Rng;

/// Q diag(λ) Qᵀ with Q a seeded random orthogonal matrix.
pub(super) fn planted(lam: &[f64], seed: u64) -> Mat<f64> {
    let n = lam.len();
    let mut rng = Rng::new(seed);
    let g = Mat::from_fn(n, n, |_, _| rng.normal());
    let q = g.qr().compute_thin_Q();
    let ql = Mat::from_fn(n, n, |i, j| q[(i, j)] * lam[j]);
    let a = &ql * q.transpose();
    // Exactly symmetric, as a Hessian is.
    Mat::from_fn(n, n, |i, j| if i >= j { a[(i, j)] } else { a[(j, i)] })
}

fn ascending(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn two_stage(a: &Mat<f64>, b: usize, par: Par) -> Vec<f64> {
    let (mut d, mut e) = two_stage_tridiagonal(a.to_owned(), b, par, &Progress::hidden(), &mut [0.0; 3]);
    tridiagonal::tridiagonal_eigenvalues(&mut d, &mut e).unwrap();
    ascending(d)
}

fn faer_reference(a: &Mat<f64>) -> Vec<f64> {
    ascending(a.self_adjoint_eigenvalues(Side::Lower).unwrap())
}

fn max_abs_diff(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

fn norm2(lam: &[f64]) -> f64 {
    lam.iter().fold(0.0f64, |m, l| m.max(l.abs())).max(f64::MIN_POSITIVE)
}

/// Two-stage agrees with faer to 1e-12·‖A‖ and with the planted spectrum to 1e-11·‖A‖.
fn check(lam: &[f64], b: usize, seed: u64) {
    let a = planted(lam, seed);
    let ours = two_stage(&a, b, Par::Seq);
    let reference = faer_reference(&a);
    let scale = norm2(lam);
    let d = max_abs_diff(&ours, &reference);
    assert!(d <= 1e-12 * scale, "n = {}, b = {b}: |two-stage − faer| = {d:e} > 1e-12·{scale:e}", lam.len());
    let p = max_abs_diff(&ours, &ascending(lam.to_vec()));
    assert!(p <= 1e-11 * scale, "n = {}, b = {b}: |two-stage − planted| = {p:e}", lam.len());
}

fn mixed_spectrum(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.normal() * 3.0).collect()
}

#[test]
fn sides_below_at_and_above_the_band_width() {
    for b in [1, 2, 3, 8, 16, 32] {
        for n in [1, 2, 3, 4, b, b + 1, b + 2, 2 * b + 1, 3 * b + 5, 150] {
            check(&mixed_spectrum(n.max(1), (n * 31 + b) as u64), b, 7 + n as u64);
        }
    }
}

#[test]
fn hessian_like_thousands_at_zero_and_few_outliers() {
    // 1 200 eigenvalues within ±1e-9 of zero (a third exactly zero), 10 outliers, a few negatives.
    let n = 1210;
    let mut rng = Rng::new(11);
    let mut lam: Vec<f64> = (0..n)
        .map(|i| match i {
            0..10 => 5.0 + 10.0 * i as f64,
            10..410 => 0.0,
            _ => 1e-9 * rng.normal(),
        })
        .collect();
    lam[500] = -0.3;
    lam[501] = -0.01;
    for b in [16, 32, 48] {
        check(&lam, b, 5);
    }
}

#[test]
fn exactly_repeated_eigenvalues() {
    let n = 400;
    let lam: Vec<f64> = (0..n).map(|i| [-2.0, 0.0, 1.0, 1.0 + 1e-14, 7.0][i % 5]).collect();
    for b in [8, 32] {
        check(&lam, b, 9);
    }
}

#[test]
fn structured_matrices_zero_diagonal_and_already_tridiagonal() {
    let n = 100;
    let zero = Mat::<f64>::zeros(n, n);
    assert!(two_stage(&zero, 8, Par::Seq).iter().all(|&x| x == 0.0));
    let diag = Mat::from_fn(n, n, |i, j| if i == j { (i as f64) - 50.0 } else { 0.0 });
    // faer's QR iteration rescales, so exact up to rounding (not bit-exact) even here.
    let d = max_abs_diff(&two_stage(&diag, 8, Par::Seq), &(0..n).map(|i| i as f64 - 50.0).collect::<Vec<_>>());
    assert!(d <= 1e-14 * 50.0, "{d:e}");
    let tri = Mat::from_fn(n, n, |i, j| {
        if i == j {
            2.0
        } else if i.abs_diff(j) == 1 {
            -1.0
        } else {
            0.0
        }
    });
    // The 1-D Laplacian: λₖ = 2 − 2 cos(kπ/(n+1)).
    let exact: Vec<f64> = (1..=n).map(|k| 2.0 - 2.0 * (k as f64 * std::f64::consts::PI / (n + 1) as f64).cos()).collect();
    assert!(max_abs_diff(&two_stage(&tri, 8, Par::Seq), &ascending(exact)) < 1e-13);
}

#[test]
fn bit_identical_across_thread_counts() {
    let a = planted(&mixed_spectrum(700, 3), 4);
    let one = two_stage(&a, 32, Par::Seq);
    let two = two_stage(&a, 32, Par::rayon(2));
    let three = two_stage(&a, 32, Par::rayon(3));
    assert!(one.iter().zip(&two).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(one.iter().zip(&three).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn pipelined_bulge_chase_is_bit_identical_to_the_sequential_one() {
    let a = planted(&mixed_spectrum(400, 5), 6);
    let mut work = a.clone();
    band::reduce_to_band(work.as_mut(), 8, Par::Seq, |_, _| {});
    let run = |threads| bulge::Band::from_lower(work.as_ref(), 8).into_tridiagonal_and_reflectors(threads, |_, _| {}).0;
    let (d1, e1) = run(1);
    for threads in [2, 3, 5] {
        let (d, e) = run(threads);
        assert!(d1.iter().chain(&e1).zip(d.iter().chain(&e)).all(|(x, y)| x.to_bits() == y.to_bits()), "{threads} threads");
    }
}

#[test]
fn solver_uses_two_stage_and_sorts_descending() {
    let lam = mixed_spectrum(300, 8);
    let a = planted(&lam, 2);
    let (pairs, info) = DenseSolver::solve(&a, &DenseParams::default()).unwrap();
    assert_eq!(info.method, DenseMethod::TwoStage);
    assert!(pairs.values.windows(2).all(|w| w[0] >= w[1]));
    let mut expected = lam.clone();
    expected.sort_by(|x, y| y.total_cmp(x));
    assert!(max_abs_diff(&pairs.values, &expected) < 1e-11 * norm2(&lam));
    // With many vectors: two-stage too (divide and conquer on the tridiagonal) from
    // `vectors_two_stage_from` on, faer's path below; with a few (inverse iteration) always
    // two-stage; the same values.
    for (top, from, method) in [(100, 0, DenseMethod::TwoStage), (100, 301, DenseMethod::Faer), (2, 301, DenseMethod::TwoStage)] {
        let p = DenseParams { top_vectors: top, vectors_two_stage_from: from, ..Default::default() };
        let (with_vectors, info) = DenseSolver::solve(&a, &p).unwrap();
        assert_eq!(info.method, method);
        assert!(max_abs_diff(&pairs.values, &with_vectors.values) < 1e-12 * norm2(&lam));
    }
}

#[test]
fn selected_extremes_match_the_full_spectrum_with_their_ranks() {
    let n = 500;
    let lam = mixed_spectrum(n, 12);
    let a = planted(&lam, 3);
    let (all, _) = DenseSolver::solve(&a, &DenseParams::default()).unwrap();
    let scale = norm2(&lam);
    for (which, k) in [(Which::Largest, 7), (Which::Smallest, 5), (Which::Magnitude, 6), (Which::Magnitude, 400), (Which::Largest, 900)] {
        let (some, info) = DenseSolver::solve(&a, &DenseParams { select: Some((which, k)), ..Default::default() }).unwrap();
        assert_eq!(info.method, DenseMethod::TwoStage);
        assert_eq!(some.values.len(), k.min(n), "{which:?} {k}");
        let mut expected: Vec<(u32, f64)> = all.ranks.iter().copied().zip(all.values.iter().copied()).collect();
        match which {
            Which::Largest => expected.truncate(k),
            Which::Smallest => expected = expected[n - k.min(n)..].to_vec(),
            Which::Magnitude => {
                expected.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
                expected.truncate(k);
                expected.sort_by_key(|x| x.0);
            }
        }
        assert_eq!(some.ranks, expected.iter().map(|x| x.0).collect::<Vec<_>>(), "{which:?} {k}");
        let got: Vec<f64> = some.values.clone();
        let want: Vec<f64> = expected.iter().map(|x| x.1).collect();
        assert!(max_abs_diff(&got, &want) <= 1e-12 * scale, "{which:?} {k}");
    }
}

#[test]
fn non_finite_entries_are_a_clear_error() {
    let mut a = planted(&mixed_spectrum(50, 1), 1);
    a[(30, 4)] = f64::NAN;
    let e = DenseSolver::solve(&a, &DenseParams::default()).unwrap_err().to_string();
    assert!(e.contains("(30, 4)") && e.contains("not finite"), "{e}");
}
