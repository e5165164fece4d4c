//! Every solver against the dense solver on planted spectra, with residual checks.
use faer::Mat;
use hesslab_data::rng::Rng;
use hesslab_eigen::*;
use hesslab_linop::{DenseOperator, LinearOperator};
use hesslab_progress::Progress;
use std::sync::Arc;

/// Q diag(λ) Qᵀ with a random orthogonal Q: a bulk near zero plus `k` outliers, and a few
/// negative eigenvalues.
fn planted(n: usize, k: usize, seed: u64) -> (Mat<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let g = Mat::from_fn(n, n, |_, _| rng.normal());
    let q = g.qr().compute_thin_Q();
    let mut lam: Vec<f64> = (0..n).map(|_| rng.uniform_in(-0.02, 0.05)).collect();
    for i in 0..k {
        lam[i] = 1.0 + 3.0 * i as f64 / k as f64 + 0.1 * rng.uniform();
    }
    lam[k] = -0.4;
    lam[k + 1] = -0.3;
    let a = Mat::from_fn(n, n, |i, j| (0..n).map(|t| q[(i, t)] * lam[t] * q[(j, t)]).sum());
    let mut a = a;
    hesslab_linop::symmetrize(&mut a);
    let mut sorted = lam.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    (a, sorted)
}

fn op(a: &Mat<f64>) -> DenseOperator {
    DenseOperator::new(Arc::new(a.clone()), "planted")
}

#[test]
fn dense_solver_recovers_the_planted_spectrum() {
    let (a, lam) = planted(200, 10, 1);
    let (pairs, _) = DenseSolver::solve(&a, &DenseParams { top_vectors: 3, bottom_vectors: 2, ..Default::default() }).unwrap();
    for (x, y) in pairs.values.iter().zip(&lam) {
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
    assert_eq!(pairs.vectors.len(), 5);
    let o = op(&a);
    for (r, v) in &pairs.vectors {
        let av = o.apply_vec(v);
        let l = pairs.values[*r as usize];
        let res: f64 = av.iter().zip(v).map(|(a, b)| (a - l * b).powi(2)).sum::<f64>().sqrt();
        assert!(res < 1e-10, "rank {r} residual {res}");
    }
}

/// Handing the matrix over (reduced in place) gives the borrowed solve's numbers bit for bit,
/// on the two-stage path, the small-n path, with eigenvectors and with a selection.
#[test]
fn dense_solver_on_a_handed_over_matrix_equals_the_borrowing_solve() {
    let (a, lam) = planted(300, 10, 4);
    let params = [
        DenseParams::default(),
        DenseParams { two_stage_from: 1000, ..Default::default() },
        DenseParams { top_vectors: 2, ..Default::default() },
        DenseParams { select: Some((Which::Smallest, 5)), ..Default::default() },
    ];
    for p in &params {
        let (borrowed, bi) = DenseSolver::solve(&a, p).unwrap();
        let (owned, oi) = DenseSolver::solve_owned(a.clone(), p, &Progress::hidden()).unwrap();
        assert_eq!(bi.method, oi.method);
        assert_eq!(borrowed.ranks, owned.ranks);
        assert_eq!(borrowed.values, owned.values, "{p:?}");
        assert_eq!(borrowed.vectors, owned.vectors);
        for (&r, &v) in owned.ranks.iter().zip(&owned.values) {
            assert!((v - lam[r as usize]).abs() < 1e-12, "{p:?} rank {r}: {v} vs {}", lam[r as usize]);
        }
    }
}

#[test]
fn lanczos_top20_matches_dense_with_small_residuals() {
    for seed in 0..3 {
        let (a, lam) = planted(400, 10, 10 + seed);
        let norm = lam[0].abs().max(lam.last().unwrap().abs());
        let o = op(&a);
        let p = LanczosParams { k: 20, seed, ..Default::default() };
        let (pairs, info) = LanczosSolver::solve(&o, &p, &Progress::hidden()).unwrap();
        for (i, (x, y)) in pairs.values.iter().zip(&lam).enumerate() {
            assert!((x - y).abs() <= 1e-10 * y.abs().max(1e-3), "seed {seed} rank {i}: {x} vs {y}");
        }
        for r in &pairs.residuals {
            assert!(r.unwrap() < 1e-8 * norm, "residual {r:?}");
        }
        assert!(info.orthogonality_error < 1e-10);
        assert!(!info.dense_fallback);
    }
}

#[test]
fn lanczos_smallest_finds_the_negative_tail() {
    let (a, lam) = planted(300, 5, 3);
    let o = op(&a);
    let (pairs, _) =
        LanczosSolver::solve(&o, &LanczosParams { k: 3, which: Which::Smallest, ..Default::default() }, &Progress::hidden()).unwrap();
    let n = lam.len();
    let want: Vec<f64> = lam[n - 3..].to_vec();
    for (x, y) in pairs.values.iter().zip(&want) {
        assert!((x - y).abs() < 1e-9, "{x} vs {y}");
    }
    assert_eq!(pairs.ranks, vec![297, 298, 299]);
}

/// faer 0.24.4's Krylov–Schur returned duplicated pairs or hung at n = 1000, k = 10 for some
/// seeds (faer-rs #262). Our solver must return orthonormal, correct pairs for all of them.
#[test]
fn regression_n1000_k10_seeds_that_broke_faer() {
    let (a, lam) = planted(1000, 10, 262);
    let o = op(&a);
    for seed in 0..6 {
        let (pairs, info) = LanczosSolver::solve(&o, &LanczosParams { k: 10, seed, ..Default::default() }, &Progress::hidden()).unwrap();
        assert!(info.orthogonality_error < 1e-10, "seed {seed}: {}", info.orthogonality_error);
        for (x, y) in pairs.values.iter().zip(&lam) {
            assert!((x - y).abs() < 1e-9, "seed {seed}: {x} vs {y}");
        }
        let mut v = pairs.values.clone();
        v.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
        assert_eq!(v.len(), 10, "seed {seed}: duplicated eigenvalues");
    }
}

#[test]
fn lanczos_stall_is_a_clear_error_and_small_n_uses_dense() {
    let (a, _) = planted(500, 30, 4);
    let o = op(&a);
    let p = LanczosParams { k: 25, max_dim: 30, tol: 1e-14, max_restarts: 2, ..Default::default() };
    let e = LanczosSolver::solve(&o, &p, &Progress::hidden()).unwrap_err().to_string();
    assert!(e.contains("did not converge") && e.contains("restarts"), "{e}");
    let (b, lam) = planted(40, 5, 5);
    let (pairs, info) = LanczosSolver::solve(&op(&b), &LanczosParams { k: 5, ..Default::default() }, &Progress::hidden()).unwrap();
    assert!(info.dense_fallback);
    for (x, y) in pairs.values.iter().zip(&lam) {
        assert!((x - y).abs() < 1e-12);
    }
}

#[test]
fn power_iteration_reaches_its_tolerance_and_costs_more_than_lanczos() {
    let (a, lam) = planted(300, 10, 6);
    let o = op(&a);
    let (pairs, info) = PowerIteration::solve(&o, &PowerParams { k: 3, tol: 1e-8, max_iter: 5000, seed: 1 }).unwrap();
    for (x, y) in pairs.values.iter().zip(&lam) {
        assert!((x - y).abs() / y.abs() < 1e-4, "{x} vs {y}");
    }
    let o2 = op(&a);
    let (_, li) = LanczosSolver::solve(&o2, &LanczosParams { k: 3, ..Default::default() }, &Progress::hidden()).unwrap();
    assert!(info.applications > li.applications, "power {} vs lanczos {}", info.applications, li.applications);
}

#[test]
fn slq_density_is_close_to_the_exact_distribution() {
    let (a, lam) = planted(400, 10, 7);
    let o = op(&a);
    let r = StochasticLanczosQuadrature::run(&o, &SlqParams { steps: 60, probes: 20, seed: 3 }, &Progress::hidden()).unwrap();
    // Wasserstein-1 between the quadrature measure (mixture of probes) and the exact one.
    let mut nodes: Vec<(f64, f64)> = r.nodes.iter().flatten().map(|&(t, w)| (t, w / r.nodes.len() as f64)).collect();
    nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut exact = lam.clone();
    exact.sort_by(|a, b| a.total_cmp(b));
    let lo = exact[0] - 1.0;
    let hi = exact[exact.len() - 1] + 1.0;
    let steps = 20000;
    let mut w1 = 0.0;
    for s in 0..steps {
        let x = lo + (hi - lo) * (s as f64 + 0.5) / steps as f64;
        let f1 = nodes.iter().filter(|n| n.0 <= x).map(|n| n.1).sum::<f64>();
        let f2 = exact.iter().filter(|&&e| e <= x).count() as f64 / exact.len() as f64;
        w1 += (f1 - f2).abs() * (hi - lo) / steps as f64;
    }
    let range = exact[exact.len() - 1] - exact[0];
    assert!(w1 < 0.05 * range, "W1 = {w1}, range {range}");
    let above = r.count_above(0.5);
    assert!((above - 10.0).abs() < 4.0, "count above 0.5: {above}");
}

#[test]
fn hutch_plus_plus_is_within_three_standard_errors() {
    let (a, lam) = planted(300, 10, 8);
    let exact: f64 = lam.iter().sum();
    let o = op(&a);
    let hpp = HutchPlusPlus::estimate(&o, &TraceParams { probes: 99, seed: 1 }).unwrap();
    assert!((hpp.value - exact).abs() <= 3.0 * hpp.stderr, "{} ± {} vs {exact}", hpp.value, hpp.stderr);
    let h = Hutchinson::estimate(&o, &TraceParams { probes: 99, seed: 2 }).unwrap();
    assert!((h.value - exact).abs() <= 4.0 * h.stderr, "{} ± {} vs {exact}", h.value, h.stderr);
    assert!(hpp.stderr < h.stderr, "Hutch++ should have the smaller error");
    // Too few probes, or an empty operator, are errors, not NaN estimates.
    for (probes, ok) in [(0, false), (1, true), (2, true)] {
        assert_eq!(Hutchinson::estimate(&o, &TraceParams { probes, seed: 1 }).is_ok(), ok, "Hutchinson, {probes} probes");
    }
    for (probes, ok) in [(2, false), (3, true)] {
        assert_eq!(HutchPlusPlus::estimate(&o, &TraceParams { probes, seed: 1 }).is_ok(), ok, "Hutch++, {probes} probes");
    }
}

/// Consecutive training snapshots as a slowly drifting operator: A_t = A + t·E with a small
/// symmetric E. Lanczos started from the sum of the previous snapshot's Ritz vectors agrees
/// with a cold (random) start to 1e-8 relative and needs fewer operator applications.
#[test]
fn warm_started_lanczos_agrees_with_a_cold_start_and_needs_fewer_products() {
    let (a, _) = planted(500, 10, 77);
    let mut rng = Rng::new(78);
    let mut e = Mat::from_fn(500, 500, |_, _| rng.normal() * 1e-3);
    hesslab_linop::symmetrize(&mut e);
    let k: usize = std::env::var("K").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let p = LanczosParams { k, seed: 3, check_every: 5, ..Default::default() };
    let (mut previous, _) = LanczosSolver::solve(&op(&a), &p, &Progress::hidden()).unwrap();
    let (mut cold_total, mut warm_total) = (0, 0);
    for t in 1..=4 {
        let at = Mat::from_fn(500, 500, |i, j| a[(i, j)] + t as f64 * e[(i, j)]);
        let (cold, ci) = LanczosSolver::solve(&op(&at), &p, &Progress::hidden()).unwrap();
        let vectors: Vec<&[f64]> = previous.vectors.iter().map(|(_, v)| v.as_slice()).collect();
        let start = warm_start(&vectors).unwrap();
        let (warm, wi) = LanczosSolver::solve_from(&op(&at), &p, Some(&start), &Progress::hidden()).unwrap();
        for (x, y) in warm.values.iter().zip(&cold.values) {
            assert!((x - y).abs() <= 1e-8 * y.abs().max(1e-2), "snapshot {t}: warm {x} vs cold {y}");
        }
        eprintln!("snapshot {t}: cold {} products, warm {}", ci.applications, wi.applications);
        cold_total += ci.applications;
        warm_total += wi.applications;
        previous = warm;
    }
    assert!(warm_total < cold_total, "warm {warm_total} vs cold {cold_total} products");
    let bad = LanczosSolver::solve_from(&op(&a), &p, Some(&[0.0; 500]), &Progress::hidden()).unwrap_err().to_string();
    assert!(bad.contains("norm 0"), "{bad}");
}

/// A dense operator applied on the calling thread (so that only the solvers' own arithmetic
/// could depend on the thread count).
struct SequentialDense(Mat<f64>);

impl LinearOperator for SequentialDense {
    fn dim(&self) -> usize {
        self.0.nrows()
    }
    fn apply_block(&self, v: faer::MatRef<'_, f64>, out: faer::MatMut<'_, f64>) {
        faer::linalg::matmul::matmul(out, faer::Accum::Replace, self.0.as_ref(), v, 1.0, faer::Par::Seq);
    }
    fn applications(&self) -> u64 {
        0
    }
    fn describe(&self) -> String {
        "sequential dense".into()
    }
}

/// Lanczos with restarts and SLQ give bit-identical results on 1 and 2 threads: their small
/// eigenproblems and basis products used faer's global parallelism, whose blocking follows the
/// thread count (a pipeline's top-40 eigenvalues differed in the last bits between 1 and 2).
#[test]
fn lanczos_and_slq_are_bit_identical_on_one_and_two_threads() {
    // Q diag(λ) Qᵀ by faer (the planted() helper's loops are O(n³) scalar): 12 outliers over
    // a bulk, 40 wanted, so the solve reaches into the bulk and restarts.
    let n = 2500;
    let mut rng = Rng::new(9);
    let q = Mat::from_fn(n, n, |_, _| rng.normal()).qr().compute_thin_Q();
    let lam: Vec<f64> = (0..n).map(|i| if i < 12 { 1.0 + i as f64 / 12.0 } else { rng.uniform_in(-0.02, 0.05) }).collect();
    let ql = Mat::from_fn(n, n, |i, j| q[(i, j)] * lam[j]);
    let mut a = &ql * q.transpose();
    hesslab_linop::symmetrize(&mut a);
    let o = SequentialDense(a);
    let p = LanczosParams { k: 40, max_dim: 90, seed: 5, ..Default::default() };
    let run = |threads| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            let (pairs, info) = LanczosSolver::solve(&o, &p, &Progress::hidden()).unwrap();
            let slq = StochasticLanczosQuadrature::run(&o, &SlqParams { steps: 150, probes: 2, seed: 3 }, &Progress::hidden()).unwrap();
            (pairs, info.restarts, slq.nodes)
        })
    };
    let ((p1, r1, s1), (p2, r2, s2)) = (run(1), run(2));
    assert!(r1 >= 2, "the solve should restart (restarts = {r1})");
    assert_eq!(r1, r2);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&p1.values), bits(&p2.values));
    for ((_, x), (_, y)) in p1.vectors.iter().zip(&p2.vectors) {
        assert_eq!(bits(x), bits(y));
    }
    let flat = |s: &Vec<Vec<(f64, f64)>>| s.iter().flatten().flat_map(|&(a, b)| [a.to_bits(), b.to_bits()]).collect::<Vec<_>>();
    assert_eq!(flat(&s1), flat(&s2));
}
