//! What was submitted and what each job did, as small JSON files under
//! `<out>/<pipeline>/.slurm/` (hidden: not artifacts). The submission record is written only by
//! the submitting client, which holds the output directory's run lock while it does; each job
//! writes only its own record, so no two processes ever write the same file.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directory of the records.
pub fn records_dir(out_dir: &Path) -> PathBuf {
    out_dir.join(".slurm")
}

/// The directory of the jobs' logs: `<out>/<pipeline>/logs/<stage>-<jobid>.out`.
pub fn logs_dir(out_dir: &Path) -> PathBuf {
    out_dir.join("logs")
}

/// One submitted job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubmittedJob {
    /// The instance, `<first member>/<stage>`.
    pub lock_id: String,
    /// Its stage.
    pub stage: String,
    /// Slurm's job id.
    pub job_id: String,
    /// Its log file.
    pub log: PathBuf,
    /// `--cpus-per-task`.
    pub cores: u32,
    /// `--mem` in MiB.
    pub memory_mib: u64,
    /// Job ids it waits for (`afterok`).
    pub depends_on: Vec<String>,
}

/// The latest job of every instance ever submitted for this output directory.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SubmissionRecord {
    /// By instance.
    pub jobs: BTreeMap<String, SubmittedJob>,
}

impl SubmissionRecord {
    fn path(out_dir: &Path) -> PathBuf {
        records_dir(out_dir).join("submission.json")
    }
    /// The record (empty when there is none).
    pub fn load(out_dir: &Path) -> SubmissionRecord {
        std::fs::read_to_string(Self::path(out_dir)).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
    }
    /// Write it atomically.
    pub fn save(&self, out_dir: &Path) -> Result<()> {
        write_json(&Self::path(out_dir), self)
    }
}

/// What a job did, written by `hesslab exec` when it starts and when it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// The instance.
    pub lock_id: String,
    /// Slurm's job id.
    pub job_id: String,
    /// `running`, `ran`, `up to date` or `failed`.
    pub state: String,
    /// The error, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Wall time of the process so far.
    pub wall_seconds: f64,
    /// CPU time (user + system, all threads) of the process so far.
    pub cpu_seconds: f64,
    /// The node it ran on.
    pub host: String,
}

impl JobRecord {
    fn path(out_dir: &Path, job_id: &str) -> PathBuf {
        records_dir(out_dir).join("jobs").join(format!("{job_id}.json"))
    }
    /// The record of a job, if it wrote one.
    pub fn load(out_dir: &Path, job_id: &str) -> Option<JobRecord> {
        std::fs::read_to_string(Self::path(out_dir, job_id)).ok().and_then(|s| serde_json::from_str(&s).ok())
    }
    /// Write it atomically.
    pub fn save(&self, out_dir: &Path) -> Result<()> {
        write_json(&Self::path(out_dir, &self.job_id), self)
    }
    /// Did the job finish its instance (ran or found it up to date)?
    pub fn finished(&self) -> bool {
        self.state == "ran" || self.state == "up to date"
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Record { path: path.into(), message: e.to_string() })?;
    Ok(hesslab_pipeline::write_file_atomic(path, text.as_bytes())?)
}

/// CPU time of this process so far (user + system of all its threads), from /proc.
pub fn cpu_seconds() -> f64 {
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15, in
    // clock ticks of USER_HZ, which Linux reports as 100 on every architecture.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i - 3).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_grows_with_work() {
        // Busy work until the process has used 0.2 s of CPU; wall time bounds it on a loaded
        // machine, and the CPU time must not run ahead of the wall time (one thread).
        let (t0, start) = (super::cpu_seconds(), std::time::Instant::now());
        let mut x = 0u64;
        while super::cpu_seconds() - t0 < 0.2 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(std::hint::black_box(1));
            }
            assert!(start.elapsed().as_secs() < 60, "CPU time did not advance");
        }
        std::hint::black_box(x);
        assert!(super::cpu_seconds() - t0 <= start.elapsed().as_secs_f64() + 0.05);
    }
}
