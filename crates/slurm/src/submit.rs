//! Submission: every instance that must run becomes one `sbatch` job, in dependency order, each
//! waiting (`afterok`) for the jobs that produce its inputs.
use crate::records::{SubmissionRecord, logs_dir, records_dir};
use crate::slurm::{sbatch, shell_quote, squeue};
use crate::{Error, Result, SlurmOptions};
use hesslab_pipeline::{InstanceState, Plan, RunOptions, instance_states};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::records::SubmittedJob;

/// How each job calls hesslab: the same binary on the same pipeline file, with the same
/// overrides, from the same working directory.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The hesslab binary (absolute; the nodes must see it at this path).
    pub binary: PathBuf,
    /// The pipeline file (absolute).
    pub pipeline_file: PathBuf,
    /// `--set` overrides, verbatim.
    pub sets: Vec<String>,
    /// Working directory of the jobs (relative paths in the pipeline resolve from here).
    pub workdir: PathBuf,
}

/// What a submission did.
#[derive(Debug)]
pub struct Submission {
    /// The jobs, in submission (dependency) order.
    pub jobs: Vec<SubmittedJob>,
    /// Instances that were up to date and not submitted.
    pub up_to_date: usize,
    /// Instances `--only` left out.
    pub not_selected: usize,
    /// Wall time of the submission on the client.
    pub client_seconds: f64,
}

/// Submit what must run of `plan`; returns at once (see `wait` to follow the jobs).
pub fn submit(plan: &Plan, run: &RunOptions, slurm: &SlurmOptions, how: &Invocation) -> Result<Submission> {
    let t0 = Instant::now();
    let out_dir = absolute(&how.workdir, &plan.out_dir);
    std::fs::create_dir_all(logs_dir(&out_dir)).map_err(|e| io(&logs_dir(&out_dir), e))?;
    std::fs::create_dir_all(records_dir(&out_dir)).map_err(|e| io(&records_dir(&out_dir), e))?;
    // Held while submitting: no local run writes here meanwhile, and no job of ours runs yet.
    let Some(_run_lock) = hesslab_pipeline::cleanup::try_lock_run(&out_dir)? else {
        return Err(Error::Busy(format!(
            "{} is in use by a local `hesslab run` or by running jobs of an earlier submission; wait for them to finish",
            out_dir.display()
        )));
    };
    let mut record = SubmissionRecord::load(&out_dir);
    refuse_if_active(&out_dir, &record)?;
    // No job of an earlier submission is alive, so whatever killed jobs left is nobody's.
    hesslab_pipeline::cleanup::remove_leftovers(&out_dir);
    let states = instance_states(plan, run)?;
    let mut job_of: BTreeMap<usize, String> = BTreeMap::new();
    let mut jobs = Vec::new();
    for (id, inst) in plan.instances.iter().enumerate() {
        if !matches!(states[id], InstanceState::Stale | InstanceState::Forced) {
            continue;
        }
        let depends_on: Vec<String> = inst.deps().iter().filter_map(|d| job_of.get(d).cloned()).collect();
        let cores = slurm.cores(&inst.stage);
        let memory_mib = slurm.memory_mib(&inst.stage, inst.estimate.as_ref());
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name=hesslab:{}:{}", plan.file.name, inst.stage),
            format!("--output={}", logs_dir(&out_dir).join(format!("{}-%j.out", inst.stage)).display()),
            format!("--chdir={}", how.workdir.display()),
            format!("--cpus-per-task={cores}"),
            format!("--mem={memory_mib}M"),
            "--ntasks=1".into(),
            "--nodes=1".into(),
            "--export=ALL".into(),
        ];
        if !depends_on.is_empty() {
            args.push(format!("--dependency=afterok:{}", depends_on.join(":")));
            args.push("--kill-on-invalid-dep=yes".into());
        }
        if let Some(p) = slurm.partition(&inst.stage) {
            args.push(format!("--partition={p}"));
        }
        if let Some(a) = &slurm.account {
            args.push(format!("--account={a}"));
        }
        if let Some(t) = slurm.time(&inst.stage) {
            args.push(format!("--time={t}"));
        }
        args.extend(slurm.sbatch_args.iter().cloned());
        let script = job_script(plan, how, &out_dir, id, cores, states[id] == InstanceState::Forced);
        let job_id = match sbatch(&args, &script) {
            Ok(id) => id,
            Err(e) => {
                // All or nothing: jobs of a half-submitted graph would run without their
                // dependents, so the ones already submitted are cancelled.
                let ids: Vec<String> = jobs.iter().map(|j: &SubmittedJob| j.job_id.clone()).collect();
                if !ids.is_empty() {
                    crate::slurm::scancel(&ids);
                }
                // The sbatch error already names its command: say which instance it was for
                // after it, rather than nesting one quoted command in another.
                let (command, message) = match e {
                    Error::Command { command, message } => (command, message),
                    other => ("sbatch".to_string(), other.to_string()),
                };
                return Err(Error::Command {
                    command,
                    message: format!(
                        "{message} (submitting `{}`; the {} job(s) submitted before it were cancelled, nothing runs)",
                        inst.lock_id(),
                        ids.len()
                    ),
                });
            }
        };
        let log = logs_dir(&out_dir).join(format!("{}-{job_id}.out", inst.stage));
        job_of.insert(id, job_id.clone());
        let job = SubmittedJob { lock_id: inst.lock_id(), stage: inst.stage.clone(), job_id, log, cores, memory_mib, depends_on };
        record.jobs.insert(job.lock_id.clone(), job.clone());
        jobs.push(job);
        // After every job: an interrupted client still leaves a record of what it submitted,
        // so the next submission sees those jobs and does not run them twice.
        record.save(&out_dir)?;
    }
    record.save(&out_dir)?;
    Ok(Submission {
        jobs,
        up_to_date: states.iter().filter(|s| **s == InstanceState::UpToDate).count(),
        not_selected: states.iter().filter(|s| **s == InstanceState::NotSelected).count(),
        client_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The batch script of one instance: `hesslab exec` with exactly what the client was given.
fn job_script(plan: &Plan, how: &Invocation, out_dir: &Path, id: usize, cores: u32, force: bool) -> String {
    let inst = &plan.instances[id];
    let out_root = out_dir.parent().unwrap_or(out_dir); // exec's --out is the pipeline's `out`
    let mut cmd = vec![
        shell_quote(&how.binary.display().to_string()),
        "exec".into(),
        shell_quote(&how.pipeline_file.display().to_string()),
        "--out".into(),
        shell_quote(&out_root.display().to_string()),
        "--instance".into(),
        shell_quote(&inst.lock_id()),
        "--expect".into(),
        inst.fingerprint(),
    ];
    for s in &how.sets {
        cmd.push("--set".into());
        cmd.push(shell_quote(s));
    }
    if force {
        cmd.push("--force".into());
    }
    format!(
        "#!/bin/sh\n# hesslab: pipeline `{}`, stage instance `{}`\nexport RAYON_NUM_THREADS={cores}\nexec {}\n",
        plan.file.name,
        inst.lock_id(),
        cmd.join(" ")
    )
}

/// Refuse to submit while jobs of the previous submission may still write here.
fn refuse_if_active(out_dir: &Path, record: &SubmissionRecord) -> Result<()> {
    let open: Vec<&SubmittedJob> = record
        .jobs
        .values()
        .filter(|j| !crate::records::JobRecord::load(out_dir, &j.job_id).is_some_and(|r| r.finished() || r.state == "failed"))
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let queue = squeue()?;
    let active: Vec<&str> = open.iter().filter(|j| queue.get(&j.job_id).is_some_and(|q| q.active())).map(|j| j.job_id.as_str()).collect();
    if active.is_empty() {
        return Ok(());
    }
    Err(Error::Busy(format!(
        "{} job(s) of an earlier submission for {} are still queued or running ({}{}); wait for them (`hesslab status`) or cancel them (`scancel`)",
        active.len(),
        out_dir.display(),
        active.iter().take(10).copied().collect::<Vec<_>>().join(", "),
        if active.len() > 10 { ", …" } else { "" }
    )))
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Pipeline(hesslab_pipeline::Error::Io { path: path.to_path_buf(), source: e })
}
