//! Sweep overlays as small multiples: one panel per value of one or two sweep keys (columns,
//! rows), at most [`MAX_LINES`] lines per panel, lines labelled by the remaining keys so the
//! same condition has the same colour in every panel and one legend outside the data serves all.
use hesslab_figures::{Figure, Plot, Series, YScale};
use std::collections::BTreeMap;

/// Lines a reader can tell apart in one panel.
pub const MAX_LINES: usize = 6;

/// One line of an overlay: the sweep labels it belongs to, and what to draw.
#[derive(Debug, Clone)]
pub struct Line {
    /// Sweep key → value of the member (or group of replicates) it shows.
    pub labels: BTreeMap<String, String>,
    /// Its points, band and mark (the name is set from the labels).
    pub series: Series,
}

/// How keys and values are written in titles and legends.
pub trait Naming {
    /// The title of a sweep key (e.g. "classes" for "data.classes").
    fn key(&self, key: &str) -> String;
    /// The display text of a value of a key (e.g. "GD" for train.batch_size = 0).
    fn value(&self, key: &str, value: &str) -> String;
}

/// The values of `key` across the lines: in numeric order when they are all numbers (2, 5,
/// 10, not "10", "2", "5"), else in order of first appearance (the sweep's order).
fn distinct(lines: &[Line], key: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in lines {
        let x = l.labels.get(key).cloned().unwrap_or_default();
        if !v.contains(&x) {
            v.push(x);
        }
    }
    let numbers: Option<Vec<f64>> = v.iter().map(|x| x.parse::<f64>().ok()).collect();
    if let Some(n) = numbers {
        let mut pairs: Vec<(f64, String)> = n.into_iter().zip(v).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        v = pairs.into_iter().map(|p| p.1).collect();
    }
    v
}

fn max_per_panel(lines: &[Line], panel_keys: &[&str]) -> usize {
    let mut counts: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for l in lines {
        *counts.entry(panel_keys.iter().map(|k| l.labels.get(*k).cloned().unwrap_or_default()).collect()).or_default() += 1;
    }
    counts.values().copied().max().unwrap_or(0)
}

/// The panel keys: `chosen` when given, none when every line fits in one panel, else the one
/// key (or pair: columns, rows) that brings every panel to at most [`MAX_LINES`] lines with the
/// fewest panels; keys with more values are tried first (S18 Fig 2: one panel per class count).
pub fn panel_keys(lines: &[Line], keys: &[String], chosen: &[String]) -> Vec<String> {
    if !chosen.is_empty() {
        return chosen.to_vec();
    }
    if lines.len() <= MAX_LINES {
        return Vec::new();
    }
    let mut by_values: Vec<&String> = keys.iter().filter(|k| distinct(lines, k).len() > 1).collect();
    by_values.sort_by_key(|k| std::cmp::Reverse(distinct(lines, k).len()));
    let panels = |ks: &[&str]| ks.iter().map(|k| distinct(lines, k).len()).product::<usize>();
    let mut best: Option<(usize, Vec<String>)> = None;
    for (i, a) in by_values.iter().enumerate() {
        let one = [a.as_str()];
        if max_per_panel(lines, &one) <= MAX_LINES {
            if best.as_ref().is_none_or(|b| panels(&one) < b.0) {
                best = Some((panels(&one), vec![a.to_string()]));
            }
            continue;
        }
        for b in &by_values[i + 1..] {
            let two = [a.as_str(), b.as_str()];
            if max_per_panel(lines, &two) <= MAX_LINES && best.as_ref().is_none_or(|x| panels(&two) < x.0) {
                best = Some((panels(&two), vec![a.to_string(), b.to_string()]));
            }
        }
    }
    best.map(|b| b.1).unwrap_or_else(|| by_values.iter().take(2).map(|k| k.to_string()).collect())
}

/// The overlay figure: panels per value of `panel_keys` (first: columns, second: rows), lines
/// named by the other keys in `keys`. Panels share x; they share y when their largest
/// magnitudes are within a factor of 10 (comparable), else each panel has its own y range.
pub fn overlay(
    title: &str,
    (x_label, y_label): (&str, &str),
    lines: Vec<Line>,
    keys: &[String],
    panel_keys: &[String],
    naming: &dyn Naming,
    y_scale: YScale,
) -> Figure {
    let legend_keys: Vec<&String> = keys.iter().filter(|k| !panel_keys.contains(k)).collect();
    // Lines (and so legend entries) in the order of their values, key by key: numbers
    // numerically (2, 5, 10, not "10", "2", "5"), other values as the sweep lists them.
    let mut lines = lines;
    let orders: Vec<Vec<String>> = legend_keys.iter().map(|k| distinct(&lines, k)).collect();
    let rank = |l: &Line| -> Vec<usize> {
        legend_keys.iter().zip(&orders).map(|(k, o)| o.iter().position(|v| Some(v) == l.labels.get(*k)).unwrap_or(usize::MAX)).collect()
    };
    lines.sort_by_cached_key(rank);
    let name = |l: &Line| {
        legend_keys
            .iter()
            .map(|k| {
                let v = naming.value(k, l.labels.get(*k).map(|s| s.as_str()).unwrap_or(""));
                format!("{} {v}", naming.key(k))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if panel_keys.is_empty() {
        let mut p = Plot::new(title, x_label, y_label).y_scale(y_scale);
        for l in &lines {
            let mut s = l.series.clone();
            s.name = if legend_keys.is_empty() { s.name.trim().to_string() } else { format!("{}{}", name(l), s.name) };
            p.series.push(s);
        }
        return Figure::single(p);
    }
    let cols = distinct(&lines, &panel_keys[0]);
    let rows = panel_keys.get(1).map(|k| distinct(&lines, k)).unwrap_or_else(|| vec![String::new()]);
    let mut panels = Vec::new();
    for r in &rows {
        for c in &cols {
            let mut t = format!("{} = {}", naming.key(&panel_keys[0]), naming.value(&panel_keys[0], c));
            if let Some(k) = panel_keys.get(1) {
                t.push_str(&format!(", {} = {}", naming.key(k), naming.value(k, r)));
            }
            let mut p = Plot::new(&t, x_label, y_label).y_scale(y_scale);
            for l in lines
                .iter()
                .filter(|l| l.labels.get(&panel_keys[0]) == Some(c) && panel_keys.get(1).is_none_or(|k| l.labels.get(k) == Some(r)))
            {
                let mut s = l.series.clone();
                s.name = format!("{}{}", name(l), s.name);
                p.series.push(s);
            }
            panels.push(p);
        }
    }
    let peak = |p: &Plot| p.series.iter().flat_map(|s| s.points.iter().map(|q| q.1.abs())).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    let peaks: Vec<f64> = panels.iter().map(peak).filter(|v| *v > 0.0).collect();
    let comparable = peaks.iter().copied().fold(0.0f64, f64::max) <= 10.0 * peaks.iter().copied().fold(f64::INFINITY, f64::min);
    Figure::grid(title, panels).columns(cols.len()).share_y(comparable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hesslab_figures::Mark;

    struct Plain;
    impl Naming for Plain {
        fn key(&self, k: &str) -> String {
            k.rsplit('.').next().unwrap_or(k).to_string()
        }
        fn value(&self, _: &str, v: &str) -> String {
            v.to_string()
        }
    }

    /// The S18 E2 grid: 5 class counts × 2 covariances × 2 activations × 2 algorithms = 40
    /// members, each a descending spectrum whose top k are outliers.
    fn e2_lines() -> (Vec<Line>, Vec<String>) {
        let keys: Vec<String> = ["data.classes", "data.cov_multiplier", "train.activation", "train.batch_size"].map(String::from).to_vec();
        let mut lines = Vec::new();
        for k in [2, 5, 10, 20, 50] {
            for cov in ["1.0", "10.0"] {
                for act in ["relu", "tanh"] {
                    for b in ["0", "32"] {
                        let scale = if cov == "10.0" { 10.0 } else { 1.0 } * if k == 50 { 20.0 } else { 1.0 };
                        let pts = (0..120)
                            .map(|r| (r as f64, if r < k { scale * (1.0 + (k - r) as f64) } else { 1e-3 / (1.0 + r as f64) }))
                            .collect();
                        let labels = keys.iter().cloned().zip([k.to_string(), cov.into(), act.into(), b.into()]).collect();
                        lines
                            .push(Line { labels, series: Series { name: String::new(), points: pts, mark: Mark::Line, band: Vec::new() } });
                    }
                }
            }
        }
        (lines, keys)
    }

    #[test]
    fn e2_grid_is_legible_small_multiples() {
        let (lines, keys) = e2_lines();
        let pk = panel_keys(&lines, &keys, &[]);
        assert_eq!(pk, vec!["data.classes".to_string(), "data.cov_multiplier".to_string()], "one column per k, one row per covariance");
        let fig = overlay("Top eigenvalues", ("rank", "eigenvalue"), lines, &keys, &pk, &Plain, YScale::Auto);
        let layout = fig.layout().unwrap();
        assert_eq!(layout.panels.len(), 10);
        let drawn: usize = layout.panels.iter().map(|p| p.series.len()).sum();
        assert_eq!(drawn, 40, "every member is drawn once");
        for p in &layout.panels {
            assert!(p.series.len() <= MAX_LINES, "{}: {} lines", p.title, p.series.len());
            let mut colors: Vec<_> = p.series.iter().map(|s| s.color).collect();
            colors.sort();
            colors.dedup();
            assert_eq!(colors.len(), p.series.len(), "{}: a colour repeats", p.title);
            for l in &layout.legends {
                assert!(!l.intersects(&p.data_area), "legend {l:?} over the data of {}", p.title);
            }
            // Panels do not overlap one another.
            for q in layout.panels.iter().filter(|q| q.title != p.title) {
                assert!(!q.data_area.intersects(&p.data_area));
            }
        }
        assert_eq!(layout.legends.len(), 1, "one legend serves every panel");
        // The same condition has the same colour in every panel.
        let color_of = |p: &hesslab_figures::PanelLayout, name: &str| p.series.iter().find(|s| s.name == name).map(|s| s.color);
        let first = &layout.panels[0];
        for p in &layout.panels[1..] {
            for s in &first.series {
                assert_eq!(color_of(p, &s.name), Some(s.color), "{}", s.name);
            }
        }
        // The k = 2 panels are not flattened by the k = 50 ones: spans over 3 decades go log.
        assert!(layout.panels.iter().all(|p| p.y_scale.is_logarithmic()));
    }

    #[test]
    fn numeric_panel_values_are_in_numeric_order() {
        let (mut lines, keys) = e2_lines();
        // Files listed by name come as 10, 2, 20, 5, 50.
        lines.sort_by(|a, b| a.labels["data.classes"].cmp(&b.labels["data.classes"]));
        let fig = overlay("t", ("x", "y"), lines, &keys, &["data.classes".to_string()], &Plain, YScale::Auto);
        let titles: Vec<&str> = fig.panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["classes = 2", "classes = 5", "classes = 10", "classes = 20", "classes = 50"]);
        // And in one panel, the legend too (#44: it sorted as text, 10, 2, 5).
        let few: Vec<Line> = {
            let (mut l, _) = e2_lines();
            l.retain(|l| {
                l.labels["data.cov_multiplier"] == "1.0" && l.labels["train.activation"] == "relu" && l.labels["train.batch_size"] == "0"
            });
            l.sort_by(|a, b| a.labels["data.classes"].cmp(&b.labels["data.classes"]));
            l
        };
        let fig = overlay("t", ("x", "y"), few, &["data.classes".to_string()], &[], &Plain, YScale::Auto);
        let names: Vec<&str> = fig.panels[0].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["classes 2", "classes 5", "classes 10", "classes 20", "classes 50"]);
    }

    #[test]
    fn few_lines_stay_in_one_panel_and_chosen_keys_win() {
        let (lines, keys) = e2_lines();
        let few: Vec<Line> = lines.iter().take(4).cloned().collect();
        assert!(panel_keys(&few, &keys, &[]).is_empty());
        let chosen = vec!["train.activation".to_string()];
        assert_eq!(panel_keys(&lines, &keys, &chosen), chosen);
    }
}
