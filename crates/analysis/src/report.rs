//! One self-contained HTML page per pipeline run: plots inline (base64 PNG), summary tables,
//! the resolved pipeline TOML and the stage timings from the lock file. Openable offline.
use std::path::{Path, PathBuf};

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Every file under `dir`, sorted, hidden ones left out.
pub(crate) fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        v.sort();
        for p in v {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// A figure's caption: its file, member, stage, kind and parameters (from the lock file), so a
/// figure cut out of the report still says what it shows.
fn caption(lock: &hesslab_pipeline::LockFile, section: &str, rel: &str) -> String {
    let Some((member, stage)) = section.rsplit_once('/') else { return esc(rel) };
    let Some(entry) = lock.stages.get(section) else { return esc(rel) };
    let mut params = relevant(&entry.kind, &entry.params).to_string();
    if params.chars().count() > 400 {
        params = format!("{}…", params.chars().take(400).collect::<String>());
    }
    format!(
        "<b>{}</b> — member <code>{}</code>, stage <code>{}</code> (kind <code>{}</code> v{}, seed {})<br><small>parameters: <code>{}</code></small>",
        esc(rel.rsplit('/').next().unwrap_or(rel)),
        esc(member),
        esc(stage),
        esc(&entry.kind),
        entry.kind_version,
        entry.seed,
        esc(&params)
    )
}

/// The parameters that applied to what the stage did: a dense eigensolve's caption does not
/// list the iterative solvers' `tol`, `max_iter`, `max_dim`, `max_seconds` (nor `k` and
/// `which` unless it was `partial`).
fn relevant(kind: &str, params: &serde_json::Value) -> serde_json::Value {
    let mut p = params.clone();
    // `solver = "dense"` or tagged, `solver = { dense = { … } }`.
    let solver = p.get("solver").cloned().unwrap_or_default();
    let tagged = solver.get("dense");
    if kind == "eigenvalues"
        && (solver.as_str() == Some("dense") || tagged.is_some())
        && let Some(m) = p.as_object_mut()
    {
        let flag = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_bool()).unwrap_or(false);
        let partial = flag(m.get("partial")) || flag(tagged.and_then(|t| t.get("partial")));
        for key in ["tol", "max_iter", "max_dim", "max_seconds"] {
            m.remove(key);
        }
        if !partial {
            m.remove("k");
            m.remove("which");
        }
    }
    p
}

/// Write the report of a planned run: [`write_report`] with the figures of an `eigenvalues`
/// stage left out where a `spectrum_summary` of its eigenvalues draws the same spectrum again
/// (with its outlier cutoff), so that each spectrum is shown once.
/// Returns the page's path and the results it shows (what `run` prints last, read once).
pub fn write_plan_report(plan: &hesslab_pipeline::Plan) -> std::io::Result<(PathBuf, crate::results::Results)> {
    let mut redrawn = std::collections::BTreeSet::new();
    // Only where the summary draws (plots = false draws nothing, and then the eigenvalue
    // stage's figures are the only ones).
    let draws = |i: &&hesslab_pipeline::PlannedInstance| i.params.get("plots").and_then(|v| v.as_bool()) != Some(false);
    for i in plan.instances.iter().filter(|i| i.kind.kind() == "spectrum_summary").filter(draws) {
        for up in i.inputs.values().flatten().map(|r| &plan.instances[r.instance]) {
            if up.kind.kind() == "eigenvalues" {
                redrawn.extend(up.members.iter().map(|m| format!("{m}/{}", up.stage)));
            }
        }
    }
    let results = crate::results::collect(&plan.out_dir);
    let path = report(&plan.out_dir, &plan.file.name, &plan.file.description, &plan.file.source, &redrawn, &results)?;
    Ok((path, results))
}

/// Write `<out_dir>/report.html` for a finished run; returns its path.
pub fn write_report(out_dir: &Path, name: &str, description: &str, source: &str) -> std::io::Result<PathBuf> {
    report(out_dir, name, description, source, &Default::default(), &crate::results::collect(out_dir))
}

/// The order of a stage's figures by what they show: the whole spectrum, its top, its negative
/// part, its histogram, then any other figure by name.
fn figure_rank(path: &Path) -> (usize, String) {
    const ORDER: [&str; 4] = ["spectrum", "top", "negative", "histogram"];
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    (ORDER.iter().position(|o| *o == stem).unwrap_or(ORDER.len()), stem.to_string())
}

fn report(
    out_dir: &Path,
    name: &str,
    description: &str,
    source: &str,
    redrawn: &std::collections::BTreeSet<String>,
    results: &crate::results::Results,
) -> std::io::Result<PathBuf> {
    let mut files = Vec::new();
    walk(out_dir, &mut files);
    // Within a directory, figures by what they show (the walk sorts by name: histogram first).
    files.sort_by(|a, b| a.parent().cmp(&b.parent()).then_with(|| figure_rank(a).cmp(&figure_rank(b))));
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>hesslab: {n}</title><style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}img{{max-width:100%;border:1px solid #ddd}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body><h1>Pipeline <code>{n}</code></h1><p>{d}</p>",
        n = esc(name),
        d = esc(description)
    );
    // What the run found, in words, before any figure.
    if !results.warnings.is_empty() {
        html.push_str("<h2>Warnings</h2><ul style=\"color:#a00\">");
        for w in &results.warnings {
            html.push_str(&format!("<li><code>{}</code>: {}</li>", esc(&w.place), esc(&w.text)));
        }
        html.push_str("</ul>");
    }
    if !results.lines.is_empty() {
        html.push_str("<h2>Results</h2><table><tr><th>member/stage</th><th>result</th></tr>");
        for l in &results.lines {
            html.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(&l.place), esc(&l.text)));
        }
        html.push_str("</table>");
    }
    // Timings from the lock file.
    let lock = hesslab_pipeline::LockFile::load(out_dir);
    if !lock.stages.is_empty() {
        html.push_str("<h2>Stages</h2><table><tr><th>member/stage</th><th>kind</th><th>seconds</th></tr>");
        for (k, e) in &lock.stages {
            html.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{:.2}</td></tr>", esc(k), esc(&e.kind), e.seconds));
        }
        html.push_str("</table>");
    }
    let mut current = String::new();
    for f in &files {
        let rel = f.strip_prefix(out_dir).unwrap_or(f).display().to_string();
        let section = Path::new(&rel).parent().map(|p| p.display().to_string()).unwrap_or_default();
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "png" | "md") {
            continue;
        }
        if section != current {
            html.push_str(&format!("<h2>{}</h2>", esc(&section)));
            if redrawn.contains(&section) {
                html.push_str("<p><small>The figures of these eigenvalues are shown with their summary (the same spectrum, with its outlier cutoff).</small></p>");
            }
            current = section;
        }
        if ext == "png" && redrawn.contains(&current) {
            continue;
        }
        match ext {
            "png" => {
                if let Ok(b) = std::fs::read(f) {
                    html.push_str(&format!(
                        "<figure><img alt=\"{r}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
                        base64(&b),
                        caption(&lock, &current, &rel),
                        r = esc(&rel)
                    ));
                }
            }
            "md" => {
                if let Ok(t) = std::fs::read_to_string(f) {
                    html.push_str("<table>");
                    for line in t.lines().filter(|l| l.starts_with('|') && !l.starts_with("|---")) {
                        html.push_str("<tr>");
                        for c in line.trim_matches('|').split('|') {
                            html.push_str(&format!("<td>{}</td>", esc(c.trim())));
                        }
                        html.push_str("</tr>");
                    }
                    html.push_str("</table>");
                }
            }
            _ => {}
        }
    }
    html.push_str("<h2>Artifacts</h2><ul>");
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "parquet")) {
        let rel = f.strip_prefix(out_dir).unwrap_or(f).display().to_string();
        html.push_str(&format!("<li><a href=\"{r}\">{r}</a></li>", r = esc(&rel)));
    }
    html.push_str(&format!("</ul><h2>Pipeline definition</h2><pre>{}</pre></body></html>", esc(source)));
    let path = out_dir.join("report.html");
    hesslab_pipeline::write_file_atomic(&path, html.as_bytes()).map_err(std::io::Error::other)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn a_dense_caption_drops_the_iterative_settings_in_either_solver_form() {
        let flat = serde_json::json!({"solver": "dense", "tol": 1e-10, "k": 20, "which": "largest", "vectors": 0});
        let tagged = serde_json::json!({"solver": {"dense": {}}, "tol": 1e-10, "k": 20, "which": "largest", "vectors": 0});
        for p in [flat, tagged] {
            let r = super::relevant("eigenvalues", &p);
            assert!(r.get("tol").is_none() && r.get("k").is_none() && r.get("vectors").is_some(), "{r}");
        }
        let partial = serde_json::json!({"solver": {"dense": {"partial": true}}, "tol": 1e-10, "k": 6});
        let r = super::relevant("eigenvalues", &partial);
        assert!(r.get("tol").is_none() && r.get("k").is_some(), "{r}");
        let lanczos = serde_json::json!({"solver": {"lanczos": {"k": 5}}, "tol": 1e-10});
        assert!(super::relevant("eigenvalues", &lanczos).get("tol").is_some());
    }
}
