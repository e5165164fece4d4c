//! The hesslab pipeline engine: stage plugins, a registry, TOML pipeline definitions with
//! sweeps, validation that reports every problem at once, Parquet artifacts written atomically,
//! a DVC-style lock file for caching, and a parallel scheduler.
#![warn(missing_docs)]

mod artifact;
mod cache;
pub mod cleanup;
pub mod columns;
mod config;
mod context;
mod error;
mod execute;
mod footprint;
mod instance;
pub mod names;
mod panic;
mod plan;
mod planner;
mod port;
mod registry;
pub mod resources;
mod runner;

pub use artifact::{Artifact, ArtifactReader, ArtifactWriter, read_artifact, read_facts, write_batches_atomic, write_file_atomic};
pub use cache::{LockEntry, LockFile};
pub use config::{Diagnostic, PipelineFile};
pub use context::{InputArtifact, StageContext};
pub use error::{Error, MemoryShortfall, Result, StageError};
pub use hesslab_progress::Progress;
pub use instance::{InstanceState, instance_states, run_instance};
pub use panic::install_panic_hook;
pub use plan::{Plan, PlannedInstance};
pub use port::{Encoded, FILES, MetaKey, Port, PortSpec, check_schema, port, type_name as port_type_name};
pub use registry::{DynStage, Registry, StageKind, nearest};
pub use resources::{Estimate, Facts, InputFacts};
pub use runner::{InstanceReport, RunOptions, RunReport, Runner, StageOutcome};

/// The version string written into every artifact's metadata.
pub const HESSLAB_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Derives a stable 64-bit seed from a pipeline seed and a label (stage name), so each stage
/// has its own stream that does not change when other stages are added or removed.
pub fn derive_seed(seed: u64, label: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(label.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap())
}

/// A float for messages: shortest round-trip form, scientific when very large or small
/// (`1e308`, not 309 digits).
pub fn short_f64(x: f64) -> String {
    if x.is_finite() && x != 0.0 && (x.abs() >= 1e9 || x.abs() < 1e-5) { format!("{x:e}") } else { format!("{x}") }
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
