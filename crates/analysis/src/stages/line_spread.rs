//! `line_spread`: the lines between two solutions (S18 E6, `interpolate` curves) over the
//! replicates of each sweep group: per seed the paired test-accuracy difference, the endpoints
//! and the barrier on [0, 1]; over the seeds their mean, spread and a t interval, and the loss
//! along the line as a mean with its min–max band (S18 Fig 8 with spread).
use crate::replicates::{Groups, format_value, group, seed_keys, spread};
use hesslab_artifacts::{Curve, CurvePoint, Spread, Stats};
use hesslab_figures::{Figure, Plot};
use hesslab_pipeline::{InputArtifact, Port, PortSpec, StageContext, StageError, StageKind, port};
use hesslab_stages::WriteFigure;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const CURVES: PortSpec = port::<Curve>().renamed("curves").many();

/// Parameters of `line_spread`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LineSpreadParams {
    /// Sweep keys whose members repeat one experiment with another seed. Default: every swept
    /// `seed` parameter (e.g. "phase1.seed").
    pub replicates: Option<Vec<String>>,
}

/// What one line says, per member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineMeasures {
    /// Test accuracy of B minus A, example by example (NaN without a test split).
    pub test_accuracy_difference: f64,
    /// Half-width of its 95 % interval over the test examples (one seed's sampling error).
    pub paired_ci95: f64,
    /// Test accuracies at α = 0 (A) and α = 1 (B).
    pub test_accuracy: [f64; 2],
    /// Training losses at α = 0 and α = 1.
    pub train_loss: [f64; 2],
    /// Highest training loss on the grid points inside [0, 1] minus the higher endpoint:
    /// positive is a barrier between the solutions, ≤ 0 none.
    pub barrier: f64,
}

impl LineMeasures {
    /// The measures of a line curve; `None` unless the grid holds α = 0 and α = 1.
    pub fn of(c: &Curve) -> Option<LineMeasures> {
        let at = |a: f64| c.points.iter().find(|p| (p.alpha - a).abs() < 1e-9);
        let (p0, p1): (&CurvePoint, &CurvePoint) = (at(0.0)?, at(1.0)?);
        let inside = c.points.iter().filter(|p| (-1e-9..=1.0 + 1e-9).contains(&p.alpha));
        let highest = inside.map(|p| p.train_loss).fold(f64::NEG_INFINITY, f64::max);
        Some(LineMeasures {
            test_accuracy_difference: c.paired.map_or(f64::NAN, |p| p.difference),
            paired_ci95: c.paired.map_or(f64::NAN, |p| p.ci95),
            test_accuracy: [p0.test_accuracy, p1.test_accuracy],
            train_loss: [p0.train_loss, p1.train_loss],
            barrier: highest - p0.train_loss.max(p1.train_loss),
        })
    }

    /// The measures as named quantities (the `spread` artifact's `quantity` names).
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("test_accuracy_difference", self.test_accuracy_difference),
            ("test_accuracy_a", self.test_accuracy[0]),
            ("test_accuracy_b", self.test_accuracy[1]),
            ("train_loss_a", self.train_loss[0]),
            ("train_loss_b", self.train_loss[1]),
            ("barrier", self.barrier),
        ]
    }
}

/// Two-sided 95 % quantile of Student's t with `df` degrees of freedom (tabulated to 30, then
/// the normal's 1.96 plus its first correction).
pub fn t95(df: u64) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
        2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df as usize - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

/// The `line_spread` stage kind.
pub struct LineSpread;

impl StageKind for LineSpread {
    type Params = LineSpreadParams;
    const KIND: &'static str = "line_spread";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Lines between two solutions (`interpolate` curves, S18 E6) over seeds: per group of replicates the mean, sample std, min and max of the paired test-accuracy difference (B − A), the endpoints' test accuracy and training loss, and the barrier (highest training loss inside [0, 1] minus the higher endpoint); line.md with a Student-t 95 % interval over the seeds; the loss along the line as a mean with its min–max band.";
    const INPUTS: &'static [PortSpec] = &[CURVES];
    const OUTPUTS: &'static [PortSpec] = &[port::<Spread>()];
    fn check_sweep(p: &Self::Params, sweep_keys: &[String]) -> Vec<(String, String)> {
        p.replicates
            .iter()
            .flatten()
            .filter(|k| !sweep_keys.contains(k))
            .map(|k| ("replicates".into(), format!("`{k}` is not a sweep key; the sweep keys are {sweep_keys:?}")))
            .collect()
    }
    fn run(p: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError> {
        let inputs: Vec<InputArtifact> = ctx.inputs(CURVES.name).to_vec();
        let mut keys: Vec<String> = Vec::new();
        for i in &inputs {
            keys.extend(i.labels.keys().filter(|k| !keys.contains(k)).cloned().collect::<Vec<_>>());
        }
        // Validation already ran this against the plan's sweep keys; standalone runs get it here.
        if let Some((key, m)) = Self::check_sweep(p, &keys).into_iter().next() {
            return Err(StageError::msg(format!("`{key}`: {m}")));
        }
        let reps = p.replicates.clone().unwrap_or_else(|| seed_keys(&keys));
        let curves: Vec<Curve> = inputs.iter().map(|i| i.decode::<Curve>()).collect::<Result<_, _>>()?;
        let mut measures = Vec::new();
        for (i, c) in inputs.iter().zip(&curves) {
            if c.mode != "line" {
                return Err(StageError::msg(format!(
                    "member {}: a curve along {} (`interpolate` with eigenvectors); line_spread reads lines between two models",
                    i.member, c.mode
                )));
            }
            let m = LineMeasures::of(c).ok_or_else(|| {
                StageError::msg(format!(
                    "member {}: the curve's grid must contain α = 0 and α = 1 (`interpolate` from ≤ 0 to ≥ 1 with a point on each)",
                    i.member
                ))
            })?;
            measures.push(m);
        }
        let groups = group(&inputs.iter().map(|i| i.labels.clone()).collect::<Vec<_>>(), &keys, &reps);
        let spread = spread(&groups, &measures.iter().map(|m| m.named().to_vec()).collect::<Vec<_>>(), &reps);
        ctx.write::<Spread>(Spread::NAME, &spread)?;
        ctx.write_file("line.md", markdown(&groups, &inputs, &measures).as_bytes())?;
        band_figure(&groups, &curves).write(ctx, "interpolation_loss_band")?;
        Ok(())
    }
}

/// Per group: the seeds' differences, their mean with a t interval, and the barriers; then
/// one row per member.
fn markdown(g: &Groups, inputs: &[InputArtifact], measures: &[LineMeasures]) -> String {
    let pct = |v: f64| format!("{:+.2} %", 100.0 * v);
    let mut md = String::from(
        "Test accuracy of B minus A (paired over the test examples per seed), over the seeds: mean ± 95 % interval \
         (Student t, n − 1 degrees of freedom), and the barrier on [0, 1] (highest training loss inside minus the higher endpoint; ≤ 0: none).\n\n\
         | group | seeds | difference per seed | mean difference ± 95 % (t) | seeds with B better | largest barrier |\n|---|---|---|---|---|---|\n",
    );
    for grp in &g.groups {
        let diffs: Vec<f64> = grp.members.iter().map(|&m| measures[m].test_accuracy_difference).collect();
        let s = Stats::of(&diffs);
        let half = t95(s.n.saturating_sub(1)) * s.std / (s.n as f64).sqrt();
        let better = diffs.iter().filter(|d| **d > 0.0).count();
        let barrier = grp.members.iter().map(|&m| measures[m].barrier).fold(f64::NEG_INFINITY, f64::max);
        let interval = if s.n > 1 { format!("{} ± {:.2} %", pct(s.mean), 100.0 * half) } else { pct(s.mean) };
        md.push_str(&format!(
            "| {} | {} | {} | {interval} | {better} of {} | {} |\n",
            grp.label(&g.keys),
            s.n,
            diffs.iter().map(|d| pct(*d)).collect::<Vec<_>>().join(", "),
            s.n,
            format_value(barrier)
        ));
    }
    md.push_str("\n| member | difference (paired 95 %) | test accuracy A → B | training loss A → B | barrier |\n|---|---|---|---|---|\n");
    for (i, m) in inputs.iter().zip(measures) {
        md.push_str(&format!(
            "| {} | {} ± {:.2} % | {:.4} → {:.4} | {} → {} | {} |\n",
            i.member,
            pct(m.test_accuracy_difference),
            100.0 * m.paired_ci95,
            m.test_accuracy[0],
            m.test_accuracy[1],
            format_value(m.train_loss[0]),
            format_value(m.train_loss[1]),
            format_value(m.barrier)
        ));
    }
    md
}

/// The training and test loss along the line per group: the mean over the seeds with its
/// min–max band, the two solutions marked.
fn band_figure(g: &Groups, curves: &[Curve]) -> Figure {
    let mut panels = Vec::new();
    for grp in &g.groups {
        let mut plot = Plot::new(&format!("Loss along the line ({}, {} seeds)", grp.label(&g.keys), grp.members.len()), "α", "loss");
        let first = &curves[grp.members[0]].points;
        for (name, get) in [("train loss", (|p: &CurvePoint| p.train_loss) as fn(&CurvePoint) -> f64), ("test loss", |p| p.test_loss)] {
            // Grids are the same stage parameters for every member; shorter ones end the band.
            let len = grp.members.iter().map(|&m| curves[m].points.len()).min().unwrap_or(0);
            let stats: Vec<(f64, Stats)> = (0..len)
                .map(|j| (first[j].alpha, Stats::of(&grp.members.iter().map(|&m| get(&curves[m].points[j])).collect::<Vec<_>>())))
                .collect();
            plot = plot.line_with_band(
                &format!("{name} (mean, min–max)"),
                stats.iter().map(|(a, s)| (*a, s.mean)).collect(),
                stats.iter().map(|(a, s)| (*a, s.min, s.max)).collect(),
            );
        }
        panels.push(plot.vline(0.0, "w_A (α = 0)").vline(1.0, "w_B (α = 1)"));
    }
    Figure::grid("Loss along the line between the two solutions, over seeds", panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(losses: &[(f64, f64)], diff: f64) -> Curve {
        Curve {
            points: losses
                .iter()
                .map(|&(alpha, l)| CurvePoint {
                    alpha,
                    train_loss: l,
                    train_accuracy: 1.0,
                    test_loss: 2.0 * l,
                    test_accuracy: 0.5 + alpha / 10.0,
                })
                .collect(),
            mode: "line".into(),
            paired: Some(hesslab_artifacts::PairedAccuracy { difference: diff, ci95: 0.01, examples: 100 }),
        }
    }

    #[test]
    fn the_barrier_is_the_highest_loss_inside_above_the_higher_endpoint() {
        let flat = curve(&[(-1.0, 5.0), (0.0, 1.0), (0.5, 0.8), (1.0, 0.9), (2.0, 4.0)], 0.01);
        let m = LineMeasures::of(&flat).unwrap();
        assert_eq!(m.train_loss, [1.0, 0.9]);
        assert!((m.barrier - 0.0).abs() < 1e-15, "the endpoint itself is the highest inside: {}", m.barrier);
        assert!((m.test_accuracy[1] - m.test_accuracy[0] - 0.1).abs() < 1e-15);
        let bump = curve(&[(0.0, 1.0), (0.5, 1.7), (1.0, 0.9)], 0.0);
        assert!((LineMeasures::of(&bump).unwrap().barrier - 0.7).abs() < 1e-12);
        assert!(LineMeasures::of(&curve(&[(0.0, 1.0), (0.5, 1.0)], 0.0)).is_none(), "no α = 1 on the grid");
    }

    #[test]
    fn t_quantiles_are_students() {
        assert_eq!(t95(4), 2.776);
        assert_eq!(t95(1), 12.706);
        assert!(t95(0).is_nan());
        assert!((t95(1000) - 1.96).abs() < 0.01);
    }
}
