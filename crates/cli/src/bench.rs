//! `hesslab bench`: speed as ratios against baselines measured in the same run (timings are
//! never pass/fail). Figures go to stdout; see the README for the last measured values.
use faer::Mat;
use hesslab_data::rng::Rng;
use hesslab_data::{GaussianMixture, MixtureParams, Split};
use hesslab_eigen::*;
use hesslab_hessian::{CurvatureKind, LinearOperator, ModelCurvature, materialize};
use hesslab_model::*;
use hesslab_progress::Progress;
use std::time::Instant;

/// println! that ends quietly when stdout is closed (e.g. piped into `head`).
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    f(); // warm-up
    let t0 = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    t0.elapsed().as_secs_f64() / reps as f64
}

/// Best of `reps` timings (after a warm-up): the least disturbed run, for both sides of a ratio.
fn best<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(f());
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The largest side at which `bench` also times faer's one-stage eigenvalues.
const FAER_REFERENCE_UP_TO: usize = 5000;

fn gemm_rate(n: usize, k: usize, m: usize) -> f64 {
    let mut rng = Rng::new(1);
    let a = Mat::from_fn(n, k, |_, _| rng.normal());
    let b = Mat::from_fn(k, m, |_, _| rng.normal());
    let mut c = Mat::<f64>::zeros(n, m);
    let t = time(3, || {
        faer::linalg::matmul::matmul(c.as_mut(), faer::Accum::Replace, a.as_ref(), b.as_ref(), 1.0, faer::get_global_parallelism())
    });
    2.0 * (n * k * m) as f64 / t
}

fn net(sizes: Vec<usize>, n: usize, seed: u64, activation: Activation) -> (Network, Split) {
    let k = *sizes.last().unwrap();
    let ds =
        GaussianMixture::generate(&MixtureParams { classes: k, dim: sizes[0], samples: n, test_fraction: 0.0, ..Default::default() }, seed);
    let arch = Architecture { sizes, activation, bias: true, loss: LossKind::CrossEntropy };
    (Network::from(initialize(&arch, Init::KaimingUniform, 0.0, 0.0, seed)), ds.train())
}

fn mlp_arch(m: &Network) -> Architecture {
    m.as_mlp().expect("the MLP benchmarks build MLPs").arch.clone()
}

/// FLOPs of one exact HVP by the batched R-operator (matrix-product terms only).
fn hvp_flops(arch: &Architecture, n: usize) -> f64 {
    arch.layers()
        .iter()
        .enumerate()
        .map(|(l, ly)| {
            let mn = (ly.n_in * ly.n_out) as f64;
            // forward A·Vᵀ, backward Aᵀ·RG; for l > 0 also RA·Wᵀ, RAᵀ·G, RG·W, G·V.
            let terms = if l == 0 { 2.0 } else { 6.0 };
            terms * 2.0 * n as f64 * mn
        })
        .sum()
}

/// A memory line of /proc/self/status (VmRSS, VmHWM, …) in GiB; NaN where unavailable.
fn status_gib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / (1024.0 * 1024.0))
        .unwrap_or(f64::NAN)
}

/// Resets the peak-RSS mark (Linux: "5" to /proc/self/clear_refs) and returns the current
/// RSS in GiB, so that `peak_rss_gib() − reset_peak_rss()` is what was allocated in between.
fn reset_peak_rss() -> f64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_gib("VmRSS:")
}

fn peak_rss_gib() -> f64 {
    status_gib("VmHWM:")
}

/// `hesslab bench`: time each kernel against its baseline in the same run and print the ratios.
pub fn run(quick: bool, only: &[String], activation: Activation, eigen_sizes: &[usize], eigen_vectors: bool) -> anyhow::Result<()> {
    let want = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    println!("hesslab bench ({} threads, {activation:?} networks{})", rayon::current_num_threads(), if quick { ", quick" } else { "" });
    if want("hvp") || want("dense") || want("train") {
        for (name, sizes) in [("W1 100→30→30→10", vec![100, 30, 30, 10]), ("W2 100→64→64→10", vec![100, 64, 64, 10])] {
            let (m, d) = net(sizes, 1000, 3, activation);
            let p = m.num_params();
            // Forward baseline: loss over the batch in the same parallel chunks as the gradient.
            let t_fwd = time(20, || m.evaluate(d.x.as_ref(), &d.y));
            let t_grad = time(20, || m.loss_grad(d.x.as_ref(), &d.y));
            let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
            let v: Vec<f64> = (0..p).map(|i| (i as f64).sin()).collect();
            let t_hvp = time(20, || op.apply_vec(&v));
            println!("{name}: P = {p}, N = 1000");
            if want("hvp") {
                println!(
                    "  HVP / gradient time            {:.2}  (HVP {:.2} ms, gradient {:.2} ms)",
                    t_hvp / t_grad,
                    t_hvp * 1e3,
                    t_grad * 1e3
                );
                // A one-off HVP pays for the cached forward/backward pass too (what an autodiff
                // framework's jvp(grad) does every time).
                let t_once = time(10, || hesslab_hessian::hessian_vector_product(&m, d.clone(), CurvatureKind::Hessian, &v));
                println!("  one-off HVP (build + apply) / gradient time {:.2}  ({:.2} ms)", t_once / t_grad, t_once * 1e3);
            }
            if want("train") {
                println!(
                    "  train step / forward time      {:.2}  (step {:.2} ms, forward {:.2} ms)",
                    t_grad / t_fwd,
                    t_grad * 1e3,
                    t_fwd * 1e3
                );
            }
            if want("dense") {
                let t_dense = best(2, || materialize(&op, Some((&op, None)), 8, &Progress::hidden()).1);
                let rate = hvp_flops(&mlp_arch(&m), 1000) * p as f64 / t_dense;
                let g = gemm_rate(1000, 512, 1000.max(p / 4));
                println!(
                    "  dense H (best of 2): {:.2} s, {:.1} GFLOP/s; faer GEMM (best of 5) (1000×512×{}) {:.1} GFLOP/s; ratio {:.2}",
                    t_dense,
                    rate / 1e9,
                    1000.max(p / 4),
                    g / 1e9,
                    rate / g
                );
                println!(
                    "  memory: 8·P² = {:.3} GiB, process peak RSS so far {:.3} GiB",
                    8.0 * (p * p) as f64 / (1u64 << 30) as f64,
                    peak_rss_gib()
                );
            }
        }
    }
    if want("sharpness") {
        sharpness_bench(quick);
    }
    if want("elementwise") {
        elementwise_bench();
    }
    if want("conv") {
        conv_bench(quick);
    }
    if want("resnet") {
        resnet_bench(quick)?;
    }
    if want("dense20k") && !quick {
        // Peak memory of a dense Hessian with P ≈ 20 000 (bound: 1.5 × 8·P² plus the data).
        let (m, d) = net(vec![100, 100, 100, 10], 1000, 3, activation);
        let p = m.num_params();
        let op = ModelCurvature::new(m, d, CurvatureKind::Hessian);
        let t0 = Instant::now();
        let (h, _) = materialize(&op, Some((&op, None)), 8, &Progress::hidden());
        let t = t0.elapsed().as_secs_f64();
        let bound = 1.5 * 8.0 * (p * p) as f64 / (1u64 << 30) as f64;
        println!(
            "dense H with P = {p}: {t:.1} s, {:.1} GFLOP/s; peak RSS {:.2} GiB vs bound 1.5·8·P² = {bound:.2} GiB",
            hvp_flops(&mlp_arch(&op.model), 1000) * p as f64 / t / 1e9,
            peak_rss_gib()
        );
        drop(h);
    }
    if want("eigen") {
        let sizes: &[usize] = if !eigen_sizes.is_empty() {
            eigen_sizes
        } else if quick {
            &[1000]
        } else {
            &[4270, 11274]
        };
        if let Some(bad) = sizes.iter().find(|&&n| n < 2) {
            anyhow::bail!("--eigen-sizes {bad}: a side must be at least 2");
        }
        for &n in sizes {
            // Symmetric without a second n×n temporary, so the peak below is the solver's own.
            let a = Mat::from_fn(n, n, |i, j| {
                let (i, j) = (i.max(j) as u64, i.min(j) as u64);
                let h = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ j.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)).wrapping_mul(0x1656_67b1_9e37_79f9);
                (h >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            });
            // The solve handed the matrix (as a stage that materialized it does): the reduction
            // runs in it instead of a copy. First, so that no earlier solve's freed memory hides
            // its peak.
            let work = a.clone();
            let base = reset_peak_rss();
            let t0 = Instant::now();
            let (owned_pairs, _) = DenseSolver::solve_owned(work, &DenseParams::default(), &hesslab_progress::Progress::hidden())?;
            let t_owned = t0.elapsed().as_secs_f64();
            let above_owned = (peak_rss_gib() - base) * (1u64 << 30) as f64;
            // Borrowing the matrix: the solver reduces a copy (8n² more; not measured here — the
            // copy reuses the memory the solve above freed).
            let t0 = Instant::now();
            let (pairs, info) = DenseSolver::solve(&a, &DenseParams::default())?;
            let t_two = t0.elapsed().as_secs_f64();
            anyhow::ensure!(owned_pairs.values == pairs.values, "the in-place solve gave other eigenvalues");
            // faer's one-stage solver for reference, where it takes seconds (3–4× the two-stage
            // time at n = 11 274: minutes).
            let faer = if n <= FAER_REFERENCE_UP_TO {
                let t0 = Instant::now();
                std::hint::black_box(a.self_adjoint_eigenvalues(faer::Side::Lower).map_err(|e| anyhow::anyhow!("{e:?}"))?);
                let t_faer = t0.elapsed().as_secs_f64();
                format!("faer one-stage {t_faer:.2} s ({:.2}× the two-stage time)", t_faer / t_two)
            } else {
                format!("faer one-stage not timed above n = {FAER_REFERENCE_UP_TO}")
            };
            let t_mm = time(1, || &a * &a);
            let [band, chase, tri] = info.stage_seconds;
            println!(
                "dense eigenvalues {n}×{n}: two-stage {t_two:.2} s on a copy (band {band:.2}, chase {chase:.2}, tridiagonal {tri:.2}; b = {}) = {:.2} × a {n}² matrix product ({t_mm:.2} s); {faer}; handed the matrix (reduced in place): {t_owned:.2} s, peak memory above the input {:.2} × 8n²; λ₁ = {:.6}",
                info.band_width,
                t_two / t_mm,
                above_owned / (8.0 * (n * n) as f64),
                pairs.values[0]
            );
            if eigen_vectors {
                // Every eigenvector (divide and conquer on the tridiagonal matrix), then the top
                // 20 (inverse iteration), as a stage asking for the outliers' vectors would.
                for k in [n, 20.min(n)] {
                    let t0 = Instant::now();
                    let p = DenseParams { top_vectors: k, ..Default::default() };
                    let (_, info) = std::hint::black_box(DenseSolver::solve(&a, &p)?);
                    let [reduce, tridiagonal, back] = info.stage_seconds;
                    let method = if info.inverse_iteration { "inverse iteration" } else { "divide and conquer" };
                    let path = if info.method == DenseMethod::TwoStage {
                        format!("two-stage reduction {reduce:.2}, tridiagonal {method} {tridiagonal:.2}, back-transformation {back:.2}")
                    } else {
                        format!("faer's one-stage path, below n = {}", p.vectors_two_stage_from)
                    };
                    let which = if k == n { "every eigenvector".to_string() } else { format!("the top {k} eigenvectors") };
                    println!("dense eigenvalues and {which} {n}×{n}: {:.2} s on a copy ({path})", t0.elapsed().as_secs_f64());
                }
            }
        }
    }
    if want("lanczos") {
        let ds = GaussianMixture::generate(&MixtureParams::default(), 7);
        let (tr, te) = (ds.train(), ds.test());
        let arch = Architecture { sizes: vec![100, 30, 30, 10], activation: Activation::Relu, bias: true, loss: LossKind::CrossEntropy };
        let mut m = Network::from(initialize(&arch, Init::KaimingUniform, 0.0, 0.0, 1));
        train(
            &mut m,
            &TrainParams { lr: 0.1, max_steps: if quick { 200 } else { 3000 }, target_loss: 1e-3, ..Default::default() },
            &tr,
            &te,
            1,
            &hesslab_model::Start::default(),
            &Progress::hidden(),
        )?;
        let k = if quick { 5 } else { 20 };
        let op = ModelCurvature::new(m.clone(), tr.clone(), CurvatureKind::Hessian);
        let (lz, li) = LanczosSolver::solve(&op, &LanczosParams { k, tol: 1e-8, ..Default::default() }, &Progress::hidden())?;
        let op2 = ModelCurvature::new(m, tr, CurvatureKind::Hessian);
        let pw = PowerIteration::solve(&op2, &PowerParams { k, tol: 1e-6, max_iter: 20000, seed: 1 });
        match pw {
            Ok((pp, pi)) => {
                let worst = pp.values.iter().zip(&lz.values).map(|(a, b)| ((a - b) / b).abs()).fold(0.0f64, f64::max);
                println!(
                    "E2 Hessian top-{k}: Lanczos {} operator applications, power iteration {} ({:.1}× more; power's worst relative error vs Lanczos {:.1e})",
                    li.applications,
                    pi.applications,
                    pi.applications as f64 / li.applications as f64,
                    worst
                );
            }
            Err(e) => println!("E2 Hessian top-{k}: Lanczos {} applications; power iteration failed: {e}", li.applications),
        }
    }
    if want("memory") {
        // S18 E3's widest network (784 → 70 → 10, P = 55 660) on 1 000 samples: peak memory of the
        // matrix-free solvers against the memory of their own basis or sketch.
        let (m, d) = net(vec![784, 70, 10], 1000, 3, Activation::Relu);
        let op = ModelCurvature::new(m.clone(), d, CurvatureKind::Hessian);
        let p = m.num_params();
        let gib = |b: f64| b / (1u64 << 30) as f64;
        let base = reset_peak_rss();
        let (k, max_dim) = if quick { (20, 60) } else { (120, 300) };
        let lp = LanczosParams { k, max_dim, tol: 1e-6, max_restarts: 50, ..Default::default() };
        let t0 = Instant::now();
        let (_, li) = LanczosSolver::solve(&op, &lp, &Progress::hidden())?;
        let lanczos_peak = peak_rss_gib() - base;
        let basis = gib((p * max_dim * 8) as f64);
        println!(
            "top-{k} Lanczos on {} (P = {p}, N = 1000): {:.1} s, {} applications; peak memory {lanczos_peak:.2} GiB above the operator = {:.1}× its {max_dim}-vector basis ({basis:.2} GiB)",
            m.describe(),
            t0.elapsed().as_secs_f64(),
            li.applications,
            lanczos_peak / basis
        );
        let base = reset_peak_rss();
        let probes = if quick { 30 } else { 99 };
        let t0 = Instant::now();
        let _ = HutchPlusPlus::estimate(&op, &hesslab_eigen::TraceParams { probes, seed: 1 });
        let hpp_peak = peak_rss_gib() - base;
        let sketch = gib((p * probes * 8) as f64);
        println!(
            "Hutch++ ({probes} products): {:.1} s; peak memory {hpp_peak:.2} GiB above the operator = {:.1}× its sketches ({sketch:.2} GiB)",
            t0.elapsed().as_secs_f64(),
            hpp_peak / sketch
        );
    }
    if want("slq") {
        let (m, d) = net(if quick { vec![784, 64, 64, 10] } else { vec![784, 512, 512, 10] }, 1000, 5, activation);
        let op = ModelCurvature::new(m.clone(), d, CurvatureKind::Hessian);
        let steps = if quick { 20 } else { 40 };
        let t0 = Instant::now();
        let r = StochasticLanczosQuadrature::run(&op, &SlqParams { steps, probes: 2, seed: 1 }, &Progress::new("slq"))?;
        let (lo, hi) = r.range();
        println!(
            "SLQ on {} (P = {}, N = 1000): {} steps × 2 probes in {:.1} s, {} HVPs, spectrum range [{lo:.3e}, {hi:.3e}], peak RSS {:.2} GiB",
            m.describe(),
            m.num_params(),
            steps,
            t0.elapsed().as_secs_f64(),
            r.applications,
            peak_rss_gib()
        );
    }
    Ok(())
}

/// #14: the vectorized exp/tanh/sigmoid kernels against libm's scalar calls on the same
/// 1 M values (one thread; best of 20).
fn elementwise_bench() {
    fn libm_sigmoid(z: f64) -> f64 {
        if z >= 0.0 { 1.0 / (1.0 + (-z).exp()) } else { z.exp() / (1.0 + z.exp()) }
    }
    let mut rng = Rng::new(5);
    let x: Vec<f64> = (0..1 << 20).map(|_| 6.0 * rng.normal()).collect();
    let mut out = vec![0.0; x.len()];
    type Kernel = fn(&[f64], &mut [f64]);
    let cases: [(&str, Kernel, fn(f64) -> f64); 3] =
        [("exp", vmath::exp_slice, f64::exp), ("tanh", vmath::tanh_slice, f64::tanh), ("sigmoid", vmath::sigmoid_slice, libm_sigmoid)];
    println!("elementwise kernels, 2^20 values, one thread (ns per value; libm / vectorized)");
    for (name, kernel, libm) in cases {
        let t_vec = best(20, || kernel(&x, &mut out));
        let t_libm = best(20, || out.iter_mut().zip(&x).for_each(|(o, &v)| *o = libm(v)));
        let per = |t: f64| t * 1e9 / x.len() as f64;
        println!("  {name:8} vectorized {:.2} ns, libm {:.2} ns: {:.2}× faster", per(t_vec), per(t_libm), t_libm / t_vec);
    }
}

/// #15's target: sharpness tracking inside full-batch GD on the E2 network (100→30→30→10 ReLU,
/// 4 000 training + 1 000 test samples, `log_every = 10`) costs ≤ 20 % of the training time at
/// `sharpness_every = 10`. Two measurements: the parts of one measurement against a gradient
/// (interleaved, best of 30: stable on a busy machine), and whole training runs with and
/// without tracking (alternating, best of 5; `--quick`: 60 steps, dominated by the start-up).
fn sharpness_bench(quick: bool) {
    let steps = if quick { 60 } else { 1000 };
    let ds =
        GaussianMixture::generate(&MixtureParams { classes: 10, dim: 100, samples: 5000, test_fraction: 0.2, ..Default::default() }, 1);
    let (tr, te) = (ds.train(), ds.test());
    let arch = Architecture { sizes: vec![100, 30, 30, 10], activation: Activation::Relu, bias: true, loss: LossKind::CrossEntropy };
    let init = Network::from(initialize(&arch, Init::KaimingUniform, 0.0, 0.0, 1));
    println!("E2 100→30→30→10 ReLU, N = 4000 (+1000 test), full-batch GD, log every 10");
    // One measurement = the log's full-batch pass and one product in a single pass (in place of
    // the log's gradient pass); the 20-product start builds an operator and applies it.
    let v: Vec<f64> = (0..init.num_params()).map(|i| (i as f64).sin()).collect();
    let shared = std::sync::Arc::new(tr.clone());
    let (mut t_grad, mut t_fused, mut t_build, mut t_apply) = (f64::INFINITY, f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..30 {
        let t0 = Instant::now();
        std::hint::black_box(init.loss_grad_accuracy_at(init.params(), tr.x.as_ref(), &tr.y));
        t_grad = t_grad.min(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        std::hint::black_box(hesslab_hessian::gradient_and_product(&init, shared.clone(), CurvatureKind::Hessian, &v));
        t_fused = t_fused.min(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let op = ModelCurvature::new(init.clone(), shared.clone(), CurvatureKind::Hessian);
        t_build = t_build.min(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        std::hint::black_box(op.apply_vec(&v));
        t_apply = t_apply.min(t0.elapsed().as_secs_f64());
    }
    let extra = t_fused - t_grad;
    println!(
        "  gradient {:.2} ms; gradient + product in one pass {:.2} ms (operator build {:.2} ms + product {:.2} ms): a measurement adds {:.2} ms = {:.2} gradients, {:.1} % per 10 steps",
        t_grad * 1e3,
        t_fused * 1e3,
        t_build * 1e3,
        t_apply * 1e3,
        extra * 1e3,
        extra / t_grad,
        10.0 * extra / t_grad
    );
    let run = |every: usize| {
        let p = TrainParams { lr: 0.1, max_steps: steps, target_loss: 0.0, log_every: 10, sharpness_every: every, ..Default::default() };
        let mut net = init.clone();
        let mut probe = (every > 0).then(|| hesslab_hessian::HessianProbe::new(tr.clone()));
        let (t0, c0) = (Instant::now(), hesslab_slurm::records::cpu_seconds());
        let tracking = probe.as_mut().map(|p| p as &mut dyn SharpnessProbe);
        let log = train_tracking_sharpness(&mut net, &p, &tr, &te, 1, &hesslab_model::Start::default(), &Progress::hidden(), tracking)
            .expect("the benchmark network trains");
        (t0.elapsed().as_secs_f64(), hesslab_slurm::records::cpu_seconds() - c0, log.sharpness.last().map_or(f64::NAN, |s| s.1))
    };
    // Wall and CPU time (user + system of the process, 10 ms ticks): CPU time does not count
    // the moments this process waits for a core another one holds.
    let (mut plain, mut tracked, mut top) = ([f64::INFINITY; 2], [f64::INFINITY; 2], f64::NAN);
    for _ in 0..5 {
        let (w, c, _) = run(0);
        plain = [plain[0].min(w), plain[1].min(c)];
        let (w, c, l) = run(10);
        tracked = [tracked[0].min(w), tracked[1].min(c)];
        top = l;
    }
    println!(
        "  {steps} steps (best of 5; includes the 20-product start): without tracking {:.3} s wall, {:.2} s CPU; sharpness_every = 10: {:.3} s wall, {:.2} s CPU; overhead {:.1} % wall, {:.1} % CPU (target ≤ 20 %); sharpness at the end {top:.4}",
        plain[0],
        plain[1],
        tracked[0],
        tracked[1],
        100.0 * (tracked[0] / plain[0] - 1.0),
        100.0 * (tracked[1] / plain[1] - 1.0)
    );
}

/// S18 E4's convnet on 1×28×28 inputs: 2×(conv 5×5, ReLU, max-pool 2) + 2 linear layers.
pub fn e4_convnet() -> NetArch {
    let conv = |c: usize| serde_json::json!({"conv2d": {"out_channels": c, "kernel_size": 5}});
    let pool = serde_json::json!({"max_pool2d": 2});
    let layers = serde_json::json!([conv(10), "relu", pool, conv(20), "relu", pool, "flatten", {"linear": 50}, "relu", {"linear": 10}]);
    let layers: Vec<LayerSpec> = serde_json::from_value(layers).expect("the E4 layers parse");
    NetArch::new(Shape::Image { c: 1, h: 28, w: 28 }, layers, LossKind::CrossEntropy).expect("the E4 network resolves")
}

/// Multiply-adds ×2 of a forward pass of `n` samples through the convolutions and linear layers.
fn forward_flops(arch: &NetArch, n: usize) -> f64 {
    n as f64 * arch.flops_per_sample()
}

fn conv_bench(quick: bool) {
    let n = if quick { 256 } else { 1000 };
    let arch = e4_convnet();
    let m = initialize_network(&arch, Init::KaimingUniform, 0.0, 0.0, 3);
    let mut rng = Rng::new(4);
    let x = Mat::from_fn(n, 784, |_, _| rng.uniform_in(0.0, 1.0));
    let y: Vec<u32> = (0..n).map(|_| rng.below(10) as u32).collect();
    let d = Split { x, y, num_classes: 10 };
    let p = m.num_params();
    let reps = if quick { 2 } else { 5 };
    let t_fwd = best(reps, || m.evaluate(d.x.as_ref(), &d.y));
    let t_grad = best(reps, || m.loss_grad(d.x.as_ref(), &d.y));
    let op = ModelCurvature::new(m.clone(), d.clone(), CurvatureKind::Hessian);
    let v: Vec<f64> = (0..p).map(|i| (i as f64).sin()).collect();
    let t_hvp = best(reps, || op.apply_vec(&v));
    println!("E4 convnet {} (P = {p}, N = {n})", m.describe());
    println!("  HVP / gradient time            {:.2}  (HVP {:.1} ms, gradient {:.1} ms)", t_hvp / t_grad, t_hvp * 1e3, t_grad * 1e3);
    let rate = forward_flops(&arch, n) / t_fwd;
    let g = gemm_rate(1000, 512, 1000);
    println!(
        "  forward {:.1} ms = {:.1} GFLOP/s; faer GEMM (1000×512×1000) {:.1} GFLOP/s; ratio {:.2}",
        t_fwd * 1e3,
        rate / 1e9,
        g / 1e9,
        rate / g
    );
}

/// The ResNet of `pipelines/resnet_fashion.toml` (its `train` stage's layers) on 1×28×28 inputs.
pub fn resnet_fashion() -> anyhow::Result<NetArch> {
    let file: toml::Table = toml::from_str(include_str!("../../../pipelines/resnet_fashion.toml"))?;
    let layers = file["stages"]["train"]["layers"].clone();
    let layers: Vec<LayerSpec> = layers.try_into()?;
    Ok(NetArch::new(Shape::Image { c: 1, h: 28, w: 28 }, layers, LossKind::CrossEntropy)?)
}

/// The ResNet's gradient and HVP times in both BatchNorm modes, one-off (the passes and the
/// product, what an autodiff framework's HVP does) and repeated (an operator's product, what a
/// solver does); the last line is JSON for `scripts/compare_torch.py`.
fn resnet_bench(quick: bool) -> anyhow::Result<()> {
    use hesslab_hessian::{BatchNormMode, gradient_and_product};
    let n = if quick { 128 } else { 1000 };
    let arch = resnet_fashion()?;
    let m = initialize_network(&arch, Init::KaimingUniform, 0.0, 0.0, 3);
    let mut rng = Rng::new(4);
    let x = Mat::from_fn(n, 784, |_, _| rng.uniform_in(0.0, 1.0));
    let y: Vec<u32> = (0..n).map(|_| rng.below(10) as u32).collect();
    let d = std::sync::Arc::new(Split { x, y, num_classes: 10 });
    let p = m.num_params();
    let reps = if quick { 2 } else { 5 };
    let v: Vec<f64> = (0..p).map(|i| (i as f64).sin()).collect();
    let t_grad = best(reps, || m.loss_grad(d.x.as_ref(), &d.y));
    let t_once_eval = best(reps, || gradient_and_product(&m, d.clone(), CurvatureKind::Hessian, &v));
    let op = |b| ModelCurvature::with_options(m.clone(), d.clone(), CurvatureKind::Hessian, b, None).expect("the Hessian");
    let t_once_batch = best(reps, || op(BatchNormMode::Batch).apply_vec(&v));
    let (eval, batch) = (op(BatchNormMode::Eval), op(BatchNormMode::Batch));
    let t_eval = best(reps, || eval.apply_vec(&v));
    let t_batch = best(reps, || batch.apply_vec(&v));
    println!("ResNet of resnet_fashion.toml (P = {p}, N = {n}, {} threads)", rayon::current_num_threads());
    println!("  gradient (eval)                {:.1} ms", t_grad * 1e3);
    println!("  one-off HVP  eval {:.1} ms, batch {:.1} ms (passes and product)", t_once_eval * 1e3, t_once_batch * 1e3);
    println!("  operator HVP eval {:.1} ms, batch {:.1} ms (cached passes)", t_eval * 1e3, t_batch * 1e3);
    println!(
        "{}",
        serde_json::json!({"resnet": {"params": p, "samples": n, "threads": rayon::current_num_threads(),
            "gradient_s": t_grad, "hvp_once_eval_s": t_once_eval, "hvp_once_batch_s": t_once_batch,
            "hvp_eval_s": t_eval, "hvp_batch_s": t_batch, "architecture": arch.to_json()}})
    );
    Ok(())
}
