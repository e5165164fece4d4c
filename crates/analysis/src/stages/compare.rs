//! `compare`: spectrum summaries of every sweep member in one table (S18 Table 1), and, where
//! sweep members are replicates (seeds), their mean, spread and range per group.
use crate::bulk;
use crate::replicates::{Groups, format_mean_std, group, rank_stats, seed_keys, spread};
use crate::small_multiples::Line;
use hesslab_artifacts::{Eigenvalues, Nodes, RankSpread, Spread, Stats, Summary, SummaryRow, Table};
use hesslab_figures::{Mark, Series};
use hesslab_pipeline::{InputArtifact, Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::WriteFigure;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SUMMARIES: PortSpec = port::<Summary>().renamed("summaries").many();

/// Parameters of `compare`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
    /// Sweep keys whose members repeat one experiment with another seed: `spread`,
    /// `rank_spread`, the grouped table and the overlay's bands run over them. Default: every
    /// swept `seed` parameter (e.g. "train.seed"); [] turns replicates off.
    pub replicates: Option<Vec<String>>,
    /// Sweep keys whose values get one panel each (first: columns, second: rows), e.g.
    /// ["data.classes"] for S18 Fig 2. Default: none when at most 6 lines, else the key (or
    /// pair) that brings every panel to at most 6 lines.
    pub panels: Vec<String>,
    /// The overlay's y scale: "auto" (log or symmetric log where the data span more than 3
    /// decades), "linear", "log" or "symlog".
    pub y_scale: ScaleParam,
    /// With SLQ `nodes` connected: the band around zero for `slq_near_zero` (the share of the
    /// spectrum with |λ| < this, the bulk measured on the bulk itself) and `slq_negative` (the
    /// share below −this), added to `spread` for every member and group; with full spectra
    /// connected as well, the exact shares and SLQ's errors (`exact_near_zero`,
    /// `exact_negative`, `slq_near_zero_error`, `slq_negative_error`).
    pub slq_zero_tol: f64,
    /// With full spectra connected (dense solves): the bulk is every eigenvalue from this rank
    /// on (0 = the largest; 120 past S18's top-120 window). Adds `bulk_q01`, `bulk_median`,
    /// `bulk_q99` (quantiles) and `bulk_abs_mean` per member and group to `spread`, and draws
    /// `bulk_overlay` (the bulk's density per group, min–max band over the seeds). Null: off.
    pub bulk_from_rank: Option<usize>,
}

impl Default for CompareParams {
    fn default() -> Self {
        CompareParams {
            columns: BTreeMap::new(),
            values: BTreeMap::new(),
            plot: OverlayKind::Top,
            replicates: None,
            panels: Vec::new(),
            y_scale: ScaleParam::Auto,
            slq_zero_tol: 1e-3,
            bulk_from_rank: None,
        }
    }
}

/// A y scale as written in a pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScaleParam {
    /// Decided from the data.
    #[default]
    Auto,
    /// Linear.
    Linear,
    /// log10 (positive values only).
    Log,
    /// Symmetric log (linear near zero).
    Symlog,
}

impl ScaleParam {
    /// The figure scale.
    pub fn scale(self) -> hesslab_figures::YScale {
        use hesslab_figures::YScale;
        match self {
            ScaleParam::Auto => YScale::Auto,
            ScaleParam::Linear => YScale::Linear,
            ScaleParam::Log => YScale::Log,
            ScaleParam::Symlog => YScale::Symlog { linthresh: 0.0 },
        }
    }
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
    let mut head: Vec<String> = if keys.is_empty() { vec!["member".into()] } else { keys.iter().map(|k| title(p, k)).collect() };
    head.extend(["params", "mean", "std", "gap", "ratio", "heuristic", "cutoff"].map(String::from));
    let fixed = rows.iter().any(|r| r.outliers_fixed.is_some());
    if fixed {
        head.push("fixed".into());
    }
    let mut md = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for (i, r) in inputs.iter().zip(rows) {
        let mut cells: Vec<String> =
            if keys.is_empty() { vec![i.member.clone()] } else { keys.iter().map(|k| shown(p, k, i.labels.get(k))).collect() };
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
        if fixed {
            cells.push(match (r.outliers_fixed, r.fixed_cutoff) {
                (Some(n), Some(c)) => format!("{n} (> {c})"),
                _ => "–".into(),
            });
        }
        md.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if rows.iter().any(|r| r.num_eigenvalues < r.dim) {
        md.push_str("\n† over the returned eigenvalues only (a partial spectrum), not over all P.\n");
    }
    md
}

fn title(p: &CompareParams, k: &str) -> String {
    p.columns.get(k).cloned().unwrap_or_else(|| k.to_string())
}

fn shown(p: &CompareParams, k: &str, v: Option<&String>) -> String {
    let v = v.cloned().unwrap_or_default();
    p.values.get(&format!("{k}={v}")).cloned().unwrap_or(v)
}

/// The grouped table: per group of replicates, each column as "mean ± std" over the seeds
/// (λ₁ = the largest eigenvalue), with the min–max range of the outlier counts.
fn markdown_grouped(p: &CompareParams, g: &Groups, reps: &[String], spread: &Spread, partial: bool) -> String {
    const SHOWN: [(&str, &str); 18] = [
        ("dim", "params"),
        ("max", "λ₁"),
        ("mean", "mean"),
        ("std", "std"),
        ("outliers_gap", "gap"),
        ("outliers_ratio", "ratio"),
        ("outliers_heuristic", "heuristic"),
        ("heuristic_cutoff", "cutoff"),
        ("outliers_fixed", "fixed"),
        ("slq_near_zero", "SLQ share near 0"),
        ("slq_negative", "SLQ share < 0"),
        ("exact_near_zero", "exact share near 0"),
        ("slq_near_zero_error", "SLQ error near 0"),
        ("exact_negative", "exact share < 0"),
        ("slq_negative_error", "SLQ error < 0"),
        ("bulk_q01", "bulk q01"),
        ("bulk_median", "bulk median"),
        ("bulk_q99", "bulk q99"),
    ];
    // Columns nobody asked for (all null, e.g. the fixed-threshold count) are left out.
    let asked = |q: &str| spread.quantity.iter().zip(&spread.stats).any(|(x, s)| x == q && !s.mean.is_nan());
    let columns: Vec<(&str, &str)> = SHOWN.into_iter().filter(|(q, _)| asked(q)).collect();
    let mut head: Vec<String> = g.keys.iter().map(|k| title(p, k)).collect();
    head.push("seeds".into());
    head.extend(columns.iter().map(|(_, t)| t.to_string()));
    let mut md = format!(
        "Mean ± sample std over the replicates ({}); outlier counts with their min–max.\n\n| {} |\n|{}\n",
        reps.join(", "),
        head.join(" | "),
        "---|".repeat(head.len())
    );
    let per_group = spread.quantity.len() / g.groups.len().max(1);
    for (gi, grp) in g.groups.iter().enumerate() {
        let block = &spread.stats[gi * per_group..(gi + 1) * per_group];
        let stat = |q: &str| spread.quantity[..per_group].iter().position(|x| x == q).map(|i| block[i]);
        let mut cells: Vec<String> = g.keys.iter().zip(&grp.values).map(|(k, v)| shown(p, k, Some(v))).collect();
        cells.push(grp.members.len().to_string());
        for &(q, _) in &columns {
            let Some(s) = stat(q) else { continue };
            let range = if q.starts_with("outliers") && s.n > 1 { format!(" ({}–{})", s.min, s.max) } else { String::new() };
            cells.push(format!("{}{range}", format_mean_std(&s)));
        }
        md.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if partial {
        md.push_str("\nmean and std: of the returned eigenvalues only (a partial spectrum), not of all P.\n");
    }
    md
}

/// The eigenvalue at each rank from either end, over the replicates of each group, as far as
/// every replicate has it: "largest" from full spectra and top-k runs, "smallest" from full
/// spectra and bottom-k runs (descending values reversed).
fn eigen_spread(g: &Groups, evs: &[Eigenvalues], reps: &[String]) -> (RankSpread, Vec<[Vec<Stats>; 2]>) {
    let mut out = RankSpread { labels: Vec::new(), end: Vec::new(), rank: Vec::new(), stats: Vec::new(), replicate_keys: reps.to_vec() };
    let mut labels = vec![Vec::new(); g.keys.len()];
    let mut per_group = Vec::new();
    for grp in &g.groups {
        let full = |e: &Eigenvalues| e.values.len() == e.info.dim;
        let largest: Vec<&[f64]> = grp
            .members
            .iter()
            .map(|&m| &evs[m])
            .filter(|e| full(e) || e.info.which.as_deref() == Some("largest"))
            .map(|e| e.values.as_slice())
            .collect();
        let ascending: Vec<Vec<f64>> = grp
            .members
            .iter()
            .map(|&m| &evs[m])
            .filter(|e| full(e) || e.info.which.as_deref() == Some("smallest"))
            .map(|e| e.values.iter().rev().copied().collect())
            .collect();
        let smallest: Vec<&[f64]> = ascending.iter().map(|v| v.as_slice()).collect();
        // A group where some replicates lack an end has no statistics for that end.
        let ends = [
            if largest.len() == grp.members.len() { rank_stats(&largest) } else { Vec::new() },
            if smallest.len() == grp.members.len() { rank_stats(&smallest) } else { Vec::new() },
        ];
        for (end, stats) in ["largest", "smallest"].iter().zip(&ends) {
            for (r, s) in stats.iter().enumerate() {
                for (l, v) in labels.iter_mut().zip(&grp.values) {
                    l.push(v.clone());
                }
                out.end.push(end.to_string());
                out.rank.push(r as u32);
                out.stats.push(*s);
            }
        }
        per_group.push(ends);
    }
    out.labels = g.keys.iter().cloned().zip(labels).collect();
    (out, per_group)
}

/// The `compare` stage kind.
pub struct Compare;

impl Compare {
    fn replicate_keys(p: &CompareParams, keys: &[String]) -> Vec<String> {
        p.replicates.clone().unwrap_or_else(|| seed_keys(keys))
    }
}

impl StageKind for Compare {
    type Params = CompareParams;
    const KIND: &'static str = "compare";
    const VERSION: u32 = 6;
    const DOC: &'static str = "One table of spectrum summaries across all sweep members (S18 Table 1 layout): member, its sweep labels as columns, then the summary columns; table.md with titled sweep columns. Members that differ only in a replicate key (a swept seed) are grouped: spread and rank_spread give mean, sample std, min and max over the seeds, table.md a mean ± std table, the overlay a mean line over a min–max band per group. Sweeps are drawn as small multiples (`panels`). With SLQ `nodes` connected, the negative part in % of P from the quadrature (negative_slq_overlay).";
    const INPUTS: &'static [PortSpec] = &[SUMMARIES, port::<Eigenvalues>().many().optional(), port::<Nodes>().many().optional()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Table>(), port::<Spread>(), port::<RankSpread>()];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        if p.slq_zero_tol > 0.0 { vec![] } else { vec![("slq_zero_tol".into(), "slq_zero_tol must be > 0".into())] }
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
        for k in p.replicates.iter().flatten().filter(|k| !sweep_keys.contains(k)) {
            e.push(("replicates".into(), format!("`{k}` is not a sweep key; the sweep keys are {sweep_keys:?}")));
        }
        let reps = p.replicates.clone().unwrap_or_else(|| seed_keys(sweep_keys));
        for k in &p.panels {
            if !sweep_keys.contains(k) {
                let hint = hesslab_pipeline::nearest(k, sweep_keys.iter().map(|s| s.as_str())).map(|s| format!(" (did you mean `{s}`?)"));
                e.push((
                    "panels".into(),
                    format!("`{k}` is not a sweep key{}; the sweep keys are {sweep_keys:?}", hint.unwrap_or_default()),
                ));
            } else if reps.contains(k) {
                e.push(("panels".into(), format!("`{k}` is a replicate key (its members are one line with a band), not a panel key")));
            }
        }
        if p.panels.len() > 2 {
            e.push(("panels".into(), format!("at most two panel keys (columns, rows); found {}", p.panels.len())));
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
        // Validation already ran this against the plan's sweep keys; standalone runs get it here.
        if let Some((key, m)) = Self::check_sweep(p, &keys).into_iter().next() {
            return Err(StageError::msg(format!("`{key}`: {m}")));
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
        let reps = Self::replicate_keys(p, &keys);
        let labels: Vec<BTreeMap<String, String>> = inputs.iter().map(|i| i.labels.clone()).collect();
        let groups = group(&labels, &keys, &reps);
        let nodes = ctx.inputs(Nodes::NAME).to_vec();
        let ev_inputs = ctx.inputs(Eigenvalues::NAME).to_vec();
        let evs: Vec<Eigenvalues> = ev_inputs.iter().map(|e| e.decode::<Eigenvalues>()).collect::<Result<_, _>>()?;
        let mut extra = slq_measures(&inputs, &nodes, &ev_inputs, &evs, p.slq_zero_tol)?;
        if let Some(from_rank) = p.bulk_from_rank {
            let bulk = bulk_measures(&inputs, &ev_inputs, &evs, from_rank)?;
            extra =
                if extra.is_empty() { bulk } else { extra.into_iter().zip(bulk).map(|(a, b)| a.into_iter().chain(b).collect()).collect() };
        }
        // Per member: the summary columns, then the SLQ and bulk measures when asked for.
        let values: Vec<Vec<(&'static str, f64)>> = rows
            .iter()
            .enumerate()
            .map(|(m, r)| r.named_values().into_iter().chain(extra.get(m).into_iter().flatten().copied()).collect())
            .collect();
        let spread = spread(&groups, &values, &reps);
        ctx.write::<Spread>(Spread::NAME, &spread)?;
        let mut md = String::new();
        if !reps.is_empty() {
            let partial = rows.iter().any(|r| r.num_eigenvalues < r.dim);
            md.push_str(&markdown_grouped(p, &groups, &reps, &spread, partial));
            md.push_str("\nPer member:\n\n");
        }
        md.push_str(&markdown_table(p, &keys, &inputs, &rows));
        ctx.write_file("table.md", md.as_bytes())?;

        let ev_groups = group(&ev_inputs.iter().map(|i| i.labels.clone()).collect::<Vec<_>>(), &keys, &reps);
        let (rank_spread, per_group) = eigen_spread(&ev_groups, &evs, &reps);
        ctx.write::<RankSpread>(RankSpread::NAME, &rank_spread)?;
        let naming = TableNaming(p);
        let line_keys: Vec<String> = keys.iter().filter(|k| !reps.contains(k)).cloned().collect();
        if !nodes.is_empty() {
            let lines = slq_negative_lines(&nodes, &keys, &reps)?;
            let panel_keys = crate::small_multiples::panel_keys(&lines, &line_keys, &p.panels);
            let axes = ("rank from the smallest, % of P", "eigenvalue");
            let title = "Negative part from SLQ (nodes below −1e-6·λ₁)";
            crate::small_multiples::overlay(title, axes, lines, &line_keys, &panel_keys, &naming, p.y_scale.scale())
                .write(ctx, "negative_slq_overlay")?;
        }
        if evs.is_empty() {
            return Ok(());
        }
        if let Some(from_rank) = p.bulk_from_rank {
            let lines = bulk_lines(&ev_groups, &evs, from_rank, reps.is_empty());
            let panel_keys = crate::small_multiples::panel_keys(&lines, &line_keys, &p.panels);
            let title = format!("Bulk: eigenvalues from rank {from_rank} on (1–99 % range)");
            let axes = ("eigenvalue", "density (share per unit eigenvalue)");
            let scale = if p.y_scale == ScaleParam::Auto { ScaleParam::Log } else { p.y_scale };
            let mut figure = crate::small_multiples::overlay(&title, axes, lines, &line_keys, &panel_keys, &naming, scale.scale());
            // Bulks of different data differ in scale by orders of magnitude: each panel its own x.
            figure.share_x = false;
            figure.write(ctx, "bulk_overlay")?;
        }
        let (title, axes) = match p.plot {
            OverlayKind::Top => ("Top eigenvalues across members", ("rank", "eigenvalue")),
            OverlayKind::Negative => ("Negative eigenvalues across members", ("rank from the smallest, % of P", "eigenvalue")),
        };
        let mut lines = Vec::new();
        if reps.is_empty() {
            lines = member_lines(p, &ev_inputs, &evs);
        } else {
            // One mean line per group over its min–max band across seeds (Figs 2–6 with spread).
            for (grp, ends) in ev_groups.groups.iter().zip(&per_group) {
                let dim = evs[grp.members[0]].info.dim.max(1) as f64;
                let (stats, x): (Vec<&Stats>, Box<dyn Fn(usize) -> f64>) = match p.plot {
                    OverlayKind::Top => (ends[0].iter().take(120).collect(), Box::new(|r| r as f64)),
                    OverlayKind::Negative => {
                        (ends[1].iter().take_while(|s| s.max < 0.0).collect(), Box::new(move |r| 100.0 * r as f64 / dim))
                    }
                };
                let points = stats.iter().enumerate().map(|(r, s)| (x(r), s.mean)).collect();
                let band = stats.iter().enumerate().map(|(r, s)| (x(r), s.min, s.max)).collect();
                let name = format!(" (mean, min–max of {} seeds)", grp.members.len());
                let labels = ev_groups.keys.iter().cloned().zip(grp.values.iter().cloned()).collect();
                lines.push(Line { labels, series: Series { name, points, mark: Mark::Line, band } });
            }
        }
        let panel_keys = crate::small_multiples::panel_keys(&lines, &line_keys, &p.panels);
        let mut figure = crate::small_multiples::overlay(title, axes, lines, &line_keys, &panel_keys, &naming, p.y_scale.scale());
        // A few members alone in one panel: mark each one's outlier cutoff.
        if reps.is_empty() && panel_keys.is_empty() && p.plot == OverlayKind::Top && ev_inputs.len() <= 6 {
            for e in &ev_inputs {
                if let Some(r) = inputs.iter().position(|i| i.member == e.member).map(|k| &rows[k]) {
                    let label =
                        if e.labels.is_empty() { e.member.clone() } else { e.labels.values().cloned().collect::<Vec<_>>().join(", ") };
                    figure.panels[0] =
                        figure.panels[0].clone().hline(r.heuristic_cutoff, &format!("cutoff {label}: {} outliers", r.outliers_heuristic));
                }
            }
        }
        let name = if p.plot == OverlayKind::Top { "top_overlay" } else { "negative_overlay" };
        figure.write(ctx, name)?;
        Ok(())
    }
}

/// Per summary member (in `inputs` order), from its SLQ nodes: the share of the spectrum with
/// |λ| < tol and below −tol (weights over probes). Empty unless every member has nodes. When
/// every member also has its full spectrum connected (a dense solve), the exact shares
/// (`exact_near_zero`, `exact_negative`) and the estimates' errors (`slq_near_zero_error`,
/// `slq_negative_error`, SLQ − exact) too: over seeds, their mean is SLQ's bias and their
/// spread its noise.
fn slq_measures(
    inputs: &[InputArtifact],
    nodes: &[InputArtifact],
    ev_inputs: &[InputArtifact],
    evs: &[Eigenvalues],
    tol: f64,
) -> Result<Vec<Vec<(&'static str, f64)>>, StageError> {
    let mut out = Vec::new();
    let full = |member: &str| {
        ev_inputs.iter().position(|e| e.member == member).map(|k| &evs[k]).filter(|e| !e.values.is_empty() && e.values.len() == e.info.dim)
    };
    let exact = inputs.iter().all(|i| full(&i.member).is_some());
    for i in inputs {
        let Some(n) = nodes.iter().find(|n| n.member == i.member) else { return Ok(Vec::new()) };
        let nodes = n.decode::<Nodes>()?;
        let (rows, probes) = (&nodes.rows, nodes.probes() as f64);
        let share = |keep: &dyn Fn(f64) -> bool| rows.iter().filter(|r| keep(r.node)).map(|r| r.weight).sum::<f64>() / probes;
        let (near, negative) = (share(&|v| v.abs() < tol), share(&|v| v < -tol));
        let mut m = vec![("slq_near_zero", near), ("slq_negative", negative)];
        if let Some(e) = full(&i.member).filter(|_| exact) {
            let count = |keep: &dyn Fn(f64) -> bool| e.values.iter().filter(|&&v| keep(v)).count() as f64 / e.values.len() as f64;
            let (exact_near, exact_negative) = (count(&|v| v.abs() < tol), count(&|v| v < -tol));
            m.extend([
                ("exact_near_zero", exact_near),
                ("exact_negative", exact_negative),
                ("slq_near_zero_error", near - exact_near),
                ("slq_negative_error", negative - exact_negative),
            ]);
        }
        out.push(m);
    }
    Ok(out)
}

/// Per summary member (in `inputs` order), the quantile measures of the bulk of its full
/// spectrum: the eigenvalues from `from_rank` on.
fn bulk_measures(
    inputs: &[InputArtifact],
    ev_inputs: &[InputArtifact],
    evs: &[Eigenvalues],
    from_rank: usize,
) -> Result<Vec<Vec<(&'static str, f64)>>, StageError> {
    let fail = |m: String| StageError::msg(format!("`bulk_from_rank`: {m}"));
    let mut out = Vec::new();
    for i in inputs {
        let e = ev_inputs.iter().position(|e| e.member == i.member).map(|k| &evs[k]);
        let Some(e) = e else { return Err(fail(format!("member {} has no eigenvalues connected", i.member))) };
        if e.values.len() != e.info.dim {
            let (n, dim) = (e.values.len(), e.info.dim);
            return Err(fail(format!("needs full spectra (a dense solve); member {} has {n} of {dim} eigenvalues", i.member)));
        }
        let Some(m) = bulk::measures(&bulk::bulk_of(&e.values, from_rank)) else {
            return Err(fail(format!("member {} has {} eigenvalues, none past rank {from_rank}", i.member, e.values.len())));
        };
        out.push(m.named().to_vec());
    }
    Ok(out)
}

/// The bulk's density per group: bins over the group's 1–99 % range (the lowest q01 and the
/// highest q99 of its members), the mean over the replicates as the line and their min–max as
/// the band; empty bins are left out (the axis is logarithmic).
fn bulk_lines(groups: &Groups, evs: &[Eigenvalues], from_rank: usize, one_per_member: bool) -> Vec<Line> {
    const BINS: usize = 60;
    let mut lines = Vec::new();
    for grp in &groups.groups {
        let bulks: Vec<Vec<f64>> = grp.members.iter().map(|&m| bulk::bulk_of(&evs[m].values, from_rank)).collect();
        let ms: Vec<bulk::BulkMeasures> = bulks.iter().filter_map(|b| bulk::measures(b)).collect();
        let lo = ms.iter().map(|m| m.q01).fold(f64::INFINITY, f64::min);
        let hi = ms.iter().map(|m| m.q99).fold(f64::NEG_INFINITY, f64::max);
        let hists: Vec<Vec<(f64, f64)>> = bulks.iter().map(|b| bulk::density_histogram(b, lo, hi, BINS)).collect();
        if hists.iter().any(|h| h.is_empty()) {
            continue;
        }
        let (mut points, mut band) = (Vec::new(), Vec::new());
        for b in 0..BINS {
            let s = Stats::of(&hists.iter().map(|h| h[b].1).collect::<Vec<_>>());
            if s.mean > 0.0 {
                points.push((hists[0][b].0, s.mean));
                band.push((hists[0][b].0, s.min, s.max));
            }
        }
        let name = if one_per_member { String::new() } else { format!(" (mean, min–max of {} seeds)", grp.members.len()) };
        let band = if one_per_member { Vec::new() } else { band };
        let labels = groups.keys.iter().cloned().zip(grp.values.iter().cloned()).collect();
        lines.push(Line { labels, series: Series { name, points, mark: Mark::Line, band } });
    }
    lines
}

/// The negative part against rank in % of P from SLQ nodes and weights (S18 Figs 5–6 where a
/// dense spectrum does not fit): per group of replicates the probes of every seed pooled, which
/// averages their density estimates; one line per member without replicates.
fn slq_negative_lines(nodes: &[InputArtifact], keys: &[String], reps: &[String]) -> Result<Vec<Line>, StageError> {
    let decoded: Vec<Nodes> = nodes.iter().map(|n| n.decode::<Nodes>()).collect::<Result<_, _>>()?;
    let groups = group(&nodes.iter().map(|n| n.labels.clone()).collect::<Vec<_>>(), keys, reps);
    let mut lines = Vec::new();
    for grp in &groups.groups {
        // Probe indices are not needed once pooled: each weight is divided by the total.
        let pooled: Vec<(f64, f64)> = grp.members.iter().flat_map(|&m| decoded[m].rows.iter().map(|r| (r.node, r.weight))).collect();
        let probes: usize = grp.members.iter().map(|&m| decoded[m].probes()).sum();
        let points = hesslab_figures::spectra::negative_points_from_nodes(&pooled, probes);
        let name = if reps.is_empty() {
            if nodes[grp.members[0]].labels.is_empty() { nodes[grp.members[0]].member.clone() } else { String::new() }
        } else {
            format!(" (probes of {} seeds pooled)", grp.members.len())
        };
        let labels = groups.keys.iter().cloned().zip(grp.values.iter().cloned()).collect();
        lines.push(Line { labels, series: Series { name, points, mark: Mark::Line, band: Vec::new() } });
    }
    Ok(lines)
}

/// How table.md titles keys and shows values, reused by the figures.
struct TableNaming<'a>(&'a CompareParams);

impl crate::small_multiples::Naming for TableNaming<'_> {
    fn key(&self, k: &str) -> String {
        title(self.0, k)
    }
    fn value(&self, k: &str, v: &str) -> String {
        shown(self.0, k, Some(&v.to_string()))
    }
}

/// One line per member (no replicates): eigenvalues against rank, or the negative part in % of P.
fn member_lines(p: &CompareParams, ev_inputs: &[InputArtifact], evs: &[Eigenvalues]) -> Vec<Line> {
    let mut lines = Vec::new();
    for (e, ev) in ev_inputs.iter().zip(evs) {
        let desc = &ev.values;
        let points = if p.plot == OverlayKind::Negative {
            let dim = if ev.info.dim > 0 { ev.info.dim } else { desc.len() };
            hesslab_figures::spectra::negative_points(desc, dim)
        } else {
            desc.iter().take(120).enumerate().map(|(i, &v)| (i as f64, v)).collect()
        };
        // Members without sweep labels are named by their directory.
        let name = if e.labels.is_empty() { e.member.clone() } else { String::new() };
        lines.push(Line { labels: e.labels.clone(), series: Series { name, points, mark: Mark::Line, band: Vec::new() } });
    }
    lines
}
