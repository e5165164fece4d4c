//! Runs a plan: schedules ready instances on `jobs` worker threads within a memory budget,
//! and stops taking work at the first failure. What happens to one instance (skip, stage in,
//! swap in, record) is in `execute.rs`.
use crate::cache::{FileHash, LockFile};
use crate::context::{Shared, io_err};
use crate::execute::{Executed, execute};
use crate::plan::Plan;
use crate::{Error, Result, StageError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

/// How to run a plan.
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

/// What happened to a stage instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOutcome {
    /// It ran.
    Ran,
    /// Its outputs were up to date.
    Skipped,
    /// `--only`/`--from` left it out.
    NotSelected,
}

/// What happened to one stage instance in a run.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct InstanceReport {
    pub stage: String,
    pub members: Vec<String>,
    pub outcome: StageOutcome,
    pub seconds: f64,
    pub dir: PathBuf,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The output directory.
    pub out_dir: PathBuf,
    /// Each instance and its outcome.
    pub instances: Vec<InstanceReport>,
}

impl RunReport {
    /// Instances with outcome `o`.
    pub fn count(&self, o: StageOutcome) -> usize {
        self.instances.iter().filter(|i| i.outcome == o).count()
    }
}

/// Runs a plan: stages in dependency order, concurrently up to `--jobs`.
pub struct Runner;

struct Sched {
    waiting: Vec<usize>,
    ready: BTreeSet<usize>,
    running: usize,
    /// Bytes reserved by running stages' estimates.
    reserved: u64,
    outputs: Vec<Option<BTreeMap<String, FileHash>>>,
    reports: Vec<Option<InstanceReport>>,
    failed: Option<Error>,
    consumers_left: Vec<usize>,
}

/// Everything the workers of one run share.
struct Run<'a> {
    plan: &'a Plan,
    selected: BTreeSet<String>,
    forced: BTreeSet<String>,
    deps: Vec<BTreeSet<usize>>,
    lock: Mutex<LockFile>,
    /// In-memory hand-offs between stages, by artifact path.
    memory: Mutex<HashMap<PathBuf, Shared>>,
    state: Mutex<Sched>,
    cv: Condvar,
    budget: Option<(u64, &'static str)>,
    show: bool,
}

impl Runner {
    /// Run `plan`, skipping what is up to date.
    pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunReport> {
        if let Some(b) = opts.max_memory {
            // Every reader of this process checks what it will allocate against it.
            hesslab_limits::set_memory_budget(b);
        }
        crate::cleanup::refuse_links(&plan.file.out, &plan.out_dir)?;
        std::fs::create_dir_all(&plan.out_dir).map_err(|e| io_err(&plan.out_dir, e))?;
        // One run at a time per output directory; then whatever a killed run left in staging
        // or half-written is nobody's and goes.
        let _run_lock = crate::cleanup::lock_run(&plan.out_dir)?;
        crate::cleanup::remove_leftovers(&plan.out_dir);
        // The member mapping is on disk even if every stage fails.
        let lock_file = record_members(plan)?;
        let (selected, forced) = selection(plan, opts)?;
        let run = Run::new(plan, opts, selected, forced, lock_file);
        run.check_estimates_first()?;
        let n = plan.instances.len();
        let jobs = if opts.jobs == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { opts.jobs };
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(n.max(1)) {
                scope.spawn(|| run.worker());
            }
        });
        let st = run.state.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = st.failed {
            return Err(e);
        }
        Ok(RunReport { out_dir: plan.out_dir.clone(), instances: st.reports.into_iter().flatten().collect() })
    }
}

/// Add the plan's member -> sweep values mapping to the lock file; returns the lock file.
pub(crate) fn record_members(plan: &Plan) -> Result<LockFile> {
    LockFile::update(&plan.out_dir, |l| {
        l.members.extend(plan.members.iter().filter(|(_, l)| !l.is_empty()).map(|(m, l)| (m.clone(), l.clone())));
    })
}

/// The stages `--only` selects (with what they need) and those `--force`/`--from` rerun.
pub(crate) fn selection(plan: &Plan, opts: &RunOptions) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let known: BTreeSet<&str> = plan.stage_order.iter().map(|s| s.as_str()).collect();
    if let Some(s) = opts.only.iter().chain(&opts.from).find(|s| !known.contains(s.as_str())) {
        return Err(Error::Invalid(vec![crate::Diagnostic {
            file: plan.file.path.clone(),
            line: 1,
            column: 1,
            key: None,
            message: format!("no stage named `{s}`; stages: {}", plan.stage_order.join(", ")),
        }]));
    }
    let selected = if opts.only.is_empty() {
        plan.stage_order.iter().cloned().collect()
    } else {
        closure(&opts.only, |s| plan.stage_deps[s].iter().cloned().collect())
    };
    let forced = if opts.force {
        plan.stage_order.iter().cloned().collect()
    } else {
        let downstream =
            |s: &String| -> Vec<String> { plan.stage_deps.iter().filter(|(_, d)| d.contains(s)).map(|(n, _)| n.clone()).collect() };
        closure(&opts.from, downstream)
    };
    Ok((selected, forced))
}

impl<'a> Run<'a> {
    fn new(plan: &'a Plan, opts: &RunOptions, selected: BTreeSet<String>, forced: BTreeSet<String>, lock: LockFile) -> Self {
        let n = plan.instances.len();
        let deps: Vec<BTreeSet<usize>> = plan.instances.iter().map(|i| i.deps()).collect();
        let mut consumers_left = vec![0usize; n];
        for (i, d) in deps.iter().enumerate() {
            if selected.contains(&plan.instances[i].stage) {
                for &x in d {
                    consumers_left[x] += 1;
                }
            }
        }
        let waiting: Vec<usize> = deps.iter().map(|d| d.len()).collect();
        let ready = (0..n).filter(|&i| waiting[i] == 0).collect();
        let state =
            Sched { waiting, ready, running: 0, reserved: 0, outputs: vec![None; n], reports: vec![None; n], failed: None, consumers_left };
        let budget = opts
            .max_memory
            .map(|b| (b, "is allowed by --max-memory"))
            .or_else(|| crate::resources::available_memory().map(|b| (b, "is available (MemAvailable at the start of the run)")));
        Run {
            plan,
            selected,
            forced,
            deps,
            lock: Mutex::new(lock),
            memory: Mutex::new(HashMap::new()),
            state: Mutex::new(state),
            cv: Condvar::new(),
            budget,
            show: opts.verbose || std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    /// Take ready instances until none is left or a stage failed.
    fn worker(&self) {
        while let Some((id, input_hashes)) = self.next_ready() {
            let mut reserved = 0;
            let result = input_hashes.and_then(|h| self.run_one(id, &h, &mut reserved));
            self.complete(id, result, reserved);
        }
    }

    /// The next ready instance with its input hashes; `None` when the run is over.
    fn next_ready(&self) -> Option<(usize, Result<Vec<String>>)> {
        let mut st = lock_ok(&self.state);
        loop {
            if st.failed.is_some() || (st.ready.is_empty() && st.running == 0) {
                return None;
            }
            if let Some(id) = st.ready.pop_first() {
                st.running += 1;
                // Stages `--only` left out neither run nor read inputs (their upstream may not
                // have run either).
                let hashes = if self.selected.contains(&self.plan.instances[id].stage) {
                    input_hashes(self.plan, id, &st.outputs)
                } else {
                    Ok(Vec::new())
                };
                return Some((id, hashes));
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn run_one(&self, id: usize, input_hashes: &[String], reserved: &mut u64) -> Result<Executed> {
        let inst = &self.plan.instances[id];
        if !self.selected.contains(&inst.stage) {
            return Ok((BTreeMap::new(), StageOutcome::NotSelected, 0.0));
        }
        let forced = self.forced.contains(&inst.stage);
        // A panic anywhere in the stage (or in the engine around it) becomes an error naming
        // the stage; the staging directory is removed by its guard while unwinding.
        crate::panic::catch(|| {
            execute(self.plan, id, input_hashes, forced, &self.lock, &self.memory, self.show, &mut |est| self.reserve(est, reserved, id))
        })
        .unwrap_or_else(|message| {
            Err(Error::Internal { stage: inst.stage.clone(), kind: inst.kind.kind().into(), member: inst.members[0].clone(), message })
        })
    }

    /// Record a finished instance: release its memory, make its consumers ready, drop in-memory
    /// hand-offs nobody will read any more; or keep the first failure.
    fn complete(&self, id: usize, result: Result<Executed>, reserved: u64) {
        let inst = &self.plan.instances[id];
        let mut st = lock_ok(&self.state);
        st.running -= 1;
        st.reserved -= reserved;
        match result {
            Ok((outs, outcome, seconds)) => {
                st.outputs[id] = Some(outs);
                let dir = self.plan.stage_dir(&inst.members[0], &inst.stage);
                st.reports[id] = Some(InstanceReport { stage: inst.stage.clone(), members: inst.members.clone(), outcome, seconds, dir });
                for j in (0..self.deps.len()).filter(|&j| self.deps[j].contains(&id)) {
                    st.waiting[j] -= 1;
                    if st.waiting[j] == 0 {
                        st.ready.insert(j);
                    }
                }
                if outcome != StageOutcome::NotSelected {
                    for &d in &self.deps[id] {
                        st.consumers_left[d] -= 1;
                        if st.consumers_left[d] == 0 {
                            let dir = self.plan.stage_dir(&self.plan.instances[d].members[0], &self.plan.instances[d].stage);
                            lock_ok(&self.memory).retain(|p, _| !p.starts_with(&dir));
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
        self.cv.notify_all();
    }

    /// Reserve a stage's estimated memory: fail if it can never fit, wait while stages that are
    /// running hold what it needs.
    /// Before any stage runs: every selected instance that will run (forced, or never run
    /// before here) and whose planned estimate already exceeds the budget fails the run now,
    /// not after the stages before it have spent their time. Instances with a lock entry may be
    /// up to date (then they allocate nothing) and are checked when they start.
    fn check_estimates_first(&self) -> Result<()> {
        let lock = lock_ok(&self.lock);
        for inst in &self.plan.instances {
            let will_run = self.forced.contains(&inst.stage) || !lock.stages.contains_key(&inst.lock_id());
            if let Some(est) = inst.estimate.as_ref().filter(|_| will_run && self.selected.contains(&inst.stage)) {
                self.over_budget(est, inst.id).map_err(|e| match e {
                    Error::Memory(mut m) => {
                        m.remedy = format!("{} (checked before any stage ran)", m.remedy);
                        Error::Memory(m)
                    }
                    other => other,
                })?;
            }
        }
        Ok(())
    }

    /// An error when `estimate` alone exceeds the budget.
    fn over_budget(&self, estimate: &crate::Estimate, id: usize) -> Result<()> {
        let Some((limit, source)) = self.budget else {
            return Ok(());
        };
        let inst = &self.plan.instances[id];
        if estimate.bytes > limit {
            return Err(Error::Memory(Box::new(crate::error::MemoryShortfall {
                stage: inst.stage.clone(),
                kind: inst.kind.kind().into(),
                member: inst.members[0].clone(),
                estimate: estimate.clone(),
                limit: crate::resources::human_bytes(limit),
                source_note: source.to_string(),
                remedy: "pass --max-memory to allow more".into(),
            })));
        }
        Ok(())
    }

    fn reserve(&self, estimate: &crate::Estimate, reserved: &mut u64, id: usize) -> Result<()> {
        let Some((limit, _)) = self.budget else {
            return Ok(());
        };
        self.over_budget(estimate, id)?;
        let mut st = lock_ok(&self.state);
        while st.reserved > 0 && st.reserved.saturating_add(estimate.bytes) > limit && st.failed.is_none() {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.reserved += estimate.bytes;
        *reserved = estimate.bytes;
        Ok(())
    }
}

/// A mutex guard even if another thread panicked while holding it (the data is still
/// consistent here: every critical section is a few assignments).
pub(crate) fn lock_ok<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
pub(crate) fn input_hashes(plan: &Plan, id: usize, outputs: &[Option<BTreeMap<String, crate::cache::FileHash>>]) -> Result<Vec<String>> {
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
    // Files read from outside the pipeline count by content: a re-exported checkpoint or a
    // regenerated data file reruns the stage (an unreadable one too, which then says why).
    for path in inst.kind.input_files(&inst.params) {
        match crate::cache::hash_file(std::path::Path::new(&path)) {
            Ok(h) => v.push(format!("file:{path}={}", h.sha256)),
            Err(_) => v.push(format!("file:{path}=unreadable")),
        }
    }
    Ok(v)
}
