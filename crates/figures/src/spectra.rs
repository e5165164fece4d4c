//! The default figures of spectra: ordered eigenvalues, the top of the spectrum, the negative
//! part against rank in % of P (S18 Figs 5–6), the histogram as bars on a log count axis
//! (S16 Fig 1), and SLQ densities on a log density axis with the exact histogram overlaid.
use crate::{Figure, Plot, YScale, bin_counts};

/// Bins of the eigenvalue histograms.
pub const HISTOGRAM_BINS: usize = 100;

/// Descending eigenvalues of an operator of dimension `dim`, as far as a solver returned them.
pub struct SpectrumView<'a> {
    /// The eigenvalues, descending.
    pub desc: &'a [f64],
    /// The operator's dimension P (desc.len() for a full spectrum).
    pub dim: usize,
    /// Which end a partial spectrum comes from ("largest" or "smallest"); None: full.
    pub which: Option<&'a str>,
    /// `spectrum_summary`'s zero tolerance: |λ| ≤ zero_tol·max|λ| counts as zero, so its
    /// `negative` counts λ < −zero_tol·max|λ| — the negative figure says both counts.
    pub zero_tol: f64,
}

/// `spectrum_summary`'s default zero tolerance (figures drawn without a summary use it).
pub const DEFAULT_ZERO_TOL: f64 = 1e-6;

impl SpectrumView<'_> {
    fn full(&self) -> bool {
        self.desc.len() >= self.dim
    }
}

/// The whole negative part against rank from the smallest, in % of P (S18 Figs 5–6).
pub fn negative_points(desc: &[f64], dim: usize) -> Vec<(f64, f64)> {
    let p = dim.max(1) as f64;
    desc.iter().rev().take_while(|&&v| v < 0.0).enumerate().map(|(i, &v)| (100.0 * i as f64 / p, v)).collect()
}

/// Nodes closer to zero than this fraction of the largest |node| count as zero: SLQ puts the
/// huge near-zero cluster of a Hessian on a few Ritz values of either sign at ~1e-7 of the
/// top, and their sign says nothing.
pub const SLQ_ZERO_RELATIVE: f64 = 1e-6;

/// The negative part from SLQ quadrature: the nodes (Ritz values) of every probe pooled with
/// their weights / probes, sorted ascending; the cumulative weight below a node estimates the
/// fraction of eigenvalues below it. Points (100 × cumulative weight, node) while nodes are
/// below −[`SLQ_ZERO_RELATIVE`] × max |node|. Coarse: each node stands for many eigenvalues;
/// it resolves the negative mass, not each eigenvalue. `nodes` are (node, weight) of every probe.
pub fn negative_points_from_nodes(nodes: &[(f64, f64)], probes: usize) -> Vec<(f64, f64)> {
    let top = nodes.iter().map(|r| r.0.abs()).fold(0.0f64, f64::max);
    let mut nodes: Vec<(f64, f64)> =
        nodes.iter().filter(|r| r.0 < -SLQ_ZERO_RELATIVE * top).map(|r| (r.0, r.1 / probes.max(1) as f64)).collect();
    nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut cum = 0.0;
    nodes
        .into_iter()
        .map(|(v, w)| {
            let at = 100.0 * cum;
            cum += w;
            (at, v)
        })
        .collect()
}

/// The figure of [`negative_points_from_nodes`]; None when no node is clearly negative.
pub fn slq_negative_figure(nodes: &[(f64, f64)], probes: usize) -> Option<Figure> {
    let neg = negative_points_from_nodes(nodes, probes);
    (!neg.is_empty()).then(|| {
        Figure::single(
            Plot::new("Negative part from SLQ (nodes below −1e-6·λ₁)", "rank from the smallest, % of P", "eigenvalue").line("", neg),
        )
    })
}

/// Histogram of `values` as (bin centre, count) over [min, max] in `bins` bins; empty bins have
/// count 0 (drawn as no bar).
pub fn histogram(values: &[f64], bins: usize) -> Vec<(f64, f64)> {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !lo.is_finite() || bins == 0 {
        return Vec::new();
    }
    let w = ((hi - lo) / bins as f64).max(f64::MIN_POSITIVE);
    bin_counts(values.iter().copied(), lo, w, bins).iter().enumerate().map(|(i, &c)| (lo + (i as f64 + 0.5) * w, c as f64)).collect()
}

/// The figures of one set of eigenvalues: name → figure. `cutoff` (value, outlier count) marks
/// the outlier cutoff on the top figure.
pub fn eigenvalue_figures(s: &SpectrumView, cutoff: Option<(f64, usize)>) -> Vec<(&'static str, Figure)> {
    let n = s.desc.len();
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    if s.full() {
        out.push((
            "spectrum",
            Figure::single(
                Plot::new(&format!("Ordered eigenvalues (P = {})", s.dim), "rank", "eigenvalue")
                    .points("", s.desc.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect()),
            ),
        ));
    }
    if s.which != Some("smallest") {
        let top = n.min(120);
        let title = match cutoff {
            Some((_, k)) => format!("Top {top} eigenvalues ({k} outliers above the cutoff)"),
            None => format!("Top {top} eigenvalues"),
        };
        let mut p =
            Plot::new(&title, "rank", "eigenvalue").line("", s.desc[..top].iter().enumerate().map(|(i, &v)| (i as f64, v)).collect());
        if let Some((c, _)) = cutoff {
            p = p.hline(c, &format!("heuristic cutoff {c:.2e}"));
        }
        out.push(("top", Figure::single(p)));
    }
    let neg = negative_points(s.desc, s.dim);
    if !neg.is_empty() {
        let maxabs = s.desc.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        let beyond = s.desc.iter().filter(|&&x| x < -s.zero_tol * maxabs).count();
        let of = if s.full() { format!("{} of P = {}", neg.len(), s.dim) } else { format!("the {} returned of P = {}", neg.len(), s.dim) };
        // Two counts, both said: every λ < 0 is drawn; the summary counts those beyond its tolerance.
        let what = format!("{of} below 0; {beyond} below −{:e}·max|λ|", s.zero_tol);
        out.push((
            "negative",
            Figure::single(
                Plot::new(&format!("Negative eigenvalues ({what})"), "rank from the smallest, % of P", "eigenvalue").line("", neg),
            ),
        ));
    }
    if s.full() && n > 1 {
        out.push((
            "histogram",
            Figure::single(
                Plot::new(&format!("Eigenvalue histogram ({HISTOGRAM_BINS} bins)"), "eigenvalue", "count")
                    .bars("", histogram(s.desc, HISTOGRAM_BINS))
                    .y_scale(YScale::Log),
            ),
        ));
    }
    out
}

/// An SLQ density on a log density axis (PyHessian's view), with the exact eigenvalues'
/// histogram overlaid as density-normalized bars when they are known.
pub fn density_figure(x: &[f64], density: &[f64], exact: Option<&[f64]>) -> Figure {
    let peak = density.iter().copied().fold(0.0f64, f64::max);
    // Gaussian tails run to 1e-300; ten decades below the peak is all a reader can use. Below
    // that the line stops (a gap between parts of the spectrum is a gap), rather than running
    // flat along the floor.
    let floor = peak * 1e-10;
    let shown: Vec<(f64, f64)> = x.iter().zip(density).map(|(a, b)| (*a, if *b >= floor { *b } else { f64::NAN })).collect();
    let mut p = Plot::new("Spectral density (SLQ)", "eigenvalue", "density").y_scale(YScale::Log);
    if let Some(ev) = exact.filter(|e| !e.is_empty() && x.len() > 1) {
        let (lo, hi) = (x[0], x[x.len() - 1]);
        let bins = 80;
        let w = (hi - lo) / bins as f64;
        let c = bin_counts(ev.iter().copied().filter(|&v| v <= hi), lo, w, bins);
        let n = ev.len() as f64;
        p = p.bars(
            "exact eigenvalues (histogram)",
            c.iter().enumerate().map(|(i, k)| (lo + (i as f64 + 0.5) * w, *k as f64 / (n * w))).collect(),
        );
    }
    Figure::single(p.line("SLQ", shown))
}
