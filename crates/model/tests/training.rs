//! Training: reaches a low loss on the S18 E2 setup, is reproducible, diverges loudly.
use hesslab_data::{GaussianMixture, MixtureParams};
use hesslab_model::*;
use hesslab_progress::Progress;

fn e2_data(k: usize) -> hesslab_data::Dataset {
    GaussianMixture::generate(&MixtureParams { classes: k, ..Default::default() }, 3)
}

#[test]
fn s18_e2_network_trains_below_1e_3_on_ten_clusters() {
    let ds = e2_data(10);
    let (tr, te) = (ds.train(), ds.test());
    assert_eq!(tr.len(), 1000);
    let arch = Architecture { sizes: vec![100, 30, 30, 10], activation: Activation::Relu, bias: true, loss: LossKind::CrossEntropy };
    let mut m = Network::from(initialize(&arch, Init::KaimingUniform, 0.0, 0.0, 1));
    assert_eq!(m.num_params(), 4270);
    let p = TrainParams { lr: 0.1, max_steps: 5000, target_loss: 1e-3, log_every: 20, ..Default::default() };
    let log = train(&mut m, &p, &tr, &te, 1, &hesslab_model::Start::default(), &Progress::hidden()).unwrap();
    let last = *log.train_loss.last().unwrap();
    assert!(last < 1e-3, "final training loss {last}");
    let (full, _) = m.loss_grad(tr.x.as_ref(), &tr.y);
    assert!(full < 1e-3);
}

#[test]
fn same_seed_same_bits_different_seed_different() {
    let ds = e2_data(5);
    let (tr, te) = (ds.train(), ds.test());
    let arch = Architecture { sizes: vec![100, 8, 5], activation: Activation::Tanh, bias: true, loss: LossKind::CrossEntropy };
    let p = TrainParams { batch_size: 32, lr: 0.05, max_steps: 60, ..Default::default() };
    let run = |seed| {
        let mut m = Network::from(initialize(&arch, Init::KaimingUniform, 0.0, 0.0, seed));
        train(&mut m, &p, &tr, &te, seed, &hesslab_model::Start::default(), &Progress::hidden()).unwrap();
        m.params().to_vec()
    };
    let (a, b, c) = (run(4), run(4), run(5));
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(a != c);
}

#[test]
fn divergence_names_the_step() {
    let ds = e2_data(2);
    let (tr, te) = (ds.train(), ds.test());
    let arch = Architecture { sizes: vec![100, 30, 2], activation: Activation::Relu, bias: true, loss: LossKind::Mse };
    let mut m = Network::from(initialize(&arch, Init::Normal, 3.0, 0.0, 2));
    let p = TrainParams { lr: 1e6, max_steps: 100, ..Default::default() };
    let e = train(&mut m, &p, &tr, &te, 2, &hesslab_model::Start::default(), &Progress::hidden()).unwrap_err().to_string();
    assert!(e.contains("diverged at step") && e.contains("lr = 1000000"), "{e}");
}
