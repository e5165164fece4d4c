//! `spectrum_summary` and `compare`: S18 Table 1 statistics for one spectrum and across a sweep.
use crate::outliers::count_outliers;
use arrow_array::RecordBatch;
use hesslab_eigen::{eigenvalues_port, read_eigenvalues};
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{PortSpec, StageContext, StageError, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SummaryParams {
    /// |λ| ≤ zero_tol · max|λ| counts as zero.
    pub zero_tol: f64,
    /// How many of the largest eigenvalues the gap/ratio/elbow counters look at.
    pub top: usize,
    /// Fixed heuristic threshold (S18 used 0.002–0.015); null = elbow of the top curve.
    pub cutoff: Option<f64>,
    /// Write PNG and SVG plots next to the table.
    pub plots: bool,
}

impl Default for SummaryParams {
    fn default() -> Self {
        SummaryParams { zero_tol: 1e-6, top: 120, cutoff: None, plots: true }
    }
}

/// Statistics of one spectrum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub num_eigenvalues: u64,
    pub dim: u64,
    pub positive: u64,
    pub negative: u64,
    pub near_zero: u64,
    pub zero_tol: f64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub fraction_negative: f64,
    pub sum: f64,
    pub outliers_gap: u64,
    pub outliers_ratio: u64,
    pub outliers_heuristic: u64,
    pub heuristic_cutoff: f64,
}

pub fn summarize(desc: &[f64], dim: usize, p: &SummaryParams) -> Summary {
    let n = desc.len();
    let maxabs = desc.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let tol = p.zero_tol * maxabs;
    let near_zero = desc.iter().filter(|x| x.abs() <= tol).count();
    let positive = desc.iter().filter(|&&x| x > tol).count();
    let negative = desc.iter().filter(|&&x| x < -tol).count();
    let mean = desc.iter().sum::<f64>() / n.max(1) as f64;
    let std = (desc.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
    let oc = count_outliers(desc, p.top, p.cutoff);
    Summary {
        num_eigenvalues: n as u64,
        dim: dim as u64,
        positive: positive as u64,
        negative: negative as u64,
        near_zero: near_zero as u64,
        zero_tol: tol,
        mean,
        std,
        min: desc.last().copied().unwrap_or(f64::NAN),
        max: desc.first().copied().unwrap_or(f64::NAN),
        fraction_negative: negative as f64 / n.max(1) as f64,
        sum: desc.iter().sum(),
        outliers_gap: oc.gap as u64,
        outliers_ratio: oc.ratio as u64,
        outliers_heuristic: oc.heuristic as u64,
        heuristic_cutoff: oc.cutoff,
    }
}

const U64_COLS: [&str; 8] =
    ["num_eigenvalues", "dim", "positive", "negative", "near_zero", "outliers_gap", "outliers_ratio", "outliers_heuristic"];
const F64_COLS: [&str; 8] = ["zero_tol", "mean", "std", "min", "max", "fraction_negative", "sum", "heuristic_cutoff"];

fn summary_fields() -> Vec<arrow_schema::Field> {
    let mut f: Vec<_> = U64_COLS.iter().map(|c| u64_field(c)).collect();
    f.extend(F64_COLS.iter().map(|c| f64_field(c)));
    f
}

pub fn summary_port() -> PortSpec {
    PortSpec::new(
        "summary",
        "one row: counts (num_eigenvalues, dim, positive, negative, near_zero, outliers_gap, outliers_ratio, outliers_heuristic: UInt64) and statistics (zero_tol, mean, std, min, max, fraction_negative, sum, heuristic_cutoff: Float64)",
        summary_fields(),
    )
}

impl Summary {
    fn u64s(&self) -> [u64; 8] {
        [
            self.num_eigenvalues,
            self.dim,
            self.positive,
            self.negative,
            self.near_zero,
            self.outliers_gap,
            self.outliers_ratio,
            self.outliers_heuristic,
        ]
    }
    fn f64s(&self) -> [f64; 8] {
        [self.zero_tol, self.mean, self.std, self.min, self.max, self.fraction_negative, self.sum, self.heuristic_cutoff]
    }
}

fn summaries_batch(rows: &[Summary], leading: Vec<(arrow_schema::Field, arrow_array::ArrayRef)>) -> Result<RecordBatch, StageError> {
    let mut fields: Vec<arrow_schema::Field> = leading.iter().map(|(f, _)| f.clone()).collect();
    let mut cols: Vec<arrow_array::ArrayRef> = leading.into_iter().map(|(_, a)| a).collect();
    fields.extend(summary_fields());
    for i in 0..8 {
        cols.push(u64_array(rows.iter().map(|r| r.u64s()[i])));
    }
    for i in 0..8 {
        cols.push(f64_array(rows.iter().map(|r| r.f64s()[i])));
    }
    RecordBatch::try_new(std::sync::Arc::new(arrow_schema::Schema::new(fields)), cols).map_err(StageError::other)
}

fn read_summary(a: &hesslab_pipeline::Artifact) -> Result<Summary, StageError> {
    let err = |m: String| StageError::from(a.column_error(m));
    let mut u = [0u64; 8];
    for (i, c) in U64_COLS.iter().enumerate() {
        u[i] = *u64_values(&a.batch, c).map_err(err)?.first().ok_or_else(|| err("summary has no rows".into()))?;
    }
    let mut f = [0f64; 8];
    for (i, c) in F64_COLS.iter().enumerate() {
        f[i] = *f64_values(&a.batch, c).map_err(err)?.first().ok_or_else(|| err("summary has no rows".into()))?;
    }
    Ok(Summary {
        num_eigenvalues: u[0],
        dim: u[1],
        positive: u[2],
        negative: u[3],
        near_zero: u[4],
        outliers_gap: u[5],
        outliers_ratio: u[6],
        outliers_heuristic: u[7],
        zero_tol: f[0],
        mean: f[1],
        std: f[2],
        min: f[3],
        max: f[4],
        fraction_negative: f[5],
        sum: f[6],
        heuristic_cutoff: f[7],
    })
}

pub struct SpectrumSummary;

impl StageKind for SpectrumSummary {
    type Params = SummaryParams;
    const KIND: &'static str = "spectrum_summary";
    const VERSION: u32 = 3;
    const DOC: &'static str = "Counts of positive/negative/near-zero eigenvalues, mean/std/min/max, and the outlier count by largest gap, largest ratio and elbow threshold (S18 Table 1); plots of the ordered spectrum, the top eigenvalues, the histogram and the negative tail. On a partial spectrum (Lanczos/power top-k) everything covers the returned eigenvalues only (num_eigenvalues < dim says so).";
    fn inputs() -> Vec<PortSpec> {
        vec![eigenvalues_port()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![summary_port()]
    }
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !(p.zero_tol >= 0.0) {
            e.push(("zero_tol".into(), "zero_tol must be ≥ 0".into()));
        }
        if p.top < 2 {
            e.push(("top".into(), "top must be ≥ 2".into()));
        }
        if p.cutoff.is_some_and(|c| !(c > 0.0)) {
            e.push(("cutoff".into(), "cutoff must be > 0".into()));
        }
        e
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let a = ctx.read("eigenvalues")?;
        let (_, desc) = read_eigenvalues(&a)?;
        if desc.is_empty() {
            return Err(StageError::msg("the eigenvalues artifact is empty"));
        }
        let dim = a.meta("dim").and_then(|s| s.parse().ok()).unwrap_or(desc.len());
        let s = summarize(&desc, dim, p);
        let mut meta = BTreeMap::new();
        meta.insert("source_operator".into(), a.meta("operator").unwrap_or("").to_string());
        meta.insert("source_solver".into(), a.meta("solver").unwrap_or("").to_string());
        ctx.write("summary", summaries_batch(std::slice::from_ref(&s), vec![])?, &meta)?;
        if p.plots {
            crate::plots::spectrum_plots(ctx, &desc, dim, &s)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CompareParams {
    /// Titles of the sweep-key columns in table.md, e.g. {"train.batch_size" = "algorithm"}
    /// (the Parquet table keeps the sweep keys as column names).
    pub columns: BTreeMap<String, String>,
    /// Display text of sweep values in table.md, keyed "key=value", e.g. {"train.batch_size=0" = "GD"}.
    pub values: BTreeMap<String, String>,
    /// Overlay of the connected eigenvalues: "top" (top 120 against rank, S18 Figs 2–4) or
    /// "negative" (negative eigenvalues against rank from the smallest in % of P, Figs 5–6).
    pub plot: OverlayKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverlayKind {
    #[default]
    Top,
    Negative,
}

/// table.md in the S18 Table 1 layout: one column per sweep key, then params, mean, std and
/// the three outlier counts with the heuristic cutoff.
fn markdown_table(p: &CompareParams, keys: &[String], inputs: &[hesslab_pipeline::InputArtifact], rows: &[Summary]) -> String {
    let title = |k: &String| p.columns.get(k).cloned().unwrap_or_else(|| k.clone());
    let mut head: Vec<String> = if keys.is_empty() { vec!["member".into()] } else { keys.iter().map(title).collect() };
    head.extend(["params", "mean", "std", "gap", "ratio", "heuristic", "cutoff"].map(String::from));
    let mut md = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for (i, r) in inputs.iter().zip(rows) {
        let mut cells: Vec<String> = if keys.is_empty() {
            vec![i.member.clone()]
        } else {
            keys.iter()
                .map(|k| {
                    let v = i.labels.get(k).cloned().unwrap_or_default();
                    p.values.get(&format!("{k}={v}")).cloned().unwrap_or(v)
                })
                .collect()
        };
        // Partial spectra (Lanczos top-k): mean and std are over the returned eigenvalues only.
        let mark = if r.num_eigenvalues < r.dim { "†" } else { "" };
        cells.extend([
            r.dim.to_string(),
            format!("{:.2e}{mark}", r.mean),
            format!("{:.2e}{mark}", r.std),
            r.outliers_gap.to_string(),
            r.outliers_ratio.to_string(),
            r.outliers_heuristic.to_string(),
            format!("{:.3e}", r.heuristic_cutoff),
        ]);
        md.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if rows.iter().any(|r| r.num_eigenvalues < r.dim) {
        md.push_str("\n† over the returned eigenvalues only (a partial spectrum), not over all P.\n");
    }
    md
}

pub struct Compare;

impl StageKind for Compare {
    type Params = CompareParams;
    const KIND: &'static str = "compare";
    const VERSION: u32 = 3;
    const DOC: &'static str = "One table of spectrum summaries across all sweep members (S18 Table 1 layout): member, its sweep labels as columns, then the summary columns; table.md with titled sweep columns.";
    fn inputs() -> Vec<PortSpec> {
        vec![summary_port().renamed("summaries").many(), eigenvalues_port().many().optional()]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![PortSpec::new("table", "member Utf8, one Utf8 column per sweep key, then the summary columns", vec![utf8_field("member")])]
    }
    fn check_sweep(p: &Self::Params, sweep_keys: &[String]) -> Vec<(String, String)> {
        let mut e = Vec::new();
        for k in p.columns.keys().filter(|k| !sweep_keys.contains(k)) {
            let hint = hesslab_pipeline::nearest(k, sweep_keys.iter().map(|s| s.as_str())).map(|s| format!(" (did you mean `{s}`?)"));
            e.push(("columns".into(), format!("`{k}` is not a sweep key{}; the sweep keys are {sweep_keys:?}", hint.unwrap_or_default())));
        }
        for k in p.values.keys() {
            if !sweep_keys.iter().any(|s| k.strip_prefix(s.as_str()).is_some_and(|r| r.starts_with('='))) {
                e.push(("values".into(), format!("`{k}` is not \"sweep key=value\"; the sweep keys are {sweep_keys:?}")));
            }
        }
        e
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let inputs = ctx.inputs("summaries").to_vec();
        let mut rows = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for i in &inputs {
            rows.push(read_summary(&i.read()?)?);
            for k in i.labels.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        let mut leading = vec![(utf8_field("member"), utf8_array(inputs.iter().map(|i| i.member.as_str())))];
        for k in &keys {
            leading.push((utf8_field(k), utf8_array(inputs.iter().map(|i| i.labels.get(k).cloned().unwrap_or_default()))));
        }
        let b = summaries_batch(&rows, leading)?;
        ctx.write("table", b, &BTreeMap::new())?;
        // Validation already ran this against the plan's sweep keys; standalone runs get it here.
        if let Some((key, m)) = Self::check_sweep(p, &keys).into_iter().next() {
            return Err(StageError::msg(format!("`{key}`: {m}")));
        }
        let md = markdown_table(p, &keys, &inputs, &rows);
        ctx.write_file("table.md", md.as_bytes())?;
        // Eigenvalues of every member on one rank plot, with each member's cutoff (Figs 2–6).
        let evs = ctx.inputs("eigenvalues").to_vec();
        if !evs.is_empty() {
            let mut plot = match p.plot {
                OverlayKind::Top => crate::plots::Plot::new("Top eigenvalues across members", "rank", "eigenvalue"),
                OverlayKind::Negative => {
                    crate::plots::Plot::new("Negative eigenvalues across members", "rank from the smallest, % of P", "eigenvalue")
                }
            };
            for e in &evs {
                let a = e.read()?;
                let (_, desc) = read_eigenvalues(&a)?;
                let label = if e.labels.is_empty() { e.member.clone() } else { e.labels.values().cloned().collect::<Vec<_>>().join(", ") };
                if p.plot == OverlayKind::Negative {
                    let dim = a.meta("dim").and_then(|s| s.parse::<f64>().ok()).unwrap_or(desc.len() as f64);
                    let neg = desc.iter().rev().take_while(|&&v| v < 0.0).enumerate().map(|(i, &v)| (100.0 * i as f64 / dim, v));
                    plot = plot.line(&label, neg.collect());
                    continue;
                }
                plot = plot.line(&label, desc.iter().take(120).enumerate().map(|(i, &v)| (i as f64, v)).collect());
                // With few members, each member's heuristic cutoff as a reference line.
                if evs.len() <= 6
                    && let Some(r) = inputs.iter().position(|i| i.member == e.member).map(|k| &rows[k])
                {
                    plot = plot.hline(r.heuristic_cutoff, &format!("cutoff {label}: {} outliers", r.outliers_heuristic));
                }
            }
            let name = if p.plot == OverlayKind::Top { "top_overlay" } else { "negative_overlay" };
            plot.write(ctx, name)?;
        }
        Ok(())
    }
}
