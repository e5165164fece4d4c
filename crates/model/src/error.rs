//! Errors of building and training networks.

/// Why a network could not be built or trained.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An architecture that cannot be built (no layers, a zero width, too many parameters).
    #[error("{0}")]
    Invalid(String),
    /// Training produced a non-finite loss, gradient or parameter, or a loss past
    /// `divergence_factor` times the initial one.
    #[error(
        "training diverged at step {step} (lr = {}): loss = {}, {why}",
        short_f64(*.lr),
        short_f64(*.loss)
    )]
    Diverged {
        /// The step at which it happened.
        step: u64,
        /// The learning rate.
        lr: f64,
        /// The loss at that step (NaN when not computed).
        loss: f64,
        /// What was seen and what to do ("the loss is not finite; lower the learning rate").
        why: String,
    },
    /// The loss at the initial parameters is not finite: no learning rate is to blame.
    #[error(
        "the training loss at the initial parameters is {} (largest |input| = {}): the data or the initialization are out of range for this network; rescale the inputs (e.g. `scale`/`unit_scale`) or lower `init_std`",
        short_f64(*.loss),
        short_f64(*.largest_input)
    )]
    NonFiniteStart {
        /// The initial loss.
        loss: f64,
        /// The largest absolute input value.
        largest_input: f64,
    },
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// A float for messages: shortest round-trip form, scientific when very large or small.
pub(crate) fn short_f64(x: f64) -> String {
    if x.is_finite() && x != 0.0 && (x.abs() >= 1e9 || x.abs() < 1e-5) { format!("{x:e}") } else { format!("{x}") }
}
