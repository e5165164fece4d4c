//! Analysis of spectra and training runs: summaries and outlier counts, sweep comparisons,
//! Gauss-Newton/residual decomposition, class structure, interpolation, plots and reports.
pub mod outliers;
pub mod plots;
mod summary;

pub use outliers::{OutlierCounts, count_outliers, elbow_cutoff};
pub use summary::{Compare, SpectrumSummary, Summary, SummaryParams, summarize};

pub fn register(r: &mut hesslab_pipeline::Registry) {
    r.add::<SpectrumSummary>();
    r.add::<Compare>();
}
