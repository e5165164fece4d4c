//! Data stages: generated Gaussian mixtures, the vendored UCI digits, MNIST IDX and CIFAR-10
//! binary loaders, and a generic table importer. All write the `dataset` artifact.
mod dataset;
mod digits;
mod loaders;
mod mixture;
pub mod rng;

pub use dataset::{Dataset, Split, TEST, TRAIN, dataset_port};
pub use digits::{Digits, DigitsParams};
pub use loaders::{Cifar10, CifarParams, IdxImages, IdxParams, TableImport, TableParams};
pub use mixture::{GaussianMixture, MixtureParams};

pub fn register(r: &mut hesslab_pipeline::Registry) {
    r.add::<GaussianMixture>();
    r.add::<Digits>();
    r.add::<IdxImages>();
    r.add::<Cifar10>();
    r.add::<TableImport>();
}
