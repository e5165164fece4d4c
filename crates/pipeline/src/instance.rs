//! One stage instance at a time, for executors that run each instance as its own process (a
//! Slurm job: `hesslab exec FILE --instance member/stage`), and the up-to-date check such an
//! executor makes before it submits anything.
//!
//! A single-instance execution takes its inputs' hashes from the lock file (its upstream ran in
//! other processes), holds the run lock shared (other jobs run beside it; a whole local run
//! waits), removes only its own leftovers, and records itself with a locked read-modify-write
//! of the lock file, so that jobs finishing together lose nothing.
use crate::cache::{FileHash, LockFile, outputs_intact};
use crate::execute::{cache_key, execute};
use crate::plan::Plan;
use crate::runner::{InstanceReport, RunOptions, StageOutcome, input_hashes, record_members, selection};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Whether an instance has to run, as seen from the lock file before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Its lock entry matches its definition and its inputs' recorded hashes, and its files
    /// are intact.
    UpToDate,
    /// It must run: never ran, changed, or something upstream must run first.
    Stale,
    /// `--force` or `--from` reruns it whatever the lock file says.
    Forced,
    /// `--only` left it out.
    NotSelected,
}

/// The state of every instance of `plan` (in plan order) under `opts`' selection and forcing.
/// Read-only: nothing on disk changes.
pub fn instance_states(plan: &Plan, opts: &RunOptions) -> Result<Vec<InstanceState>> {
    let (selected, forced) = selection(plan, opts)?;
    let lock = LockFile::load(&plan.out_dir);
    let n = plan.instances.len();
    let mut outputs: Vec<Option<BTreeMap<String, FileHash>>> = vec![None; n];
    let mut states = vec![InstanceState::Stale; n];
    // Instances are in dependency order, so every upstream state is known when it is needed.
    for (id, inst) in plan.instances.iter().enumerate() {
        if !selected.contains(&inst.stage) {
            states[id] = InstanceState::NotSelected;
            outputs[id] = current_outputs(plan, &lock, id);
            continue;
        }
        if forced.contains(&inst.stage) {
            states[id] = InstanceState::Forced;
            continue;
        }
        if inst.deps().iter().any(|&d| matches!(states[d], InstanceState::Stale | InstanceState::Forced)) {
            continue;
        }
        let Ok(hashes) = input_hashes(plan, id, &outputs) else { continue };
        let key = cache_key(inst, &hashes);
        if lock.stages.get(&inst.lock_id()).is_some_and(|e| e.key == key)
            && let Some(o) = current_outputs(plan, &lock, id)
        {
            outputs[id] = Some(o);
            states[id] = InstanceState::UpToDate;
        }
    }
    Ok(states)
}

/// The recorded outputs of an instance if its files are intact (whatever its key).
fn current_outputs(plan: &Plan, lock: &LockFile, id: usize) -> Option<BTreeMap<String, FileHash>> {
    let inst = &plan.instances[id];
    let entry = lock.stages.get(&inst.lock_id())?;
    outputs_intact(&plan.stage_dir(&inst.members[0], &inst.stage), &entry.outputs)
}

/// Run the instance `lock_id` (`<first member>/<stage>`) of `plan` alone, its inputs read from
/// what upstream instances recorded in the lock file. Skips it when it is up to date (unless
/// `opts.force`). The memory check uses `opts.max_memory` (a job's allocation) or what is
/// available, and fails rather than waits.
pub fn run_instance(plan: &Plan, lock_id: &str, opts: &RunOptions) -> Result<InstanceReport> {
    crate::cleanup::refuse_links(&plan.file.out, &plan.out_dir)?;
    std::fs::create_dir_all(&plan.out_dir).map_err(|e| crate::context::io_err(&plan.out_dir, e))?;
    let id = plan.instance_by_lock_id(lock_id).ok_or_else(|| {
        let known: Vec<String> = plan.instances.iter().take(8).map(|i| i.lock_id()).collect();
        Error::Instance(format!(
            "pipeline `{}` has no stage instance `{lock_id}` (instances are named <first member>/<stage>, e.g. {}{})",
            plan.file.name,
            known.join(", "),
            if plan.instances.len() > 8 { ", …; `hesslab dag` lists them" } else { "" }
        ))
    })?;
    let inst = &plan.instances[id];
    let _run_lock = crate::cleanup::lock_run_shared(&plan.out_dir)?;
    crate::cleanup::refuse_links(&plan.file.out, &plan.stage_dir(&inst.members[0], &inst.stage))?;
    crate::cleanup::remove_instance_leftovers(&plan.out_dir.join(&inst.members[0]), &inst.stage);
    let lock = record_members(plan)?;
    let mut outputs: Vec<Option<BTreeMap<String, FileHash>>> = vec![None; plan.instances.len()];
    for d in inst.deps() {
        let up = &plan.instances[d];
        outputs[d] = current_outputs(plan, &lock, d);
        if outputs[d].is_none() {
            return Err(Error::Instance(format!(
                "stage instance `{lock_id}` needs the outputs of `{}`, which are missing or changed in {} (run that instance first)",
                up.lock_id(),
                plan.out_dir.display()
            )));
        }
    }
    let hashes = input_hashes(plan, id, &outputs)?;
    let show = opts.verbose || std::io::IsTerminal::is_terminal(&std::io::stderr());
    let budget = opts.max_memory.or_else(crate::resources::available_memory);
    if let Some(b) = opts.max_memory {
        hesslab_limits::set_memory_budget(b);
    }
    let (note, remedy) = if opts.max_memory.is_some() {
        (
            "is allocated to this job",
            format!("give stage `{}` more memory (`[stages.{}] memory = …` in the Slurm settings file)", inst.stage, inst.stage),
        )
    } else {
        ("is available", "free memory on this machine".to_string())
    };
    let mut check = |estimate: &crate::Estimate| match budget {
        Some(limit) if estimate.bytes > limit => Err(Error::Memory(Box::new(crate::error::MemoryShortfall {
            stage: inst.stage.clone(),
            kind: inst.kind.kind().into(),
            member: inst.members[0].clone(),
            estimate: estimate.clone(),
            limit: crate::resources::human_bytes(limit),
            source_note: note.into(),
            remedy: remedy.clone(),
        }))),
        _ => Ok(()),
    };
    let (lock, memory) = (Mutex::new(lock), Mutex::new(HashMap::new()));
    let (_, outcome, seconds) = crate::panic::catch(|| execute(plan, id, &hashes, opts.force, &lock, &memory, show, &mut check))
        .unwrap_or_else(|message| {
            Err(Error::Internal { stage: inst.stage.clone(), kind: inst.kind.kind().into(), member: inst.members[0].clone(), message })
        })?;
    Ok(InstanceReport {
        stage: inst.stage.clone(),
        members: inst.members.clone(),
        outcome,
        seconds,
        dir: plan.stage_dir(&inst.members[0], &inst.stage),
    })
}

impl StageOutcome {
    /// A word for it, as status records and messages use.
    pub fn word(self) -> &'static str {
        match self {
            StageOutcome::Ran => "ran",
            StageOutcome::Skipped => "up to date",
            StageOutcome::NotSelected => "not selected",
        }
    }
}
