//! `--wait`: follow submitted jobs until none is queued or running, with a progress display on
//! a terminal; then say which failed, with their log files.
use crate::records::{JobRecord, SubmittedJob};
use crate::status::{InstanceStatus, classify};
use crate::{Result, slurm};
use hesslab_progress::Progress;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Polls in a row that a job may be missing from `squeue` without a final record before it
/// counts as lost (a job is visible from submission until `MinJobAge` after it ends, so this
/// only guards against a momentary gap).
const MISSING_POLLS: u32 = 3;

/// How the jobs ended.
#[derive(Debug)]
pub struct WaitOutcome {
    /// Each job with its final state, in submission order.
    pub jobs: Vec<(SubmittedJob, InstanceStatus)>,
    /// CPU time the jobs' processes used (from their records).
    pub cpu_seconds: f64,
    /// Wall time of the jobs' processes, summed.
    pub job_seconds: f64,
    /// Wall time of the wait.
    pub seconds: f64,
}

impl WaitOutcome {
    /// Jobs that failed or were cancelled.
    pub fn unsuccessful(&self) -> impl Iterator<Item = &(SubmittedJob, InstanceStatus)> {
        self.jobs.iter().filter(|(_, s)| matches!(s, InstanceStatus::Failed(_) | InstanceStatus::Cancelled(_)))
    }

    /// The error message naming every failed stage and its log (`None` when all succeeded).
    pub fn failure_message(&self) -> Option<String> {
        let failed: Vec<String> = self
            .unsuccessful()
            .map(|(j, s)| {
                let why = match s {
                    InstanceStatus::Failed(m) | InstanceStatus::Cancelled(m) => m.as_str(),
                    _ => "",
                };
                let log = if j.log.exists() { format!("\n    log: {}", j.log.display()) } else { String::new() };
                format!("  stage `{}` ({}) job {} {}: {why}{log}", j.stage, j.lock_id, j.job_id, s.word())
            })
            .collect();
        (!failed.is_empty())
            .then(|| format!("{} of {} Slurm job(s) did not succeed:\n{}", failed.len(), self.jobs.len(), failed.join("\n")))
    }
}

/// Follow `jobs` (of the pipeline whose output directory is `out_dir`) until every one has
/// ended. Instances whose jobs failed or were cancelled get their leftovers removed (their
/// processes are gone), so nothing half-written stays.
pub fn wait(out_dir: &Path, jobs: &[SubmittedJob], progress: &Progress) -> Result<WaitOutcome> {
    let t0 = Instant::now();
    let bar = progress.bar(jobs.len() as u64, "Slurm jobs");
    let mut missing: BTreeMap<&str, u32> = BTreeMap::new();
    let mut final_state: BTreeMap<&str, InstanceStatus> = BTreeMap::new();
    let mut pause = Duration::from_millis(300);
    loop {
        let queue = slurm::squeue()?;
        let (mut queued, mut running) = (0, 0);
        for j in jobs {
            if final_state.contains_key(j.job_id.as_str()) {
                continue;
            }
            let record = JobRecord::load(out_dir, &j.job_id);
            let q = queue.get(&j.job_id);
            let mut s = classify(record.as_ref(), q, true);
            if q.is_none() && !record.as_ref().is_some_and(|r| r.finished() || r.state == "failed") {
                let n = missing.entry(&j.job_id).or_default();
                *n += 1;
                if *n < MISSING_POLLS {
                    s = InstanceStatus::Queued;
                }
            }
            match s {
                InstanceStatus::Queued => queued += 1,
                InstanceStatus::Running => running += 1,
                _ => {
                    if matches!(s, InstanceStatus::Failed(_) | InstanceStatus::Cancelled(_))
                        && let Some((member, stage)) = j.lock_id.rsplit_once('/')
                    {
                        hesslab_pipeline::cleanup::remove_instance_leftovers(&out_dir.join(member), stage);
                    }
                    progress.line(&format!("{} {} (job {})", s.word(), j.lock_id, j.job_id));
                    final_state.insert(&j.job_id, s);
                    bar.inc(1);
                }
            }
        }
        let failed = final_state.values().filter(|s| !matches!(s, InstanceStatus::Done | InstanceStatus::NotRun)).count();
        bar.set_message(format!("Slurm jobs: {running} running, {queued} queued, {failed} failed"));
        if final_state.len() == jobs.len() {
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 3 / 2).min(Duration::from_secs(5));
    }
    bar.finish_and_clear();
    let (mut cpu_seconds, mut job_seconds) = (0.0, 0.0);
    for j in jobs {
        if let Some(r) = JobRecord::load(out_dir, &j.job_id) {
            cpu_seconds += r.cpu_seconds;
            job_seconds += r.wall_seconds;
        }
    }
    Ok(WaitOutcome {
        jobs: jobs.iter().map(|j| (j.clone(), final_state.remove(j.job_id.as_str()).unwrap_or(InstanceStatus::NotRun))).collect(),
        cpu_seconds,
        job_seconds,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
