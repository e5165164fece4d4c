//! `spectrum_summary`: S18 Table 1 statistics and plots of one spectrum.
use crate::{SummaryParams, summarize};
use hesslab_artifacts::{Eigenvalues, Summary};
use hesslab_pipeline::{Port, PortSpec, StageContext, StageError, StageKind, port};

/// The `spectrum_summary` stage kind.
pub struct SpectrumSummary;

impl StageKind for SpectrumSummary {
    type Params = SummaryParams;
    const KIND: &'static str = "spectrum_summary";
    const VERSION: u32 = 4;
    const DOC: &'static str = "Counts of positive/negative/near-zero eigenvalues, mean/std/min/max, and the outlier count by largest gap, largest ratio and elbow threshold (S18 Table 1); plots of the ordered spectrum, the top eigenvalues, the histogram and the negative tail. On a partial spectrum (Lanczos/power top-k) everything covers the returned eigenvalues only (num_eigenvalues < dim says so).";
    const INPUTS: &'static [PortSpec] = &[port::<Eigenvalues>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Summary>()];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !(p.zero_tol >= 0.0) {
            e.push(("zero_tol".into(), "zero_tol must be ≥ 0".into()));
        }
        if p.top < 2 {
            e.push(("top".into(), "top must be ≥ 2".into()));
        }
        if p.cutoff.is_some_and(|c| !(c > 0.0)) {
            e.push(("cutoff".into(), "cutoff must be > 0".into()));
        }
        if p.fixed_cutoff.is_some_and(|c| !c.is_finite()) {
            e.push(("fixed_cutoff".into(), "fixed_cutoff must be a finite number".into()));
        }
        e
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let ev = ctx.read::<Eigenvalues>(Eigenvalues::NAME)?;
        let desc = ev.values;
        if desc.is_empty() {
            return Err(StageError::msg("the eigenvalues artifact is empty"));
        }
        let dim = if ev.info.dim > 0 { ev.info.dim } else { desc.len() };
        let row = summarize(&desc, dim, p);
        if p.plots {
            crate::plots::spectrum_plots(ctx, &desc, dim, ev.info.which.as_deref(), &row)?;
        }
        let source_solver = ev.info.solver.unwrap_or_default();
        ctx.write::<Summary>(
            Summary::NAME,
            &Summary { row, source_operator: ev.info.operator, source_solver, training_warning: ev.info.training_warning },
        )
    }
}
