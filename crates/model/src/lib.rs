//! Fully connected networks (any depth, relu/tanh/sigmoid/identity, softmax CE / MSE /
//! logistic losses) with a fixed PyTorch-order parameter layout, initializations, and GD/SGD
//! training. No Parquet here: the `model` artifact is `hesslab_artifacts::Model`.
#![warn(missing_docs)]
mod arch;
mod error;
mod init;
mod mlp;
mod train;

pub use arch::{Activation, Architecture, LayerLayout, LossKind, sigmoid};
pub use error::{ModelError, Result};
pub use init::{Init, initialize};
pub use mlp::{CHUNK_ROWS, Forward, LossEval, Mlp, chunks, eval_loss, loss_hess_apply, mm, weight_t, weight_t_mut};
pub use train::{MAX_WIDTH, TrainLog, TrainParams, architecture_of, train};
