//! Parsing a pipeline TOML file, keeping enough position information to point every
//! diagnostic at a file, line and key.
use crate::{Error, Result};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found while validating a pipeline, located in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// The pipeline file.
    pub file: PathBuf,
    /// Line, from 1; 0 when the problem is in a `--set` override, not in the file.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// The key it is about (`stages.train.lr`), if any.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: in --set: ", self.file.display())?;
        } else {
            write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        }
        if let Some(k) = &self.key {
            write!(f, "key `{k}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A stage table as written: its name, kind and every other key (inputs and parameters).
#[derive(Debug, Clone)]
pub struct StageDecl {
    pub name: String,
    pub kind: Option<String>,
    pub table: toml::Table,
}

/// A parsed (not yet validated) pipeline file.
#[derive(Debug, Clone)]
pub struct PipelineFile {
    /// Where the file is.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The pipeline's name.
    pub name: String,
    /// The pipeline seed.
    pub seed: u64,
    /// The output directory.
    pub out: PathBuf,
    /// One line on what it computes.
    pub description: String,
    /// (stage, parameter, values) in key order.
    pub sweep: Vec<(String, String, Vec<toml::Value>)>,
    /// The names of a named sweep key's values (`train.layers = { bn = [...], plain = [...] }`),
    /// in the order of its values: they label its members instead of the values themselves.
    pub sweep_names: std::collections::BTreeMap<(String, String), Vec<String>>,
    /// The stages, in file order.
    pub stages: Vec<StageDecl>,
    /// Problems found while parsing; validation adds to them.
    pub diagnostics: Vec<Diagnostic>,
    /// Key paths (`["stages", "train", "lr"]`) a `--set` override gave: problems with them are
    /// located "in --set", not at a line of the file.
    pub overridden: std::collections::BTreeSet<Vec<String>>,
    /// Byte offset of every key path in `source`, built once on the first diagnostic so that
    /// locating many problems stays linear in their number.
    key_index: std::sync::OnceLock<KeyIndex>,
}

/// The largest pipeline file read (a generated sweep of 10 000 members is well below it).
pub const MAX_PIPELINE_BYTES: u64 = 64 << 20;

impl PipelineFile {
    /// Read and parse `path`, applying `--set` overrides; every problem is reported at once.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        // A pipeline is text of a few KB; a device, a FIFO or a huge file is not one.
        let bytes =
            hesslab_limits::read_regular(path, MAX_PIPELINE_BYTES).map_err(|source| Error::ReadFile { path: path.into(), source })?;
        let source = String::from_utf8(bytes).map_err(|e| Error::ReadFile {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to())),
        })?;
        Self::parse(path, source, overrides)
    }

    /// Parse `source`; a syntax error becomes an `Error::Invalid` with that one problem: what
    /// the parser reports after it (a missing `]` gave 51 "problems") mostly follows from it.
    pub fn parse(path: &Path, source: String, overrides: &[String]) -> Result<Self> {
        let (_, errors) = toml::de::DeTable::parse_recoverable(&source);
        if let Some(e) = errors.first() {
            let lines = LineIndex::new(&source);
            let (line, column) = e.span().map(|s| lines.line_col(&source, s.start)).unwrap_or((1, 1));
            let more = if errors.len() > 1 { " (fix it first: the parser's later complaints follow from it)" } else { "" };
            let message = format!("TOML syntax error: {}{more}", e.message().trim());
            let diags = vec![Diagnostic { file: path.into(), line, column, key: None, message }];
            return Err(Error::Invalid(diags));
        }
        let mut doc: toml::Table = match toml::from_str(&source) {
            Ok(t) => t,
            Err(e) => {
                let (line, column) = e.span().map(|s| LineIndex::new(&source).line_col(&source, s.start)).unwrap_or((1, 1));
                return Err(Error::Invalid(vec![Diagnostic {
                    file: path.into(),
                    line,
                    column,
                    key: None,
                    message: format!("TOML error: {}", e.message().trim()),
                }]));
            }
        };
        let mut pf = PipelineFile {
            path: path.into(),
            source,
            name: crate::names::sanitize_name(
                &path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into()),
            ),
            seed: 0,
            out: PathBuf::from("out"),
            description: String::new(),
            sweep: Vec::new(),
            sweep_names: Default::default(),
            stages: Vec::new(),
            diagnostics: Vec::new(),
            overridden: Default::default(),
            key_index: Default::default(),
        };
        for o in overrides {
            pf.apply_override(&mut doc, o);
        }
        for (k, v) in &doc {
            match k.as_str() {
                "pipeline" | "sweep" | "stages" => {}
                _ => {
                    let _ = v;
                    pf.diag(&[k], format!("unknown top-level table `{k}`; expected `pipeline`, `sweep` or `stages`"));
                }
            }
        }
        if let Some(p) = doc.get("pipeline") {
            pf.read_pipeline_table(p);
        }
        pf.read_stages(&doc);
        pf.read_sweep(&doc);
        Ok(pf)
    }

    fn read_stages(&mut self, doc: &toml::Table) {
        let pf = self;
        match doc.get("stages") {
            Some(toml::Value::Table(stages)) => {
                for (name, v) in stages {
                    if let Err(m) = crate::names::check_name("stage", name) {
                        pf.diag(&["stages", name], m);
                    }
                    match v {
                        toml::Value::Table(t) => {
                            let mut table = t.clone();
                            let kind = match table.remove("kind") {
                                Some(toml::Value::String(k)) => Some(k),
                                Some(other) => {
                                    pf.diag(&["stages", name, "kind"], format!("`kind` must be a string, found {}", other.type_str()));
                                    None
                                }
                                None => {
                                    pf.diag(&["stages", name], "stage has no `kind = \"...\"`".into());
                                    None
                                }
                            };
                            pf.stages.push(StageDecl { name: name.clone(), kind, table });
                        }
                        _ => pf.diag(&["stages", name], "a stage must be a table `[stages.NAME]`".into()),
                    }
                }
            }
            Some(_) => pf.diag(&["stages"], "`stages` must be a table of `[stages.NAME]` tables".into()),
            None => pf.diag(&[], "the pipeline has no `[stages.NAME]` tables".into()),
        }
    }

    fn read_sweep(&mut self, doc: &toml::Table) {
        let pf = self;
        if let Some(s) = doc.get("sweep") {
            match s {
                toml::Value::Table(t) => {
                    for (stage, v) in t {
                        match v {
                            toml::Value::Table(params) => {
                                for (param, values) in params {
                                    match values {
                                        toml::Value::Array(a) if !a.is_empty() => pf.sweep.push((stage.clone(), param.clone(), a.clone())),
                                        // Named values: for values too long to label a member.
                                        toml::Value::Table(named) if !named.is_empty() => {
                                            pf.sweep.push((stage.clone(), param.clone(), named.values().cloned().collect()));
                                            pf.sweep_names.insert((stage.clone(), param.clone()), named.keys().cloned().collect());
                                        }
                                        _ => pf.diag(
                                            &["sweep", stage, param],
                                            "a sweep value must be a non-empty array, or a table of named values { name = value, … }"
                                                .into(),
                                        ),
                                    }
                                }
                            }
                            _ => pf.diag(&["sweep", stage], "sweep keys are `STAGE.PARAM = [values...]`".into()),
                        }
                    }
                }
                _ => pf.diag(&["sweep"], "`sweep` must be a table".into()),
            }
        }
    }

    fn read_pipeline_table(&mut self, p: &toml::Value) {
        let Some(t) = p.as_table() else {
            self.diag(&["pipeline"], "`pipeline` must be a table".into());
            return;
        };
        for (k, v) in t {
            match (k.as_str(), v) {
                ("name", toml::Value::String(s)) => match crate::names::check_name("pipeline", s) {
                    Ok(()) => self.name = s.clone(),
                    Err(m) => self.diag(&["pipeline", "name"], m),
                },
                ("seed", toml::Value::Integer(i)) if *i >= 0 => self.seed = *i as u64,
                ("out", toml::Value::String(s)) => self.out = PathBuf::from(s),
                ("description", toml::Value::String(s)) => self.description = s.clone(),
                ("name" | "out" | "description", v) => self.diag(&["pipeline", k], format!("expected a string, found {}", v.type_str())),
                ("seed", v) => self.diag(&["pipeline", k], format!("expected a non-negative integer, found {v}")),
                _ => self.diag(&["pipeline", k], format!("unknown key `{k}` in [pipeline]; known: name, seed, out, description")),
            }
        }
    }

    /// `--set stage.param=value` (value parsed as TOML, else taken as a string).
    fn apply_override(&mut self, doc: &mut toml::Table, o: &str) {
        let Some((path, raw)) = o.split_once('=') else {
            self.diag_at(0, 0, Some(o.into()), format!("--set `{o}`: expected STAGE.PARAM=VALUE"));
            return;
        };
        let path = path.trim();
        if raw.contains(['\n', '\r']) {
            // `v = 0.1\nlr = 5` would parse as two keys, the second silently dropped.
            self.diag_at(
                1,
                1,
                Some(path.into()),
                format!("--set `{}`: the value contains a line break; give one TOML value", o.escape_debug()),
            );
            return;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let Some((head, param)) = path.split_once('.') else {
            self.diag_at(0, 0, Some(path.into()), format!("--set `{o}`: expected STAGE.PARAM=VALUE"));
            return;
        };
        let table = if head == "pipeline" {
            doc.entry("pipeline").or_insert_with(|| toml::Value::Table(Default::default()))
        } else if head == "sweep" {
            // `sweep.STAGE.PARAM=[...]`: replace (or add) one sweep key, e.g. fewer seeds.
            let Some((stage, key)) = param.split_once('.') else {
                self.diag_at(0, 0, Some(path.into()), format!("--set `{o}`: expected sweep.STAGE.PARAM=[VALUES]"));
                return;
            };
            let sweep = doc.entry("sweep").or_insert_with(|| toml::Value::Table(Default::default()));
            let stage_table = sweep
                .as_table_mut()
                .map(|t| t.entry(stage).or_insert_with(|| toml::Value::Table(Default::default())))
                .and_then(|st| st.as_table_mut());
            match stage_table {
                Some(st) => {
                    st.insert(key.to_string(), value);
                }
                None => self.diag_at(0, 0, Some(path.into()), format!("--set `{o}`: [sweep] or its `{stage}` entry is not a table")),
            }
            return;
        } else {
            let stages = doc.entry("stages").or_insert_with(|| toml::Value::Table(Default::default()));
            match stages.as_table_mut().and_then(|s| s.get_mut(head)) {
                Some(t) => t,
                None => {
                    let names: Vec<String> = stages.as_table().map(|s| s.keys().cloned().collect()).unwrap_or_default();
                    let hint = crate::nearest(head, names.iter().map(String::as_str))
                        .map(|n| format!(" (did you mean `{n}`?)"))
                        .unwrap_or_else(|| format!("; stages: {}", names.join(", ")));
                    self.diag_at(0, 0, Some(path.into()), format!("--set `{o}`: no stage named `{head}`{hint}"));
                    return;
                }
            }
        };
        if let Some(t) = table.as_table_mut() {
            t.insert(param.to_string(), value);
            let section = if head == "pipeline" { "pipeline" } else { "stages" };
            let mut key = vec![section.to_string()];
            if section == "stages" {
                key.push(head.to_string());
            }
            key.push(param.to_string());
            self.overridden.insert(key);
        }
    }

    pub(crate) fn diag(&mut self, path: &[&str], message: String) {
        let (line, column) = self.locate(path);
        let key = if path.is_empty() { None } else { Some(path.join(".")) };
        self.diagnostics.push(Diagnostic { file: self.path.clone(), line, column, key, message });
    }

    fn diag_at(&mut self, line: usize, column: usize, key: Option<String>, message: String) {
        self.diagnostics.push(Diagnostic { file: self.path.clone(), line, column, key, message });
    }

    /// Line and column of the deepest existing key along `path` (1-based).
    pub fn locate(&self, path: &[&str]) -> (usize, usize) {
        if self.overridden.iter().any(|k| k.len() <= path.len() && k.iter().zip(path).all(|(a, b)| a == b)) {
            return (0, 0); // given by --set
        }
        let index = self.key_index.get_or_init(|| KeyIndex::new(&self.source));
        let mut key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        while !key.is_empty() {
            if let Some(&offset) = index.keys.get(&key) {
                return index.line_col(&self.source, offset);
            }
            key.pop();
        }
        (1, 1)
    }
}

/// Where every key of a pipeline file is, and where its lines start: each diagnostic is
/// located in O(log n) instead of re-parsing or re-scanning the file.
#[derive(Debug, Clone)]
struct KeyIndex {
    keys: HashMap<Vec<String>, usize>,
    lines: LineIndex,
}

impl KeyIndex {
    fn new(source: &str) -> Self {
        KeyIndex { keys: key_index(source), lines: LineIndex::new(source) }
    }
    fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        self.lines.line_col(source, offset)
    }
}

/// Byte offsets where the lines of a text start.
#[derive(Debug, Clone)]
struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    fn new(source: &str) -> Self {
        LineIndex { line_starts: std::iter::once(0).chain(source.match_indices('\n').map(|(i, _)| i + 1)).collect() }
    }
    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(source.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let column = source.get(start..offset).map(|l| l.chars().count()).unwrap_or(0) + 1;
        (line, column)
    }
}

/// Offsets of every key (at any depth of nested tables) in a TOML document.
fn key_index(source: &str) -> HashMap<Vec<String>, usize> {
    fn walk(table: &toml::de::DeTable<'_>, prefix: &mut Vec<String>, out: &mut HashMap<Vec<String>, usize>) {
        for (k, v) in table.iter() {
            prefix.push(k.get_ref().to_string());
            out.entry(prefix.clone()).or_insert(k.span().start);
            if let toml::de::DeValue::Table(t) = v.get_ref() {
                walk(t, prefix, out);
            }
            prefix.pop();
        }
    }
    let mut out = HashMap::new();
    if let Ok(doc) = toml::de::DeTable::parse(source) {
        walk(doc.get_ref(), &mut Vec::new(), &mut out);
    }
    out
}
