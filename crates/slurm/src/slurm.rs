//! The Slurm commands hesslab uses: `sbatch` to submit, `squeue` to follow.
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// Submit a batch script (given on stdin) with `args`; returns the job id.
pub fn sbatch(args: &[String], script: &str) -> Result<String> {
    let command = format!("sbatch {}", args.join(" "));
    let fail = |message: String| Error::Command { command: command.clone(), message };
    let mut child = Command::new("sbatch")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("{e} (is Slurm installed and on PATH? scripts/slurm-local.sh up starts a local cluster)")))?;
    child.stdin.take().map(|mut s| s.write_all(script.as_bytes())).transpose().map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    // --parsable prints "jobid" or "jobid;cluster".
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(format!("unexpected output {text:?}")));
    }
    Ok(id)
}

/// Cancel jobs (best effort: used to undo a submission that failed half-way).
pub fn scancel(ids: &[String]) {
    let _ = Command::new("scancel").args(ids).status();
}

/// A job as `squeue` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT, …
    pub state: String,
    /// Why it is pending or ended (e.g. `DependencyNeverSatisfied`).
    pub reason: String,
}

impl QueueEntry {
    /// Still waiting or running (its process may be alive).
    pub fn active(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "COMPLETED"
                | "FAILED"
                | "CANCELLED"
                | "TIMEOUT"
                | "NODE_FAIL"
                | "OUT_OF_MEMORY"
                | "PREEMPTED"
                | "BOOT_FAIL"
                | "DEADLINE"
                | "SPECIAL_EXIT"
                | "REVOKED"
        )
    }
}

/// Every job of this user that Slurm still knows (pending, running, and recently ended ones
/// for `MinJobAge`), by job id.
pub fn squeue() -> Result<BTreeMap<String, QueueEntry>> {
    let command = "squeue --me -t all -h -o %i|%T|%r";
    let out = Command::new("squeue")
        .args(["--me", "-t", "all", "-h", "-o", "%i|%T|%r"])
        .output()
        .map_err(|e| Error::Command { command: command.into(), message: e.to_string() })?;
    if !out.status.success() {
        return Err(Error::Command { command: command.into(), message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let id = f.next()?.trim().to_string();
            let state = f.next()?.trim().to_string();
            let reason = f.next().unwrap_or("").trim().to_string();
            Some((id, QueueEntry { state, reason }))
        })
        .collect())
}

/// Quote for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::shell_quote("a/b.toml"), "a/b.toml");
        assert_eq!(super::shell_quote("it's x"), "'it'\\''s x'");
        assert_eq!(super::shell_quote(""), "''");
        assert_eq!(super::shell_quote("sweep.train.seed=[1, 2]"), "'sweep.train.seed=[1, 2]'");
    }
}
