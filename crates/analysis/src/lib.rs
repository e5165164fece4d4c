//! Analysis of spectra and training runs: summaries and outlier counts, sweep comparisons,
//! Gauss-Newton/residual decomposition, class structure, interpolation, plots and reports.
#![warn(missing_docs)]
pub mod bulk;
pub mod outliers;
pub mod plots;
pub mod replicates;
pub mod replot;
pub mod report;
pub mod results;
pub mod small_multiples;
mod spectrum;
pub mod stages;

pub use outliers::{OutlierCounts, count_outliers, elbow_cutoff};
pub use spectrum::{SummaryParams, marchenko_pastur_density, subspace_overlap, summarize};
pub use stages::{
    ClassStructure, Compare, Decomposition, DensityPlot, Heatmap, InitEnsemble, Interpolate, LineSpread, MarchenkoPastur,
    SpectraAlongTraining, SpectrumSummary, TrainingCurves,
};

/// Register every analysis stage kind.
pub fn register(r: &mut hesslab_pipeline::Registry) {
    r.add::<SpectrumSummary>();
    r.add::<Compare>();
    r.add::<Decomposition>();
    r.add::<ClassStructure>();
    r.add::<Interpolate>();
    r.add::<LineSpread>();
    r.add::<TrainingCurves>();
    r.add::<Heatmap>();
    r.add::<DensityPlot>();
    r.add::<MarchenkoPastur>();
    r.add::<InitEnsemble>();
    r.add::<SpectraAlongTraining>();
}
