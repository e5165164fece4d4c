//! The engine with small stages written for the purpose: runs, caching, selective reruns,
//! sweeps that share upstream work, and bit-identical results for any --jobs.
use arrow_array::RecordBatch;
use hesslab_pipeline::columns::*;
use hesslab_pipeline::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A column of numbers: the artifact type these test stages exchange.
#[derive(Clone)]
struct Values(Vec<f64>);
impl Port for Values {
    type Value = Self;
    const NAME: &'static str = "values";
    const DOC: &'static str = "v Float64";
    fn schema() -> arrow_schema::Schema {
        arrow_schema::Schema::new(vec![f64_field("v")])
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        Ok(Encoded::one(RecordBatch::try_new(std::sync::Arc::new(Self::schema()), vec![f64_array(v.0.clone())]).unwrap(), BTreeMap::new()))
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        Ok(Values(f64_values(&a.batch, "v").unwrap()))
    }
}

/// Member and sum per row.
#[derive(Clone)]
struct Sums(Vec<(String, f64)>);
impl Port for Sums {
    type Value = Self;
    const NAME: &'static str = "table";
    const DOC: &'static str = "member, sum";
    fn schema() -> arrow_schema::Schema {
        arrow_schema::Schema::new(vec![utf8_field("member"), f64_field("sum")])
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let cols = vec![utf8_array(v.0.iter().map(|r| r.0.as_str())), f64_array(v.0.iter().map(|r| r.1))];
        Ok(Encoded::one(RecordBatch::try_new(std::sync::Arc::new(Self::schema()), cols).unwrap(), BTreeMap::new()))
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let m = utf8_values(&a.batch, "member").unwrap();
        Ok(Sums(m.into_iter().zip(f64_values(&a.batch, "sum").unwrap()).collect()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct NumbersParams {
    /// How many numbers.
    n: usize,
    scale: f64,
}
impl Default for NumbersParams {
    fn default() -> Self {
        NumbersParams { n: 5, scale: 1.0 }
    }
}
struct Numbers;
impl StageKind for Numbers {
    type Params = NumbersParams;
    const KIND: &'static str = "numbers";
    const VERSION: u32 = 1;
    const DOC: &'static str = "seeded numbers";
    const OUTPUTS: &'static [PortSpec] = &[port::<Values>()];
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let mut rng = hesslab_data::rng::Rng::new(ctx.seed);
        let v: Vec<f64> = (0..p.n).map(|_| p.scale * rng.normal()).collect();
        ctx.write::<Values>("values", &Values(v))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct AffineParams {
    a: f64,
    b: f64,
}
impl Default for AffineParams {
    fn default() -> Self {
        AffineParams { a: 2.0, b: 0.0 }
    }
}
struct Affine;
impl StageKind for Affine {
    type Params = AffineParams;
    const KIND: &'static str = "affine";
    const VERSION: u32 = 1;
    const DOC: &'static str = "a x + b";
    const INPUTS: &'static [PortSpec] = &[port::<Values>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Values>()];
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let a = ctx.read::<Values>("values")?;
        let v: Vec<f64> = a.0.iter().map(|x| p.a * x + p.b).collect();
        ctx.write::<Values>("values", &Values(v))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct CollectParams {}
struct Collect;
impl StageKind for Collect {
    type Params = CollectParams;
    const KIND: &'static str = "collect";
    const VERSION: u32 = 1;
    const DOC: &'static str = "sum per member";
    const INPUTS: &'static [PortSpec] = &[port::<Values>().renamed("all").many()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Sums>()];
    fn run(_: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let ins = ctx.inputs("all").to_vec();
        let sums: Vec<(String, f64)> = ins.iter().map(|i| (i.member.clone(), i.decode::<Values>().unwrap().0.iter().sum())).collect();
        ctx.write::<Sums>("table", &Sums(sums))
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.add::<Numbers>();
    r.add::<Affine>();
    r.add::<Collect>();
    r
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const LINEAR: &str = r#"
[pipeline]
name = "lin"
seed = 3
[stages.src]
kind = "numbers"
n = 8
[stages.twice]
kind = "affine"
values = "src.values"
[stages.sum]
kind = "collect"
all = "twice.values[*]"
"#;

const SWEEP: &str = r#"
[pipeline]
name = "sw"
seed = 3
[sweep]
twice.a = [1.0, 2.0, 3.0]
twice.b = [0.0, 1.0]
[stages.src]
kind = "numbers"
[stages.twice]
kind = "affine"
values = "src.values"
[stages.sum]
kind = "collect"
all = "twice.values[*]"
"#;

fn plan(src: &str, out: &Path, set: &[&str]) -> Plan {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let mut pf = PipelineFile::parse(Path::new("t.toml"), src.to_string(), &set).unwrap();
    pf.out = out.to_path_buf();
    Plan::build(pf, &registry()).unwrap()
}

fn run(src: &str, out: &Path, set: &[&str], opts: RunOptions) -> RunReport {
    Runner::run(&plan(src, out, set), &opts).unwrap()
}

fn ran(r: &RunReport) -> Vec<String> {
    r.instances.iter().filter(|i| i.outcome == StageOutcome::Ran).map(|i| i.stage.clone()).collect()
}

#[test]
fn runs_end_to_end_then_skips_then_reruns_only_what_changed() {
    let out = tmp("linear");
    let r = run(LINEAR, &out, &[], RunOptions::default());
    assert_eq!(ran(&r), ["src", "twice", "sum"]);
    let a = read_artifact(&out.join("lin/main/twice/values.parquet"), None).unwrap();
    assert_eq!(a.meta("hesslab.kind"), Some("affine"));
    assert_eq!(a.meta("hesslab.kind_version"), Some("1"));
    assert_eq!(a.meta("hesslab.params"), Some(r#"{"a":2.0,"b":0.0}"#));
    assert!(a.meta("hesslab.cache_key").is_some_and(|k| k.len() == 64));
    assert_eq!(a.meta("hesslab.seed"), Some(derive_seed(3, "twice").to_string().as_str()));
    assert_eq!(a.meta("hesslab.version"), Some(HESSLAB_VERSION));
    // Second run: everything is up to date.
    let r = run(LINEAR, &out, &[], RunOptions::default());
    assert_eq!(r.count(StageOutcome::Skipped), 3);
    assert!(ran(&r).is_empty());
    // One parameter changes: that stage and its downstream rerun, upstream does not.
    let r = run(LINEAR, &out, &["twice.a=3"], RunOptions::default());
    assert_eq!(ran(&r), ["twice", "sum"]);
    // --force reruns everything; --from reruns a stage and its downstream; --only runs a stage and what it needs.
    assert_eq!(ran(&run(LINEAR, &out, &["twice.a=3"], RunOptions { force: true, ..Default::default() })), ["src", "twice", "sum"]);
    assert_eq!(ran(&run(LINEAR, &out, &["twice.a=3"], RunOptions { from: vec!["twice".into()], ..Default::default() })), ["twice", "sum"]);
    let r = run(LINEAR, &out, &["twice.a=5"], RunOptions { only: vec!["twice".into()], ..Default::default() });
    assert_eq!(ran(&r), ["twice"]);
    assert_eq!(r.count(StageOutcome::NotSelected), 1);
    // --from forces the downstream; afterwards the same definition is up to date again.
    let r = run(LINEAR, &out, &["twice.a=5", "src.scale=1.0"], RunOptions { from: vec!["src".into()], ..Default::default() });
    assert_eq!(ran(&r), ["src", "twice", "sum"]);
    let r = run(LINEAR, &out, &["twice.a=5"], RunOptions::default());
    assert!(ran(&r).is_empty());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_sweep_expands_into_members_and_shares_upstream_work() {
    let out = tmp("sweep");
    // `--set sweep.STAGE.PARAM=[...]` replaces one sweep key (e.g. fewer seeds in CI).
    assert_eq!(plan(SWEEP, &out, &["sweep.twice.b=[1.0]"]).members.len(), 3);
    assert_eq!(plan(SWEEP, &out, &["sweep.twice.b=[1.0, 2.0, 4.0]"]).members.len(), 9);
    // A sweep entry that is not a table is a clear error, not a silently ignored override.
    let err = PipelineFile::parse(Path::new("t.toml"), SWEEP.replace("[sweep]", "[sweep]\nx = 1"), &["sweep.x.y=[1]".to_string()])
        .and_then(|pf| Plan::build(pf, &registry()))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sweep.x.y") && err.contains("not a table"), "{err}");
    let p = plan(SWEEP, &out, &[]);
    assert_eq!(p.members.len(), 6);
    let r = Runner::run(&p, &RunOptions::default()).unwrap();
    let src: Vec<_> = r.instances.iter().filter(|i| i.stage == "src").collect();
    assert_eq!(src.len(), 1, "the identical upstream stage runs once");
    assert_eq!(src[0].members.len(), 6);
    assert_eq!(r.instances.iter().filter(|i| i.stage == "twice").count(), 6);
    // Every member has its own copy of every artifact.
    for (m, labels) in &p.members {
        assert!(out.join("sw").join(m).join("src/values.parquet").exists(), "{m}");
        assert!(out.join("sw").join(m).join("twice/values.parquet").exists(), "{m}");
        assert_eq!(labels.len(), 2);
    }
    assert!(p.members.iter().any(|(m, _)| m == "twice.a=2.0__twice.b=1.0"));
    let t = read_artifact(&out.join("sw/all/sum/table.parquet"), None).unwrap();
    let members = utf8_values(&t.batch, "member").unwrap();
    let sums = f64_values(&t.batch, "sum").unwrap();
    assert_eq!(members.len(), 6);
    let base: f64 = f64_values(&read_artifact(&out.join("sw").join(&members[0]).join("src/values.parquet"), None).unwrap().batch, "v")
        .unwrap()
        .iter()
        .sum();
    let find = |m: &str| sums[members.iter().position(|x| x == m).unwrap()];
    assert!((find("twice.a=3.0__twice.b=1.0") - (3.0 * base + 5.0)).abs() < 1e-12);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn named_sweep_values_label_their_members() {
    // A value too long to name a directory (a layer list, say) gets a name: `{ name = value }`.
    let out = tmp("named");
    let src = SWEEP.replace("twice.a = [1.0, 2.0, 3.0]", "twice.a = { double = 2.0, triple = 3.0 }");
    let p = plan(&src, &out, &[]);
    let names: Vec<&str> = p.members.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        names,
        ["twice.a=double__twice.b=0.0", "twice.a=double__twice.b=1.0", "twice.a=triple__twice.b=0.0", "twice.a=triple__twice.b=1.0"]
    );
    assert!(p.members.iter().all(|(_, l)| l["twice.a"] == "double" || l["twice.a"] == "triple"));
    Runner::run(&p, &RunOptions::default()).unwrap();
    let t = read_artifact(&out.join("sw/all/sum/table.parquet"), None).unwrap();
    let (members, sums) = (utf8_values(&t.batch, "member").unwrap(), f64_values(&t.batch, "sum").unwrap());
    let base: f64 = f64_values(&read_artifact(&out.join("sw").join(&members[0]).join("src/values.parquet"), None).unwrap().batch, "v")
        .unwrap()
        .iter()
        .sum();
    let find = |m: &str| sums[members.iter().position(|x| x == m).unwrap()];
    assert!((find("twice.a=triple__twice.b=1.0") - (3.0 * base + 5.0)).abs() < 1e-12, "the named value is the value");
    let err = PipelineFile::parse(Path::new("t.toml"), SWEEP.replace("twice.a = [1.0, 2.0, 3.0]", "twice.a = {}"), &[])
        .and_then(|pf| Plan::build(pf, &registry()))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("a table of named values"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

fn all_files(dir: &Path, out: &mut BTreeMap<String, Vec<u8>>, root: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out, root);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.insert(p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap());
        }
    }
}

#[test]
fn results_are_bit_identical_with_one_or_two_jobs() {
    let (a, b) = (tmp("jobs1"), tmp("jobs2"));
    run(SWEEP, &a, &[], RunOptions { jobs: 1, ..Default::default() });
    run(SWEEP, &b, &[], RunOptions { jobs: 2, ..Default::default() });
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    all_files(&a, &mut fa, &a);
    all_files(&b, &mut fb, &b);
    assert_eq!(fa.len(), 6 * 2 + 1);
    assert_eq!(fa, fb);
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn unknown_stage_in_only_is_an_error() {
    let out = tmp("only");
    let e = Runner::run(&plan(LINEAR, &out, &[]), &RunOptions { only: vec!["nope".into()], ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("no stage named `nope`"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--only` leaves out stages downstream of other left-out stages without reading their
/// inputs (it used to fail: "upstream stage `twice` did not write port `values`").
#[test]
fn only_skips_a_chain_of_unselected_stages() {
    let out = tmp("only_chain");
    let p = plan(LINEAR, &out, &[]);
    let r = Runner::run(&p, &RunOptions { only: vec!["src".into()], ..Default::default() }).unwrap();
    assert_eq!(r.count(StageOutcome::Ran), 1);
    assert_eq!(r.count(StageOutcome::NotSelected), 2);
    // Later, the whole pipeline runs and reuses src.
    let r = Runner::run(&p, &RunOptions::default()).unwrap();
    assert_eq!((r.count(StageOutcome::Skipped), r.count(StageOutcome::Ran)), (1, 2));
    let _ = std::fs::remove_dir_all(&out);
}
