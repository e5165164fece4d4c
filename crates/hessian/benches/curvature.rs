//! Criterion benches: gradient, HVP and a 32-column block HVP on the S18 E2 network
//! (100→30→30→10, N = 1000). Compare HVP against gradient in the same report.
use criterion::{Criterion, criterion_group, criterion_main};
use faer::Mat;
use hesslab_data::{GaussianMixture, MixtureParams};
use hesslab_hessian::{CurvatureKind, LinearOperator, ModelCurvature};
use hesslab_model::*;

fn e2() -> (Mlp, hesslab_data::Split) {
    let ds = GaussianMixture::generate(&MixtureParams { test_fraction: 0.0, samples: 1000, ..Default::default() }, 1);
    let arch = Architecture { sizes: vec![100, 30, 30, 10], activation: Activation::Tanh, bias: true, loss: LossKind::CrossEntropy };
    (initialize(&arch, Init::KaimingUniform, 0.0, 0.0, 1), ds.train())
}

fn bench(c: &mut Criterion) {
    let (m, d) = e2();
    let p = m.num_params();
    let op = ModelCurvature::new(Network::from(m.clone()), d.clone(), CurvatureKind::Hessian);
    let v: Vec<f64> = (0..p).map(|i| (i as f64 * 0.37).sin()).collect();
    let block = Mat::from_fn(p, 32, |i, j| ((i * 31 + j) as f64).cos());
    let mut out = Mat::<f64>::zeros(p, 32);
    let mut g = c.benchmark_group("e2_network");
    g.bench_function("gradient", |b| b.iter(|| m.loss_grad(d.x.as_ref(), &d.y)));
    g.bench_function("forward", |b| b.iter(|| m.forward(d.x.as_ref())));
    g.bench_function("hvp", |b| b.iter(|| op.apply_vec(&v)));
    g.bench_function("hvp_block_32", |b| b.iter(|| op.apply_block(block.as_ref(), out.as_mut())));
    g.bench_function("operator_setup", |b| b.iter(|| ModelCurvature::new(Network::from(m.clone()), d.clone(), CurvatureKind::Hessian)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
