use std::path::PathBuf;

/// Errors of the pipeline engine.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields: `path` is the file, `source` the cause, `stage`/`kind`/`member` the instance
pub enum Error {
    /// The pipeline file cannot be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Validation found problems; each names file, line and key.
    #[error("{}", format_diagnostics(.0))]
    Invalid(Vec<crate::Diagnostic>),
    /// A file or directory operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file cannot be read or written.
    #[error("Parquet error on {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow data in a file is inconsistent.
    #[error("Arrow error on {path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// An artifact's columns or metadata are not what its type declares.
    #[error("artifact {path}: {message}")]
    Schema { path: PathBuf, message: String },
    /// `hesslab exec` was asked for an instance the plan does not have, or one whose inputs
    /// are not there yet.
    #[error("{0}")]
    Instance(String),
    /// A stage's `run` failed.
    #[error("stage `{stage}` (member `{member}`) failed: {source}")]
    Stage {
        stage: String,
        member: String,
        #[source]
        source: StageError,
    },
    /// The lock file cannot be read, written or taken.
    #[error("lock file {path}: {message}")]
    Lock { path: PathBuf, message: String },
    /// A stage panicked (a bug): caught and reported.
    #[error("internal error in stage `{stage}` (kind {kind}, member `{member}`): {message}; please report this with the pipeline file")]
    Internal { stage: String, kind: String, member: String, message: String },
    /// A stage's memory estimate exceeds what the run may use.
    #[error("{0}")]
    Memory(Box<MemoryShortfall>),
    /// A symbolic link inside the output directory, where the engine would write, rename or
    /// delete through it.
    #[error(
        "{path} is a symbolic link (to {target}); hesslab writes, renames and deletes only inside the output directory and never through a link out of it: remove the link, or choose another --out"
    )]
    Link { path: PathBuf, target: String },
    /// Reading a file would allocate more than the memory budget (what its footer or headers
    /// say it decodes to), checked before allocating.
    #[error("reading {path} {over}")]
    TooLarge { path: PathBuf, over: hesslab_limits::OverBudget },
}

/// A stage whose memory estimate exceeds what the run may use (boxed in `Error` to keep the
/// error small).
#[derive(Debug, thiserror::Error)]
#[error(
    "stage `{stage}` (kind {kind}, member `{member}`) needs about {estimate}, but {limit} {source_note}; make the problem smaller, or {remedy}"
)]
pub struct MemoryShortfall {
    /// The stage.
    pub stage: String,
    /// Its kind.
    pub kind: String,
    /// The sweep member.
    pub member: String,
    /// What it would need.
    pub estimate: crate::Estimate,
    /// What may be used.
    pub limit: String,
    /// Where the limit comes from.
    pub source_note: String,
    /// How to allow more (`pass --max-memory …`, or a Slurm job's memory setting).
    pub remedy: String,
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
    /// An engine error (reading an input, writing an output).
    #[error(transparent)]
    Engine(#[from] Box<Error>),
    /// A stage's own message (bad input it found).
    #[error("{0}")]
    Message(String),
    /// A math crate's error, kept with its sources.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl From<Error> for StageError {
    fn from(e: Error) -> Self {
        StageError::Engine(Box::new(e))
    }
}

impl StageError {
    /// A stage's own message.
    pub fn msg(s: impl Into<String>) -> Self {
        StageError::Message(s.into())
    }
    /// Any error, kept as the source.
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Other(Box::new(e))
    }
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
