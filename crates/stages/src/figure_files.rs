//! Figures into a stage's directory. `hesslab-figures` only draws (it returns PNG bytes and SVG
//! text and knows nothing of pipelines); writing them where a stage's outputs go is this
//! adapter's job, so that the figure model builds without the engine.
use hesslab_figures::{Figure, Plot};
use hesslab_pipeline::{StageContext, StageError};

/// Write a figure as `<name>.png` and `<name>.svg` into the stage's directory.
pub trait WriteFigure {
    /// Render and write both files (atomically, with the stage's other outputs).
    fn write(&self, ctx: &StageContext, name: &str) -> Result<(), StageError>;
}

impl WriteFigure for Figure {
    fn write(&self, ctx: &StageContext, name: &str) -> Result<(), StageError> {
        let (png, svg) = self.render().map_err(|m| StageError::msg(format!("figure `{name}`: {m}")))?;
        ctx.write_file(&format!("{name}.png"), &png)?;
        ctx.write_file(&format!("{name}.svg"), svg.as_bytes())?;
        Ok(())
    }
}

impl WriteFigure for Plot {
    fn write(&self, ctx: &StageContext, name: &str) -> Result<(), StageError> {
        Figure::single(self.clone()).write(ctx, name)
    }
}
