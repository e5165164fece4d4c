//! Analysis stages run standalone on a small trained network.
use faer::Mat;
use hesslab_analysis::*;
use hesslab_artifacts::{Dataset as DatasetPort, Model as ModelPort};
use hesslab_data::{GaussianMixture, MixtureParams};
use hesslab_model::*;
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Port, Progress, StageContext, StageKind, port, read_artifact};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn setup(name: &str) -> (PathBuf, BTreeMap<String, Vec<PathBuf>>) {
    let d = std::env::temp_dir().join(format!("hesslab-analysis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let ds = GaussianMixture::generate(&MixtureParams { classes: 3, dim: 5, samples: 120, ..Default::default() }, 2);
    let arch = Architecture { sizes: vec![5, 6, 3], activation: Activation::Tanh, bias: true, loss: LossKind::CrossEntropy };
    let mut m = hesslab_model::Network::from(initialize(&arch, Init::KaimingUniform, 0.0, 0.0, 3));
    train(
        &mut m,
        &TrainParams { lr: 0.2, max_steps: 400, ..Default::default() },
        &ds.train(),
        &ds.test(),
        1,
        &hesslab_model::Start::default(),
        &Progress::hidden(),
    )
    .unwrap();
    let ctx = StageContext::standalone(&d, 1, BTreeMap::new(), &[], vec![port::<DatasetPort>(), port::<ModelPort>()]);
    ctx.write::<DatasetPort>("dataset", &ds).unwrap();
    ctx.write::<ModelPort>(
        "model",
        &ModelPort { net: m, steps: 400, final_train_loss: f64::NAN, train_state: None, warning: None, imported: None },
    )
    .unwrap();
    let mut inputs = BTreeMap::new();
    inputs.insert("dataset".to_string(), vec![d.join("dataset.parquet")]);
    inputs.insert("model".to_string(), vec![d.join("model.parquet")]);
    (d, inputs)
}

#[test]
fn subspace_overlap_is_one_for_equal_and_zero_for_orthogonal_subspaces() {
    let e = |cols: &[usize]| Mat::from_fn(6, cols.len(), |i, j| if i == cols[j] { 1.0 } else { 0.0 });
    assert!((subspace_overlap(&e(&[0, 1]), &e(&[1, 0])) - 1.0).abs() < 1e-15);
    assert_eq!(subspace_overlap(&e(&[0, 1]), &e(&[2, 3])), 0.0);
    assert!((subspace_overlap(&e(&[0, 1]), &e(&[1, 2])) - 0.5).abs() < 1e-15);
}

#[test]
fn decomposition_spectra_match_independent_dense_solves() {
    let (d, inputs) = setup("decomp");
    let out = d.join("decomp");
    let mut ctx = StageContext::standalone_for::<Decomposition>(&out, 1, inputs);
    Decomposition::run(&DecompositionParamsForTest::dense(5), &mut ctx).unwrap();
    let s = read_artifact(&out.join("spectra.parquet"), None).unwrap();
    let ops = utf8_values(&s.batch, "operator").unwrap();
    let vals = f64_values(&s.batch, "eigenvalue").unwrap();
    let h: Vec<f64> = ops.iter().zip(&vals).filter(|(o, _)| *o == "hessian").map(|(_, v)| *v).collect();
    // Independent: the dense Hessian of the same model and data.
    let ds = DatasetPort::decode(&read_artifact(&d.join("dataset.parquet"), None).unwrap()).unwrap();
    let m = ModelPort::decode(&read_artifact(&d.join("model.parquet"), None).unwrap()).unwrap().net;
    let cv = hesslab_hessian::ModelCurvature::new(m, ds.train(), hesslab_hessian::CurvatureKind::Hessian);
    let (hm, _) = hesslab_hessian::materialize(&cv, Some((&cv, None)), 8, &Progress::hidden());
    let mut ev = hm.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
    ev.reverse();
    for (a, b) in h.iter().zip(&ev) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    let dec = read_artifact(&out.join("decomposition.parquet"), None).unwrap();
    let overlap = f64_values(&dec.batch, "overlap_top_k").unwrap()[0];
    let ratio = f64_values(&dec.batch, "residual_norm_ratio").unwrap()[0];
    assert!((0.0..=1.0 + 1e-12).contains(&overlap), "overlap {overlap}");
    assert!(ratio >= 0.0 && ratio.is_finite());
    assert!(out.join("decomposition.png").exists() && out.join("decomposition.svg").exists());
    // Class structure: overlaps are squared projection norms, in [0, 1].
    let out2 = d.join("classes");
    let (_, inputs) = setup("classes2");
    let mut ctx = StageContext::standalone_for::<ClassStructure>(&out2, 1, inputs);
    ClassStructure::run(&serde_json::from_value(serde_json::json!({"k": 4})).unwrap(), &mut ctx).unwrap();
    let o = read_artifact(&out2.join("overlap.parquet"), None).unwrap();
    assert!(f64_values(&o.batch, "overlap").unwrap().iter().all(|x| (-1e-12..=1.0 + 1e-12).contains(x)));
    let _ = std::fs::remove_dir_all(&d);
}

/// The vectors `class_structure` takes means of are Papyan's: for a cross-entropy network the
/// Gauss-Newton matrix is their p-weighted second moment, G = Ave_i Σ_c' p_{i,c'} δ_{i,c'} δ_{i,c'}ᵀ
/// with δ_{i,c'} the gradient of sample i's loss under label c' (checked on G·v against the
/// Gauss-Newton operator); and the stage writes the three overlaps, each in [0, 1], the
/// class/cross-class span containing the global means' (so never the smaller overlap).
#[test]
fn class_means_are_papyans_the_gauss_newton_matrix_is_their_second_moment() {
    let (d, inputs) = setup("papyan");
    let ds = DatasetPort::decode(&read_artifact(&d.join("dataset.parquet"), None).unwrap()).unwrap();
    let m = ModelPort::decode(&read_artifact(&d.join("model.parquet"), None).unwrap()).unwrap().net;
    let train = ds.train();
    let n = 30;
    let sub = train.subset(&(0..n).collect::<Vec<_>>());
    let p = m.num_params();
    let v: Vec<f64> = (0..p).map(|i| ((i * 7919) % 13) as f64 / 13.0 - 0.5).collect();
    let mut gv = vec![0.0; p];
    for i in 0..n {
        let one = sub.subset(&[i]);
        for c in 0..3u32 {
            let (loss, delta) = m.loss_grad(one.x.as_ref(), &[c]);
            let prob = (-loss).exp();
            let dv: f64 = delta.iter().zip(&v).map(|(a, b)| a * b).sum();
            gv.iter_mut().zip(&delta).for_each(|(g, d)| *g += prob * d * dv / n as f64);
        }
    }
    let reference = hesslab_hessian::hessian_vector_product(&m, sub, hesslab_hessian::CurvatureKind::GaussNewton, &v);
    let err =
        gv.iter().zip(&reference).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt() / reference.iter().map(|b| b * b).sum::<f64>().sqrt();
    assert!(err < 1e-12, "G v from Papyan's vectors differs from the Gauss-Newton operator's by {err:e}");

    let out = d.join("classes");
    let mut ctx = StageContext::standalone_for::<ClassStructure>(&out, 1, inputs);
    ClassStructure::run(&serde_json::from_value(serde_json::json!({"k": 4})).unwrap(), &mut ctx).unwrap();
    let o = read_artifact(&out.join("overlap.parquet"), None).unwrap();
    let col = |name: &str| f64_values(&o.batch, name).unwrap();
    let (global, cross) = (col("overlap_global_means"), col("overlap_cross_class_means"));
    for x in global.iter().chain(&cross).chain(&col("overlap")) {
        assert!((-1e-12..=1.0 + 1e-12).contains(x), "{x}");
    }
    for (g, c) in global.iter().zip(&cross) {
        assert!(c + 1e-12 >= *g, "cross-class span {c} below the global means' {g}, which lie in it");
    }
    let _ = std::fs::remove_dir_all(&d);
}

struct DecompositionParamsForTest;
impl DecompositionParamsForTest {
    fn dense(k: usize) -> <Decomposition as StageKind>::Params {
        serde_json::from_value(serde_json::json!({"k": k, "solver": "dense"})).unwrap()
    }
}

/// `init_ensemble`: member i is the sphere draw seeded by "member i", and its top eigenvalues
/// are those of a Hessian built independently by central differences of the gradient; the
/// artifact is bit-identical on one thread and on two.
#[test]
fn init_ensemble_members_are_sphere_draws_with_their_exact_top_eigenvalues() {
    let (d, inputs) = setup("ensemble");
    let params =
        hesslab_analysis::stages::InitEnsembleParams { members: 5, init: Init::Sphere, init_radius: 2.0, top: 3, ..Default::default() };
    let run = |threads: usize, dir: &str| {
        let out = d.join(dir);
        let mut ctx = StageContext::standalone_for::<InitEnsemble>(&out, 1, inputs.clone());
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| InitEnsemble::run(&params, &mut ctx)).unwrap();
        std::fs::read(out.join("ensemble.parquet")).unwrap()
    };
    let (one, two) = (run(1, "one"), run(2, "two"));
    assert_eq!(one, two, "bit-identical across thread counts");
    let a = read_artifact(&d.join("two/ensemble.parquet"), None).unwrap();
    let ens = hesslab_artifacts::Ensemble::decode(&a).unwrap();
    assert!(d.join("two/top_histogram.png").exists() && d.join("two/top_histogram.svg").exists());
    assert_eq!((ens.members.len(), ens.dim), (5, 57));
    let ds = DatasetPort::decode(&read_artifact(&d.join("dataset.parquet"), None).unwrap()).unwrap();
    let arch = ModelPort::decode(&read_artifact(&d.join("model.parquet"), None).unwrap()).unwrap().net.arch();
    let tr = ds.train();
    for (i, m) in ens.members.iter().enumerate() {
        let net = initialize_network(&arch, Init::Sphere, 0.1, 2.0, hesslab_pipeline::derive_seed(1, &format!("member {i}")));
        let w = net.params().to_vec();
        assert!((w.iter().map(|x| x * x).sum::<f64>().sqrt() - 2.0).abs() < 1e-12, "on the sphere of radius 2");
        let (loss, _) = net.loss_grad(tr.x.as_ref(), &tr.y);
        assert!((loss - m.loss).abs() < 1e-12 * loss.abs());
        let eps = 1e-5;
        let grad_at = |j: usize, s: f64| {
            let mut v = w.clone();
            v[j] += s * eps;
            net.loss_grad_at(&v, tr.x.as_ref(), &tr.y).1
        };
        let mut h = Mat::<f64>::zeros(w.len(), w.len());
        for j in 0..w.len() {
            let (gp, gm) = (grad_at(j, 1.0), grad_at(j, -1.0));
            for r in 0..w.len() {
                h[(r, j)] = (gp[r] - gm[r]) / (2.0 * eps);
            }
        }
        let sym = Mat::from_fn(w.len(), w.len(), |r, c| 0.5 * (h[(r, c)] + h[(c, r)]));
        let mut ev = sym.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
        ev.reverse();
        for (k, (a, b)) in m.top.iter().zip(&ev).enumerate() {
            assert!((a - b).abs() < 1e-6 * ev[0].abs(), "member {i} rank {k}: {a} vs finite differences {b}");
        }
    }
}

/// `interpolate` between two models: the paired test-accuracy difference equals the difference
/// of the curve's own test accuracies at α = 1 and α = 0 (two independent computations: one
/// example at a time against whole-split evaluation), with a 95 % interval; a model against
/// itself differs by exactly 0 ± 0.
#[test]
fn interpolate_reports_the_paired_test_accuracy_difference() {
    let (d, mut inputs) = setup("interp");
    let a = ModelPort::decode(&read_artifact(&d.join("model.parquet"), None).unwrap()).unwrap();
    let ds = DatasetPort::decode(&read_artifact(&d.join("dataset.parquet"), None).unwrap()).unwrap();
    let mut b = a.net.clone();
    train(
        &mut b,
        &TrainParams { lr: 0.05, max_steps: 300, batch_size: 8, ..Default::default() },
        &ds.train(),
        &ds.test(),
        7,
        &hesslab_model::Start::default(),
        &Progress::hidden(),
    )
    .unwrap();
    let ctx = StageContext::standalone(&d.join("b"), 1, BTreeMap::new(), &[], vec![port::<ModelPort>()]);
    ctx.write::<ModelPort>(
        "model",
        &ModelPort { net: b, steps: 300, final_train_loss: f64::NAN, train_state: None, warning: None, imported: None },
    )
    .unwrap();
    let params = hesslab_analysis::stages::InterpolateParams { from: 0.0, to: 1.0, points: 4 };
    let curve = |inputs: BTreeMap<String, Vec<PathBuf>>, dir: &str| {
        let out = d.join(dir);
        let mut ctx = StageContext::standalone_for::<Interpolate>(&out, 1, inputs);
        Interpolate::run(&params, &mut ctx).unwrap();
        hesslab_artifacts::Curve::decode(&read_artifact(&out.join("curve.parquet"), None).unwrap()).unwrap()
    };
    inputs.insert("model_a".into(), inputs["model"].clone());
    inputs.insert("model_b".into(), vec![d.join("b/model.parquet")]);
    let c = curve(inputs.clone(), "ab");
    let p = c.paired.unwrap();
    let n_test = ds.test().len();
    assert_eq!(p.examples as usize, n_test);
    let expected = c.points[3].test_accuracy - c.points[0].test_accuracy;
    assert!((p.difference - expected).abs() < 1e-12, "{} vs {expected}", p.difference);
    assert!(p.ci95.is_finite() && p.ci95 >= 0.0 && p.ci95 < 1.0);
    inputs.insert("model_b".into(), inputs["model"].clone());
    let same = curve(inputs, "aa").paired.unwrap();
    assert_eq!((same.difference, same.ci95), (0.0, 0.0));
}
