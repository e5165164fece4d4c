//! Plots (PNG and SVG) with plotters.
use crate::Summary;
use hesslab_pipeline::{StageContext, StageError};

pub fn spectrum_plots(
    _ctx: &StageContext,
    _desc: &[f64],
    _dim: usize,
    _s: &Summary,
) -> Result<(), StageError> {
    Ok(())
}
