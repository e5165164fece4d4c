//! Validation and expansion of a pipeline file into stage instances: sweeps become members,
//! identical upstream work is shared, and "all members" inputs gather a sweep.
use crate::config::{PipelineFile, StageDecl};
use crate::registry::{DynStage, Registry};
use crate::{Error, Result};
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
    pub id: usize,
    pub stage: String,
    pub kind: Arc<dyn DynStage>,
    pub params: serde_json::Value,
    pub seed: u64,
    pub members: Vec<String>,
    pub inputs: BTreeMap<String, Vec<InputRef>>,
    pub def_key: String,
    /// What its outputs are known to hold, propagated from parameters before anything ran.
    pub facts: crate::Facts,
    /// Peak memory expected from the propagated facts (the runner re-estimates from the actual
    /// input files before the stage starts).
    pub estimate: Option<crate::Estimate>,
}

impl PlannedInstance {
    pub fn deps(&self) -> BTreeSet<usize> {
        self.inputs.values().flatten().map(|r| r.instance).collect()
    }
}

/// A validated, expanded pipeline.
pub struct Plan {
    pub file: PipelineFile,
    pub out_dir: PathBuf,
    pub members: Vec<(String, BTreeMap<String, String>)>,
    pub instances: Vec<PlannedInstance>,
    /// Stage names in dependency order.
    pub stage_order: Vec<String>,
    /// Stage name -> names of the stages it reads from.
    pub stage_deps: BTreeMap<String, BTreeSet<String>>,
}

struct ParsedInput {
    port: String,
    from_stage: String,
    from_port: String,
    all: bool,
}

impl Plan {
    /// Validate `file` against `registry`; every problem is reported at once.
    pub fn build(mut file: PipelineFile, registry: &Registry) -> Result<Plan> {
        let stages: BTreeMap<String, StageDecl> = file.stages.iter().map(|s| (s.name.clone(), s.clone())).collect();
        // Kinds.
        let mut kinds: BTreeMap<String, Arc<dyn DynStage>> = BTreeMap::new();
        for s in stages.values() {
            if let Some(k) = &s.kind {
                match registry.get(k) {
                    Some(kind) => {
                        kinds.insert(s.name.clone(), kind.clone());
                    }
                    None => file.diag(&["stages", &s.name, "kind"], registry.unknown_kind_message(k)),
                }
            }
        }
        // Split tables into inputs and parameters; check references.
        let mut inputs: BTreeMap<String, Vec<ParsedInput>> = BTreeMap::new();
        let mut params: BTreeMap<String, toml::Table> = BTreeMap::new();
        let mut seeds: BTreeMap<String, Option<u64>> = BTreeMap::new();
        for s in stages.values() {
            let Some(kind) = kinds.get(&s.name) else {
                continue;
            };
            let in_ports = kind.inputs();
            let mut p = toml::Table::new();
            let mut ins = Vec::new();
            let mut seed = None;
            for (k, v) in &s.table {
                if k == "seed" {
                    match v.as_integer() {
                        Some(i) if i >= 0 => seed = Some(i as u64),
                        _ => file.diag(&["stages", &s.name, k], format!("`seed` must be a non-negative integer, found {v}")),
                    }
                } else if let Some(port) = in_ports.iter().find(|p| p.name == k) {
                    match v.as_str().and_then(parse_ref) {
                        Some((st, po, all)) => ins.push(ParsedInput { port: port.name.into(), from_stage: st, from_port: po, all }),
                        None => file.diag(
                            &["stages", &s.name, k],
                            format!("input `{k}` must be a string \"STAGE.PORT\" (or \"STAGE.PORT[*]\" for all sweep members), found {v}"),
                        ),
                    }
                } else {
                    p.insert(k.clone(), v.clone());
                }
            }
            for port in &in_ports {
                if !port.optional && !ins.iter().any(|i| i.port == port.name) {
                    file.diag(
                        &["stages", &s.name],
                        format!("stage `{}` (kind `{}`) needs input `{}` = \"STAGE.PORT\" ({})", s.name, kind.kind(), port.name, port.doc),
                    );
                }
            }
            params.insert(s.name.clone(), p);
            inputs.insert(s.name.clone(), ins);
            seeds.insert(s.name.clone(), seed);
        }
        // References and port schemas.
        for (name, ins) in &inputs {
            let kind = &kinds[name];
            for i in ins {
                let key = ["stages", name.as_str(), i.port.as_str()];
                let Some(up) = stages.get(&i.from_stage) else {
                    let near = crate::registry::nearest(&i.from_stage, stages.keys().map(|s| s.as_str()));
                    let hint = near.map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default();
                    file.diag(&key, format!("input `{}` names stage `{}`, which does not exist{hint}", i.port, i.from_stage));
                    continue;
                };
                let Some(up_kind) = kinds.get(&up.name) else {
                    continue;
                };
                let outs = up_kind.outputs();
                let Some(out) = outs.iter().find(|o| o.name == i.from_port) else {
                    let names: Vec<_> = outs.iter().map(|o| o.name).collect();
                    file.diag(
                        &key,
                        format!(
                            "stage `{}` (kind `{}`) has no output port `{}`; its ports: {}",
                            up.name,
                            up_kind.kind(),
                            i.from_port,
                            names.join(", ")
                        ),
                    );
                    continue;
                };
                let inp = kind.inputs().into_iter().find(|p| p.name == i.port).unwrap();
                if let Err(m) = crate::check_schema(&inp.schema, &out.schema) {
                    file.diag(&key, format!("port `{}.{}` does not fit input `{}`: {m}", up.name, out.name, i.port));
                }
                if i.all && !inp.many {
                    file.diag(
                        &key,
                        format!("input `{}` takes one artifact; `[*]` (all members) is only for inputs that gather a sweep", i.port),
                    );
                }
            }
        }
        // Cycles (Kahn's algorithm over stage names).
        let stage_deps: BTreeMap<String, BTreeSet<String>> = inputs
            .iter()
            // Only stages with a known kind take part; the others were reported above.
            .map(|(n, ins)| (n.clone(), ins.iter().filter(|i| inputs.contains_key(&i.from_stage)).map(|i| i.from_stage.clone()).collect()))
            .collect();
        let stage_order = match topo_order(&stage_deps) {
            Ok(o) => o,
            Err(cycle) => {
                let first = cycle.first().cloned().unwrap_or_default();
                file.diag(&["stages", &first], format!("the stages form a cycle: {}", cycle.join(" -> ")));
                Vec::new()
            }
        };
        // Aggregate stages: gather all members, directly or through an aggregate upstream.
        let mut aggregate: BTreeSet<String> = BTreeSet::new();
        for s in &stage_order {
            if inputs[s].iter().any(|i| i.all || aggregate.contains(&i.from_stage)) {
                aggregate.insert(s.clone());
            }
        }
        // Sweep keys.
        let mut sweep_ok = Vec::new();
        for (stage, param, values) in &file.sweep.clone() {
            let key = ["sweep", stage.as_str(), param.as_str()];
            let Some(kind) = kinds.get(stage) else {
                if !stages.contains_key(stage) {
                    file.diag(&key, format!("sweep key names stage `{stage}`, which does not exist"));
                }
                continue;
            };
            if aggregate.contains(stage) {
                file.diag(&key, format!("stage `{stage}` gathers all members; it cannot itself be swept"));
                continue;
            }
            if kind.inputs().iter().any(|p| p.name == param) {
                file.diag(&key, format!("`{param}` is an input of `{stage}`; sweeps take parameters only"));
                continue;
            }
            if values.len() > MAX_MEMBERS {
                file.diag(&key, format!("the sweep key has {} values; at most {MAX_MEMBERS} members are allowed", values.len()));
                continue;
            }
            let mut bad = false;
            let mut seen = BTreeSet::new();
            for v in values {
                if !seen.insert(v.to_string()) {
                    file.diag(&key, format!("sweep value {} appears more than once", short_value(v)));
                    bad = true;
                }
                if param == "seed" {
                    if v.as_integer().is_none_or(|i| i < 0) {
                        file.diag(&key, format!("sweep value {v} for `seed` is not a non-negative integer"));
                        bad = true;
                    }
                    continue;
                }
                let mut t = params.get(stage).cloned().unwrap_or_default();
                t.insert(param.clone(), v.clone());
                if let Err(errs) = kind.resolve(&t) {
                    for (_, m) in errs {
                        file.diag(&key, format!("sweep value {v}: {m}"));
                    }
                    bad = true;
                }
            }
            if !bad {
                sweep_ok.push((stage.clone(), param.clone(), values.clone()));
            }
        }
        // Parameters of every stage (base values).
        for (name, table) in &params {
            if let Err(errs) = kinds[name].resolve(table) {
                for (k, m) in errs {
                    match k {
                        Some(k) => file.diag(&["stages", name, &k], m),
                        None => file.diag(&["stages", name], m),
                    }
                }
            }
        }
        // Gathering stages may refer to sweep keys (e.g. compare's column titles).
        let sweep_keys: Vec<String> = sweep_ok.iter().map(|(st, pa, _)| format!("{st}.{pa}")).collect();
        for s in &aggregate {
            if let Ok(resolved) = kinds[s].resolve(&params[s]) {
                for (k, m) in kinds[s].check_sweep(&resolved, &sweep_keys) {
                    file.diag(&["stages", s, &k], m);
                }
            }
        }
        let member_count = sweep_ok.iter().try_fold(1usize, |n, (_, _, v)| n.checked_mul(v.len()));
        if member_count.is_none_or(|n| n > MAX_MEMBERS) {
            let (st, pa, _) = &sweep_ok[0];
            let count = member_count.map(|n| n.to_string()).unwrap_or_else(|| "more than 2^64".into());
            file.diag(
                &["sweep", st, pa],
                format!("the sweep expands to {count} members; at most {MAX_MEMBERS} are allowed (split it into several pipelines)"),
            );
            sweep_ok.clear();
        }
        let members = expand_members(&sweep_ok);
        let mut dirs = BTreeMap::new();
        for (m, (labels, _)) in &members {
            if let Some(other) = dirs.insert(m.clone(), labels.clone()) {
                file.diag(&["sweep"], format!("sweep members {other:?} and {labels:?} map to the same directory `{m}`"));
            }
        }
        if members.len() > 1 {
            for s in &aggregate {
                for i in &inputs[s] {
                    if !i.all && !aggregate.contains(&i.from_stage) {
                        file.diag(
                            &["stages", s, &i.port],
                            format!(
                                "stage `{s}` gathers all sweep members, so its input `{}` must also be `\"{}.{}[*]\"`",
                                i.port, i.from_stage, i.from_port
                            ),
                        );
                    }
                }
            }
        }
        if !file.diagnostics.is_empty() {
            let mut d = std::mem::take(&mut file.diagnostics);
            d.sort_by_key(|x| (x.line, x.column));
            return Err(Error::Invalid(d));
        }
        // Expansion.
        let mut instances: Vec<PlannedInstance> = Vec::new();
        let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
        let mut where_: BTreeMap<(String, String), usize> = BTreeMap::new(); // (member, stage) -> instance
        let mut add = |inst: PlannedInstance, member: &str, instances: &mut Vec<PlannedInstance>| -> usize {
            let id = match by_key.get(&inst.def_key) {
                Some(&id) => id,
                None => {
                    let id = instances.len();
                    by_key.insert(inst.def_key.clone(), id);
                    instances.push(PlannedInstance { id, ..inst });
                    id
                }
            };
            if !instances[id].members.iter().any(|m| m == member) {
                instances[id].members.push(member.to_string());
            }
            id
        };
        for (member, labels) in &members {
            let overrides = &labels.1;
            for s in stage_order.iter().filter(|s| !aggregate.contains(*s)) {
                let kind = kinds[s].clone();
                let mut table = params[s].clone();
                let mut seed = seeds[s].unwrap_or_else(|| crate::derive_seed(file.seed, s));
                for (st, p, v) in overrides {
                    if st == s {
                        if p == "seed" {
                            seed = v.as_integer().unwrap_or(0) as u64;
                        } else {
                            table.insert(p.clone(), v.clone());
                        }
                    }
                }
                let resolved = kind.resolve(&table).map_err(|e| {
                    Error::Invalid(vec![crate::Diagnostic {
                        file: file.path.clone(),
                        line: 1,
                        column: 1,
                        key: Some(format!("stages.{s}")),
                        message: format!("member `{member}`: {:?}", e),
                    }])
                })?;
                let mut ins: BTreeMap<String, Vec<InputRef>> = BTreeMap::new();
                for i in &inputs[s] {
                    let up = where_[&(member.clone(), i.from_stage.clone())];
                    ins.entry(i.port.clone()).or_default().push(InputRef {
                        instance: up,
                        port: i.from_port.clone(),
                        member: member.clone(),
                    });
                }
                let def_key = definition_key(&kind, &resolved, seed, &ins, &instances, false);
                let (facts, estimate) = plan_facts(&kind, &resolved, &ins, &instances);
                let inst = PlannedInstance {
                    id: 0,
                    stage: s.clone(),
                    kind,
                    params: resolved,
                    seed,
                    members: vec![],
                    inputs: ins,
                    def_key,
                    facts,
                    estimate,
                };
                let id = add(inst, member, &mut instances);
                where_.insert((member.clone(), s.clone()), id);
            }
        }
        for s in stage_order.iter().filter(|s| aggregate.contains(*s)) {
            let kind = kinds[s].clone();
            let resolved = kind.resolve(&params[s]).map_err(|e| {
                Error::Invalid(vec![crate::Diagnostic {
                    file: file.path.clone(),
                    line: 1,
                    column: 1,
                    key: Some(format!("stages.{s}")),
                    message: format!("{e:?}"),
                }])
            })?;
            let seed = seeds[s].unwrap_or_else(|| crate::derive_seed(file.seed, s));
            let mut ins: BTreeMap<String, Vec<InputRef>> = BTreeMap::new();
            for i in &inputs[s] {
                let refs = ins.entry(i.port.clone()).or_default();
                if aggregate.contains(&i.from_stage) {
                    let up = where_[&(ALL_MEMBERS.to_string(), i.from_stage.clone())];
                    refs.push(InputRef { instance: up, port: i.from_port.clone(), member: ALL_MEMBERS.into() });
                } else {
                    for (m, _) in &members {
                        let up = where_[&(m.clone(), i.from_stage.clone())];
                        refs.push(InputRef { instance: up, port: i.from_port.clone(), member: m.clone() });
                    }
                }
            }
            let def_key = definition_key(&kind, &resolved, seed, &ins, &instances, true);
            let (facts, estimate) = plan_facts(&kind, &resolved, &ins, &instances);
            let inst = PlannedInstance {
                id: 0,
                stage: s.clone(),
                kind,
                params: resolved,
                seed,
                members: vec![],
                inputs: ins,
                def_key,
                facts,
                estimate,
            };
            let id = add(inst, ALL_MEMBERS, &mut instances);
            where_.insert((ALL_MEMBERS.to_string(), s.clone()), id);
        }
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

/// Facts and memory estimate of an instance from its upstream instances' facts.
fn plan_facts(
    kind: &Arc<dyn DynStage>,
    params: &serde_json::Value,
    inputs: &BTreeMap<String, Vec<InputRef>>,
    instances: &[PlannedInstance],
) -> (crate::Facts, Option<crate::Estimate>) {
    let facts: crate::InputFacts =
        inputs.iter().filter_map(|(port, refs)| refs.first().map(|r| (port.clone(), instances[r.instance].facts))).collect();
    (kind.facts(params, &facts), kind.estimate(params, &facts))
}

fn parse_ref(s: &str) -> Option<(String, String, bool)> {
    let (s, all) = match s.strip_suffix("[*]") {
        Some(r) => (r, true),
        None => (s, false),
    };
    let (st, po) = s.split_once('.')?;
    if st.is_empty() || po.is_empty() {
        return None;
    }
    Some((st.to_string(), po.to_string(), all))
}

type MemberLabels = (BTreeMap<String, String>, Vec<(String, String, toml::Value)>);

fn expand_members(sweep: &[(String, String, Vec<toml::Value>)]) -> Vec<(String, MemberLabels)> {
    if sweep.is_empty() {
        return vec![(SINGLE_MEMBER.to_string(), (BTreeMap::new(), Vec::new()))];
    }
    let mut combos: Vec<Vec<(String, String, toml::Value)>> = vec![vec![]];
    for (st, p, values) in sweep {
        let mut next = Vec::new();
        for c in &combos {
            for v in values {
                let mut c2 = c.clone();
                c2.push((st.clone(), p.clone(), v.clone()));
                next.push(c2);
            }
        }
        combos = next;
    }
    combos
        .into_iter()
        .map(|c| {
            let labels: BTreeMap<String, String> = c.iter().map(|(s, p, v)| (format!("{s}.{p}"), value_label(v))).collect();
            let parts: Vec<String> = c.iter().map(|(s, p, v)| format!("{s}.{p}={}", crate::names::encode_label(&value_label(v)))).collect();
            let name = crate::names::member_name(&parts);
            (name, (labels, c))
        })
        .collect()
}

/// A value for a message: long ones are cut, floats in short scientific form.
pub(crate) fn short_value(v: &toml::Value) -> String {
    let s = match v {
        toml::Value::Float(f) if f.is_finite() && (f.abs() >= 1e9 || (*f != 0.0 && f.abs() < 1e-6)) => format!("{f:e}"),
        other => other.to_string(),
    };
    if s.chars().count() > 60 { format!("{}…", s.chars().take(57).collect::<String>()) } else { s }
}

fn value_label(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn definition_key(
    kind: &Arc<dyn DynStage>,
    params: &serde_json::Value,
    seed: u64,
    inputs: &BTreeMap<String, Vec<InputRef>>,
    instances: &[PlannedInstance],
    gathers: bool,
) -> String {
    let ins: Vec<String> = inputs
        .iter()
        .flat_map(|(p, refs)| refs.iter().map(move |r| (p, r)))
        .map(|(p, r)| {
            // Gathered inputs are labelled by member, so there the member is part of the definition;
            // per-member inputs are not, so that members share identical upstream work.
            let tag = if gathers { r.member.as_str() } else { "" };
            format!("{p}<-{}:{}:{tag}", instances[r.instance].def_key, r.port)
        })
        .collect();
    crate::sha256_hex(format!("{}\n{}\n{}\n{}\n{}", kind.kind(), kind.version(), params, seed, ins.join("\n")).as_bytes())
}

fn topo_order(deps: &BTreeMap<String, BTreeSet<String>>) -> std::result::Result<Vec<String>, Vec<String>> {
    let mut order = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    while done.len() < deps.len() {
        let ready: Vec<String> =
            deps.iter().filter(|(n, d)| !done.contains(*n) && d.iter().all(|x| done.contains(x))).map(|(n, _)| n.clone()).collect();
        if ready.is_empty() {
            // Report one cycle: walk from any remaining node.
            let Some(start) = deps.keys().find(|n| !done.contains(*n)).cloned() else {
                return Err(Vec::new());
            };
            let mut path = vec![start.clone()];
            let mut cur = start;
            loop {
                let Some(next) = deps.get(&cur).and_then(|d| d.iter().find(|x| !done.contains(*x))).cloned() else {
                    return Err(path);
                };
                if let Some(pos) = path.iter().position(|p| *p == next) {
                    let mut cyc = path[pos..].to_vec();
                    cyc.push(next);
                    return Err(cyc);
                }
                path.push(next.clone());
                cur = next;
            }
        }
        for r in ready {
            done.insert(r.clone());
            order.push(r);
        }
    }
    Ok(order)
}
