//! Plots: the figure model and renderer live in `hesslab-figures`; this module re-exports them
//! and draws the figures of one spectrum summary.
use hesslab_artifacts::SummaryRow;
pub use hesslab_figures::*;
use hesslab_pipeline::{StageContext, StageError};
use hesslab_stages::WriteFigure;

/// The plots of one spectrum (S18 Figs 1–6, S16 Fig 1): ordered, top 120 with the outlier
/// cutoff, the whole negative part in % of P, and the histogram as bars on a log count axis.
pub fn spectrum_plots(ctx: &StageContext, desc: &[f64], dim: usize, which: Option<&str>, s: &SummaryRow) -> Result<(), StageError> {
    let view = spectra::SpectrumView { desc, dim: dim.max(desc.len()), which, zero_tol: s.zero_tol };
    for (name, fig) in spectra::eigenvalue_figures(&view, Some((s.heuristic_cutoff, s.outliers_heuristic as usize))) {
        fig.write(ctx, name)?;
    }
    Ok(())
}
