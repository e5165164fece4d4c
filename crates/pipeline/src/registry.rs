//! Stage kinds and the explicit registry that holds them.
use crate::resources::{Estimate, Facts, InputFacts};
use crate::{PortSpec, StageContext, StageError};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

/// A stage kind: a parameter struct parsed from the stage's TOML table, declared ports, and a
/// `run` that reads inputs and writes outputs through the context.
pub trait StageKind: Send + Sync + 'static {
    /// Parameters; use `#[serde(default, deny_unknown_fields)]` and document every field.
    type Params: DeserializeOwned + Serialize + Default + schemars::JsonSchema + Send + Sync;
    /// The name a pipeline uses in `kind = "..."`.
    const KIND: &'static str;
    /// Bump when the outputs for the same inputs and parameters change (invalidates caches).
    const VERSION: u32 = 1;
    /// One paragraph for `hesslab stages`.
    const DOC: &'static str;
    /// The inputs, e.g. `&[port::<Model>(), port::<Dataset>()]` (none by default).
    const INPUTS: &'static [PortSpec] = &[];
    /// The outputs.
    const OUTPUTS: &'static [PortSpec];
    /// For a parameter name this kind does not have but a user may expect (PyTorch's name for
    /// something not supported yet): what to say instead of "unknown parameter".
    fn not_supported(_key: &str) -> Option<&'static str> {
        None
    }
    /// Semantic checks on parameters, as (key, message) pairs; all are reported at once.
    fn check(_params: &Self::Params) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Checks of a gathering stage's parameters against the pipeline's sweep keys
    /// ("stage.param"), run at validation time like `check`.
    fn check_sweep(_params: &Self::Params, _sweep_keys: &[String]) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Checks of the parameters against what the inputs are known to hold (shapes, sizes),
    /// as (key, message) pairs, run at validation time once the graph is expanded.
    fn check_inputs(_params: &Self::Params, _inputs: &InputFacts) -> Vec<(String, String)> {
        Vec::new()
    }
    /// What this stage's outputs will be known to hold (sizes), from its parameters and its
    /// inputs' facts; lets `hesslab dag` estimate downstream memory before anything ran.
    fn facts(_params: &Self::Params, _inputs: &InputFacts) -> Facts {
        Facts::default()
    }
    /// Peak memory of `run`, for stages that allocate by size (dense matrices, datasets,
    /// Krylov bases); `None` when the stage's memory is small or cannot be told in advance.
    fn estimate(_params: &Self::Params, _inputs: &InputFacts) -> Option<Estimate> {
        None
    }
    /// Files outside the pipeline that `run` reads (a loader's data, imported weights): their
    /// content is part of the cache key, so a stage reruns when one of them changes.
    fn input_files(_params: &Self::Params) -> Vec<String> {
        Vec::new()
    }
    /// Read the inputs, compute, write the outputs.
    fn run(params: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError>;
}

/// Object-safe view of a stage kind, so the registry can hold all of them.
pub trait DynStage: Send + Sync {
    /// `StageKind::KIND`.
    fn kind(&self) -> &'static str;
    /// `StageKind::VERSION`.
    fn version(&self) -> u32;
    /// `StageKind::DOC`.
    fn doc(&self) -> &'static str;
    /// `StageKind::INPUTS`.
    fn inputs(&self) -> Vec<PortSpec>;
    /// `StageKind::OUTPUTS`.
    fn outputs(&self) -> Vec<PortSpec>;
    /// Parse and check parameters; on failure, every problem as (key or None, message).
    fn resolve(&self, table: &toml::Table) -> Result<serde_json::Value, Vec<(Option<String>, String)>>;
    /// JSON schema of the parameters (types, defaults, docs).
    fn params_schema(&self) -> serde_json::Value;
    /// `StageKind::check_sweep` on already resolved parameters.
    fn check_sweep(&self, params: &serde_json::Value, sweep_keys: &[String]) -> Vec<(String, String)>;
    /// `StageKind::facts` on resolved parameters.
    fn facts(&self, params: &serde_json::Value, inputs: &InputFacts) -> Facts;
    /// `StageKind::check_inputs` on resolved parameters.
    fn check_inputs(&self, params: &serde_json::Value, inputs: &InputFacts) -> Vec<(String, String)>;
    /// `StageKind::estimate` on resolved parameters.
    fn estimate(&self, params: &serde_json::Value, inputs: &InputFacts) -> Option<Estimate>;
    /// `StageKind::input_files` on resolved parameters.
    fn input_files(&self, params: &serde_json::Value) -> Vec<String>;
    /// `StageKind::run` on resolved parameters.
    fn run(&self, params: &serde_json::Value, ctx: &mut StageContext) -> Result<(), StageError>;
}

struct Adapter<S>(PhantomData<S>);

impl<S: StageKind> DynStage for Adapter<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn doc(&self) -> &'static str {
        S::DOC
    }
    fn inputs(&self) -> Vec<PortSpec> {
        S::INPUTS.to_vec()
    }
    fn outputs(&self) -> Vec<PortSpec> {
        S::OUTPUTS.to_vec()
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(S::Params)).unwrap_or_default()
    }
    fn resolve(&self, table: &toml::Table) -> Result<serde_json::Value, Vec<(Option<String>, String)>> {
        // NaN and ±inf parse as floats but mean nothing as parameters (and cannot round-trip
        // through the JSON that carries resolved parameters): reject them with their key.
        let non_finite: Vec<_> = table
            .iter()
            .filter_map(|(k, v)| first_non_finite(v).map(|f| (Some(k.clone()), format!("{f} is not a finite number"))))
            .collect();
        if !non_finite.is_empty() {
            return Err(non_finite);
        }
        let whole: Result<S::Params, _> = toml::Value::Table(table.clone()).try_into();
        match whole {
            Ok(p) => {
                let problems = S::check(&p);
                if problems.is_empty() {
                    serde_json::to_value(&p).map_err(|e| vec![(None, format!("parameters do not serialize: {e}"))])
                } else {
                    Err(problems.into_iter().map(|(k, m)| (Some(k), m)).collect())
                }
            }
            Err(e) => {
                // Find every offending key by parsing each key alone (all fields have defaults).
                let known = self.param_names();
                let mut errs = Vec::new();
                for (k, v) in table {
                    let mut one = toml::Table::new();
                    one.insert(k.clone(), v.clone());
                    if let Err(e1) = toml::Value::Table(one).try_into::<S::Params>() {
                        let mut msg = clean_serde_message(&e1.to_string());
                        if !known.contains(k) {
                            msg = match S::not_supported(k) {
                                Some(why) => format!("parameter `{k}` is not supported yet by kind `{}`: {why}", S::KIND),
                                None => match nearest(k, known.iter().map(|s| s.as_str())) {
                                    Some(s) => format!("unknown parameter `{k}` for kind `{}` (did you mean `{s}`?)", S::KIND),
                                    None => format!("unknown parameter `{k}` for kind `{}`", S::KIND),
                                },
                            };
                            msg.push_str(&format!("; known parameters: {}", known.join(", ")));
                        }
                        errs.push((Some(k.clone()), msg));
                    }
                }
                if errs.is_empty() {
                    errs.push((None, clean_serde_message(&e.to_string())));
                }
                Err(errs)
            }
        }
    }
    fn check_sweep(&self, params: &serde_json::Value, sweep_keys: &[String]) -> Vec<(String, String)> {
        match serde_json::from_value::<S::Params>(params.clone()) {
            Ok(p) => S::check_sweep(&p, sweep_keys),
            Err(_) => Vec::new(), // reported by `resolve`
        }
    }
    fn check_inputs(&self, params: &serde_json::Value, inputs: &InputFacts) -> Vec<(String, String)> {
        serde_json::from_value::<S::Params>(params.clone()).map(|p| S::check_inputs(&p, inputs)).unwrap_or_default()
    }
    fn facts(&self, params: &serde_json::Value, inputs: &InputFacts) -> Facts {
        serde_json::from_value::<S::Params>(params.clone()).map(|p| S::facts(&p, inputs)).unwrap_or_default()
    }
    fn estimate(&self, params: &serde_json::Value, inputs: &InputFacts) -> Option<Estimate> {
        serde_json::from_value::<S::Params>(params.clone()).ok().and_then(|p| S::estimate(&p, inputs))
    }
    fn input_files(&self, params: &serde_json::Value) -> Vec<String> {
        serde_json::from_value::<S::Params>(params.clone()).map(|p| S::input_files(&p)).unwrap_or_default()
    }
    fn run(&self, params: &serde_json::Value, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: S::Params =
            serde_json::from_value(params.clone()).map_err(|e| StageError::msg(format!("resolved parameters do not parse: {e}")))?;
        S::run(&p, ctx)
    }
}

impl<S: StageKind> Adapter<S> {
    fn param_names(&self) -> Vec<String> {
        let schema = self.params_schema();
        schema.get("properties").and_then(|p| p.as_object()).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }
}

/// The first NaN or infinite float anywhere inside a TOML value.
fn first_non_finite(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) if !f.is_finite() => Some(*f),
        toml::Value::Array(a) => a.iter().find_map(first_non_finite),
        toml::Value::Table(t) => t.values().find_map(first_non_finite),
        _ => None,
    }
}

fn clean_serde_message(s: &str) -> String {
    let s = s.trim().replace('\n', " ");
    // serde's "invalid value: integer `5000000000`, expected u32" says neither what is wrong
    // nor what would do: name the range.
    let range = |ty: &str| -> Option<u128> {
        Some(match ty {
            "u8" => u8::MAX as u128,
            "u16" => u16::MAX as u128,
            "u32" => u32::MAX as u128,
            "u64" | "usize" => u64::MAX as u128,
            _ => return None,
        })
    };
    if let Some(rest) = s.strip_prefix("invalid value: integer `")
        && let Some((value, rest)) = rest.split_once("`, expected ")
        && let Some(ty) = rest.split_whitespace().next()
        && let Some(max) = range(ty)
        && let Some(tail) = rest.strip_prefix(ty)
    {
        let tail = tail.trim();
        let what = if value.starts_with('-') {
            format!("{value} is negative; expected an integer from 0 to {max}")
        } else {
            format!("{value} is too large; expected an integer from 0 to {max}")
        };
        return if tail.is_empty() { what } else { format!("{what} {tail}") };
    }
    s
}

/// The nearest candidate within a distance of max(2, len/3).
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.len() / 3).max(2);
    candidates.map(|c| (strsim::levenshtein(word, c), c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

/// All stage kinds a binary knows. Each stage crate exports `register(&mut Registry)`.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn DynStage>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
    /// Register kind `S` (a kind registered twice is a bug).
    pub fn add<S: StageKind>(&mut self) {
        let prev = self.kinds.insert(S::KIND, Arc::new(Adapter::<S>(PhantomData)));
        assert!(prev.is_none(), "stage kind `{}` registered twice", S::KIND);
    }
    /// The kind named `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn DynStage>> {
        self.kinds.get(kind)
    }
    /// Every kind, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn DynStage>> {
        self.kinds.values()
    }
    /// Names of every kind.
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }
    /// "unknown stage kind" message with a suggestion and the list of known kinds.
    pub fn unknown_kind_message(&self, kind: &str) -> String {
        let mut m = format!("unknown stage kind `{kind}`");
        if let Some(s) = nearest(kind, self.kinds.keys().copied()) {
            m.push_str(&format!(" (did you mean `{s}`?)"));
        }
        m.push_str(&format!("; known kinds: {}", self.names().join(", ")));
        m
    }
}
