//! Errors of building curvature operators.
use crate::SampleSet;

/// Why an operator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HessianError {
    /// A parameter block names a tensor the model does not have.
    #[error("no tensor `{name}` in the model; tensors: {available}")]
    UnknownTensor {
        /// The name asked for.
        name: String,
        /// The model's tensors, comma-separated.
        available: String,
    },
    /// The chosen samples are empty.
    #[error("the {0:?} samples are empty")]
    NoSamples(SampleSet),
    /// The model and the data do not fit.
    #[error("the model takes {model} inputs, the data has {data} features")]
    InputMismatch {
        /// The model's inputs.
        model: usize,
        /// The data's features.
        data: usize,
    },
    /// Labels the model's loss cannot score (a logistic model on 3 classes, a label past the
    /// model's outputs): the Hessian of such a loss means nothing.
    #[error("{0}")]
    LabelMismatch(String),
    /// An operator that cannot be taken in this configuration.
    #[error("{0}")]
    Invalid(String),
}

/// `Result` with [`HessianError`].
pub type Result<T, E = HessianError> = std::result::Result<T, E>;
