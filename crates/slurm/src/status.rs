//! What became of each stage instance: from the lock file (done), the jobs' own records
//! (ran, failed with a message) and `squeue` (queued, running, cancelled).
use crate::records::{JobRecord, SubmissionRecord, SubmittedJob};
use crate::slurm::QueueEntry;
use crate::{Result, slurm};
use hesslab_pipeline::{InstanceState, Plan, RunOptions, instance_states};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The state of one instance.
#[derive(Debug, Clone, PartialEq)]
pub enum InstanceStatus {
    /// Its outputs are up to date.
    Done,
    /// Its job waits in the queue (for resources or for the jobs it depends on).
    Queued,
    /// Its job runs.
    Running,
    /// Its job failed; the message says why.
    Failed(String),
    /// Its job was cancelled; the message says by what.
    Cancelled(String),
    /// It must run and no job is queued for it.
    NotRun,
}

impl InstanceStatus {
    /// One word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            InstanceStatus::Done => "done",
            InstanceStatus::Queued => "queued",
            InstanceStatus::Running => "running",
            InstanceStatus::Failed(_) => "failed",
            InstanceStatus::Cancelled(_) => "cancelled",
            InstanceStatus::NotRun => "not run",
        }
    }
    /// Still in Slurm's hands.
    pub fn active(&self) -> bool {
        matches!(self, InstanceStatus::Queued | InstanceStatus::Running)
    }
}

/// One instance's row of `hesslab status`.
#[derive(Debug, Clone)]
pub struct StatusRow {
    /// `<first member>/<stage>`.
    pub lock_id: String,
    /// Its stage.
    pub stage: String,
    /// Its state.
    pub status: InstanceStatus,
    /// Its latest job, if one was submitted.
    pub job: Option<SubmittedJob>,
}

/// The state of a submitted job from its record and the queue (`None` = Slurm no longer
/// knows it). `up_to_date` is the lock file's view of the instance.
pub(crate) fn classify(record: Option<&JobRecord>, queue: Option<&QueueEntry>, up_to_date: bool) -> InstanceStatus {
    if let Some(q) = queue.filter(|q| q.active()) {
        return match q.state.as_str() {
            "RUNNING" | "COMPLETING" | "CONFIGURING" | "STAGE_OUT" => InstanceStatus::Running,
            _ => InstanceStatus::Queued,
        };
    }
    match record {
        Some(r) if r.finished() => return if up_to_date { InstanceStatus::Done } else { InstanceStatus::NotRun },
        Some(r) if r.state == "failed" => return InstanceStatus::Failed(r.message.clone().unwrap_or_default()),
        _ => {}
    }
    match queue {
        Some(q) if q.reason == "DependencyNeverSatisfied" => {
            InstanceStatus::Cancelled("not started: a job it depends on failed or was cancelled".into())
        }
        Some(q) if q.state == "CANCELLED" => InstanceStatus::Cancelled(format!(
            "cancelled while {} (scancel or an administrator)",
            if record.is_some() { "running" } else { "queued" }
        )),
        Some(q) => InstanceStatus::Failed(format!("job ended {} ({}) without finishing its instance", q.state, q.reason)),
        None if up_to_date => InstanceStatus::Done,
        None => InstanceStatus::Failed("job ended without finishing its instance and Slurm no longer knows it (killed?)".into()),
    }
}

/// Every instance of `plan` with its state, and a note when `squeue` could not be asked (then
/// only the lock file and the jobs' records are consulted, and jobs without a final record show
/// as queued: their fate is unknown).
pub fn status(plan: &Plan, out_dir: &Path) -> Result<(Vec<StatusRow>, Option<String>)> {
    let states = instance_states(plan, &RunOptions::default())?;
    let record = SubmissionRecord::load(out_dir);
    let (queue, note) = if record.jobs.is_empty() {
        (BTreeMap::new(), None)
    } else {
        match slurm::squeue() {
            Ok(q) => (q, None),
            Err(e) => {
                // Unknown is not failed: show such jobs as still queued.
                let pending = QueueEntry { state: "PENDING".into(), reason: "unknown".into() };
                let open = |j: &&SubmittedJob| !JobRecord::load(out_dir, &j.job_id).is_some_and(|r| r.finished() || r.state == "failed");
                let q: BTreeMap<String, QueueEntry> =
                    record.jobs.values().filter(open).map(|j| (j.job_id.clone(), pending.clone())).collect();
                (q, Some(format!("{e}; states of jobs without a final record are unknown (shown as queued)")))
            }
        }
    };
    Ok(plan
        .instances
        .iter()
        .enumerate()
        .map(|(id, inst)| {
            let lock_id = inst.lock_id();
            let up_to_date = states[id] == InstanceState::UpToDate;
            let job = record.jobs.get(&lock_id).cloned();
            let status = match &job {
                Some(j) => classify(JobRecord::load(out_dir, &j.job_id).as_ref(), queue.get(&j.job_id), up_to_date),
                None if up_to_date => InstanceStatus::Done,
                None => InstanceStatus::NotRun,
            };
            StatusRow { lock_id, stage: inst.stage.clone(), status, job }
        })
        .collect::<Vec<_>>())
    .map(|rows| (rows, note))
}

/// `hesslab status` as text: one line per instance, then the counts.
pub fn render(rows: &[StatusRow]) -> String {
    let width = rows.iter().map(|r| r.lock_id.len()).max().unwrap_or(8).min(90);
    let mut s = String::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *counts.entry(r.status.word()).or_default() += 1;
        let job = r.job.as_ref().map(|j| format!("job {}", j.job_id)).unwrap_or_default();
        s.push_str(&format!("{:<width$}  {:<9}  {job}", r.lock_id, r.status.word()));
        if let InstanceStatus::Failed(m) | InstanceStatus::Cancelled(m) = &r.status {
            let log: Option<PathBuf> = r.job.as_ref().map(|j| j.log.clone()).filter(|l| l.exists());
            s.push_str(&format!("  {m}"));
            if let Some(l) = log {
                s.push_str(&format!(" — log {}", l.display()));
            }
        }
        s.push('\n');
    }
    let summary: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    s.push_str(&format!("{} instance(s): {}\n", rows.len(), summary.join(", ")));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: &str) -> JobRecord {
        JobRecord {
            lock_id: "m/s".into(),
            job_id: "1".into(),
            state: state.into(),
            message: Some("boom".into()),
            wall_seconds: 0.0,
            cpu_seconds: 0.0,
            host: String::new(),
        }
    }
    fn q(state: &str, reason: &str) -> QueueEntry {
        QueueEntry { state: state.into(), reason: reason.into() }
    }

    #[test]
    fn job_states() {
        assert_eq!(classify(None, Some(&q("PENDING", "Dependency")), false), InstanceStatus::Queued);
        assert_eq!(classify(Some(&rec("running")), Some(&q("RUNNING", "None")), false), InstanceStatus::Running);
        assert_eq!(classify(Some(&rec("ran")), Some(&q("COMPLETED", "None")), true), InstanceStatus::Done);
        assert_eq!(classify(Some(&rec("failed")), Some(&q("FAILED", "NonZeroExitCode")), false), InstanceStatus::Failed("boom".into()));
        assert!(
            matches!(classify(None, Some(&q("CANCELLED", "DependencyNeverSatisfied")), false), InstanceStatus::Cancelled(m) if m.contains("depends on"))
        );
        assert!(
            matches!(classify(Some(&rec("running")), Some(&q("CANCELLED", "None")), false), InstanceStatus::Cancelled(m) if m.contains("while running"))
        );
        assert!(
            matches!(classify(Some(&rec("running")), Some(&q("TIMEOUT", "TimeLimit")), false), InstanceStatus::Failed(m) if m.contains("TIMEOUT"))
        );
        assert!(matches!(classify(Some(&rec("running")), None, false), InstanceStatus::Failed(m) if m.contains("no longer knows")));
        assert_eq!(classify(None, None, true), InstanceStatus::Done);
    }
}
