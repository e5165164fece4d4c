//! Where and with what resources jobs run: command-line flags over an optional settings file
//! (`--settings FILE`, kept apart from the pipeline, which stays the same for local and
//! cluster runs).
//!
//! ```toml
//! [executor]
//! kind = "slurm"
//! partition = "compute"
//! account = "my-lab"
//! time = "02:00:00"        # per job
//! cores = 1                # per job, unless a stage says otherwise
//! memory = "2G"            # jobs whose stage has no memory estimate
//! sbatch_args = ["--qos=normal"]
//!
//! [stages.eigen]           # one stage's jobs
//! cores = 2
//! memory = "24G"
//! time = "06:00:00"
//! ```
use crate::{Error, Result};
use hesslab_pipeline::resources::parse_bytes;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Memory a job asks for beyond its stage's estimate: the process, its libraries and Arrow
/// buffers while reading inputs.
pub const PROCESS_OVERHEAD: u64 = 512 << 20;
/// Memory requests are rounded up to this (Slurm takes MiB; round numbers read better).
const ROUND: u64 = 64 << 20;

/// Resources of one stage's jobs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageResources {
    /// Cores per job (`--cpus-per-task`; the job's thread count).
    pub cores: Option<u32>,
    /// Memory per job (`--mem`), e.g. "8G", overriding the estimate.
    pub memory: Option<String>,
    /// Time limit per job (`--time`).
    pub time: Option<String>,
    /// Partition for this stage's jobs.
    pub partition: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutorSection {
    kind: Option<String>,
    partition: Option<String>,
    account: Option<String>,
    time: Option<String>,
    cores: Option<u32>,
    memory: Option<String>,
    #[serde(default)]
    sbatch_args: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    executor: Option<ExecutorSection>,
    #[serde(default)]
    stages: BTreeMap<String, StageResources>,
}

/// How jobs are submitted.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time` per job.
    pub time: Option<String>,
    /// Cores per job unless the stage says otherwise.
    pub cores: u32,
    /// Memory of jobs whose stage has no estimate (bytes).
    pub default_memory: u64,
    /// Further `sbatch` arguments, verbatim.
    pub sbatch_args: Vec<String>,
    /// Per-stage overrides.
    pub stages: BTreeMap<String, StageResources>,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            partition: None,
            account: None,
            time: None,
            cores: 1,
            default_memory: 2 << 30,
            sbatch_args: Vec::new(),
            stages: BTreeMap::new(),
        }
    }
}

impl SlurmOptions {
    /// Options from a settings file (or the defaults without one), checked against the stage
    /// names of the pipeline.
    pub fn load(path: Option<&Path>, stage_names: &[String]) -> Result<SlurmOptions> {
        let mut o = SlurmOptions::default();
        let Some(path) = path else { return Ok(o) };
        let err = |message: String| Error::Settings { path: path.to_path_buf(), message };
        // A settings file is a few lines of TOML; a device or FIFO is not one.
        let bytes = hesslab_limits::read_regular(path, 16 << 20).map_err(|e| err(format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| err("is not UTF-8 text".into()))?;
        let file: SettingsFile = toml::from_str(&text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        let mut problems = Vec::new();
        if let Some(ex) = file.executor {
            if let Some(kind) = ex.kind.as_deref().filter(|k| *k != "slurm") {
                problems
                    .push(format!("{}: key `executor.kind`: `{kind}` is not an executor here; expected \"slurm\"", line_of(&text, "kind")));
            }
            o.partition = ex.partition;
            o.account = ex.account;
            o.time = ex.time;
            if let Some(c) = ex.cores {
                o.cores = c;
            }
            if let Some(m) = ex.memory {
                match parse_bytes(&m) {
                    Ok(b) => o.default_memory = b,
                    Err(e) => problems.push(format!("{}: key `executor.memory`: {e}", line_of(&text, "memory"))),
                }
            }
            o.sbatch_args = ex.sbatch_args;
        }
        for (name, r) in &file.stages {
            let at = line_of(&text, &format!("[stages.{name}]"));
            if !stage_names.contains(name) {
                problems.push(format!("{at}: `[stages.{name}]`: the pipeline has no stage `{name}`; stages: {}", stage_names.join(", ")));
            }
            if let Some(Err(e)) = r.memory.as_deref().map(parse_bytes) {
                problems.push(format!("{at}: key `stages.{name}.memory`: {e}"));
            }
            if r.cores == Some(0) {
                problems.push(format!("{at}: key `stages.{name}.cores`: must be at least 1"));
            }
        }
        if o.cores == 0 {
            problems.push(format!("{}: key `executor.cores`: must be at least 1", line_of(&text, "cores")));
        }
        if !problems.is_empty() {
            return Err(err(problems.join("\n")));
        }
        o.stages = file.stages;
        Ok(o)
    }

    /// Cores of a stage's jobs.
    pub fn cores(&self, stage: &str) -> u32 {
        self.stages.get(stage).and_then(|r| r.cores).unwrap_or(self.cores)
    }

    /// Memory request of a stage's job in MiB: the override, else the estimate plus the process
    /// overhead, else the default.
    pub fn memory_mib(&self, stage: &str, estimate: Option<&hesslab_pipeline::Estimate>) -> u64 {
        let bytes = match self.stages.get(stage).and_then(|r| r.memory.as_deref()) {
            Some(m) => parse_bytes(m).unwrap_or(self.default_memory), // checked in `load`
            None => match estimate {
                Some(e) => e.bytes.saturating_add(PROCESS_OVERHEAD),
                None => self.default_memory,
            },
        };
        bytes.div_ceil(ROUND).saturating_mul(ROUND) >> 20
    }

    /// Time limit of a stage's jobs.
    pub fn time(&self, stage: &str) -> Option<&str> {
        self.stages.get(stage).and_then(|r| r.time.as_deref()).or(self.time.as_deref())
    }

    /// Partition of a stage's jobs.
    pub fn partition(&self, stage: &str) -> Option<&str> {
        self.stages.get(stage).and_then(|r| r.partition.as_deref()).or(self.partition.as_deref())
    }
}

/// "line N" of the first line containing `needle` (settings files are small).
fn line_of(text: &str, needle: &str) -> String {
    match text.lines().position(|l| l.trim_start().starts_with(needle) || l.contains(needle)) {
        Some(i) => format!("line {}", i + 1),
        None => "line ?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<SlurmOptions> {
        let p = std::env::temp_dir().join(format!("hesslab-settings-{}-{}.toml", std::process::id(), text.len()));
        std::fs::write(&p, text).unwrap();
        let r = SlurmOptions::load(Some(&p), &["train".into(), "eigen".into()]);
        let _ = std::fs::remove_file(&p);
        r
    }

    #[test]
    fn settings_and_overrides() {
        let o = load("[executor]\npartition = \"p\"\ncores = 2\nmemory = \"3G\"\n\n[stages.eigen]\ncores = 4\nmemory = \"10G\"\n").unwrap();
        assert_eq!(o.partition.as_deref(), Some("p"));
        assert_eq!((o.cores("train"), o.cores("eigen")), (2, 4));
        assert_eq!(o.memory_mib("train", None), 3 * 1024);
        assert_eq!(o.memory_mib("eigen", None), 10 * 1024);
        let e = hesslab_pipeline::Estimate { bytes: 1 << 30, what: "x".into() };
        assert_eq!(o.memory_mib("train", Some(&e)), 1024 + 512);
    }

    #[test]
    fn every_problem_with_its_line() {
        let msg = load("[executor]\ncores = 0\nmemory = \"lots\"\n\n[stages.eigne]\ncores = 1\n").unwrap_err().to_string();
        assert!(msg.contains("line 2: key `executor.cores`"), "{msg}");
        assert!(msg.contains("line 3: key `executor.memory`"), "{msg}");
        assert!(msg.contains("line 5: `[stages.eigne]`: the pipeline has no stage `eigne`"), "{msg}");
        let msg = load("[executor]\npartiton = \"p\"\n").unwrap_err().to_string();
        assert!(msg.contains("partiton") && msg.contains("line 2"), "{msg}");
    }
}
