//! Training: full-batch GD or mini-batch SGD with a constant learning rate.
use crate::optim::{OptimizerConfig, OptimizerState, Schedule, clip_grad_norm};
use crate::{Activation, Init, LayerSpec, LossKind, ModelError, NetArch, Network, Shape};
use hesslab_data::{Split, rng::Rng};
use hesslab_progress::Progress;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of the `train` stage: the network and the optimizer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// The network as a list of layers (conv2d, max_pool2d, avg_pool2d, flatten, linear,
    /// activations, `{ residual = [...] }` blocks, `{ graph = [...] }` with add/concat nodes);
    /// the last layer's width is the number of outputs. Empty: the MLP that `hidden`,
    /// `activation` and `bias` describe.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("default" = []))]
    pub layers: Vec<LayerSpec>,
    /// Hidden layer widths of the MLP shorthand; [] is softmax/logistic regression.
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
    /// SGD's momentum (the papers use none); with `optimizer = { sgd = {…} }` give it there.
    pub momentum: f64,
    /// The optimizer: "sgd" (default), "adam", "adamw", "rmsprop", "muon", or
    /// `{ name = { PyTorch's arguments } }` (see the optimizer table in docs/guide.md).
    #[serde(skip_serializing_if = "OptimizerConfig::is_default")]
    #[schemars(extend("default" = "sgd"))]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule: "constant", { step = {…} }, { cosine = {…} },
    /// { warmup_cosine = {…} }, { warmup_linear = {…} } (factors of `lr`).
    #[serde(skip_serializing_if = "Schedule::is_constant")]
    #[schemars(extend("default" = "constant"))]
    pub schedule: Schedule,
    /// Clip the gradient to this global norm before each update (0 = off), as
    /// `torch.nn.utils.clip_grad_norm_`.
    #[serde(skip_serializing_if = "is_zero_f64")]
    #[schemars(extend("default" = 0.0))]
    pub grad_clip: f64,
    /// With `init_from`, what continues besides the weights: "optimizer" (default: the saved
    /// optimizer state when the same optimizer with the same arguments made it, else a fresh
    /// one, said on stderr and in the log), "exact" (also the saved run's batch order and seed:
    /// 50 steps then 50 more equal 100 steps bit for bit; an error when anything differs) or
    /// "weights" (a fresh optimizer).
    #[serde(skip_serializing_if = "Resume::is_default")]
    #[schemars(extend("default" = "optimizer"))]
    pub resume: Resume,
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
    /// Track the sharpness (the largest-magnitude eigenvalue of the full-batch training-loss
    /// Hessian) every this many steps, a multiple of `log_every` (0 = off): one warm-started
    /// power step (one Hessian-vector product) per measurement after 20 at the start, written
    /// to `log` as `sharpness` with its relative residual ‖Hv − λv‖/|λ|.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(extend("default" = 0))]
    pub sharpness_every: usize,
    /// Training fails as diverged once a training loss (full-batch or mini-batch) exceeds
    /// this multiple of max(initial loss, 1); non-finite losses, gradients or parameters
    /// always fail. 0 turns the multiple off (to study a blow-up).
    #[serde(skip_serializing_if = "is_default_divergence")]
    #[schemars(extend("default" = 10000.0))]
    pub divergence_factor: f64,
}

/// What `train` continues from an `init_from` model besides its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resume {
    /// The optimizer state, when the same optimizer with the same arguments saved it.
    #[default]
    Optimizer,
    /// The optimizer state, the batch order and the seed: the run goes on as if never stopped.
    Exact,
    /// The weights only (a fresh optimizer).
    Weights,
}

impl Resume {
    fn is_default(&self) -> bool {
        *self == Resume::default()
    }
    /// Its name in a pipeline.
    pub fn name(&self) -> &'static str {
        match self {
            Resume::Optimizer => "optimizer",
            Resume::Exact => "exact",
            Resume::Weights => "weights",
        }
    }
}

/// The default `divergence_factor`: far above any edge-of-stability spike seen here (loss
/// rises of 10–100× that recover), far below a run that has left for good.
pub const DIVERGENCE_FACTOR: f64 = 1e4;

fn is_default_divergence(v: &f64) -> bool {
    *v == DIVERGENCE_FACTOR
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// Power steps of the first sharpness measurement (from a random vector); later ones take one
/// step each from the previous vector.
pub const SHARPNESS_WARMUP: usize = 20;

/// The Hessian of the full-batch training loss, set up anew at the weights of each sharpness
/// measurement; supplied by the caller (the curvature crate sits above this one).
///
/// Why `prepare` returns the loss, gradient and accuracy: a measurement falls on a log step,
/// whose full-batch pass is exactly the one the curvature cache needs, so the log takes its
/// numbers from the cache instead of a second pass over the data.
pub trait SharpnessProbe {
    /// Set up at `net`'s weights; returns the full-batch mean loss, gradient and accuracy there,
    /// bit-identical to [`Network::loss_grad_accuracy_at`] at these weights.
    fn prepare(&mut self, net: &Network) -> Result<(f64, Vec<f64>, f64), ModelError>;
    /// H v at the weights of the last `prepare`.
    fn hvp(&mut self, v: &[f64]) -> Result<Vec<f64>, ModelError>;
    /// `prepare` at `net`'s weights followed by one `hvp(v)`, with the same results bit for
    /// bit. A probe may do both in one pass over the data that keeps nothing afterwards (a
    /// measurement of the tracked power iteration takes one product, so an operator held for
    /// more would be built in vain); `hvp` after this needs a new `prepare`.
    #[allow(clippy::type_complexity)]
    fn prepare_with_product(&mut self, net: &Network, v: &[f64]) -> Result<((f64, Vec<f64>, f64), Vec<f64>), ModelError> {
        let pass = self.prepare(net)?;
        Ok((pass, self.hvp(v)?))
    }
}

impl TrainParams {
    /// The optimizer with `momentum` folded in (the key `train` had before optimizers were
    /// configurable: SGD's momentum).
    pub fn optimizer_config(&self) -> OptimizerConfig {
        match &self.optimizer {
            OptimizerConfig::Sgd(c) if c.momentum == 0.0 => {
                OptimizerConfig::Sgd(crate::optim::sgd::SgdConfig { momentum: self.momentum, ..c.clone() })
            }
            other => other.clone(),
        }
    }
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            layers: vec![],
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
            optimizer: OptimizerConfig::default(),
            schedule: Schedule::Constant,
            grad_clip: 0.0,
            resume: Resume::Optimizer,
            max_steps: 1000,
            target_loss: 0.0,
            grad_tol: 0.0,
            log_every: 10,
            snapshot_every: 0,
            sharpness_every: 0,
            divergence_factor: DIVERGENCE_FACTOR,
        }
    }
}

/// Metrics recorded along training, one entry per logged step.
#[derive(Debug, Default, Clone)]
pub struct TrainLog {
    /// Step (continued runs count on from their start).
    pub step: Vec<u64>,
    /// Epochs seen.
    pub epoch: Vec<f64>,
    /// Full training loss.
    pub train_loss: Vec<f64>,
    /// Training accuracy.
    pub train_acc: Vec<f64>,
    /// Test loss (NaN without a test split).
    pub test_loss: Vec<f64>,
    /// Test accuracy (NaN without a test split).
    pub test_acc: Vec<f64>,
    /// Norm of the full training gradient.
    pub grad_norm: Vec<f64>,
    /// (step, parameters) every `snapshot_every` steps.
    pub snapshots: Vec<(u64, Vec<f64>)>,
    /// The optimizer's state at each snapshot.
    pub snapshot_states: Vec<OptimizerState>,
    /// What a continuation needs besides the weights, at the end of the run.
    pub final_state: Option<TrainState>,
    /// (step, sharpness, relative residual) every `sharpness_every` steps.
    pub sharpness: Vec<(u64, f64, f64)>,
    /// Hessian-vector products the sharpness tracking used.
    pub sharpness_products: u64,
    /// Which tensors the optimizer updated how (Muon: {"muon": [...], "adamw": [...]}).
    pub optimizer_groups: Option<serde_json::Value>,
    /// (step, preconditioned sharpness, relative residual) at the sharpness steps after the
    /// first update, for Adam-family optimizers and RMSprop: the top eigenvalue of
    /// P^{-1/2} H P^{-1/2} (the eigenvalues of P⁻¹H), P the optimizer's preconditioner then.
    pub preconditioned_sharpness: Vec<(u64, f64, f64)>,
    /// The preconditioned sharpness's stability threshold at the base learning rate:
    /// (2 + 2β₁)/((1 − β₁)η) for Adam (38/η at β₁ = 0.9), 2/η for RMSprop.
    pub preconditioned_threshold: Option<f64>,
}

/// What a run leaves for its continuation besides the weights: the optimizer's state and the
/// position in the mini-batch order.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// The optimizer and its arguments.
    pub optimizer: OptimizerConfig,
    /// Its state after the last update.
    pub state: OptimizerState,
    /// Where the mini-batch order stands.
    pub batches: BatchOrder,
}

/// The mini-batch order of a run, as a function of its seed: `shuffles` Fisher–Yates shuffles
/// of 0..samples from the seed's stream, `cursor` batches' worth into the last one. Replaying
/// it puts a continuation exactly where the run stopped without storing the stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchOrder {
    /// The run's seed (its batch order and dropout masks).
    pub seed: u64,
    /// Training samples.
    pub samples: usize,
    /// Samples per update (`samples` for full-batch).
    pub batch_size: usize,
    /// Shuffles (epochs begun).
    pub shuffles: u64,
    /// Samples of the current shuffle used.
    pub cursor: usize,
}

/// Where training starts: the step count the model already has (continued runs count on), and
/// optionally the optimizer state and batch order of the run it continues.
#[derive(Debug, Clone, Default)]
pub struct Start<'a> {
    /// Updates behind the model.
    pub steps: u64,
    /// The optimizer state to continue from (`None`: a fresh optimizer).
    pub optimizer: Option<&'a OptimizerState>,
    /// The batch order (and seed) to continue (`None`: this run's own from its seed).
    pub batches: Option<BatchOrder>,
}

impl Start<'_> {
    /// A model with `steps` updates behind it, continued with a fresh optimizer.
    pub fn at(steps: u64) -> Self {
        Start { steps, ..Start::default() }
    }
}

/// Train `model` in place from `start`.
pub fn train(
    model: &mut Network,
    p: &TrainParams,
    train: &Split,
    test: &Split,
    seed: u64,
    start: &Start,
    progress: &Progress,
) -> Result<TrainLog, ModelError> {
    train_tracking_sharpness(model, p, train, test, seed, start, progress, None)
}

/// The top eigenvector estimate that sharpness tracking carries from one measurement to the
/// next (power iteration spread over training).
struct SharpnessTracker {
    v: Vec<f64>,
    products: u64,
}

impl SharpnessTracker {
    /// A random unit start vector.
    fn new(n: usize, seed: u64) -> Self {
        let mut r = Rng::new(seed);
        let v: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        SharpnessTracker { v: v.into_iter().map(|x| x / norm).collect(), products: 0 }
    }

    /// One measurement: power steps from the carried vector; returns (λ, ‖Hv − λv‖/|λ|) of the
    /// last step's Rayleigh quotient.
    fn measure(&mut self, probe: &mut dyn SharpnessProbe, steps: usize) -> Result<(f64, f64), ModelError> {
        self.measure_with(steps, |v| probe.hvp(v))
    }

    /// [`SharpnessTracker::measure`] of any operator `apply`.
    fn measure_with(
        &mut self,
        steps: usize,
        mut apply: impl FnMut(&[f64]) -> Result<Vec<f64>, ModelError>,
    ) -> Result<(f64, f64), ModelError> {
        let mut out = (f64::NAN, f64::NAN);
        for _ in 0..steps {
            let hv = apply(&self.v)?;
            let (estimate, moved) = self.power_step(hv);
            out = estimate;
            if !moved {
                break;
            }
        }
        Ok(out)
    }

    /// A power step from H v of the carried v: the Rayleigh quotient and its relative
    /// residual, and whether v moved to H v / ‖H v‖ (not when H v = 0: the estimate is 0).
    fn power_step(&mut self, hv: Vec<f64>) -> ((f64, f64), bool) {
        self.products += 1;
        let lambda: f64 = hv.iter().zip(&self.v).map(|(a, b)| a * b).sum();
        let res = hv.iter().zip(&self.v).map(|(a, b)| (a - lambda * b).powi(2)).sum::<f64>().sqrt();
        let out = (lambda, res / lambda.abs().max(f64::MIN_POSITIVE));
        let norm = hv.iter().map(|x| x * x).sum::<f64>().sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            return (out, false);
        }
        self.v = hv.into_iter().map(|x| x / norm).collect();
        (out, true)
    }
}

/// `train`, also tracking the sharpness every `p.sharpness_every` steps with the given
/// probe (ignored when `sharpness_every` is 0 or `probe` is `None`).
#[allow(clippy::too_many_arguments)]
pub fn train_tracking_sharpness(
    model: &mut Network,
    p: &TrainParams,
    train: &Split,
    test: &Split,
    seed: u64,
    start: &Start,
    progress: &Progress,
    mut probe: Option<&mut dyn SharpnessProbe>,
) -> Result<TrainLog, ModelError> {
    let step0 = start.steps;
    if p.sharpness_every > 0 && !p.sharpness_every.is_multiple_of(p.log_every.max(1)) {
        return Err(ModelError::Invalid(format!(
            "sharpness_every = {} must be a multiple of log_every = {}",
            p.sharpness_every, p.log_every
        )));
    }
    let mut tracker = (p.sharpness_every > 0 && probe.is_some()).then(|| SharpnessTracker::new(model.num_params(), seed ^ 0x05ba_7e55));
    // The preconditioned sharpness's tracker, from the first measurement after an update.
    let mut pre_tracker: Option<SharpnessTracker> = None;
    let n = train.len();
    let full = p.batch_size == 0 || p.batch_size >= n;
    let bs = if full { n } else { p.batch_size };
    let config = p.optimizer_config();
    let mut optimizer = config.build(&model.tensors(), model.num_params());
    if let Some(s) = start.optimizer {
        optimizer.load_state(s).map_err(|m| ModelError::Invalid(format!("continuing the optimizer `{}`: {m}", config.name())))?;
    }
    // The batch order: this run's own (a shuffle before the first mini-batch), or the one a
    // continued run stopped in, replayed from its seed.
    let mut batches = BatchOrder { seed, samples: n, batch_size: bs, shuffles: 0, cursor: n };
    if let Some(b) = start.batches {
        if (b.samples, b.batch_size) != (n, bs) {
            return Err(ModelError::Invalid(format!(
                "continuing exactly needs the run's {} samples in batches of {}; here {n} in batches of {bs}",
                b.samples, b.batch_size
            )));
        }
        // A run shuffles at most once per update, and its cursor stays within the samples: a
        // saved order outside that (a planted file) would replay for ever or slice past the end.
        let updates = start.optimizer.map_or(0, |s| s.steps);
        if b.cursor > n || b.shuffles > updates.saturating_add(1) {
            return Err(ModelError::Invalid(format!(
                "the saved batch order ({} shuffles, cursor {}) cannot come from {updates} updates on {n} samples",
                b.shuffles, b.cursor
            )));
        }
        batches = b;
    }
    let seed_of_batches = batches.seed;
    let mut rng = Rng::new(seed_of_batches ^ 0x5eed_5eed);
    let mut order: Vec<usize> = (0..n).collect();
    if !full {
        for _ in 0..batches.shuffles {
            rng.shuffle(&mut order);
        }
    }
    let (mut cursor, mut epoch_count) = (batches.cursor, batches.shuffles);
    let mut log = TrainLog::default();
    let bar = progress.bar(p.max_steps as u64, "training");
    let log_every = p.log_every.max(1);
    // Full-batch loss, gradient and accuracy at the current weights: from the probe when a
    // sharpness measurement falls on this step (its cache holds exactly this pass), else a pass.
    let full_batch =
        |model: &Network, step: usize, probe: &mut Option<&mut dyn SharpnessProbe>| -> Result<(f64, Vec<f64>, f64), ModelError> {
            match probe.as_mut() {
                Some(pr) if p.sharpness_every > 0 && step % p.sharpness_every == 0 => pr.prepare(model),
                _ => Ok(model.loss_grad_accuracy_at(model.params(), train.x.as_ref(), &train.y)),
            }
        };
    // Records one log row; returns the loss and gradient at these weights, which full-batch GD's
    // next step reuses (the same function of the same weights: bit-identical, one pass saved).
    let record = |model: &Network,
                  step: usize,
                  epoch: f64,
                  (tl, g, ta): (f64, Vec<f64>, f64),
                  log: &mut TrainLog|
     -> Result<(f64, Vec<f64>, f64), ModelError> {
        let (vl, va) = if test.is_empty() { (f64::NAN, f64::NAN) } else { model.evaluate(test.x.as_ref(), &test.y) };
        let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        if step == 0 && !tl.is_finite() {
            let x = train.x.as_ref();
            let largest_input = x.col_iter().flat_map(|c| c.iter().copied()).fold(0.0f64, |m, v| m.max(v.abs()));
            return Err(ModelError::NonFiniteStart { loss: tl, largest_input });
        }
        if !tl.is_finite() {
            return Err(diverged(step0 + step as u64, p.lr, tl, "the loss is not finite; lower the learning rate".into()));
        }
        log.step.push(step0 + step as u64);
        log.epoch.push(epoch);
        log.train_loss.push(tl);
        log.train_acc.push(ta);
        log.test_loss.push(vl);
        log.test_acc.push(va);
        log.grad_norm.push(gn);
        Ok((tl, g, gn))
    };
    let first = full_batch(model, 0, &mut probe)?;
    let (tl0, g0, _) = record(model, 0, 0.0, first, &mut log)?;
    // Past this loss the run has left for good (see `divergence_factor`).
    let blown = |loss: f64| p.divergence_factor > 0.0 && loss > p.divergence_factor * tl0.max(1.0);
    let too_high = |loss: f64, step: usize| {
        diverged(
            step0 + step as u64,
            p.lr,
            loss,
            format!(
                "more than divergence_factor = {} × max(initial loss {}, 1); lower the learning rate, or set `divergence_factor` (0 = off) to study the blow-up",
                short(p.divergence_factor),
                short(tl0)
            ),
        )
    };
    // A training step's gradient is the log's full-batch one only when training and
    // evaluation passes agree (no BatchNorm, no dropout).
    let train_mode = model.has_train_mode();
    let mut carried = (full && !train_mode).then_some((tl0, g0));
    if let (Some(t), Some(pr)) = (tracker.as_mut(), probe.as_mut()) {
        let (l, r) = t.measure(&mut **pr, SHARPNESS_WARMUP)?;
        log.sharpness.push((step0, l, r));
    }
    if p.snapshot_every > 0 {
        log.snapshots.push((step0, model.params().to_vec()));
        log.snapshot_states.push(optimizer.state());
    }
    for step in 1..=p.max_steps {
        // Dropout masks of this step (a function of the seed and the step, not of a stream).
        let step_seed = seed_of_batches ^ (step0 + step as u64).wrapping_mul(0xd1b5_4a32_d192_ed03);
        let (loss, grad) = if full {
            match carried.take() {
                Some(c) => c,
                None => model.train_loss_grad(train.x.as_ref(), &train.y, step_seed),
            }
        } else {
            if cursor + bs > n {
                rng.shuffle(&mut order);
                cursor = 0;
                epoch_count += 1;
            }
            let batch = train.subset(&order[cursor..cursor + bs]);
            cursor += bs;
            model.train_loss_grad(batch.x.as_ref(), &batch.y, step_seed)
        };
        if !loss.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Err(diverged(
                step0 + step as u64,
                p.lr,
                loss,
                "the loss or the gradient is not finite; lower the learning rate".into(),
            ));
        }
        if blown(loss) {
            return Err(too_high(loss, step));
        }
        let mut grad = grad;
        if p.grad_clip > 0.0 {
            clip_grad_norm(&mut grad, p.grad_clip);
        }
        let lr = p.lr * p.schedule.factor(step0 + step as u64 - 1, step0 + p.max_steps as u64);
        optimizer.step(model.params_mut(), &grad, lr);
        if model.params().iter().any(|w| !w.is_finite()) {
            return Err(diverged(step0 + step as u64, p.lr, f64::NAN, "the parameters are not finite; lower the learning rate".into()));
        }
        bar.inc(1);
        let epoch = if full { step as f64 } else { (step * bs) as f64 / n as f64 };
        if p.snapshot_every > 0 && step % p.snapshot_every == 0 {
            log.snapshots.push((step0 + step as u64, model.params().to_vec()));
            log.snapshot_states.push(optimizer.state());
        }
        if step % log_every == 0 || step == p.max_steps {
            // A measurement's one product comes with the log's full-batch pass.
            let measured = match (tracker.as_mut(), probe.as_mut()) {
                (Some(t), Some(pr)) if step % p.sharpness_every == 0 => match optimizer.preconditioner() {
                    None => {
                        let (pass, hv) = pr.prepare_with_product(model, &t.v)?;
                        let ((l, r), _) = t.power_step(hv);
                        log.sharpness.push((step0 + step as u64, l, r));
                        Some(pass)
                    }
                    Some(pc) => {
                        // An adaptive optimizer: H's top eigenvalue and P^{-1/2} H P^{-1/2}'s from
                        // one operator at these weights.
                        let pass = pr.prepare(model)?;
                        let ((l, r), _) = t.power_step(pr.hvp(&t.v)?);
                        log.sharpness.push((step0 + step as u64, l, r));
                        let d: Vec<f64> = pc.iter().map(|x| 1.0 / x.sqrt()).collect();
                        let first = pre_tracker.is_none();
                        let pt = pre_tracker.get_or_insert_with(|| SharpnessTracker::new(model.num_params(), seed ^ 0x9e3c_0d11));
                        let (pl, prr) = pt.measure_with(if first { SHARPNESS_WARMUP } else { 1 }, |v| {
                            let u: Vec<f64> = v.iter().zip(&d).map(|(a, b)| a * b).collect();
                            Ok(pr.hvp(&u)?.iter().zip(&d).map(|(a, b)| a * b).collect())
                        })?;
                        log.preconditioned_sharpness.push((step0 + step as u64, pl, prr));
                        Some(pass)
                    }
                },
                _ => None,
            };
            let pass = match measured {
                Some(pass) => pass,
                None => full_batch(model, step, &mut probe)?,
            };
            let (tl, g, gn) = record(model, step, epoch, pass, &mut log)?;
            if blown(tl) {
                return Err(too_high(tl, step));
            }
            bar.set_message(format!("training loss {tl:.3e} |g| {gn:.2e}"));
            if (p.target_loss > 0.0 && tl <= p.target_loss) || (p.grad_tol > 0.0 && gn <= p.grad_tol) {
                break;
            }
            if full && !train_mode {
                carried = Some((tl, g));
            }
        }
    }
    bar.finish_and_clear();
    log.sharpness_products = tracker.map_or(0, |t| t.products) + pre_tracker.map_or(0, |t| t.products);
    if !log.preconditioned_sharpness.is_empty() {
        log.preconditioned_threshold = optimizer.stability_threshold_times_lr().map(|t| t / p.lr);
    }
    log.optimizer_groups = optimizer.groups();
    log.final_state =
        Some(TrainState { optimizer: config, state: optimizer.state(), batches: BatchOrder { shuffles: epoch_count, cursor, ..batches } });
    Ok(log)
}

fn diverged(step: u64, lr: f64, loss: f64, why: String) -> ModelError {
    ModelError::Diverged { step, lr, loss, why }
}

fn short(x: f64) -> String {
    crate::error::short_f64(x)
}

/// The widest hidden layer accepted (wider ones are typos, and their weights would not fit).
pub const MAX_WIDTH: usize = 1 << 24;

/// The network `train` builds for samples of shape `input` and `c` classes: the `layers`
/// list, or the MLP shorthand. Errors name the layer and the shape at that point.
pub fn network_of(p: &TrainParams, input: Shape, c: usize) -> Result<NetArch, ModelError> {
    let outputs = if p.loss == LossKind::Logistic { 1 } else { c };
    if p.layers.is_empty() {
        let mut sizes = vec![input.size()];
        sizes.extend(&p.hidden);
        sizes.push(outputs);
        let arch = crate::Architecture { sizes, activation: p.activation, bias: p.bias, loss: p.loss };
        arch.check()?;
        return Ok(NetArch::mlp(arch));
    }
    let arch = NetArch::new(input, p.layers.clone(), p.loss)?;
    if arch.output_dim() != outputs {
        return Err(ModelError::Invalid(format!(
            "the last layer has {} outputs; the data needs {outputs} ({})",
            arch.output_dim(),
            if p.loss == LossKind::Logistic { "one logit for loss = \"logistic\"".to_string() } else { format!("{c} classes") }
        )));
    }
    Ok(arch)
}
