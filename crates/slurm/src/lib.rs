//! The Slurm executor: hands hesslab's expanded stage graph to Slurm instead of running it.
//!
//! Every stage instance that is not up to date becomes one `sbatch` job running
//! `hesslab exec FILE --instance <member>/<stage>` with `--dependency=afterok:` on the jobs
//! that produce its inputs and `--kill-on-invalid-dep=yes`, so a failure cancels its dependents
//! in the scheduler. Jobs read and write the shared output directory with the engine's atomic
//! staging and record themselves in the lock file under a file lock (see
//! `hesslab_pipeline::run_instance`). What was submitted and what each job did are small JSON
//! records under `<out>/<pipeline>/.slurm/`, which `--wait` and `hesslab status` read beside
//! `squeue`.
#![warn(missing_docs)]

mod error;
pub mod records;
mod settings;
mod slurm;
pub mod status;
mod submit;
mod wait;

pub use error::{Error, Result};
pub use settings::{SlurmOptions, StageResources};
pub use status::{InstanceStatus, StatusRow, status};
pub use submit::{Invocation, Submission, SubmittedJob, submit};
pub use wait::{WaitOutcome, wait};
