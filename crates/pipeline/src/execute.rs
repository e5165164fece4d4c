//! One stage instance: skipped when its lock entry and outputs match, otherwise run in a
//! staging directory that replaces the old one only on success, then recorded in the lock and
//! shared with every member that uses it.
use crate::cache::{FileHash, LockEntry, LockFile, hash_dir, outputs_intact};
use crate::context::{InputArtifact, Shared, io_err};
use crate::plan::Plan;
use crate::runner::{StageOutcome, lock_ok};
use crate::{Error, Progress, Result, StageContext, StageError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Output hashes, what happened, and the wall time.
pub(crate) type Executed = (BTreeMap<String, FileHash>, StageOutcome, f64);

/// What one execution needs to know about its instance.
struct Job<'a> {
    plan: &'a Plan,
    id: usize,
    inst: &'a crate::PlannedInstance,
    dir: PathBuf,
    key: String,
    lock_id: String,
    label: String,
    show: bool,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn execute(
    plan: &Plan,
    id: usize,
    input_hashes: &[String],
    forced: bool,
    lock: &Mutex<LockFile>,
    memory: &Mutex<HashMap<PathBuf, Shared>>,
    show: bool,
    reserve: &mut dyn FnMut(&crate::Estimate) -> Result<()>,
) -> Result<Executed> {
    let job = Job::new(plan, id, input_hashes, show);
    crate::cleanup::refuse_links(&plan.file.out, &job.dir)?;
    if !forced && let Some(outputs) = job.up_to_date(lock)? {
        if show {
            eprintln!("  skipped  {} (up to date)", job.label);
        }
        return Ok((outputs, StageOutcome::Skipped, 0.0));
    }
    if let Some(estimate) = job.inst.kind.estimate(&job.inst.params, &run_time_facts(plan, id)) {
        reserve(&estimate)?;
    }
    if show {
        eprintln!("  running  {}", job.label);
    }
    let t0 = Instant::now();
    let staging = job.dir.with_file_name(format!(".staging-{}-{}", job.inst.stage, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    let guard = RemoveOnDrop(staging.clone());
    let mut ctx = job.context(&staging, memory, show);
    job.inst.kind.run(&job.inst.params, &mut ctx).map_err(|source| job.stage_error(source))?;
    job.check_outputs(&staging)?;
    swap_in(&staging, &job.dir, &job.inst.stage)?;
    std::mem::forget(guard);
    link_members(plan, id, &job.dir)?;
    let outputs = hash_dir(&job.dir)?;
    let seconds = t0.elapsed().as_secs_f64();
    lock_ok(memory).extend(ctx.shared_out);
    job.record(lock, &outputs, seconds)?;
    if show {
        eprintln!("  done     {} in {seconds:.2}s", job.label);
    }
    Ok((outputs, StageOutcome::Ran, seconds))
}

impl<'a> Job<'a> {
    fn new(plan: &'a Plan, id: usize, input_hashes: &[String], show: bool) -> Self {
        let inst = &plan.instances[id];
        let member0 = &inst.members[0];
        let label = if inst.members.len() > 1 {
            format!("{} [{} + {} more]", inst.stage, member0, inst.members.len() - 1)
        } else {
            format!("{} [{member0}]", inst.stage)
        };
        Job {
            plan,
            id,
            inst,
            dir: plan.stage_dir(member0, &inst.stage),
            key: cache_key(inst, input_hashes),
            lock_id: inst.lock_id(),
            label,
            show,
        }
    }

    /// The recorded outputs if the lock entry's key matches and the files are intact (their
    /// stats refreshed in the lock when a file had to be re-hashed).
    fn up_to_date(&self, lock: &Mutex<LockFile>) -> Result<Option<BTreeMap<String, FileHash>>> {
        let entry = lock_ok(lock).stages.get(&self.lock_id).cloned();
        if let Some(e) = entry.as_ref().filter(|e| e.key != self.key)
            && self.show
        {
            let why = if e.hesslab_version != crate::HESSLAB_VERSION {
                let was = if e.hesslab_version.is_empty() { "an earlier version" } else { e.hesslab_version.as_str() };
                format!("its outputs were made by hesslab {was}; this is {}", crate::HESSLAB_VERSION)
            } else if e.kind_version != self.inst.kind.version() {
                format!("kind {} is now version {} (was {})", e.kind, self.inst.kind.version(), e.kind_version)
            } else {
                "its parameters or inputs changed".into()
            };
            eprintln!("  rerun    {} ({why})", self.label);
        }
        let Some(e) = entry.filter(|e| e.key == self.key) else {
            return Ok(None);
        };
        let Some(outputs) = outputs_intact(&self.dir, &e.outputs) else {
            return Ok(None);
        };
        link_members(self.plan, self.id, &self.dir)?;
        if outputs != e.outputs {
            let refresh = |l: &mut LockFile| {
                if let Some(entry) = l.stages.get_mut(&self.lock_id) {
                    entry.outputs = outputs.clone();
                }
            };
            let mut l = lock_ok(lock);
            refresh(&mut l);
            LockFile::update(&self.plan.out_dir, refresh)?;
        }
        Ok(Some(outputs))
    }

    /// The stage's view: its inputs (with in-memory copies where the producer shared them),
    /// its staging directory and the metadata every artifact carries.
    fn context(&self, staging: &Path, memory: &Mutex<HashMap<PathBuf, Shared>>, show: bool) -> StageContext {
        let (plan, inst) = (self.plan, self.inst);
        let member0 = &inst.members[0];
        let in_specs = inst.kind.inputs();
        let mut inputs: BTreeMap<String, Vec<InputArtifact>> = BTreeMap::new();
        let mem = lock_ok(memory);
        for (port, refs) in &inst.inputs {
            let Some(declared) = in_specs.iter().find(|p| p.name == port).map(|p| p.schema()) else {
                continue; // the plan only connects declared ports
            };
            for r in refs {
                let path = plan.artifact_path(r.instance, &r.port);
                if !path.exists() {
                    continue; // an optional port the upstream did not write
                }
                let shared = mem.get(&path).cloned();
                let labels = plan.labels(&r.member);
                inputs.entry(port.clone()).or_default().push(InputArtifact {
                    path,
                    member: r.member.clone(),
                    labels,
                    declared: declared.clone(),
                    shared,
                });
            }
        }
        let base_meta: BTreeMap<String, String> = [
            ("hesslab.version", crate::HESSLAB_VERSION.to_string()),
            ("hesslab.stage", inst.stage.clone()),
            ("hesslab.kind", inst.kind.kind().to_string()),
            ("hesslab.kind_version", inst.kind.version().to_string()),
            ("hesslab.params", inst.params.to_string()),
            ("hesslab.seed", inst.seed.to_string()),
            ("hesslab.cache_key", self.key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        StageContext {
            stage: inst.stage.clone(),
            member: member0.clone(),
            seed: inst.seed,
            labels: plan.labels(member0),
            progress: if show { Progress::forced(format!("  {}", self.label)) } else { Progress::hidden() },
            pipeline_source: plan.file.source.clone(),
            pipeline_name: plan.file.name.clone(),
            dir: staging.to_path_buf(),
            final_dir: self.dir.clone(),
            inputs,
            outputs: inst.kind.outputs(),
            base_meta,
            shared_out: BTreeMap::new(),
        }
    }

    fn stage_error(&self, source: StageError) -> Error {
        Error::Stage { stage: self.inst.stage.clone(), member: self.inst.members[0].clone(), source }
    }

    /// Every required Parquet output was written.
    fn check_outputs(&self, staging: &Path) -> Result<()> {
        match self
            .inst
            .kind
            .outputs()
            .iter()
            .find(|o| !o.optional && !o.is_files() && !staging.join(format!("{}.parquet", o.name)).exists())
        {
            Some(o) => Err(self.stage_error(StageError::msg(format!("stage did not write its output port `{}`", o.name)))),
            None => Ok(()),
        }
    }

    fn record(&self, lock: &Mutex<LockFile>, outputs: &BTreeMap<String, FileHash>, seconds: f64) -> Result<()> {
        let inst = self.inst;
        let entry = LockEntry {
            kind: inst.kind.kind().into(),
            kind_version: inst.kind.version(),
            key: self.key.clone(),
            seed: inst.seed,
            params: inst.params.clone(),
            outputs: outputs.clone(),
            seconds,
            hesslab_version: crate::HESSLAB_VERSION.to_string(),
        };
        // The in-memory copy answers this run's lookups; the file may also be written by other
        // processes (Slurm jobs), so it is updated under its lock rather than overwritten.
        let mut l = lock_ok(lock);
        l.hesslab_version = crate::HESSLAB_VERSION.to_string();
        l.stages.insert(self.lock_id.clone(), entry.clone());
        LockFile::update(&self.plan.out_dir, |disk| {
            disk.hesslab_version = crate::HESSLAB_VERSION.to_string();
            disk.stages.insert(self.lock_id.clone(), entry);
        })?;
        Ok(())
    }
}

/// The key an instance's lock entry must carry to be up to date: the hesslab version, its
/// definition (kind, the kind's implementation `VERSION`, parameters, seed, upstream
/// definitions) and the content of its inputs. So an upgrade of hesslab, or a change of a
/// kind's `VERSION`, reruns the stage instead of reusing what older code computed.
pub(crate) fn cache_key(inst: &crate::PlannedInstance, input_hashes: &[String]) -> String {
    crate::sha256_hex(format!("hesslab {}\n{}\n{}", crate::HESSLAB_VERSION, inst.def_key, input_hashes.join("\n")).as_bytes())
}

/// Swap the staging directory in: the old artifacts disappear only now.
fn swap_in(staging: &Path, dir: &Path, stage: &str) -> Result<()> {
    let old = dir.with_file_name(format!(".old-{stage}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| io_err(dir, e))?;
    }
    std::fs::rename(staging, dir).map_err(|e| io_err(dir, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
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
        let upstream =
            refs.first().and_then(|r| plan.instances[r.instance].kind.outputs().into_iter().find(|o| o.name == r.port).map(|o| (r, o)));
        if let Some((r, spec)) = upstream
            && let Ok(f) = crate::artifact::read_facts(&plan.artifact_path(r.instance, &r.port), &spec)
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
        crate::cleanup::refuse_links(&plan.file.out, &target)?;
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
