//! Networks — fully connected (any depth, relu/tanh/sigmoid/identity) and sequential layer
//! lists with convolutions and pooling — with softmax CE / MSE / logistic losses, a fixed
//! PyTorch-order parameter layout, initializations, and GD/SGD training. No Parquet here:
//! the `model` artifact is `hesslab_artifacts::Model`.
#![warn(missing_docs)]
mod arch;
mod direct_conv;
mod error;
mod init;
pub mod kernels;
pub mod layers;
mod mlp;
mod network;
mod pooled;
mod sequential;
mod train;
pub mod vmath;

pub use arch::{Activation, Architecture, LayerLayout, LossKind, sigmoid};
pub use error::{ModelError, Result};
pub use init::{Init, initialize, initialize_network};
pub use layers::{Layer, LayerSpec, Shape, Window};
pub use mlp::{CHUNK_ROWS, Forward, LossEval, Mlp, chunks, eval_loss, loss_hess_apply, mm, weight_t, weight_t_mut};
pub use network::{NetArch, Network, Tensors};
pub use pooled::{PooledDerivatives, fused_pairs};
pub use sequential::{
    SeqArch, SeqForward, Sequential, layer_forward, layer_forward_tangent, layer_input_signal, layer_param_grad, linear_layout,
};
pub use train::{MAX_WIDTH, SHARPNESS_WARMUP, SharpnessProbe, TrainLog, TrainParams, network_of, train, train_tracking_sharpness};
