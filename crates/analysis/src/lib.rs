//! Analysis of spectra and training runs: summaries and outlier counts, sweep comparisons,
//! Gauss-Newton/residual decomposition, class structure, interpolation, plots and reports.
pub mod outliers;
pub mod plots;
pub mod report;
mod stages;
mod summary;

pub use outliers::{OutlierCounts, count_outliers, elbow_cutoff};
pub use stages::{
    ClassStructure, Decomposition, DensityPlot, Heatmap, Interpolate, MarchenkoPastur, TrainingCurves, marchenko_pastur_density,
    subspace_overlap,
};
pub use summary::{Compare, SpectrumSummary, Summary, SummaryParams, summarize, summary_port};

pub fn register(r: &mut hesslab_pipeline::Registry) {
    r.add::<SpectrumSummary>();
    r.add::<Compare>();
    r.add::<Decomposition>();
    r.add::<ClassStructure>();
    r.add::<Interpolate>();
    r.add::<TrainingCurves>();
    r.add::<Heatmap>();
    r.add::<DensityPlot>();
    r.add::<MarchenkoPastur>();
}
