//! Fully connected networks (any depth, relu/tanh/sigmoid/identity, softmax CE / MSE /
//! logistic losses) with a fixed PyTorch-order parameter layout, and the `train` stage.
mod arch;
mod init;
mod io;
mod mlp;
mod train;

pub use arch::{Activation, Architecture, LayerLayout, LossKind, sigmoid};
pub use init::{Init, initialize};
pub use io::model_port;
pub use mlp::{CHUNK_ROWS, Forward, LossEval, Mlp, chunks, eval_loss, loss_hess_apply, mm, weight_t, weight_t_mut};
pub use train::{Train, TrainLog, TrainParams, log_port, train, trajectory_port};

pub fn register(r: &mut hesslab_pipeline::Registry) {
    r.add::<Train>();
}
