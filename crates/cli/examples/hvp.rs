#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use faer::Mat;
use hesslab_data::Split;
use hesslab_hessian::{CurvatureKind, LinearOperator, ModelCurvature};
use hesslab_model::*;
use std::time::Instant;
fn main() {
    let what = std::env::args().nth(1).unwrap_or("hvp".into());
    let arch = hesslab::bench::e4_convnet();
    let m = initialize_network(&arch, Init::KaimingUniform, 0.0, 0.0, 3);
    let n = 1000;
    let x = Mat::from_fn(n, 784, |i, j| ((i * 7 + j * 13) % 17) as f64 / 17.0);
    let y: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let d = Split { x, y, num_classes: 10 };
    let p = m.num_params();
    let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
    let v: Vec<f64> = (0..p).map(|i| (i as f64).sin()).collect();
    let t = Instant::now();
    for _ in 0..100 {
        if what == "hvp" {
            std::hint::black_box(op.apply_vec(&v));
        } else {
            std::hint::black_box(m.loss_grad(d.x.as_ref(), &d.y));
        }
    }
    println!("{what} {:.1} ms", t.elapsed().as_secs_f64() / 100.0 * 1e3);
}
