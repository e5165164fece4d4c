//! The analysis stage kinds, one file each.
mod class_structure;
mod compare;
mod decomposition;
mod density_plot;
mod heatmap;
pub(crate) mod init_ensemble;
pub(crate) mod interpolate;
mod line_spread;
mod marchenko_pastur;
mod spectra_along_training;
mod spectrum_summary;
pub(crate) mod training_curves;

pub use class_structure::{ClassStructure, ClassStructureParams};
pub use compare::{Compare, CompareParams, OverlayKind, ScaleParam};
pub use decomposition::{Decomposition, DecompositionParams};
pub use density_plot::{DensityPlot, DensityPlotParams};
pub use heatmap::{Heatmap, HeatmapParams};
pub use init_ensemble::{InitEnsemble, InitEnsembleParams};
pub use interpolate::{Interpolate, InterpolateParams};
pub use line_spread::{LineMeasures, LineSpread, LineSpreadParams, t95};
pub use marchenko_pastur::{MarchenkoPastur, MarchenkoPasturParams};
pub use spectra_along_training::{AlongTrainingParams, SpectraAlongTraining};
pub use spectrum_summary::SpectrumSummary;
pub use training_curves::{CurvesParams, TrainingCurves};
