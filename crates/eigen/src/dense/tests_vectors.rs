//! Eigenvectors: the tridiagonal divide and conquer and the two-stage back-transformation,
//! judged by residuals and orthogonality, and their eigenvalues against faer's solver.
use super::tests::planted;
use super::*;
use hesslab_data::rng::Rng;

/// max |T q − λ q| over all pairs, ‖QᵀQ − I‖_max, and the eigenvalues' distance to faer's.
fn tridiagonal_errors(diag: &[f64], sub: &[f64], par: Par) -> (f64, f64, f64) {
    let n = diag.len();
    let (values, q) = divide::tridiagonal_eigenpairs(diag, sub, par, None).unwrap();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "eigenvalues not ascending");
    let t = tridiagonal::tridiagonal_matrix(diag, sub);
    let residual = {
        let tq = &t * &q;
        let mut r = 0.0f64;
        for j in 0..n {
            for i in 0..n {
                r = r.max((tq[(i, j)] - values[j] * q[(i, j)]).abs());
            }
        }
        r
    };
    let gram = q.transpose() * &q;
    let orth = (0..n)
        .flat_map(|j| (0..n).map(move |i| (i, j)))
        .fold(0.0f64, |m, (i, j)| m.max((gram[(i, j)] - if i == j { 1.0 } else { 0.0 }).abs()));
    let mut reference = t.self_adjoint_eigenvalues(Side::Lower).unwrap();
    reference.sort_by(f64::total_cmp);
    let value_err = values.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    (residual, orth, value_err)
}

fn check_tridiagonal(name: &str, diag: &[f64], sub: &[f64]) {
    let norm = diag.iter().chain(sub).fold(0.0f64, |m, x| m.max(x.abs())).max(f64::MIN_POSITIVE) * 3.0;
    for par in [Par::Seq, Par::rayon(2)] {
        let (res, orth, val) = tridiagonal_errors(diag, sub, par);
        assert!(res <= 1e-12 * norm, "{name}: residual {res:e} > 1e-12·‖T‖ = {:e}", 1e-12 * norm);
        assert!(orth <= 1e-12, "{name}: ‖QᵀQ − I‖ = {orth:e}");
        assert!(val <= 1e-12 * norm, "{name}: eigenvalues {val:e} from faer's");
    }
}

#[test]
fn divide_and_conquer_on_hard_tridiagonals() {
    let mut rng = Rng::new(7);
    for n in [1usize, 2, 3, 31, 32, 33, 64, 65, 200, 517] {
        let d: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let e: Vec<f64> = (0..n.saturating_sub(1)).map(|_| rng.normal()).collect();
        check_tridiagonal(&format!("random n = {n}"), &d, &e);
    }
    let n = 400;
    // Wilkinson's W⁺: pairs of eigenvalues agreeing to many digits.
    let d: Vec<f64> = (0..n).map(|i| (i as f64 - (n as f64 - 1.0) / 2.0).abs()).collect();
    check_tridiagonal("Wilkinson", &d, &vec![1.0; n - 1]);
    // The 1-2-1 matrix (Laplacian): eigenvalues clustered at the ends.
    check_tridiagonal("1-2-1", &vec![2.0; n], &vec![-1.0; n - 1]);
    // Glued copies of one matrix: every eigenvalue (nearly) repeated, the deflation by rotation.
    let block: Vec<f64> = (0..50).map(|_| rng.normal()).collect();
    let block_e: Vec<f64> = (0..49).map(|_| rng.normal()).collect();
    let (mut d, mut e) = (vec![], vec![]);
    for copy in 0..8 {
        d.extend(&block);
        e.extend(&block_e);
        if copy < 7 {
            e.push(1e-14);
        }
    }
    check_tridiagonal("glued", &d, &e);
    // Hessian-like: most of the matrix near zero, a few large entries; exact zeros in e.
    let d: Vec<f64> = (0..n).map(|i| if i % 97 == 0 { 50.0 + i as f64 } else { 1e-9 * rng.normal() }).collect();
    let e: Vec<f64> = (0..n - 1).map(|i| if i % 13 == 0 { 0.0 } else { 1e-6 * rng.normal() }).collect();
    check_tridiagonal("hessian-like", &d, &e);
    check_tridiagonal("zero", &vec![0.0; 70], &vec![0.0; 69]);
    check_tridiagonal("identity", &vec![1.0; 70], &vec![0.0; 69]);
}

/// Two-stage eigenpairs (all vectors): residuals < 1e-10·‖A‖, orthonormal to 1e-12, values
/// within 1e-12·‖A‖ of faer's.
fn check_dense(a: &Mat<f64>, b: usize, name: &str) {
    let n = a.nrows();
    let p = DenseParams { top_vectors: n, band_width: b, two_stage_from: 0, vectors_two_stage_from: 0, ..Default::default() };
    let (pairs, info) = DenseSolver::solve(a, &p).unwrap();
    assert_eq!(info.method, DenseMethod::TwoStage);
    let x = Mat::<f64>::from_fn(n, n, |i, c| pairs.vectors[c].1[i]);
    let values: Vec<f64> = pairs.vectors.iter().map(|(r, _)| pairs.values[*r as usize]).collect();
    let norm = a.norm_l2().max(f64::MIN_POSITIVE);
    let ax = a * &x;
    let mut residual = 0.0f64;
    for c in 0..n {
        let r = (0..n).map(|i| (ax[(i, c)] - values[c] * x[(i, c)]).powi(2)).sum::<f64>().sqrt();
        residual = residual.max(r);
    }
    let gram = x.transpose() * &x;
    let orth = (0..n)
        .flat_map(|j| (0..n).map(move |i| (i, j)))
        .fold(0.0f64, |m, (i, j)| m.max((gram[(i, j)] - if i == j { 1.0 } else { 0.0 }).abs()));
    let mut reference = a.self_adjoint_eigenvalues(Side::Lower).unwrap();
    reference.sort_by(|x, y| y.total_cmp(x));
    let value_err = pairs.values.iter().zip(&reference).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(residual <= 1e-10 * norm, "{name}: residual {residual:e} > 1e-10·‖A‖ ({norm:e})");
    assert!(orth <= 1e-12, "{name}: ‖XᵀX − I‖ = {orth:e}");
    assert!(value_err <= 1e-12 * norm, "{name}: eigenvalues {value_err:e} from faer's");
}

/// The Hessian's hard case: ten outliers, the rest of the n eigenvalues at (or within 1e-10
/// of) zero.
fn hessian_like_spectrum(n: usize, rng: &mut Rng) -> Vec<f64> {
    (0..n)
        .map(|i| {
            if i < 10 {
                100.0 + i as f64
            } else if i % 2 == 0 {
                0.0
            } else {
                1e-10 * rng.normal()
            }
        })
        .collect()
}

#[test]
fn two_stage_eigenvectors_residuals_and_orthogonality() {
    let mut rng = Rng::new(11);
    for (n, b) in [(3usize, 2usize), (40, 2), (61, 3), (50, 4), (70, 5), (9, 8), (40, 8), (41, 16), (130, 32), (257, 16), (300, 32)] {
        let lam: Vec<f64> = (0..n).map(|_| 3.0 * rng.normal()).collect();
        check_dense(&planted(&lam, n as u64), b, &format!("n = {n}, b = {b}"));
    }
    // The Hessian's hard case: most eigenvalues at (or within 1e-10 of) zero, a few outliers.
    let n = 400;
    let lam = hessian_like_spectrum(n, &mut rng);
    check_dense(&planted(&lam, 5), 32, "hessian-like");
    // Exactly repeated eigenvalues.
    let lam: Vec<f64> = (0..n).map(|i| (i % 4) as f64).collect();
    check_dense(&planted(&lam, 6), 32, "repeated");
}

#[test]
fn two_stage_eigenvectors_are_bit_identical_across_thread_counts() {
    let mut rng = Rng::new(3);
    let n = 700;
    let lam: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let a = planted(&lam, 9);
    let p = DenseParams { top_vectors: 5, bottom_vectors: 5, vectors_two_stage_from: 0, ..Default::default() };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let par = if threads == 1 { Par::Seq } else { Par::rayon(threads) };
        pool.install(|| {
            faer::set_global_parallelism(par);
            DenseSolver::solve(&a, &p).unwrap().0
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        let other = run(threads);
        assert!(one.values.iter().zip(&other.values).all(|(x, y)| x.to_bits() == y.to_bits()), "values differ at {threads} threads");
        assert_eq!(one.vectors, other.vectors, "vectors differ at {threads} threads");
    }
}

/// `top` + `bottom` eigenvectors through the two-stage path: residuals < 1e-10·‖A‖, orthonormal
/// to 1e-12, and the eigenvalues bit-identical to the eigenvalues-only solve. Returns whether
/// inverse iteration produced them.
fn check_few(a: &Mat<f64>, b: usize, top: usize, bottom: usize, name: &str) -> bool {
    let n = a.nrows();
    let p = DenseParams {
        top_vectors: top,
        bottom_vectors: bottom,
        band_width: b,
        two_stage_from: 0,
        vectors_two_stage_from: 0,
        ..Default::default()
    };
    let (pairs, info) = DenseSolver::solve(a, &p).unwrap();
    assert_eq!(info.method, DenseMethod::TwoStage);
    assert_eq!(pairs.vectors.len(), top + bottom);
    let norm = a.norm_l2().max(f64::MIN_POSITIVE);
    let x = Mat::<f64>::from_fn(n, pairs.vectors.len(), |i, c| pairs.vectors[c].1[i]);
    let ax = a * &x;
    for (c, (rank, _)) in pairs.vectors.iter().enumerate() {
        let lambda = pairs.values[*rank as usize];
        let r = (0..n).map(|i| (ax[(i, c)] - lambda * x[(i, c)]).powi(2)).sum::<f64>().sqrt();
        assert!(r <= 1e-10 * norm, "{name}: rank {rank}: residual {r:e} > 1e-10·‖A‖ ({norm:e})");
    }
    let gram = x.transpose() * &x;
    for j in 0..x.ncols() {
        for i in 0..x.ncols() {
            let err = (gram[(i, j)] - if i == j { 1.0 } else { 0.0 }).abs();
            assert!(err <= 1e-12, "{name}: (XᵀX − I)[{i}, {j}] = {err:e}");
        }
    }
    let only_values = DenseParams { band_width: b, two_stage_from: 0, ..Default::default() };
    let (values, _) = DenseSolver::solve(a, &only_values).unwrap();
    if info.inverse_iteration {
        assert!(
            values.values.iter().zip(&pairs.values).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}: values differ from the values-only solve"
        );
    }
    info.inverse_iteration
}

#[test]
fn few_eigenvectors_by_inverse_iteration() {
    let mut rng = Rng::new(17);
    for (n, b) in [(64usize, 4usize), (300, 16), (517, 32)] {
        let lam: Vec<f64> = (0..n).map(|_| 3.0 * rng.normal()).collect();
        assert!(check_few(&planted(&lam, n as u64 + 1), b, 5, 3, &format!("random n = {n}")), "n = {n}: inverse iteration was not taken");
    }
    // The Hessian's case: ten outliers, the rest at or within 1e-10 of zero. The outliers are
    // separated; the bottom is one tight cluster, taken by inverse iteration or, where it
    // cannot vouch for the vectors, by divide and conquer — correct either way.
    let n = 400;
    let lam = hessian_like_spectrum(n, &mut rng);
    let a = planted(&lam, 8);
    assert!(check_few(&a, 32, 10, 0, "outliers"), "outliers: inverse iteration was not taken");
    check_few(&a, 32, 0, 20, "bulk");
    // Exactly repeated eigenvalues in the wanted range.
    let lam: Vec<f64> = (0..n).map(|i| (i % 4) as f64).collect();
    check_few(&planted(&lam, 9), 32, 12, 12, "repeated");
}
