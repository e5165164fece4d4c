use std::path::PathBuf;

/// Errors of the Slurm executor.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)]
pub enum Error {
    /// The engine refused (validation, lock file, I/O in the output directory).
    #[error(transparent)]
    Pipeline(#[from] hesslab_pipeline::Error),
    /// A Slurm command could not be started or failed.
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    /// The settings file is wrong (file, line and key in the message).
    #[error("{path}: {message}")]
    Settings { path: PathBuf, message: String },
    /// The output directory is in use by a local run or by jobs of an earlier submission.
    #[error("{0}")]
    Busy(String),
    /// A record under `.slurm/` cannot be read or written.
    #[error("{path}: {message}")]
    Record { path: PathBuf, message: String },
}

/// Results of the Slurm executor.
pub type Result<T> = std::result::Result<T, Error>;
