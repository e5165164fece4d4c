//! The cluster side of the command line: `run --executor slurm`, `exec` (one instance, what
//! each job runs) and `status`.
use anyhow::{Context, Result};
use hesslab_pipeline::{PipelineFile, Plan, RunOptions, StageOutcome};
use hesslab_slurm::records::{JobRecord, cpu_seconds, host_name};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A validated plan of `file` with `--set` overrides and an optional `--out`.
pub fn load(file: &Path, set: &[String], out: Option<&PathBuf>) -> Result<Plan> {
    let mut pf = PipelineFile::load(file, set)?;
    if let Some(o) = out {
        pf.out = o.clone();
    }
    Ok(Plan::build(pf, &crate::registry())?)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// Submit what must run of `plan` to Slurm; with `wait`, follow the jobs and fail naming every
/// stage whose job did not succeed.
pub fn run_on_slurm(
    plan: &Plan,
    file: &Path,
    set: &[String],
    run: &RunOptions,
    slurm: &hesslab_slurm::SlurmOptions,
    wait: bool,
    verbose: bool,
) -> Result<()> {
    let how = hesslab_slurm::Invocation {
        binary: std::env::current_exe().context("cannot find the hesslab binary to run in the jobs")?,
        pipeline_file: absolute(file)?.canonicalize().with_context(|| format!("cannot resolve {}", file.display()))?,
        sets: set.to_vec(),
        workdir: std::env::current_dir()?,
    };
    let out_dir = absolute(&plan.out_dir)?;
    let sub = hesslab_slurm::submit(plan, run, slurm, &how)?;
    out!(
        "pipeline `{}`: submitted {} Slurm job(s) in {:.2}s ({} up to date, {} not selected); logs in {}",
        plan.file.name,
        sub.jobs.len(),
        sub.client_seconds,
        sub.up_to_date,
        sub.not_selected,
        hesslab_slurm::records::logs_dir(&out_dir).display()
    );
    for j in sub.jobs.iter().take(if verbose { usize::MAX } else { 20 }) {
        let deps = if j.depends_on.is_empty() { String::new() } else { format!(" after {}", j.depends_on.join(",")) };
        out!("  job {:<8} {} ({} core(s), {} MiB){deps}", j.job_id, j.lock_id, j.cores, j.memory_mib);
    }
    if !verbose && sub.jobs.len() > 20 {
        out!("  … {} more (--verbose lists all; `hesslab status` follows them)", sub.jobs.len() - 20);
    }
    if !wait || sub.jobs.is_empty() {
        if !sub.jobs.is_empty() {
            out!("follow them with: hesslab status {}", file.display());
        }
        return Ok(());
    }
    let progress = if verbose { hesslab_pipeline::Progress::forced("  slurm") } else { hesslab_pipeline::Progress::new("  slurm") };
    let outcome = hesslab_slurm::wait(&out_dir, &sub.jobs, &progress)?;
    out!(
        "{} job(s) ended in {:.1}s: {:.1} CPU-seconds, {:.1} job-seconds",
        outcome.jobs.len(),
        outcome.seconds,
        outcome.cpu_seconds,
        outcome.job_seconds
    );
    if let Some(message) = outcome.failure_message() {
        anyhow::bail!("{message}");
    }
    match hesslab_analysis::report::write_plan_report(&plan) {
        Ok((p, results)) => {
            out!("  report: {}", p.display());
            let text = results.text(12);
            if !text.is_empty() {
                out!("{}", text.trim_end());
            }
        }
        Err(e) => eprintln!("warning: could not write the report: {e}"),
    }
    Ok(())
}

/// `hesslab exec`: run one instance. Inside a Slurm job (`SLURM_JOB_ID` set) it records how it
/// went under `<out>/<pipeline>/.slurm/jobs/<jobid>.json`, failures included, and sizes its
/// thread pool and memory check from the job's allocation.
pub fn exec(
    file: &Path,
    instance: &str,
    out: Option<&PathBuf>,
    set: &[String],
    force: bool,
    expect: Option<&str>,
    verbose: bool,
) -> Result<()> {
    let t0 = Instant::now();
    let job_id = std::env::var("SLURM_JOB_ID").ok();
    if std::env::var_os("RAYON_NUM_THREADS").is_none()
        && let Some(n) = std::env::var("SLURM_CPUS_PER_TASK").ok().and_then(|v| v.parse::<usize>().ok())
    {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    let plan = load(file, set, out)?;
    let out_dir = absolute(&plan.out_dir)?;
    let record = |state: &str, message: Option<String>| -> Result<()> {
        if let Some(job_id) = &job_id {
            let r = JobRecord {
                lock_id: instance.to_string(),
                job_id: job_id.clone(),
                state: state.into(),
                message,
                wall_seconds: t0.elapsed().as_secs_f64(),
                cpu_seconds: cpu_seconds(),
                host: host_name(),
            };
            r.save(&out_dir)?;
        }
        Ok(())
    };
    let result = (|| -> Result<StageOutcome> {
        if let Some(want) = expect {
            let id = plan.instance_by_lock_id(instance).with_context(|| {
                format!(
                    "pipeline `{}` has no stage instance `{instance}` any more (was the pipeline file edited after submission?)",
                    plan.file.name
                )
            })?;
            let have = plan.instances[id].fingerprint();
            anyhow::ensure!(
                have == want,
                "stage instance `{instance}` of {} changed after this job was submitted (fingerprint {have}, submitted {want}); submit again",
                file.display()
            );
        }
        record("running", None)?;
        // A job's memory is what Slurm allocated to it, not what the node has free.
        let max_memory = std::env::var("SLURM_MEM_PER_NODE").ok().and_then(|m| m.parse::<u64>().ok()).map(|mib| mib << 20);
        let opts = RunOptions { force, verbose, max_memory, ..RunOptions::default() };
        Ok(hesslab_pipeline::run_instance(&plan, instance, &opts)?.outcome)
    })();
    match result {
        Ok(outcome) => {
            record(outcome.word(), None)?;
            eprintln!("{instance}: {} in {:.2}s", outcome.word(), t0.elapsed().as_secs_f64());
            Ok(())
        }
        Err(e) => {
            let mut message = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                message.push_str(&format!(": {s}"));
                src = s.source();
            }
            let _ = record("failed", Some(message));
            Err(e)
        }
    }
}

/// `hesslab status`: every instance with its state, then the counts.
pub fn status(plan: &Plan) -> Result<String> {
    let out_dir = absolute(&plan.out_dir)?;
    let (rows, note) = hesslab_slurm::status(plan, &out_dir)?;
    if let Some(n) = note {
        eprintln!("warning: {n}");
    }
    Ok(hesslab_slurm::status::render(&rows))
}
