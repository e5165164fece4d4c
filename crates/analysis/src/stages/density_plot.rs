//! `density_plot`: an SLQ density, with the exact eigenvalues overlaid when connected.
use crate::plots::Plot;
use hesslab_artifacts::{Density, Eigenvalues};
use hesslab_pipeline::{Port, PortSpec, StageContext, StageError, StageKind, port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `density_plot`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DensityPlotParams {}

/// The `density_plot` stage kind.
pub struct DensityPlot;

impl StageKind for DensityPlot {
    type Params = DensityPlotParams;
    const KIND: &'static str = "density_plot";
    const DOC: &'static str =
        "Plot an SLQ spectral density, with the exact eigenvalue distribution (histogram) overlaid when `eigenvalues` are connected.";
    const INPUTS: &'static [PortSpec] = &[port::<Density>(), port::<Eigenvalues>().optional()];
    const OUTPUTS: &'static [PortSpec] = &[PortSpec::files("density.png/svg")];
    fn run(_: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let d = ctx.read::<Density>(Density::NAME)?;
        let (x, y) = (d.x, d.density);
        if x.len() < 2 {
            return Err(StageError::msg(format!("the density has {} grid points; at least 2 are needed to plot it", x.len())));
        }
        let mut plot = Plot::new("Spectral density (SLQ)", "eigenvalue", "log10 density")
            .line("SLQ", x.iter().zip(&y).map(|(a, b)| (*a, (b.max(1e-12)).log10())).collect());
        if let Some(eigenvalues) = ctx.read_opt::<Eigenvalues>(Eigenvalues::NAME)? {
            let ev = eigenvalues.values;
            let (lo, hi) = (x[0], x[x.len() - 1]);
            let bins = 80;
            let w = (hi - lo) / bins as f64;
            let c = crate::plots::bin_counts(ev.iter().copied().filter(|&v| v < hi), lo, w, bins);
            let n = ev.len() as f64;
            plot = plot.points(
                "exact (histogram)",
                c.iter()
                    .enumerate()
                    .filter(|(_, k)| **k > 0)
                    .map(|(i, k)| (lo + (i as f64 + 0.5) * w, (*k as f64 / (n * w)).log10()))
                    .collect(),
            );
        }
        plot.write(ctx, "density")
    }
}
