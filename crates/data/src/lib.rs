//! Datasets for hesslab: generated Gaussian mixtures, the vendored UCI digits, MNIST IDX and
//! CIFAR-10 binary loaders, the seeded random generator, and the dense train/test views the
//! math works on. No Parquet here: the `dataset` artifact is `hesslab_artifacts::Dataset`.
#![warn(missing_docs)]
mod dataset;
mod digits;
mod error;
mod loaders;
mod mixture;
mod onnx;
pub mod rng;
mod tensors;
mod tokens;

pub use dataset::{Dataset, MAX_CLASSES, Split, TEST, TRAIN};
pub use digits::{DigitsParams, PixelScaling, gunzip, load_digits, parse_digits_csv, stratified_split};
pub use error::{DataError, Result};
pub use loaders::{
    CIFAR_RECORD, CifarParams, IDX_BYTES_PER_VALUE, IdxParams, balanced_split, idx_dims, load_cifar10, load_idx, read_idx, subsample,
};
pub use mixture::{GaussianMixture, MixtureParams, total_samples};
pub use onnx::{Attribute, OnnxModel, OnnxNode, parse_onnx, read_onnx};
pub use tensors::{ArrayHeader, NamedArray, TensorData, load_tensors, read_arrays, safetensors_header};
pub use tokens::{MAX_MODULUS, ModularParams, Operation, TextParams, check_modular, check_text, load_text, modular_arithmetic};
