//! The `train` stage: full-batch GD or mini-batch SGD with a constant learning rate.
use crate::{Activation, Architecture, Init, LossKind, Mlp, initialize, model_port};
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use hesslab_data::{Dataset, Split, dataset_port, rng::Rng};
use hesslab_pipeline::columns::*;
use hesslab_pipeline::resources::prod;
use hesslab_pipeline::{Estimate, Facts, InputFacts, PortSpec, Progress, StageContext, StageError, StageKind, short_f64};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// Hidden layer widths; [] is softmax/logistic regression.
    pub hidden: Vec<usize>,
    /// Nonlinearity of the hidden layers: relu, tanh, sigmoid, identity.
    pub activation: Activation,
    /// Biases in every layer.
    pub bias: bool,
    /// cross_entropy (softmax), mse (½‖f − onehot‖²) or logistic (one sigmoid output).
    pub loss: LossKind,
    /// kaiming_uniform (PyTorch default), normal (init_std) or sphere (init_radius).
    pub init: Init,
    /// Standard deviation of every parameter for init = "normal".
    pub init_std: f64,
    /// Radius of the sphere for init = "sphere".
    pub init_radius: f64,
    /// Mini-batch size; 0 means full-batch gradient descent.
    pub batch_size: usize,
    /// Constant learning rate.
    pub lr: f64,
    /// Heavy-ball momentum (the papers use none).
    pub momentum: f64,
    /// Number of parameter updates.
    pub max_steps: usize,
    /// Stop once the full training loss is ≤ this (checked at every log step; 0 = never).
    pub target_loss: f64,
    /// Stop once the full-gradient norm is ≤ this (checked at every log step; 0 = never).
    pub grad_tol: f64,
    /// Record metrics every this many steps (and at the first and last step).
    pub log_every: usize,
    /// Record the parameters every this many steps in `trajectory` (0 = off).
    pub snapshot_every: usize,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            hidden: vec![30, 30],
            activation: Activation::Relu,
            bias: true,
            loss: LossKind::CrossEntropy,
            init: Init::KaimingUniform,
            init_std: 0.1,
            init_radius: 1.0,
            batch_size: 0,
            lr: 0.1,
            momentum: 0.0,
            max_steps: 1000,
            target_loss: 0.0,
            grad_tol: 0.0,
            log_every: 10,
            snapshot_every: 0,
        }
    }
}

pub fn log_port() -> PortSpec {
    PortSpec::new(
        "log",
        "metrics: step, epoch, train_loss, train_accuracy, test_loss, test_accuracy, grad_norm",
        vec![
            u64_field("step"),
            f64_field("epoch"),
            f64_field("train_loss"),
            f64_field("train_accuracy"),
            f64_field("test_loss"),
            f64_field("test_accuracy"),
            f64_field("grad_norm"),
        ],
    )
}

pub fn trajectory_port() -> PortSpec {
    PortSpec::new(
        "trajectory",
        "parameter snapshots: step UInt64, values List<Float64> (flat, PyTorch order)",
        vec![u64_field("step"), list_f64_field("values")],
    )
    .optional()
}

#[derive(Debug, Default, Clone)]
pub struct TrainLog {
    pub step: Vec<u64>,
    pub epoch: Vec<f64>,
    pub train_loss: Vec<f64>,
    pub train_acc: Vec<f64>,
    pub test_loss: Vec<f64>,
    pub test_acc: Vec<f64>,
    pub grad_norm: Vec<f64>,
    pub snapshots: Vec<(u64, Vec<f64>)>,
}

/// Train `model` in place; `step0` is the step count the model already has (continued runs).
pub fn train(
    model: &mut Mlp,
    p: &TrainParams,
    train: &Split,
    test: &Split,
    seed: u64,
    step0: u64,
    progress: &Progress,
) -> Result<TrainLog, StageError> {
    let n = train.len();
    let full = p.batch_size == 0 || p.batch_size >= n;
    let bs = if full { n } else { p.batch_size };
    let mut rng = Rng::new(seed ^ 0x5eed_5eed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut cursor = n; // forces a shuffle before the first mini-batch
    let mut epoch_count = 0u64;
    let mut velocity = vec![0.0; model.num_params()];
    let mut log = TrainLog::default();
    let bar = progress.bar(p.max_steps as u64, "training");
    let log_every = p.log_every.max(1);
    let record = |model: &Mlp, step: usize, epoch: f64, log: &mut TrainLog| -> Result<(f64, f64), StageError> {
        let (tl, g, ta) = model.loss_grad_accuracy_at(&model.params, train.x.as_ref(), &train.y);
        let (vl, va) = if test.is_empty() { (f64::NAN, f64::NAN) } else { model.evaluate(test.x.as_ref(), &test.y) };
        let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        if !tl.is_finite() {
            return Err(diverged(step0 + step as u64, p.lr, tl));
        }
        log.step.push(step0 + step as u64);
        log.epoch.push(epoch);
        log.train_loss.push(tl);
        log.train_acc.push(ta);
        log.test_loss.push(vl);
        log.test_acc.push(va);
        log.grad_norm.push(gn);
        Ok((tl, gn))
    };
    record(model, 0, 0.0, &mut log)?;
    if p.snapshot_every > 0 {
        log.snapshots.push((step0, model.params.clone()));
    }
    for step in 1..=p.max_steps {
        let (loss, grad) = if full {
            model.loss_grad(train.x.as_ref(), &train.y)
        } else {
            if cursor + bs > n {
                rng.shuffle(&mut order);
                cursor = 0;
                epoch_count += 1;
            }
            let batch = train.subset(&order[cursor..cursor + bs]);
            cursor += bs;
            model.loss_grad(batch.x.as_ref(), &batch.y)
        };
        if !loss.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Err(diverged(step0 + step as u64, p.lr, loss));
        }
        for ((w, v), g) in model.params.iter_mut().zip(velocity.iter_mut()).zip(&grad) {
            *v = p.momentum * *v + g;
            *w -= p.lr * *v;
        }
        if model.params.iter().any(|w| !w.is_finite()) {
            return Err(diverged(step0 + step as u64, p.lr, f64::NAN));
        }
        bar.inc(1);
        let epoch = if full { step as f64 } else { (step * bs) as f64 / n as f64 };
        let _ = epoch_count;
        if p.snapshot_every > 0 && step % p.snapshot_every == 0 {
            log.snapshots.push((step0 + step as u64, model.params.clone()));
        }
        if step % log_every == 0 || step == p.max_steps {
            let (tl, gn) = record(model, step, epoch, &mut log)?;
            bar.set_message(format!("training loss {tl:.3e} |g| {gn:.2e}"));
            if (p.target_loss > 0.0 && tl <= p.target_loss) || (p.grad_tol > 0.0 && gn <= p.grad_tol) {
                break;
            }
        }
    }
    bar.finish_and_clear();
    Ok(log)
}

fn diverged(step: u64, lr: f64, loss: f64) -> StageError {
    StageError::msg(format!(
        "training diverged at step {step} (lr = {}): loss = {}, parameters or gradient are not finite; lower the learning rate",
        short_f64(lr),
        short_f64(loss)
    ))
}

/// The widest hidden layer accepted (wider ones are typos, and their weights would not fit).
pub const MAX_WIDTH: usize = 1 << 24;

/// The network `train` builds for data of `d` features and `c` classes.
fn architecture_of(p: &TrainParams, d: u64, c: u64) -> Architecture {
    let mut sizes = vec![d as usize];
    sizes.extend(&p.hidden);
    sizes.push(if p.loss == LossKind::Logistic { 1 } else { c as usize });
    Architecture { sizes, activation: p.activation, bias: p.bias, loss: p.loss }
}

pub struct Train;

impl StageKind for Train {
    type Params = TrainParams;
    const KIND: &'static str = "train";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Train a fully connected network with full-batch GD or mini-batch SGD (constant lr, optional momentum); optional `init_from` input continues from another model (LB→SB).";
    fn inputs() -> Vec<PortSpec> {
        vec![dataset_port(), model_port().optional().renamed("init_from")]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![model_port(), log_port(), trajectory_port()]
    }
    fn check(p: &TrainParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !(p.lr > 0.0 && p.lr.is_finite()) {
            e.push(("lr".into(), format!("lr must be > 0, got {}", short_f64(p.lr))));
        }
        if !(0.0..1.0).contains(&p.momentum) {
            e.push(("momentum".into(), "momentum must be in [0, 1)".into()));
        }
        if p.hidden.contains(&0) {
            e.push(("hidden".into(), "hidden widths must be ≥ 1".into()));
        }
        if let Some(w) = p.hidden.iter().find(|&&w| w > MAX_WIDTH) {
            e.push(("hidden".into(), format!("hidden width {w} is larger than {MAX_WIDTH}")));
        }
        for (key, v) in [("init_std", p.init_std), ("init_radius", p.init_radius)] {
            if !(v > 0.0 && v.is_finite()) {
                e.push((key.into(), format!("{key} must be a finite number > 0, got {}", short_f64(v))));
            }
        }
        for (key, v) in [("target_loss", p.target_loss), ("grad_tol", p.grad_tol)] {
            if !(v >= 0.0 && v.is_finite()) {
                e.push((key.into(), format!("{key} must be a finite number ≥ 0 (0 = off), got {}", short_f64(v))));
            }
        }
        e
    }
    fn facts(p: &TrainParams, inputs: &InputFacts) -> Facts {
        let data = inputs.get("dataset").copied().unwrap_or_default();
        let arch = data.dim.zip(data.classes).map(|(d, c)| architecture_of(p, d, c));
        Facts {
            params: arch.as_ref().and_then(|a| a.check().ok()).map(|n| n as u64),
            units: arch.map(|a| a.sizes.iter().fold(0u64, |s, &x| s.saturating_add(x as u64))),
            ..data
        }
    }
    fn estimate(p: &TrainParams, inputs: &InputFacts) -> Option<Estimate> {
        let data = inputs.get("dataset")?;
        let (n, d, c) = (data.rows?, data.dim?, data.classes?);
        let arch = architecture_of(p, d, c);
        let params = match arch.check() {
            Ok(n) => n as u64,
            Err(_) => u64::MAX,
        };
        let units = arch.sizes.iter().fold(0u64, |s, &x| s.saturating_add(x as u64));
        let snapshots = if p.snapshot_every > 0 { (p.max_steps / p.snapshot_every + 1) as u64 } else { 0 };
        // Data (and its train/test copies), activations and their gradients for every sample,
        // parameters with gradient, velocity and one partial gradient per 256-sample chunk.
        Some(
            Estimate::f64s(prod(&[n, d, 3]), format!("{n}×{d} data"))
                .plus(Estimate::f64s(prod(&[n, units, 4]), format!("activations of {units} units")))
                .plus(Estimate::f64s(prod(&[params, n.div_ceil(256).saturating_add(4)]), format!("{params} parameters with gradients")))
                .plus(Estimate::f64s(
                    prod(&[params, snapshots]),
                    if snapshots > 0 { format!("{snapshots} snapshots") } else { String::new() },
                )),
        )
    }
    fn run(p: &TrainParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ds = Dataset::read(ctx, "dataset")?;
        let (tr, te) = (ds.train(), ds.test());
        if tr.is_empty() {
            return Err(StageError::msg("the dataset has no training examples".to_string()));
        }
        if p.batch_size > tr.len() {
            return Err(StageError::msg(format!("batch_size {} exceeds the {} training examples", p.batch_size, tr.len())));
        }
        let out_dim = if p.loss == LossKind::Logistic {
            if ds.num_classes > 2 {
                return Err(StageError::msg(format!("loss = \"logistic\" needs 2 classes, the dataset has {}", ds.num_classes)));
            }
            1
        } else {
            ds.num_classes
        };
        let (mut model, step0) = match ctx.input_opt("init_from") {
            Some(a) => {
                let art = a.read()?;
                let m = Mlp::from_artifact(&art)?;
                if m.arch.input_dim() != ds.dim || m.arch.output_dim() != out_dim {
                    return Err(StageError::msg(format!(
                        "`init_from` model {} does not fit data with {} features and {out_dim} outputs",
                        m.arch.describe(),
                        ds.dim
                    )));
                }
                let steps = art.meta("steps").and_then(|s| s.parse().ok()).unwrap_or(0u64);
                (m, steps)
            }
            None => {
                let mut sizes = vec![ds.dim];
                sizes.extend(&p.hidden);
                sizes.push(out_dim);
                let arch = Architecture { sizes, activation: p.activation, bias: p.bias, loss: p.loss };
                arch.check().map_err(StageError::msg)?;
                (initialize(&arch, p.init, p.init_std, p.init_radius, ctx.seed), 0)
            }
        };
        let log = train(&mut model, p, &tr, &te, ctx.seed, step0, &ctx.progress)?;
        let last_step = log.step.last().copied().unwrap_or(step0);
        model.write_artifacts(ctx, &log, last_step)?;
        ctx.share("model", Arc::new(model));
        Ok(())
    }
}

impl Mlp {
    fn write_artifacts(&self, ctx: &StageContext, log: &TrainLog, last_step: u64) -> Result<(), StageError> {
        let final_loss = log.train_loss.last().copied().unwrap_or(f64::NAN);
        let meta = self.metadata(&[("steps", last_step.to_string()), ("final_train_loss", format!("{final_loss:e}"))]);
        ctx.write("model", self.to_batch().map_err(StageError::other)?, &meta)?;
        let schema = log_port().schema;
        let b = RecordBatch::try_new(
            schema,
            vec![
                u64_array(log.step.iter().copied()),
                f64_array(log.epoch.iter().copied()),
                f64_array(log.train_loss.iter().copied()),
                f64_array(log.train_acc.iter().copied()),
                f64_array(log.test_loss.iter().copied()),
                f64_array(log.test_acc.iter().copied()),
                f64_array(log.grad_norm.iter().copied()),
            ],
        )
        .map_err(StageError::other)?;
        ctx.write("log", b, &self.metadata(&[]))?;
        if !log.snapshots.is_empty() {
            let schema = Arc::new(Schema::new(vec![u64_field("step"), list_f64_field("values")]));
            let b = RecordBatch::try_new(
                schema,
                vec![u64_array(log.snapshots.iter().map(|s| s.0)), list_f64_array(log.snapshots.iter().map(|s| s.1.as_slice()))],
            )
            .map_err(StageError::other)?;
            ctx.write("trajectory", b, &self.metadata(&[]))?;
        }
        Ok(())
    }
}
