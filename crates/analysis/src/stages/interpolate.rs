//! `interpolate`: loss and accuracy along a line through parameter space.
use crate::plots::Plot;
use hesslab_artifacts::{Curve, CurvePoint, Dataset, Eigenvectors, Model, PairedAccuracy};
use hesslab_model::Network;
use hesslab_pipeline::{Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::WriteFigure;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const MODEL_A: PortSpec = port::<Model>().renamed("model_a");
const MODEL_B: PortSpec = port::<Model>().renamed("model_b").optional();

/// Parameters of `interpolate`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InterpolateParams {
    /// Grid start (α for a line between models, t for a direction).
    pub from: f64,
    /// Grid end.
    pub to: f64,
    /// Grid points.
    pub points: usize,
}
impl Default for InterpolateParams {
    fn default() -> Self {
        InterpolateParams { from: -1.0, to: 2.0, points: 61 }
    }
}

/// The `interpolate` stage kind.
pub struct Interpolate;

impl StageKind for Interpolate {
    type Params = InterpolateParams;
    const KIND: &'static str = "interpolate";
    /// 2: the line mode compares the two models' test accuracy example by example.
    const VERSION: u32 = 2;
    const DOC: &'static str = "Train/test loss and accuracy along w(α) = (1 − α)·w_A + α·w_B (S18 Fig 8), with B's test accuracy minus A's and its 95 % interval from the per-example differences (S18 E6); or, with `eigenvectors` instead of `model_b`, along w_A + t·v (top eigenvector).";
    const INPUTS: &'static [PortSpec] = &[MODEL_A, MODEL_B, port::<Eigenvectors>().optional(), port::<Dataset>()];
    const OUTPUTS: &'static [PortSpec] = &[port::<Curve>()];
    fn check(p: &Self::Params) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !(2..=100_000).contains(&p.points) {
            e.push(("points".into(), "points must be between 2 and 100000".into()));
        }
        if p.from >= p.to {
            e.push(("to".into(), format!("`to` ({}) must be larger than `from` ({})", p.from, p.to)));
        }
        e
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let a = ctx.read::<Model>(MODEL_A.name)?.net;
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let (tr, te) = (ds.train(), ds.test());
        let mut paired = None;
        let (dir, along_line) = if let Some(b) = ctx.read_opt::<Model>(MODEL_B.name)? {
            let b = b.net;
            if b.arch() != a.arch() {
                return Err(StageError::msg(format!("{} and {} have different architectures", MODEL_A.name, MODEL_B.name)));
            }
            if !te.is_empty() {
                paired = Some(PairedAccuracy::of(&correct(&a, &te), &correct(&b, &te)));
            }
            (b.params().iter().zip(a.params()).map(|(x, y)| x - y).collect::<Vec<f64>>(), true)
        } else if let Some(ev) = ctx.read_opt::<Eigenvectors>(Eigenvectors::NAME)? {
            let v = ev.vectors.into_iter().next().map(|(_, v)| v).ok_or_else(|| StageError::msg("the eigenvectors artifact is empty"))?;
            if v.len() != a.num_params() {
                return Err(StageError::msg(format!("eigenvector has {} entries, the model {} parameters", v.len(), a.num_params())));
            }
            (v, false)
        } else {
            return Err(StageError::msg(format!(
                "connect `{}` (line between two solutions) or `{}` (direction)",
                MODEL_B.name,
                Eigenvectors::NAME
            )));
        };
        let mut rows = Vec::new();
        for i in 0..p.points {
            let t = p.from + (p.to - p.from) * i as f64 / (p.points - 1) as f64;
            let w: Vec<f64> = a.params().iter().zip(&dir).map(|(x, d)| x + t * d).collect();
            let m = a.with_params(w);
            let (l1, a1) = m.evaluate(tr.x.as_ref(), &tr.y);
            let (l2, a2) = m.evaluate(te.x.as_ref(), &te.y);
            rows.push(CurvePoint { alpha: t, train_loss: l1, train_accuracy: a1, test_loss: l2, test_accuracy: a2 });
        }
        for (name, fig) in figures(&rows, along_line) {
            fig.write(ctx, name)?;
        }
        let mode = if along_line { "line" } else { "eigenvector" }.to_string();
        ctx.write::<Curve>(Curve::NAME, &Curve { points: rows, mode, paired })
    }
}

/// Loss and accuracy along the line (S18 Fig 8) or along an eigenvector.
pub fn figures(rows: &[CurvePoint], along_line: bool) -> Vec<(&'static str, hesslab_figures::Figure)> {
    let xl = if along_line { "α  (w = (1 − α)·w_A + α·w_B)" } else { "t  (w = w_A + t·v₁)" };
    let mut loss = Plot::new("Loss along the line", xl, "loss")
        .line("train loss", rows.iter().map(|r| (r.alpha, r.train_loss)).collect())
        .line("test loss", rows.iter().map(|r| (r.alpha, r.test_loss)).collect());
    if along_line {
        loss = loss.vline(0.0, "w_A (α = 0)").vline(1.0, "w_B (α = 1)");
    }
    let accuracy = Plot::new("Accuracy along the line", xl, "accuracy")
        .line("train accuracy", rows.iter().map(|r| (r.alpha, r.train_accuracy)).collect())
        .line("test accuracy", rows.iter().map(|r| (r.alpha, r.test_accuracy)).collect());
    use hesslab_figures::Figure;
    vec![("interpolation_loss", Figure::single(loss)), ("interpolation_accuracy", Figure::single(accuracy))]
}

/// Whether the model classifies each example right (one example per evaluation).
fn correct(m: &Network, s: &hesslab_data::Split) -> Vec<bool> {
    (0..s.len()).into_par_iter().map(|i| m.evaluate(s.x.as_ref().subrows(i, 1), &s.y[i..i + 1]).1 == 1.0).collect()
}
