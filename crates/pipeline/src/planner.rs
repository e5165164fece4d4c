//! The phases of `Plan::build`. Validation phases add diagnostics to the file and go on, so
//! that every problem is reported at once; expansion runs only on a valid pipeline.
use crate::config::{PipelineFile, StageDecl};
use crate::plan::{ALL_MEMBERS, InputRef, MAX_MEMBERS, PlannedInstance, SINGLE_MEMBER};
use crate::registry::{DynStage, Registry};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One `input = "STAGE.PORT"` (or `"STAGE.PORT[*]"`) of a stage.
pub(crate) struct ParsedInput {
    port: String,
    from_stage: String,
    from_port: String,
    all: bool,
}

/// A sweep key that passed its checks: (stage, parameter, values).
pub(crate) type SweepKey = (String, String, Vec<toml::Value>);
type MemberLabels = (BTreeMap<String, String>, Vec<(String, String, toml::Value)>);
/// Members in order: directory name, (labels `stage.param` -> value, the overrides).
pub(crate) type Members = Vec<(String, MemberLabels)>;

pub(crate) struct Planner {
    file: PipelineFile,
    stages: BTreeMap<String, StageDecl>,
    kinds: BTreeMap<String, Arc<dyn DynStage>>,
    inputs: BTreeMap<String, Vec<ParsedInput>>,
    params: BTreeMap<String, toml::Table>,
    seeds: BTreeMap<String, Option<u64>>,
    stage_deps: BTreeMap<String, BTreeSet<String>>,
    stage_order: Vec<String>,
    /// Stages that gather all members, directly or through a gathering upstream.
    aggregate: BTreeSet<String>,
}

impl Planner {
    /// Phase 1: every stage's kind.
    pub fn new(mut file: PipelineFile, registry: &Registry) -> Self {
        let stages: BTreeMap<String, StageDecl> = file.stages.iter().map(|s| (s.name.clone(), s.clone())).collect();
        let mut kinds = BTreeMap::new();
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
        Planner {
            file,
            stages,
            kinds,
            inputs: BTreeMap::new(),
            params: BTreeMap::new(),
            seeds: BTreeMap::new(),
            stage_deps: BTreeMap::new(),
            stage_order: Vec::new(),
            aggregate: BTreeSet::new(),
        }
    }

    /// Phase 2: each stage table split into inputs, parameters and an optional seed.
    pub fn split_tables(&mut self) {
        for s in self.stages.values() {
            let Some(kind) = self.kinds.get(&s.name) else {
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
                        _ => self.file.diag(&["stages", &s.name, k], format!("`seed` must be a non-negative integer, found {v}")),
                    }
                } else if let Some(port) = in_ports.iter().find(|p| p.name == k) {
                    match v.as_str().and_then(parse_ref) {
                        Some((st, po, all)) => ins.push(ParsedInput { port: port.name.into(), from_stage: st, from_port: po, all }),
                        None => self.file.diag(
                            &["stages", &s.name, k],
                            format!("input `{k}` must be a string \"STAGE.PORT\" (or \"STAGE.PORT[*]\" for all sweep members), found {v}"),
                        ),
                    }
                } else {
                    p.insert(k.clone(), v.clone());
                }
            }
            for port in in_ports.iter().filter(|port| !port.optional && !ins.iter().any(|i| i.port == port.name)) {
                self.file.diag(
                    &["stages", &s.name],
                    format!("stage `{}` (kind `{}`) needs input `{}` = \"STAGE.PORT\" ({})", s.name, kind.kind(), port.name, port.doc),
                );
            }
            self.params.insert(s.name.clone(), p);
            self.inputs.insert(s.name.clone(), ins);
            self.seeds.insert(s.name.clone(), seed);
        }
    }

    /// Phase 3: every input names an existing stage and port whose schema fits.
    pub fn check_references(&mut self) {
        for (name, ins) in &self.inputs {
            let kind = &self.kinds[name];
            for i in ins {
                let key = ["stages", name.as_str(), i.port.as_str()];
                let Some(up) = self.stages.get(&i.from_stage) else {
                    let near = crate::registry::nearest(&i.from_stage, self.stages.keys().map(|s| s.as_str()));
                    let hint = near.map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default();
                    self.file.diag(&key, format!("input `{}` names stage `{}`, which does not exist{hint}", i.port, i.from_stage));
                    continue;
                };
                let Some(up_kind) = self.kinds.get(&up.name) else {
                    continue;
                };
                let outs = up_kind.outputs();
                let Some(out) = outs.iter().find(|o| o.name == i.from_port) else {
                    let names: Vec<_> = outs.iter().map(|o| o.name).collect();
                    let message = format!(
                        "stage `{}` (kind `{}`) has no output port `{}`; its ports: {}",
                        up.name,
                        up_kind.kind(),
                        i.from_port,
                        names.join(", ")
                    );
                    self.file.diag(&key, message);
                    continue;
                };
                let Some(inp) = kind.inputs().into_iter().find(|p| p.name == i.port) else {
                    continue; // parsed from the kind's own ports
                };
                if let Err(m) = crate::check_schema(&inp.schema(), &out.schema()) {
                    self.file.diag(&key, format!("port `{}.{}` does not fit input `{}`: {m}", up.name, out.name, i.port));
                } else if inp.artifact != out.artifact {
                    let message = format!(
                        "port `{}.{}` carries a `{}` artifact, input `{}` takes `{}`",
                        up.name, out.name, out.artifact, i.port, inp.artifact
                    );
                    self.file.diag(&key, message);
                }
                if i.all && !inp.many {
                    let message =
                        format!("input `{}` takes one artifact; `[*]` (all members) is only for inputs that gather a sweep", i.port);
                    self.file.diag(&key, message);
                }
            }
        }
    }

    /// Phase 4: stage order (a cycle is a diagnostic) and which stages gather all members.
    pub fn order_stages(&mut self) {
        // Only stages with a known kind take part; the others were reported above.
        self.stage_deps = self
            .inputs
            .iter()
            .map(|(n, ins)| {
                (n.clone(), ins.iter().filter(|i| self.inputs.contains_key(&i.from_stage)).map(|i| i.from_stage.clone()).collect())
            })
            .collect();
        self.stage_order = match topo_order(&self.stage_deps) {
            Ok(o) => o,
            Err(cycle) => {
                let first = cycle.first().cloned().unwrap_or_default();
                self.file.diag(&["stages", &first], format!("the stages form a cycle: {}", cycle.join(" -> ")));
                Vec::new()
            }
        };
        for s in &self.stage_order {
            if self.inputs[s].iter().any(|i| i.all || self.aggregate.contains(&i.from_stage)) {
                self.aggregate.insert(s.clone());
            }
        }
    }

    /// Phase 5: sweep keys name a parameter of a per-member stage; every value resolves and
    /// appears once. Returns the keys that passed.
    pub fn check_sweep_keys(&mut self) -> Vec<SweepKey> {
        let mut ok = Vec::new();
        for (stage, param, values) in &self.file.sweep.clone() {
            let key = ["sweep", stage.as_str(), param.as_str()];
            let Some(kind) = self.kinds.get(stage).cloned() else {
                if !self.stages.contains_key(stage) {
                    self.file.diag(&key, format!("sweep key names stage `{stage}`, which does not exist"));
                }
                continue;
            };
            let refused = if self.aggregate.contains(stage) {
                Some(format!("stage `{stage}` gathers all members; it cannot itself be swept"))
            } else if kind.inputs().iter().any(|p| p.name == param) {
                Some(format!("`{param}` is an input of `{stage}`; sweeps take parameters only"))
            } else if values.len() > MAX_MEMBERS {
                Some(format!("the sweep key has {} values; at most {MAX_MEMBERS} members are allowed", values.len()))
            } else {
                None
            };
            if let Some(m) = refused {
                self.file.diag(&key, m);
                continue;
            }
            if self.check_sweep_values(&kind, stage, param, values) {
                ok.push((stage.clone(), param.clone(), values.clone()));
            }
        }
        ok
    }

    fn check_sweep_values(&mut self, kind: &Arc<dyn DynStage>, stage: &str, param: &str, values: &[toml::Value]) -> bool {
        let key = ["sweep", stage, param];
        let mut good = true;
        let mut seen = BTreeSet::new();
        for v in values {
            if !seen.insert(v.to_string()) {
                self.file.diag(&key, format!("sweep value {} appears more than once", short_value(v)));
                good = false;
            }
            if param == "seed" {
                if v.as_integer().is_none_or(|i| i < 0) {
                    self.file.diag(&key, format!("sweep value {v} for `seed` is not a non-negative integer"));
                    good = false;
                }
                continue;
            }
            let mut t = self.params.get(stage).cloned().unwrap_or_default();
            t.insert(param.to_string(), v.clone());
            if let Err(errs) = kind.resolve(&t) {
                for (_, m) in errs {
                    self.file.diag(&key, format!("sweep value {v}: {m}"));
                }
                good = false;
            }
        }
        good
    }

    /// Phase 6: every stage's own parameters, and gathering stages' references to sweep keys.
    pub fn check_parameters(&mut self, sweep: &[SweepKey]) {
        for (name, table) in &self.params {
            if let Err(errs) = self.kinds[name].resolve(table) {
                for (k, m) in errs {
                    match k {
                        Some(k) => self.file.diag(&["stages", name, &k], m),
                        None => self.file.diag(&["stages", name], m),
                    }
                }
            }
        }
        let sweep_keys: Vec<String> = sweep.iter().map(|(st, pa, _)| format!("{st}.{pa}")).collect();
        for s in &self.aggregate {
            if let Ok(resolved) = self.kinds[s].resolve(&self.params[s]) {
                for (k, m) in self.kinds[s].check_sweep(&resolved, &sweep_keys) {
                    self.file.diag(&["stages", s, &k], m);
                }
            }
        }
    }

    /// Phase 7: the members (bounded in number, one directory each), and gathering inputs
    /// marked `[*]` when there is more than one member.
    pub fn expand_members(&mut self, mut sweep: Vec<SweepKey>) -> Members {
        let member_count = sweep.iter().try_fold(1usize, |n, (_, _, v)| n.checked_mul(v.len()));
        if member_count.is_none_or(|n| n > MAX_MEMBERS) {
            let (st, pa, _) = &sweep[0];
            let count = member_count.map(|n| n.to_string()).unwrap_or_else(|| "more than 2^64".into());
            let message =
                format!("the sweep expands to {count} members; at most {MAX_MEMBERS} are allowed (split it into several pipelines)");
            self.file.diag(&["sweep", st, pa], message);
            sweep.clear();
        }
        let members = member_combinations(&sweep, &self.file.sweep_names);
        let mut dirs = BTreeMap::new();
        for (m, (labels, _)) in &members {
            if let Some(other) = dirs.insert(m.clone(), labels.clone()) {
                self.file.diag(&["sweep"], format!("sweep members {other:?} and {labels:?} map to the same directory `{m}`"));
            }
        }
        if members.len() > 1 {
            for s in &self.aggregate {
                for i in self.inputs[s].iter().filter(|i| !i.all && !self.aggregate.contains(&i.from_stage)) {
                    let message = format!(
                        "stage `{s}` gathers all sweep members, so its input `{}` must also be `\"{}.{}[*]\"`",
                        i.port, i.from_stage, i.from_port
                    );
                    self.file.diag(&["stages", s, &i.port], message);
                }
            }
        }
        members
    }

    /// Every diagnostic found so far, sorted by position, as one error.
    pub fn finish_validation(&mut self) -> Result<()> {
        if self.file.diagnostics.is_empty() {
            return Ok(());
        }
        let mut d = std::mem::take(&mut self.file.diagnostics);
        d.sort_by_key(|x| (x.line, x.column));
        Err(Error::Invalid(d))
    }

    /// Phase 8: instances, per member for ordinary stages and once for gathering ones;
    /// identical definitions (same kind, parameters, seed and inputs) are one shared instance.
    pub fn expand_instances(&self, members: &Members) -> Result<Vec<PlannedInstance>> {
        let mut x = Expansion::default();
        for (member, (_, overrides)) in members {
            for s in self.stage_order.iter().filter(|s| !self.aggregate.contains(*s)) {
                let mut table = self.params[s].clone();
                let mut seed = self.seeds[s].unwrap_or_else(|| crate::derive_seed(self.file.seed, s));
                for (_, p, v) in overrides.iter().filter(|(st, _, _)| st == s) {
                    if p == "seed" {
                        seed = v.as_integer().unwrap_or(0) as u64;
                    } else {
                        table.insert(p.clone(), v.clone());
                    }
                }
                let resolved = self.resolved(s, &table, Some(member))?;
                let mut ins: BTreeMap<String, Vec<InputRef>> = BTreeMap::new();
                for i in &self.inputs[s] {
                    let up = x.where_[&(member.clone(), i.from_stage.clone())];
                    ins.entry(i.port.clone()).or_default().push(InputRef {
                        instance: up,
                        port: i.from_port.clone(),
                        member: member.clone(),
                    });
                }
                x.add(&self.kinds[s], s, resolved, seed, ins, member, false);
            }
        }
        for s in self.stage_order.iter().filter(|s| self.aggregate.contains(*s)) {
            let resolved = self.resolved(s, &self.params[s], None)?;
            let seed = self.seeds[s].unwrap_or_else(|| crate::derive_seed(self.file.seed, s));
            let mut ins: BTreeMap<String, Vec<InputRef>> = BTreeMap::new();
            for i in &self.inputs[s] {
                let refs = ins.entry(i.port.clone()).or_default();
                let from: Vec<&str> = if self.aggregate.contains(&i.from_stage) {
                    vec![ALL_MEMBERS]
                } else {
                    members.iter().map(|(m, _)| m.as_str()).collect()
                };
                for m in from {
                    let up = x.where_[&(m.to_string(), i.from_stage.clone())];
                    refs.push(InputRef { instance: up, port: i.from_port.clone(), member: m.to_string() });
                }
            }
            x.add(&self.kinds[s], s, resolved, seed, ins, ALL_MEMBERS, true);
        }
        Ok(x.instances)
    }

    fn resolved(&self, stage: &str, table: &toml::Table, member: Option<&str>) -> Result<serde_json::Value> {
        self.kinds[stage].resolve(table).map_err(|e| {
            let message = match member {
                Some(m) => format!("member `{m}`: {e:?}"),
                None => format!("{e:?}"),
            };
            Error::Invalid(vec![crate::Diagnostic {
                file: self.file.path.clone(),
                line: 1,
                column: 1,
                key: Some(format!("stages.{stage}")),
                message,
            }])
        })
    }

    pub fn into_parts(self) -> (PipelineFile, Vec<String>, BTreeMap<String, BTreeSet<String>>) {
        (self.file, self.stage_order, self.stage_deps)
    }
}

/// The instances built so far, indexed by definition key and by (member, stage).
#[derive(Default)]
struct Expansion {
    instances: Vec<PlannedInstance>,
    by_key: BTreeMap<String, usize>,
    where_: BTreeMap<(String, String), usize>,
}

impl Expansion {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kind: &Arc<dyn DynStage>,
        stage: &str,
        params: serde_json::Value,
        seed: u64,
        inputs: BTreeMap<String, Vec<InputRef>>,
        member: &str,
        gathers: bool,
    ) {
        let def_key = definition_key(kind, &params, seed, &inputs, &self.instances, gathers);
        let id = match self.by_key.get(&def_key) {
            Some(&id) => id,
            None => {
                let id = self.instances.len();
                let (facts, estimate) = plan_facts(kind, &params, &inputs, &self.instances);
                self.by_key.insert(def_key.clone(), id);
                self.instances.push(PlannedInstance {
                    id,
                    stage: stage.to_string(),
                    kind: kind.clone(),
                    params,
                    seed,
                    members: vec![],
                    inputs,
                    def_key,
                    facts,
                    estimate,
                });
                id
            }
        };
        if !self.instances[id].members.iter().any(|m| m == member) {
            self.instances[id].members.push(member.to_string());
        }
        self.where_.insert((member.to_string(), stage.to_string()), id);
    }
}

/// Facts and memory estimate of an instance from its upstream instances' facts.
fn plan_facts(
    kind: &Arc<dyn DynStage>,
    params: &serde_json::Value,
    inputs: &BTreeMap<String, Vec<InputRef>>,
    instances: &[PlannedInstance],
) -> (crate::Facts, Option<crate::Estimate>) {
    let facts = input_facts(inputs, instances);
    (kind.facts(params, &facts), kind.estimate(params, &facts))
}

/// The facts of each input port (of its first artifact).
pub(crate) fn input_facts(inputs: &BTreeMap<String, Vec<InputRef>>, instances: &[PlannedInstance]) -> crate::InputFacts {
    inputs.iter().filter_map(|(port, refs)| refs.first().map(|r| (port.clone(), instances[r.instance].facts))).collect()
}

/// Phase 9: each instance's parameters against its inputs' facts (a layer list against the
/// dataset's shape); one diagnostic per stage, key and message whatever the members.
pub(crate) fn check_against_inputs(file: &PipelineFile, instances: &[PlannedInstance]) -> Result<()> {
    let mut seen = BTreeSet::new();
    let mut diags = Vec::new();
    for inst in instances {
        let facts = input_facts(&inst.inputs, instances);
        for (k, m) in inst.kind.check_inputs(&inst.params, &facts) {
            if seen.insert((inst.stage.clone(), k.clone(), m.clone())) {
                let path = ["stages", inst.stage.as_str(), k.as_str()];
                let (line, column) = file.locate(&path);
                diags.push(crate::Diagnostic { file: file.path.clone(), line, column, key: Some(path.join(".")), message: m });
            }
        }
    }
    if diags.is_empty() {
        return Ok(());
    }
    diags.sort_by_key(|x| (x.line, x.column));
    Err(Error::Invalid(diags))
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

fn member_combinations(sweep: &[SweepKey], names: &BTreeMap<(String, String), Vec<String>>) -> Members {
    if sweep.is_empty() {
        return vec![(SINGLE_MEMBER.to_string(), (BTreeMap::new(), Vec::new()))];
    }
    // (stage, param, value, label): the label is the value's name for a named sweep key.
    let mut combos: Vec<Vec<(String, String, toml::Value, String)>> = vec![vec![]];
    for (st, p, values) in sweep {
        let named = names.get(&(st.clone(), p.clone()));
        let mut next = Vec::new();
        for c in &combos {
            for (i, v) in values.iter().enumerate() {
                let label = named.and_then(|n| n.get(i)).cloned().unwrap_or_else(|| value_label(v));
                let mut c2 = c.clone();
                c2.push((st.clone(), p.clone(), v.clone(), label));
                next.push(c2);
            }
        }
        combos = next;
    }
    combos
        .into_iter()
        .map(|c| {
            let labels: BTreeMap<String, String> = c.iter().map(|(s, p, _, l)| (format!("{s}.{p}"), l.clone())).collect();
            let parts: Vec<String> = c.iter().map(|(s, p, _, l)| format!("{s}.{p}={}", crate::names::encode_label(l))).collect();
            let c: Vec<(String, String, toml::Value)> = c.into_iter().map(|(s, p, v, _)| (s, p, v)).collect();
            let name = crate::names::member_name(&parts);
            (name, (labels, c))
        })
        .collect()
}

/// A value for a message: long ones are cut, floats in short scientific form.
pub(crate) fn short_value(v: &toml::Value) -> String {
    let s = match v {
        toml::Value::Float(f) => crate::short_f64(*f),
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
