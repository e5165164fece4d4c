//! Criterion benches: dense eigenvalues vs thick-restart Lanczos top-20 vs power iteration on
//! a 1000×1000 planted spectrum, with a matrix product of the same size as the baseline.
use criterion::{Criterion, criterion_group, criterion_main};
use faer::Mat;
use hesslab_data::rng::Rng;
use hesslab_eigen::*;
use hesslab_linop::DenseOperator;
use hesslab_progress::Progress;
use std::sync::Arc;

fn planted(n: usize) -> Mat<f64> {
    let mut rng = Rng::new(3);
    let g = Mat::from_fn(n, n, |_, _| rng.normal());
    let q = g.qr().compute_thin_Q();
    let lam: Vec<f64> = (0..n).map(|i| if i < 10 { 1.0 + i as f64 } else { 0.01 * rng.uniform() }).collect();
    Mat::from_fn(n, n, |i, j| (0..n).map(|t| q[(i, t)] * lam[t] * q[(j, t)]).sum())
}

fn bench(c: &mut Criterion) {
    let a = planted(1000);
    let op = DenseOperator::new(Arc::new(a.clone()), "planted");
    let mut g = c.benchmark_group("planted_1000");
    g.sample_size(10);
    g.bench_function("matmul_baseline", |b| b.iter(|| &a * &a));
    g.bench_function("dense_eigenvalues", |b| b.iter(|| DenseSolver::solve(&a, &DenseParams::default()).unwrap()));
    g.bench_function("lanczos_top20", |b| {
        b.iter(|| LanczosSolver::solve(&op, &LanczosParams { k: 20, ..Default::default() }, &Progress::hidden()).unwrap())
    });
    g.bench_function("power_top5", |b| {
        b.iter(|| PowerIteration::solve(&op, &PowerParams { k: 5, tol: 1e-6, max_iter: 5000, seed: 1 }).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
