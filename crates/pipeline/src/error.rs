use std::path::PathBuf;

/// Errors of the pipeline engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", format_diagnostics(.0))]
    Invalid(Vec<crate::Diagnostic>),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Parquet error on {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("Arrow error on {path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("artifact {path}: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("stage `{stage}` (member `{member}`) failed: {source}")]
    Stage {
        stage: String,
        member: String,
        #[source]
        source: StageError,
    },
    #[error("lock file {path}: {message}")]
    Lock { path: PathBuf, message: String },
    #[error("internal error in stage `{stage}` (kind {kind}, member `{member}`): {message}; please report this with the pipeline file")]
    Internal { stage: String, kind: String, member: String, message: String },
    #[error("{0}")]
    Memory(Box<MemoryShortfall>),
}

/// A stage whose memory estimate exceeds what the run may use (boxed in `Error` to keep the
/// error small).
#[derive(Debug, thiserror::Error)]
#[error(
    "stage `{stage}` (kind {kind}, member `{member}`) needs about {estimate}, but {limit} {source_note}; \
     make the problem smaller, or pass --max-memory to allow more"
)]
pub struct MemoryShortfall {
    pub stage: String,
    pub kind: String,
    pub member: String,
    pub estimate: crate::Estimate,
    pub limit: String,
    pub source_note: String,
}

fn format_diagnostics(d: &[crate::Diagnostic]) -> String {
    let mut s = format!("{} problem(s) found:", d.len());
    for x in d {
        s.push_str("\n  ");
        s.push_str(&x.to_string());
    }
    s
}

/// The error a stage's `run` returns. Stage crates convert their own errors into it.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Engine(#[from] Box<Error>),
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl From<Error> for StageError {
    fn from(e: Error) -> Self {
        StageError::Engine(Box::new(e))
    }
}

impl StageError {
    pub fn msg(s: impl Into<String>) -> Self {
        StageError::Message(s.into())
    }
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Other(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
