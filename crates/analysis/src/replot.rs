//! `hesslab plot`: the figures of an artifact, drawn again from its Parquet file alone, so a
//! figure can be restyled (scale, panels, pixel density) without recomputing anything.
use crate::small_multiples::{Line, Naming, overlay, panel_keys};
use hesslab_artifacts::{Curve, Density, Eigenvalues, Ensemble, Log, Nodes, RankSpread};
use hesslab_figures::{Figure, Mark, Series, YScale, spectra};
use hesslab_pipeline::{Port, read_artifact};
use std::collections::BTreeMap;
use std::path::Path;

/// How to redraw.
#[derive(Debug, Clone, Default)]
pub struct ReplotOptions {
    /// Only the figure of this name (e.g. "histogram"); None: all of the artifact's figures.
    pub kind: Option<String>,
    /// The y scale of every figure (Auto keeps each figure's default).
    pub y_scale: YScale,
    /// rank_spread: panel keys (as `compare`'s `panels`).
    pub panels: Vec<String>,
}

/// The artifacts `hesslab plot` draws, by port name, with the figures each gives.
pub const PLOTTABLE: &[(&str, &str)] = &[
    ("eigenvalues", "spectrum, top, negative, histogram"),
    ("density", "density (with negative from the sibling nodes.parquet)"),
    ("nodes", "negative"),
    ("rank_spread", "top, bottom (mean over replicates with min–max bands, small multiples)"),
    ("log", "loss, accuracy"),
    ("curve", "interpolation_loss, interpolation_accuracy"),
    ("ensemble", "top_histogram"),
];

fn port_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

struct Plain;
impl Naming for Plain {
    fn key(&self, k: &str) -> String {
        k.to_string()
    }
    fn value(&self, _: &str, v: &str) -> String {
        v.to_string()
    }
}

fn rank_spread_figures(r: &RankSpread, o: &ReplotOptions) -> Vec<(&'static str, Figure)> {
    let keys: Vec<String> = r.labels.iter().map(|(k, _)| k.clone()).collect();
    let mut out = Vec::new();
    for (name, end) in [("top", "largest"), ("bottom", "smallest")] {
        let mut groups: Vec<(BTreeMap<String, String>, Vec<usize>)> = Vec::new();
        for i in (0..r.end.len()).filter(|&i| r.end[i] == end) {
            let labels: BTreeMap<String, String> = r.labels.iter().map(|(k, v)| (k.clone(), v[i].clone())).collect();
            match groups.iter_mut().find(|g| g.0 == labels) {
                Some(g) => g.1.push(i),
                None => groups.push((labels, vec![i])),
            }
        }
        if groups.is_empty() {
            continue;
        }
        let lines: Vec<Line> = groups
            .into_iter()
            .map(|(labels, rows)| {
                let x = |i: usize| r.rank[i] as f64;
                let points = rows.iter().map(|&i| (x(i), r.stats[i].mean)).collect();
                let band = rows.iter().map(|&i| (x(i), r.stats[i].min, r.stats[i].max)).collect();
                let n = rows.first().map_or(0, |&i| r.stats[i].n);
                Line { labels, series: Series { name: format!(" (mean, min–max of {n})"), points, mark: Mark::Line, band } }
            })
            .collect();
        let pk = panel_keys(&lines, &keys, &o.panels);
        let title = if end == "largest" { "Top eigenvalues over replicates" } else { "Smallest eigenvalues over replicates" };
        let x = if end == "largest" { "rank" } else { "rank from the smallest" };
        out.push((name, overlay(title, (x, "eigenvalue"), lines, &keys, &pk, &Plain, o.y_scale)));
    }
    out
}

/// Sweep labels from a member directory name, `key=value__key=value` (the layout every run
/// writes: `<out>/<pipeline>/<member>/<stage>/<port>.parquet`); `{"member": name}` otherwise.
pub fn member_labels(path: &Path) -> BTreeMap<String, String> {
    let member = path.parent().and_then(|stage| stage.parent()).and_then(|m| m.file_name()).map(|m| m.to_string_lossy().into_owned());
    let member = member.unwrap_or_default();
    let pairs: Option<BTreeMap<String, String>> =
        member.split("__").map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    pairs.filter(|p| !p.is_empty()).unwrap_or_else(|| BTreeMap::from([("member".to_string(), member)]))
}

/// One figure of several `eigenvalues` artifacts (e.g. every member of a sweep): the top 120
/// (`kind` "top", default) or the negative part in % of P ("negative") of each, labelled by
/// its member directory's sweep values, as small multiples past six lines.
pub fn overlay_figure(paths: &[std::path::PathBuf], o: &ReplotOptions) -> Result<Figure, String> {
    let negative = match o.kind.as_deref() {
        None | Some("top") => false,
        Some("negative") => true,
        Some(k) => return Err(format!("--overlay draws `top` or `negative`, not `{k}`")),
    };
    let mut lines = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for p in paths {
        if port_of(p) != Eigenvalues::NAME {
            return Err(format!("{}: --overlay takes `eigenvalues` artifacts", p.display()));
        }
        let ev = Eigenvalues::decode(&read_artifact(p, None).map_err(|e| e.to_string())?).map_err(|e| format!("{}: {e}", p.display()))?;
        let points = if negative {
            spectra::negative_points(&ev.values, ev.info.dim.max(ev.values.len()))
        } else {
            ev.values.iter().take(120).enumerate().map(|(i, &v)| (i as f64, v)).collect()
        };
        let labels = member_labels(p);
        for k in labels.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        lines.push(Line { labels, series: Series { name: String::new(), points, mark: Mark::Line, band: Vec::new() } });
    }
    // Keys with one value across the files say nothing about the lines.
    keys.retain(|k| lines.iter().map(|l| l.labels.get(k)).collect::<std::collections::BTreeSet<_>>().len() > 1);
    for k in &o.panels {
        if !keys.contains(k) {
            return Err(format!("--panels {k}: not a key that varies across the files; they vary in {keys:?}"));
        }
    }
    let pk = panel_keys(&lines, &keys, &o.panels);
    let (title, axes) = if negative {
        ("Negative eigenvalues", ("rank from the smallest, % of P", "eigenvalue"))
    } else {
        ("Top eigenvalues", ("rank", "eigenvalue"))
    };
    Ok(overlay(title, axes, lines, &keys, &pk, &Plain, o.y_scale))
}

/// The figures of the artifact at `path` (its port is its file name: `eigenvalues.parquet`).
pub fn figures(path: &Path, o: &ReplotOptions) -> Result<Vec<(String, Figure)>, String> {
    let port = port_of(path);
    let artifact = read_artifact(path, None).map_err(|e| e.to_string())?;
    let e = |m: hesslab_pipeline::StageError| format!("{}: {m}", path.display());
    let mut figs: Vec<(&'static str, Figure)> = match port.as_str() {
        "eigenvalues" => {
            let ev = Eigenvalues::decode(&artifact).map_err(e)?;
            let view = spectra::SpectrumView {
                desc: &ev.values,
                dim: ev.info.dim.max(ev.values.len()),
                which: ev.info.which.as_deref(),
                zero_tol: spectra::DEFAULT_ZERO_TOL,
            };
            spectra::eigenvalue_figures(&view, None)
        }
        "density" => {
            let d = Density::decode(&artifact).map_err(e)?;
            let mut v = vec![("density", spectra::density_figure(&d.x, &d.density, None))];
            let nodes = path.with_file_name("nodes.parquet");
            if nodes.exists() {
                v.extend(figures(&nodes, &ReplotOptions { kind: None, ..o.clone() })?.into_iter().map(|(_, f)| ("negative", f)));
            }
            v
        }
        "nodes" => {
            let n = Nodes::decode(&artifact).map_err(e)?;
            spectra::slq_negative_figure(&n.rows.iter().map(|r| (r.node, r.weight)).collect::<Vec<_>>(), n.probes())
                .map(|f| ("negative", f))
                .into_iter()
                .collect()
        }
        "rank_spread" => rank_spread_figures(&RankSpread::decode(&artifact).map_err(e)?, o),
        "log" => {
            let log = Log::decode(&artifact).map_err(e)?;
            crate::stages::training_curves::figures(&crate::stages::training_curves::rows(&log), None)
        }
        "curve" => {
            let c = Curve::decode(&artifact).map_err(e)?;
            crate::stages::interpolate::figures(&c.points, c.mode == "line")
        }
        "ensemble" => {
            let ens = Ensemble::decode(&artifact).map_err(e)?;
            let top: Vec<f64> = ens.members.iter().filter_map(|m| m.top.first().copied()).collect();
            vec![("top_histogram", Figure::single(crate::stages::init_ensemble::histogram(&top)))]
        }
        other => {
            let known: Vec<&str> = PLOTTABLE.iter().map(|p| p.0).collect();
            return Err(format!("{}: no figures for `{other}` artifacts; `hesslab plot` draws {}", path.display(), known.join(", ")));
        }
    };
    if o.y_scale != YScale::Auto {
        for (_, f) in &mut figs {
            f.panels.iter_mut().for_each(|p| p.y_scale = o.y_scale);
        }
    }
    if let Some(k) = &o.kind {
        let names: Vec<&str> = figs.iter().map(|f| f.0).collect();
        figs.retain(|f| f.0 == k);
        if figs.is_empty() {
            return Err(format!("{}: no figure `{k}`; this artifact gives {}", path.display(), names.join(", ")));
        }
    }
    // Blank axes are not a figure: say that there is nothing to draw.
    let drawable = |f: &Figure| {
        f.panels.iter().any(|p| {
            p.series.iter().any(|s| s.points.iter().any(|(x, y)| x.is_finite() && y.is_finite()))
                || p.cells.iter().any(|c| c.0.is_finite() && c.1.is_finite() && c.2.is_finite())
        })
    };
    let blank: Vec<&str> = figs.iter().filter(|(_, f)| !drawable(f)).map(|f| f.0).collect();
    if !blank.is_empty() && blank.len() == figs.len() {
        return Err(format!(
            "{}: nothing to draw in {}: the artifact holds no finite values to plot (NaN, infinite or empty)",
            path.display(),
            blank.join(", ")
        ));
    }
    figs.retain(|(_, f)| drawable(f));
    Ok(figs.into_iter().map(|(n, f)| (n.to_string(), f)).collect())
}
