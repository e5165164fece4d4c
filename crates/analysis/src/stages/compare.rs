//! `compare`: spectrum summaries of every sweep member in one table (S18 Table 1).
use hesslab_artifacts::{Eigenvalues, Summary, SummaryRow, Table};
use hesslab_pipeline::{InputArtifact, Port, PortSpec, StageContext, StageError, StageKind, port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SUMMARIES: PortSpec = port::<Summary>().renamed("summaries").many();

/// Parameters of `compare`.
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

/// Which overlay plot `compare` draws.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverlayKind {
    /// The top 120 eigenvalues against rank.
    #[default]
    Top,
    /// The negative eigenvalues against rank from the smallest, in % of P.
    Negative,
}

/// table.md in the S18 Table 1 layout: one column per sweep key, then params, mean, std and
/// the three outlier counts with the heuristic cutoff.
fn markdown_table(p: &CompareParams, keys: &[String], inputs: &[InputArtifact], rows: &[SummaryRow]) -> String {
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

/// The `compare` stage kind.
pub struct Compare;

impl StageKind for Compare {
    type Params = CompareParams;
    const KIND: &'static str = "compare";
    const VERSION: u32 = 3;
    const DOC: &'static str = "One table of spectrum summaries across all sweep members (S18 Table 1 layout): member, its sweep labels as columns, then the summary columns; table.md with titled sweep columns.";
    const INPUTS: &'static [PortSpec] = &[SUMMARIES, port::<Eigenvalues>().many().optional()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Table>()];
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
        let inputs = ctx.inputs(SUMMARIES.name).to_vec();
        let mut rows = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for i in &inputs {
            rows.push(i.decode::<Summary>()?.row);
            for k in i.labels.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        let table = Table {
            members: inputs.iter().map(|i| i.member.clone()).collect(),
            labels: keys
                .iter()
                .map(|k| (k.clone(), inputs.iter().map(|i| i.labels.get(k).cloned().unwrap_or_default()).collect()))
                .collect(),
            rows: rows.clone(),
        };
        ctx.write::<Table>(Table::NAME, &table)?;
        // Validation already ran this against the plan's sweep keys; standalone runs get it here.
        if let Some((key, m)) = Self::check_sweep(p, &keys).into_iter().next() {
            return Err(StageError::msg(format!("`{key}`: {m}")));
        }
        let md = markdown_table(p, &keys, &inputs, &rows);
        ctx.write_file("table.md", md.as_bytes())?;
        // Eigenvalues of every member on one rank plot, with each member's cutoff (Figs 2–6).
        let evs = ctx.inputs(Eigenvalues::NAME).to_vec();
        if !evs.is_empty() {
            let mut plot = match p.plot {
                OverlayKind::Top => crate::plots::Plot::new("Top eigenvalues across members", "rank", "eigenvalue"),
                OverlayKind::Negative => {
                    crate::plots::Plot::new("Negative eigenvalues across members", "rank from the smallest, % of P", "eigenvalue")
                }
            };
            for e in &evs {
                let ev = e.decode::<Eigenvalues>()?;
                let desc = ev.values;
                let label = if e.labels.is_empty() { e.member.clone() } else { e.labels.values().cloned().collect::<Vec<_>>().join(", ") };
                if p.plot == OverlayKind::Negative {
                    let dim = if ev.info.dim > 0 { ev.info.dim as f64 } else { desc.len() as f64 };
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
