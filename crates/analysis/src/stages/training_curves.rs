//! `training_curves`: loss and accuracy over steps, phases of a continued run on one axis.
use crate::plots::Plot;
use hesslab_artifacts::Log;
use hesslab_pipeline::{Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::WriteFigure;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const CONTINUED: PortSpec = port::<Log>().renamed("continued").optional();

/// Parameters of `training_curves`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CurvesParams {}

/// The `training_curves` stage kind.
pub struct TrainingCurves;

impl StageKind for TrainingCurves {
    type Params = CurvesParams;
    const KIND: &'static str = "training_curves";
    const DOC: &'static str = "Train/test loss and accuracy over steps; with `continued` (the log of a run that used init_from), both phases on one axis with the switch marked (S18 Fig 7).";
    const INPUTS: &'static [PortSpec] = &[port::<Log>(), CONTINUED];
    const OUTPUTS: &'static [PortSpec] = &[PortSpec::files(
        "plots only (loss.png/svg, accuracy.png/svg; with sharpness tracking sharpness.png/svg, and preconditioned_sharpness.png/svg for adaptive optimizers)",
    )];
    fn run(_: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let read = |port: &str| -> Result<Option<Vec<[f64; 5]>>, StageError> {
            let Some(log) = ctx.read_opt::<Log>(port)? else {
                return Ok(None);
            };
            Ok(Some(rows(&log)))
        };
        let mut rows = read(Log::NAME)?.unwrap_or_default();
        let switch = rows.last().map(|r| r[0]);
        let cont = read(CONTINUED.name)?;
        if let Some(c) = &cont {
            rows.extend(c.iter().filter(|r| Some(r[0]) != switch).copied());
        }
        for (name, fig) in figures(&rows, switch.filter(|_| cont.is_some())) {
            fig.write(ctx, name)?;
        }
        if let Some(log) = ctx.read_opt::<Log>(Log::NAME)?
            && !log.metrics.sharpness.is_empty()
        {
            sharpness_figure(&log).write(ctx, "sharpness")?;
            if !log.metrics.preconditioned_sharpness.is_empty() {
                preconditioned_figure(&log).write(ctx, "preconditioned_sharpness")?;
            }
        }
        Ok(())
    }
}

/// Sharpness against step with the stability threshold 2/η of gradient descent (Cohen et al.
/// 2021: full-batch GD drives the sharpness up to it and then hovers there).
pub fn sharpness_figure(log: &Log) -> Plot {
    let pts: Vec<(f64, f64)> = log.metrics.sharpness.iter().map(|s| (s.0 as f64, s.1)).collect();
    let mut p = Plot::new("Sharpness (top Hessian eigenvalue) along training", "step", "sharpness").line("sharpness", pts);
    if let Some(lr) = log.lr {
        p = p.hline(2.0 / lr, &format!("2/η = {}", (2e4 / lr).round() / 1e4));
    }
    p
}

/// The preconditioned sharpness against step with its stability threshold (2 + 2β₁)/((1 − β₁)η)
/// (Cohen et al. 2022: full-batch Adam drives it up to the threshold and then hovers there).
pub fn preconditioned_figure(log: &Log) -> Plot {
    let m = &log.metrics;
    let pts: Vec<(f64, f64)> = m.preconditioned_sharpness.iter().map(|s| (s.0 as f64, s.1)).collect();
    let mut p = Plot::new("Preconditioned sharpness (top eigenvalue of P⁻¹H) along training", "step", "preconditioned sharpness")
        .line("preconditioned sharpness", pts);
    if let Some(t) = m.preconditioned_threshold {
        p = p.hline(t, &format!("threshold (2 + 2β₁)/((1 − β₁)η) = {}", (t * 1e2).round() / 1e2));
    }
    p
}

/// One row per logged step: step, train loss, test loss, train accuracy, test accuracy.
pub fn rows(log: &Log) -> Vec<[f64; 5]> {
    let m = &log.metrics;
    (0..m.step.len()).map(|r| [m.step[r] as f64, m.train_loss[r], m.test_loss[r], m.train_acc[r], m.test_acc[r]]).collect()
}

/// Loss and accuracy over steps from rows (step, train loss, test loss, train accuracy, test
/// accuracy), with the phase switch marked when there is one (S18 Fig 7).
pub fn figures(rows: &[[f64; 5]], switch: Option<f64>) -> Vec<(&'static str, hesslab_figures::Figure)> {
    let mut out = Vec::new();
    for (name, (a, b), ylabel) in [("loss", (1, 2), "loss"), ("accuracy", (3, 4), "accuracy")] {
        let mut p = Plot::new(&format!("Training {name}"), "step", ylabel)
            .line(&format!("train {name}"), rows.iter().map(|r| (r[0], r[a])).collect())
            .line(&format!("test {name}"), rows.iter().map(|r| (r[0], r[b])).collect());
        if let Some(s) = switch {
            p = p.vline(s, "switch (phase I → II)");
        }
        out.push((name, hesslab_figures::Figure::single(p)));
    }
    out
}
