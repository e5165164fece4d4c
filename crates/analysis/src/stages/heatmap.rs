//! `heatmap`: a dense matrix as an image.
use hesslab_artifacts::Matrix;
use hesslab_pipeline::{Estimate, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::estimates::dense_estimate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `heatmap`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HeatmapParams {
    /// Image side in pixels (large matrices are shown by block maxima).
    pub size: u32,
}
impl Default for HeatmapParams {
    fn default() -> Self {
        HeatmapParams { size: 800 }
    }
}

/// The `heatmap` stage kind.
pub struct Heatmap;

impl StageKind for Heatmap {
    type Params = HeatmapParams;
    const KIND: &'static str = "heatmap";
    /// 2: the PNG is a figure (title, axes, colour key), not the bare raster.
    const VERSION: u32 = 2;
    const DOC: &'static str = "Heat map of a dense matrix (S16 Fig 5): |entry| on a log scale over 8 decades, red positive, blue negative.";
    const INPUTS: &'static [PortSpec] = &[port::<Matrix>()];
    const OUTPUTS: &'static [PortSpec] = &[PortSpec::files("heatmap.png/svg")];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        if p.size > crate::plots::MAX_HEATMAP_SIDE {
            vec![("size".into(), format!("size must be ≤ {} pixels", crate::plots::MAX_HEATMAP_SIDE))]
        } else {
            vec![]
        }
    }
    fn estimate(p: &Self::Params, inputs: &InputFacts) -> Option<Estimate> {
        let dim = inputs.get(Matrix::NAME)?.dim?;
        let side = p.size as u64;
        Some(dense_estimate(dim).plus(Estimate { bytes: side * side * 3, what: "image".into() }))
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let m = ctx.read::<Matrix>(Matrix::NAME)?;
        let (rgb, side) = hesslab_figures::heatmap_rgb(&m.dense.matrix, p.size).map_err(StageError::msg)?;
        let raster = hesslab_figures::encode_png(&rgb, side, side).map_err(StageError::msg)?;
        let title = format!("{} ({} × {})", m.dense.operator, m.dense.matrix.nrows(), m.dense.matrix.ncols());
        ctx.write_file("heatmap.svg", hesslab_figures::heatmap_svg(&raster, side, &title).as_bytes())?;
        // The PNG is a figure too: title, axes and colour key around the raster.
        let png = hesslab_figures::heatmap_figure_png(&rgb, side, m.dense.matrix.nrows(), &title).map_err(StageError::msg)?;
        ctx.write_file("heatmap.png", &png)?;
        Ok(())
    }
}
