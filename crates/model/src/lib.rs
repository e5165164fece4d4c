//! Networks — graphs of layers (convolution, pooling, linear, activations, residual blocks),
//! fully connected ones by fused kernels — with softmax CE / MSE / logistic losses, a fixed
//! PyTorch-order parameter layout, initializations, and GD/SGD training. No Parquet here:
//! the `model` artifact is `hesslab_artifacts::Model`.
//!
//! Every layer is a type behind [`Layer`] (forward, backward, R-operator, PyTorch module) in
//! its own file under `layers/`, listed once in [`layers::REGISTRY`].
#![warn(missing_docs)]
mod arch;
mod direct_conv;
mod error;
pub mod graph;
mod import;
mod import_onnx;
mod init;
pub mod kernels;
pub mod layer;
pub mod layers;
mod mlp;
mod network;
pub mod optim;
mod pooled;
mod train;
pub mod vmath;

pub use arch::{Activation, Architecture, LayerLayout, LossKind, sigmoid};
pub use error::{ModelError, Result};
pub use graph::{GraphArch, GraphForward, GraphNet, Node, PassMode};
pub use import::{StateDictLayout, network_from_state_dict};
pub use import_onnx::{ONNX_OPERATORS, OnnxNetwork, network_of_onnx};
pub use init::{Init, initialize, initialize_network};
pub use layer::{DefaultInit, Io, Layer, LayerConfig, RBackward, SecondOrder, Tensor};
pub use layers::{LayerSpec, Shape, Window};
pub use mlp::{CHUNK_ROWS, Forward, LossEval, Mlp, chunks, eval_loss, loss_hess_apply, mm, weight_t, weight_t_mut};
pub use network::{NetArch, Network, Tensors};
pub use pooled::PooledDerivatives;
pub use train::{
    BatchOrder, MAX_WIDTH, Resume, SHARPNESS_WARMUP, SharpnessProbe, Start, TrainLog, TrainParams, TrainState, network_of, train,
    train_tracking_sharpness,
};
