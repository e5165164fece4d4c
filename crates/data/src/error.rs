//! Errors of loading and generating data.

/// Why data could not be loaded or built.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {what} `{path}`: {source}")]
    Read {
        /// What the file was supposed to hold.
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not what its format promises.
    #[error("malformed {format} `{path}`: {message}")]
    Malformed {
        /// The format ("IDX file", "CIFAR-10 batch").
        format: &'static str,
        /// Its path.
        path: String,
        /// What is wrong, where.
        message: String,
    },
    /// Data or parameters that do not make a dataset.
    #[error("{0}")]
    Invalid(String),
}

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Read a whole file, naming what it should be on failure.
pub(crate) fn read_file(path: &str, what: &'static str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| DataError::Read { what, path: path.to_string(), source })
}
