//! Validation and expansion of a pipeline file into stage instances: sweeps become members,
//! identical upstream work is shared, and "all members" inputs gather a sweep.
use crate::Result;
use crate::config::PipelineFile;
use crate::registry::{DynStage, Registry};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// The member name of a pipeline without a sweep.
pub const SINGLE_MEMBER: &str = "main";
/// The member name where stages that gather all members run.
pub const ALL_MEMBERS: &str = "all";
/// The most members a sweep may expand to (each is a directory and a set of instances).
pub const MAX_MEMBERS: usize = 10_000;

/// A reference to an upstream artifact, as an instance input.
#[derive(Debug, Clone)]
pub struct InputRef {
    pub instance: usize,
    pub port: String,
    /// The member whose artifact this is (its sweep labels identify it downstream).
    pub member: String,
}

/// One unit of work: a stage with resolved parameters and inputs, shared by one or more members.
#[derive(Clone)]
pub struct PlannedInstance {
    /// Index in `Plan::instances`.
    pub id: usize,
    /// The stage's name.
    pub stage: String,
    /// Its kind.
    pub kind: Arc<dyn DynStage>,
    /// Resolved parameters.
    pub params: serde_json::Value,
    /// Its seed.
    pub seed: u64,
    /// The sweep members that share this instance.
    pub members: Vec<String>,
    /// Connected inputs by port.
    pub inputs: BTreeMap<String, Vec<InputRef>>,
    /// Key of the definition (kind, parameters, inputs) that instances share.
    pub def_key: String,
    /// What its outputs are known to hold, propagated from parameters before anything ran.
    pub facts: crate::Facts,
    /// Peak memory expected from the propagated facts (the runner re-estimates from the actual
    /// input files before the stage starts).
    pub estimate: Option<crate::Estimate>,
}

impl PlannedInstance {
    /// Its key in the lock file and its name on the command line: `<first member>/<stage>`.
    pub fn lock_id(&self) -> String {
        format!("{}/{}", self.members[0], self.stage)
    }

    /// A short fingerprint of its definition (kind, parameters, inputs), so that a job
    /// submitted for it can tell when the pipeline file changed before the job started.
    pub fn fingerprint(&self) -> String {
        crate::sha256_hex(self.def_key.as_bytes())[..16].to_string()
    }

    /// Instances this one reads from.
    pub fn deps(&self) -> BTreeSet<usize> {
        self.inputs.values().flatten().map(|r| r.instance).collect()
    }
}

/// A validated, expanded pipeline.
pub struct Plan {
    /// The parsed pipeline file.
    pub file: PipelineFile,
    /// Where outputs go.
    pub out_dir: PathBuf,
    /// Sweep members and their labels.
    pub members: Vec<(String, BTreeMap<String, String>)>,
    /// Stage instances in an order that respects dependencies.
    pub instances: Vec<PlannedInstance>,
    /// Stage names in dependency order.
    pub stage_order: Vec<String>,
    /// Stage name -> names of the stages it reads from.
    pub stage_deps: BTreeMap<String, BTreeSet<String>>,
}

impl Plan {
    /// Validate `file` against `registry`; every problem is reported at once. The phases are
    /// in `planner.rs`: kinds, tables split into inputs and parameters, references and port
    /// schemas, stage order, sweep keys, parameters, members, then instances.
    pub fn build(file: PipelineFile, registry: &Registry) -> Result<Plan> {
        let mut p = crate::planner::Planner::new(file, registry);
        p.split_tables();
        p.check_references();
        p.order_stages();
        let sweep = p.check_sweep_keys();
        p.check_parameters(&sweep);
        let members = p.expand_members(sweep);
        p.finish_validation()?;
        let instances = p.expand_instances(&members)?;
        let (file, stage_order, stage_deps) = p.into_parts();
        crate::planner::check_against_inputs(&file, &instances)?;
        let out_dir = file.out.join(&file.name);
        let members = members.into_iter().map(|(m, (labels, _))| (m, labels)).collect();
        Ok(Plan { file, out_dir, members, instances, stage_order, stage_deps })
    }

    /// Directory of an instance's artifacts for one member. Member and stage names are single
    /// plain path components by construction (validated names, encoded sweep values), so this
    /// is always inside the output directory.
    pub fn stage_dir(&self, member: &str, stage: &str) -> PathBuf {
        assert!(
            crate::names::is_plain_component(member) && crate::names::is_plain_component(stage),
            "member `{member}` / stage `{stage}` is not a plain directory name"
        );
        self.out_dir.join(member).join(stage)
    }

    /// The path of an output port of an instance (in its first member's directory).
    pub fn artifact_path(&self, instance: usize, port: &str) -> PathBuf {
        let i = &self.instances[instance];
        self.stage_dir(&i.members[0], &i.stage).join(format!("{port}.parquet"))
    }

    /// Sweep labels of a member (empty for the single member and for `all`).
    pub fn labels(&self, member: &str) -> BTreeMap<String, String> {
        self.members.iter().find(|(m, _)| m == member).map(|(_, l)| l.clone()).unwrap_or_default()
    }

    /// The instance whose lock id (`<first member>/<stage>`) is `lock_id`.
    pub fn instance_by_lock_id(&self, lock_id: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.lock_id() == lock_id)
    }

    /// The stages whose planned memory estimate (what `hesslab dag` shows) exceeds `limit`
    /// bytes, as diagnostics at their stage tables; `why` says where the limit comes from.
    pub fn memory_problems(&self, limit: u64, why: &str) -> Vec<crate::Diagnostic> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for inst in &self.instances {
            let Some(est) = inst.estimate.as_ref().filter(|e| e.bytes > limit) else { continue };
            if seen.insert(inst.stage.clone()) {
                let (line, column) = self.file.locate(&["stages", &inst.stage]);
                out.push(crate::Diagnostic {
                    file: self.file.path.clone(),
                    line,
                    column,
                    key: Some(format!("stages.{}", inst.stage)),
                    message: format!(
                        "needs about {est} (member `{}`), but {} {why}; make the problem smaller or allow more with --max-memory",
                        inst.members[0],
                        crate::resources::human_bytes(limit)
                    ),
                });
            }
        }
        out
    }

    /// A human-readable listing of the expanded graph (`hesslab dag`).
    pub fn describe(&self) -> String {
        let mut s = format!(
            "pipeline `{}`: {} member(s), {} stage instance(s), output {}\n",
            self.file.name,
            self.members.len(),
            self.instances.len(),
            self.out_dir.display()
        );
        if self.members.len() > 1 {
            s.push_str("members (directory <- sweep values):\n");
            for (m, labels) in &self.members {
                let values: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                s.push_str(&format!("  {m} <- {}\n", values.join(", ")));
            }
        }
        for i in &self.instances {
            let memory = match &i.estimate {
                Some(e) => format!(" memory≈{e}"),
                None => String::new(),
            };
            s.push_str(&format!(
                "[{}] {} (kind {} v{}) seed={} members={}{memory}\n",
                i.id,
                i.stage,
                i.kind.kind(),
                i.kind.version(),
                i.seed,
                i.members.join(" ")
            ));
            for (port, refs) in &i.inputs {
                for r in refs {
                    s.push_str(&format!(
                        "      {port} <- [{}] {}.{} ({})\n",
                        r.instance, self.instances[r.instance].stage, r.port, r.member
                    ));
                }
            }
        }
        s
    }
}
