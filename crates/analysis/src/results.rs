//! A run's results said in words: each spectrum summary's key numbers and where each training
//! run ended, with the warnings training left — what `hesslab run` prints last and
//! `report.html` shows first, for every pipeline (not only those with a `compare` stage).
use hesslab_artifacts::{Log, Summary};
use hesslab_pipeline::{Port, read_artifact};
use std::path::Path;

/// One result: where (member/stage) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLine {
    /// `member/stage`, relative to the pipeline's output directory.
    pub place: String,
    /// The numbers, in words.
    pub text: String,
}

/// The results of a pipeline's outputs.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Training runs and spectrum summaries, in directory order.
    pub lines: Vec<ResultLine>,
    /// What training warned about (untrained networks), with their place.
    pub warnings: Vec<ResultLine>,
}

/// The results in `out_dir` (a pipeline's output directory): every `train` log and
/// `spectrum_summary` summary there. Files that do not read are left out (the run that wrote
/// them has already said why).
pub fn collect(out_dir: &Path) -> Results {
    let mut files = Vec::new();
    crate::report::walk(out_dir, &mut files);
    let mut r = Results::default();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name != "log.parquet" && name != "summary.parquet" {
            continue;
        }
        let Ok(a) = read_artifact(&f, None) else { continue };
        let place = f.parent().and_then(|p| p.strip_prefix(out_dir).ok()).map(|p| p.display().to_string()).unwrap_or_default();
        match a.meta("hesslab.kind") {
            Some("train") => {
                let Ok(log) = Log::decode(&a) else { continue };
                let m = &log.metrics;
                let (Some(step), Some(loss), Some(acc)) = (m.step.last(), m.train_loss.last(), m.train_acc.last()) else { continue };
                let test = match m.test_acc.last() {
                    Some(t) if t.is_finite() => format!(", test accuracy {t:.3}"),
                    _ => String::new(),
                };
                r.lines.push(ResultLine {
                    place: place.clone(),
                    text: format!("training loss {loss:.4} and accuracy {acc:.3}{test} at step {step}"),
                });
                if let Some(w) = log.warning {
                    r.warnings.push(ResultLine { place, text: w });
                }
            }
            Some("spectrum_summary") => {
                let Ok(s) = Summary::decode(&a) else { continue };
                let untrained = if s.training_warning.is_some() { " — of a network that looks untrained" } else { "" };
                let s = s.row;
                let of = if s.num_eigenvalues < s.dim {
                    format!("top {} of P = {}", s.num_eigenvalues, s.dim)
                } else {
                    format!("P = {}", s.dim)
                };
                let fixed = s.outliers_fixed.map(|f| format!(", {f} above the fixed cutoff")).unwrap_or_default();
                r.lines.push(ResultLine {
                    place,
                    text: format!(
                        "{of}: largest eigenvalue {:.4}, outliers {} (elbow), {} (gap), {} (ratio){fixed}; {} negative, smallest {:.3e}{untrained}",
                        s.max, s.outliers_heuristic, s.outliers_gap, s.outliers_ratio, s.negative, s.min
                    ),
                });
            }
            _ => {}
        }
    }
    r
}

impl Results {
    /// The block `hesslab run` prints: at most `max_lines` results (the rest counted, in the
    /// report), then every warning.
    pub fn text(&self, max_lines: usize) -> String {
        let mut s = String::new();
        if !self.lines.is_empty() {
            s.push_str("results:\n");
            let width = self.lines.iter().take(max_lines).map(|l| l.place.chars().count()).max().unwrap_or(0);
            for l in self.lines.iter().take(max_lines) {
                s.push_str(&format!("  {:<width$}  {}\n", l.place, l.text));
            }
            if self.lines.len() > max_lines {
                s.push_str(&format!("  … {} more in report.html\n", self.lines.len() - max_lines));
            }
        }
        for w in &self.warnings {
            s.push_str(&format!("warning: {}: {}\n", w.place, w.text));
        }
        s
    }
}
