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

/// Read a whole regular file, naming what it should be on failure; refused before reading
/// when `per_byte` times its size (what loading it holds) exceeds the memory budget.
pub(crate) fn read_file(path: &str, what: &'static str, per_byte: u64) -> Result<Vec<u8>> {
    let read_err = |source| DataError::Read { what, path: path.to_string(), source };
    let p = std::path::Path::new(path);
    let size = hesslab_limits::regular_file(p).map_err(read_err)?.len();
    hesslab_limits::check_memory(size.saturating_mul(per_byte), format!("{what} of {} bytes, loaded", size))
        .map_err(|e| DataError::Invalid(format!("{what} `{path}`: loading it {e}")))?;
    hesslab_limits::read_regular(p, size).map_err(read_err)
}
