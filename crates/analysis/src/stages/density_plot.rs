//! `density_plot`: an SLQ density, with the exact eigenvalues overlaid when connected.
use hesslab_artifacts::{Density, Eigenvalues};
use hesslab_pipeline::{Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::WriteFigure;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `density_plot`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DensityPlotParams {
    /// The density axis: "auto" (log, PyHessian's view: the bulk's peak and the outliers'
    /// bumps are decades apart), "linear", "log" or "symlog".
    pub y_scale: super::ScaleParam,
}

/// The `density_plot` stage kind.
pub struct DensityPlot;

impl StageKind for DensityPlot {
    type Params = DensityPlotParams;
    const KIND: &'static str = "density_plot";
    const DOC: &'static str = "Plot an SLQ spectral density on a log density axis, with the exact eigenvalues' histogram overlaid as bars when `eigenvalues` are connected.";
    const INPUTS: &'static [PortSpec] = &[port::<Density>(), port::<Eigenvalues>().optional()];
    const OUTPUTS: &'static [PortSpec] = &[PortSpec::files("density.png/svg")];
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let d = ctx.read::<Density>(Density::NAME)?;
        let (x, y) = (d.x, d.density);
        if x.len() < 2 {
            return Err(StageError::msg(format!("the density has {} grid points; at least 2 are needed to plot it", x.len())));
        }
        let exact = ctx.read_opt::<Eigenvalues>(Eigenvalues::NAME)?.map(|e| e.values);
        let mut fig = hesslab_figures::spectra::density_figure(&x, &y, exact.as_deref());
        if p.y_scale != super::ScaleParam::Auto {
            fig.panels[0].y_scale = p.y_scale.scale();
        }
        fig.write(ctx, "density")
    }
}
