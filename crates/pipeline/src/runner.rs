//! Runs a plan: schedules ready instances on `jobs` worker threads, skips those whose lock
//! entry matches, writes each stage into a staging directory that replaces the old one only on
//! success, and shares the result with every member that uses the instance.
use crate::cache::{LockEntry, LockFile, hash_dir, outputs_intact};
use crate::context::{InputArtifact, Shared, io_err};
use crate::plan::Plan;
use crate::{Error, Progress, Result, StageContext, StageError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rerun every stage.
    pub force: bool,
    /// Run only these stages and what they need.
    pub only: Vec<String>,
    /// Rerun these stages and everything downstream of them.
    pub from: Vec<String>,
    /// Worker threads for independent stages (0 = number of cores).
    pub jobs: usize,
    /// Print stage progress on stderr even when it is not a terminal.
    pub verbose: bool,
    /// Memory the run may use for stages with an estimate (bytes); `None` = what the kernel
    /// reports available at the start of the run. A stage whose estimate exceeds it fails
    /// before it allocates; stages whose estimates do not fit together wait for each other.
    pub max_memory: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOutcome {
    Ran,
    Skipped,
    NotSelected,
}

#[derive(Debug, Clone)]
pub struct InstanceReport {
    pub stage: String,
    pub members: Vec<String>,
    pub outcome: StageOutcome,
    pub seconds: f64,
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub out_dir: PathBuf,
    pub instances: Vec<InstanceReport>,
}

impl RunReport {
    pub fn count(&self, o: StageOutcome) -> usize {
        self.instances.iter().filter(|i| i.outcome == o).count()
    }
}

pub struct Runner;

struct Sched {
    waiting: Vec<usize>,
    ready: BTreeSet<usize>,
    running: usize,
    /// Bytes reserved by running stages' estimates.
    reserved: u64,
    outputs: Vec<Option<BTreeMap<String, crate::cache::FileHash>>>,
    reports: Vec<Option<InstanceReport>>,
    failed: Option<Error>,
    consumers_left: Vec<usize>,
}

impl Runner {
    pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunReport> {
        let n = plan.instances.len();
        std::fs::create_dir_all(&plan.out_dir).map_err(|e| io_err(&plan.out_dir, e))?;
        // One run at a time per output directory; then whatever a killed run left in staging
        // or half-written is nobody's and goes.
        let _run_lock = crate::cleanup::lock_run(&plan.out_dir)?;
        crate::cleanup::remove_leftovers(&plan.out_dir);
        let mut lock_file = LockFile::load(&plan.out_dir);
        lock_file.members.extend(plan.members.iter().filter(|(_, l)| !l.is_empty()).map(|(m, l)| (m.clone(), l.clone())));
        lock_file.save(&plan.out_dir)?; // the member mapping is on disk even if every stage fails
        let lock = Mutex::new(lock_file);
        let budget = opts
            .max_memory
            .map(|b| (b, "is allowed by --max-memory"))
            .or_else(|| crate::resources::available_memory().map(|b| (b, "is available (MemAvailable at the start of the run)")));
        // Selection and forcing, by stage name.
        let known: BTreeSet<&str> = plan.stage_order.iter().map(|s| s.as_str()).collect();
        for s in opts.only.iter().chain(&opts.from) {
            if !known.contains(s.as_str()) {
                return Err(Error::Invalid(vec![crate::Diagnostic {
                    file: plan.file.path.clone(),
                    line: 1,
                    column: 1,
                    key: None,
                    message: format!("no stage named `{s}`; stages: {}", plan.stage_order.join(", ")),
                }]));
            }
        }
        let selected: BTreeSet<String> = if opts.only.is_empty() {
            plan.stage_order.iter().cloned().collect()
        } else {
            closure(&opts.only, |s| plan.stage_deps[s].iter().cloned().collect())
        };
        let forced: BTreeSet<String> = if opts.force {
            plan.stage_order.iter().cloned().collect()
        } else {
            let downstream =
                |s: &String| -> Vec<String> { plan.stage_deps.iter().filter(|(_, d)| d.contains(s)).map(|(n, _)| n.clone()).collect() };
            closure(&opts.from, downstream)
        };
        let deps: Vec<BTreeSet<usize>> = plan.instances.iter().map(|i| i.deps()).collect();
        let mut consumers_left = vec![0usize; n];
        for (i, d) in deps.iter().enumerate() {
            if selected.contains(&plan.instances[i].stage) {
                for &x in d {
                    consumers_left[x] += 1;
                }
            }
        }
        let mut sched = Sched {
            waiting: deps.iter().map(|d| d.len()).collect(),
            ready: BTreeSet::new(),
            running: 0,
            reserved: 0,
            outputs: vec![None; n],
            reports: vec![None; n],
            failed: None,
            consumers_left,
        };
        for i in 0..n {
            if sched.waiting[i] == 0 {
                sched.ready.insert(i);
            }
        }
        let state = Mutex::new(sched);
        let cv = Condvar::new();
        let memory: Mutex<HashMap<PathBuf, Shared>> = Mutex::new(HashMap::new());
        let jobs = if opts.jobs == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { opts.jobs };
        let show = opts.verbose || std::io::IsTerminal::is_terminal(&std::io::stderr());

        std::thread::scope(|scope| {
            for _ in 0..jobs.min(n.max(1)) {
                scope.spawn(|| {
                    loop {
                        let (id, input_hashes) = {
                            let mut st = lock_ok(&state);
                            loop {
                                if st.failed.is_some() || (st.ready.is_empty() && st.running == 0) {
                                    return;
                                }
                                if let Some(id) = st.ready.pop_first() {
                                    st.running += 1;
                                    let hashes = input_hashes(plan, id, &st.outputs);
                                    break (id, hashes);
                                }
                                st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
                            }
                        };
                        let inst = &plan.instances[id];
                        let mut reserved = 0;
                        let result = if !selected.contains(&inst.stage) {
                            Ok((BTreeMap::new(), StageOutcome::NotSelected, 0.0))
                        } else {
                            let forced = forced.contains(&inst.stage);
                            input_hashes.and_then(|h| {
                                // A panic anywhere in the stage (or in the engine around it)
                                // becomes an error naming the stage; the staging directory is
                                // removed by its guard while unwinding.
                                crate::panic::catch(|| {
                                    execute(plan, id, &h, forced, &lock, &memory, show, &mut |est| {
                                        reserve(&state, &cv, budget, est, &mut reserved, inst)
                                    })
                                })
                                .unwrap_or_else(|message| {
                                    Err(Error::Internal {
                                        stage: inst.stage.clone(),
                                        kind: inst.kind.kind().into(),
                                        member: inst.members[0].clone(),
                                        message,
                                    })
                                })
                            })
                        };
                        let mut st = lock_ok(&state);
                        st.running -= 1;
                        st.reserved -= reserved;
                        match result {
                            Ok((outs, outcome, seconds)) => {
                                st.outputs[id] = Some(outs);
                                st.reports[id] = Some(InstanceReport {
                                    stage: inst.stage.clone(),
                                    members: inst.members.clone(),
                                    outcome,
                                    seconds,
                                    dir: plan.stage_dir(&inst.members[0], &inst.stage),
                                });
                                for (j, d) in deps.iter().enumerate() {
                                    if d.contains(&id) {
                                        st.waiting[j] -= 1;
                                        if st.waiting[j] == 0 {
                                            st.ready.insert(j);
                                        }
                                    }
                                }
                                if outcome != StageOutcome::NotSelected {
                                    for &d in &deps[id] {
                                        st.consumers_left[d] -= 1;
                                        if st.consumers_left[d] == 0 {
                                            let dir = plan.stage_dir(&plan.instances[d].members[0], &plan.instances[d].stage);
                                            lock_ok(&memory).retain(|p, _| !p.starts_with(&dir));
                                        }
                                    }
                                }
                            }
                            Err(e) => {
                                if st.failed.is_none() {
                                    st.failed = Some(e);
                                }
                            }
                        }
                        cv.notify_all();
                    }
                });
            }
        });
        let st = state.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = st.failed {
            return Err(e);
        }
        Ok(RunReport { out_dir: plan.out_dir.clone(), instances: st.reports.into_iter().flatten().collect() })
    }
}

/// A mutex guard even if another thread panicked while holding it (the data is still
/// consistent here: every critical section is a few assignments).
fn lock_ok<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reserve a stage's estimated memory: fail if it can never fit, wait while stages that are
/// running hold what it needs.
fn reserve(
    state: &Mutex<Sched>,
    cv: &Condvar,
    budget: Option<(u64, &str)>,
    estimate: &crate::Estimate,
    reserved: &mut u64,
    inst: &crate::PlannedInstance,
) -> Result<()> {
    let Some((limit, source)) = budget else {
        return Ok(());
    };
    if estimate.bytes > limit {
        return Err(Error::Memory {
            stage: inst.stage.clone(),
            kind: inst.kind.kind().into(),
            member: inst.members[0].clone(),
            estimate: estimate.clone(),
            limit: crate::resources::human_bytes(limit),
            source_note: source.to_string(),
        });
    }
    let mut st = lock_ok(state);
    while st.reserved > 0 && st.reserved.saturating_add(estimate.bytes) > limit && st.failed.is_none() {
        st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
    }
    st.reserved += estimate.bytes;
    *reserved = estimate.bytes;
    Ok(())
}

fn closure(start: &[String], next: impl Fn(&String) -> Vec<String>) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = start.to_vec();
    while let Some(s) = stack.pop() {
        if set.insert(s.clone()) {
            stack.extend(next(&s));
        }
    }
    set
}

/// Content hashes of every input of `id`, from what its upstream instances wrote.
fn input_hashes(plan: &Plan, id: usize, outputs: &[Option<BTreeMap<String, crate::cache::FileHash>>]) -> Result<Vec<String>> {
    let inst = &plan.instances[id];
    let mut v = Vec::new();
    for (port, refs) in &inst.inputs {
        for r in refs {
            let file = format!("{}.parquet", r.port);
            match outputs[r.instance].as_ref().and_then(|o| o.get(&file)) {
                Some(h) => v.push(format!("{port}={}", h.sha256)),
                None => {
                    let up = &plan.instances[r.instance];
                    let optional = inst.kind.inputs().iter().any(|p| p.name == port && p.optional);
                    if optional {
                        v.push(format!("{port}=absent"));
                    } else {
                        return Err(Error::Stage {
                            stage: inst.stage.clone(),
                            member: inst.members[0].clone(),
                            source: StageError::msg(format!(
                                "input `{port}`: upstream stage `{}` did not write port `{}` (enable it in that stage's parameters)",
                                up.stage, r.port
                            )),
                        });
                    }
                }
            }
        }
    }
    Ok(v)
}

type Executed = (BTreeMap<String, crate::cache::FileHash>, StageOutcome, f64);

#[allow(clippy::too_many_arguments)]
fn execute(
    plan: &Plan,
    id: usize,
    input_hashes: &[String],
    forced: bool,
    lock: &Mutex<LockFile>,
    memory: &Mutex<HashMap<PathBuf, Shared>>,
    show: bool,
    reserve: &mut dyn FnMut(&crate::Estimate) -> Result<()>,
) -> Result<Executed> {
    let inst = &plan.instances[id];
    let member0 = &inst.members[0];
    let dir = plan.stage_dir(member0, &inst.stage);
    let key = crate::sha256_hex(format!("{}\n{}", inst.def_key, input_hashes.join("\n")).as_bytes());
    let lock_id = format!("{member0}/{}", inst.stage);
    let label = if inst.members.len() > 1 {
        format!("{} [{} + {} more]", inst.stage, member0, inst.members.len() - 1)
    } else {
        format!("{} [{member0}]", inst.stage)
    };
    if !forced {
        let entry = lock_ok(lock).stages.get(&lock_id).cloned();
        if let Some(e) = entry
            && e.key == key
            && let Some(outputs) = outputs_intact(&dir, &e.outputs)
        {
            link_members(plan, id, &dir)?;
            if outputs != e.outputs {
                // Re-hashed after a metadata change: remember the new file stats.
                let mut l = lock_ok(lock);
                if let Some(entry) = l.stages.get_mut(&lock_id) {
                    entry.outputs = outputs.clone();
                }
                l.save(&plan.out_dir)?;
            }
            if show {
                eprintln!("  skipped  {label} (up to date)");
            }
            return Ok((outputs, StageOutcome::Skipped, 0.0));
        }
    }
    let input_facts = run_time_facts(plan, id);
    if let Some(estimate) = inst.kind.estimate(&inst.params, &input_facts) {
        reserve(&estimate)?;
    }
    if show {
        eprintln!("  running  {label}");
    }
    let t0 = Instant::now();
    let staging = dir.with_file_name(format!(".staging-{}-{}", inst.stage, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    let guard = RemoveOnDrop(staging.clone());
    let mut inputs: BTreeMap<String, Vec<InputArtifact>> = BTreeMap::new();
    let in_specs = inst.kind.inputs();
    {
        let mem = lock_ok(memory);
        for (port, refs) in &inst.inputs {
            let Some(declared) = in_specs.iter().find(|p| p.name == port).map(|p| p.schema.clone()) else {
                continue; // the plan only connects declared ports
            };
            for r in refs {
                let path = plan.artifact_path(r.instance, &r.port);
                if !path.exists() {
                    continue; // an optional port the upstream did not write
                }
                let shared = mem.get(&path).cloned();
                inputs.entry(port.clone()).or_default().push(InputArtifact {
                    path,
                    member: r.member.clone(),
                    labels: plan.labels(&r.member),
                    declared: declared.clone(),
                    shared,
                });
            }
        }
    }
    let mut base_meta = BTreeMap::new();
    base_meta.insert("hesslab.version".to_string(), crate::HESSLAB_VERSION.to_string());
    base_meta.insert("hesslab.stage".to_string(), inst.stage.clone());
    base_meta.insert("hesslab.kind".to_string(), inst.kind.kind().to_string());
    base_meta.insert("hesslab.kind_version".to_string(), inst.kind.version().to_string());
    base_meta.insert("hesslab.params".to_string(), inst.params.to_string());
    base_meta.insert("hesslab.seed".to_string(), inst.seed.to_string());
    base_meta.insert("hesslab.cache_key".to_string(), key.clone());
    let mut ctx = StageContext {
        stage: inst.stage.clone(),
        member: member0.clone(),
        seed: inst.seed,
        labels: plan.labels(member0),
        progress: if show { Progress::forced(format!("  {label}")) } else { Progress::hidden() },
        pipeline_source: plan.file.source.clone(),
        pipeline_name: plan.file.name.clone(),
        dir: staging.clone(),
        final_dir: dir.clone(),
        inputs,
        outputs: inst.kind.outputs(),
        base_meta,
        shared_out: BTreeMap::new(),
    };
    inst.kind.run(&inst.params, &mut ctx).map_err(|source| Error::Stage { stage: inst.stage.clone(), member: member0.clone(), source })?;
    for o in inst.kind.outputs() {
        if !o.optional && !o.is_files() && !staging.join(format!("{}.parquet", o.name)).exists() {
            return Err(Error::Stage {
                stage: inst.stage.clone(),
                member: member0.clone(),
                source: StageError::msg(format!("stage did not write its output port `{}`", o.name)),
            });
        }
    }
    // Swap the staging directory in: the old artifacts disappear only now.
    let old = dir.with_file_name(format!(".old-{}-{}", inst.stage, std::process::id()));
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(&dir, &old).map_err(|e| io_err(&dir, e))?;
    }
    std::fs::rename(&staging, &dir).map_err(|e| io_err(&dir, e))?;
    std::mem::forget(guard);
    let _ = std::fs::remove_dir_all(&old);
    link_members(plan, id, &dir)?;
    let outputs = hash_dir(&dir)?;
    let seconds = t0.elapsed().as_secs_f64();
    {
        let mut mem = lock_ok(memory);
        for (p, v) in ctx.shared_out {
            mem.insert(p, v);
        }
    }
    {
        let mut l = lock_ok(lock);
        l.hesslab_version = crate::HESSLAB_VERSION.to_string();
        l.stages.insert(
            lock_id,
            LockEntry {
                kind: inst.kind.kind().into(),
                kind_version: inst.kind.version(),
                key,
                seed: inst.seed,
                params: inst.params.clone(),
                outputs: outputs.clone(),
                seconds,
            },
        );
        l.save(&plan.out_dir)?;
    }
    if show {
        eprintln!("  done     {label} in {seconds:.2}s");
    }
    Ok((outputs, StageOutcome::Ran, seconds))
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the input artifacts of an instance hold, read from their Parquet footers.
fn run_time_facts(plan: &Plan, id: usize) -> crate::InputFacts {
    let mut facts = crate::InputFacts::new();
    for (port, refs) in &plan.instances[id].inputs {
        if let Some(r) = refs.first()
            && let Ok(f) = crate::artifact::read_facts(&plan.artifact_path(r.instance, &r.port))
        {
            facts.insert(port.clone(), f);
        }
    }
    facts
}

/// Give every other member that shares this instance its own copy (hard links) of the files.
/// Links that already point at the same files are left alone (re-linking would change the
/// files' ctime, which the cache compares).
fn link_members(plan: &Plan, id: usize, dir: &Path) -> Result<()> {
    let inst = &plan.instances[id];
    for m in &inst.members[1..] {
        let target = plan.stage_dir(m, &inst.stage);
        if crate::cache::same_files(dir, &target) {
            continue;
        }
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(&target).map_err(|e| io_err(&target, e))?;
        for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let e = e.map_err(|e| io_err(dir, e))?;
            let src = e.path();
            let dst = target.join(e.file_name());
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).map_err(|e| io_err(&dst, e))?;
            }
        }
    }
    Ok(())
}
