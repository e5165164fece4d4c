//! Fully connected networks (any depth, relu/tanh/sigmoid/identity, softmax CE / MSE /
//! logistic losses) with a fixed PyTorch-order parameter layout, and the `train` stage.
mod arch;
mod init;
mod io;
mod mlp;
mod train;

pub use arch::{sigmoid, Activation, Architecture, LayerLayout, LossKind};
pub use init::{initialize, Init};
pub use io::model_port;
pub use mlp::{chunks, eval_loss, loss_hess_apply, mm, weight_t, weight_t_mut, Forward, LossEval, Mlp, CHUNK_ROWS};
pub use train::{log_port, train, trajectory_port, Train, TrainLog, TrainParams};

pub fn register(r: &mut hesslab_pipeline::Registry) {
    r.add::<Train>();
}
