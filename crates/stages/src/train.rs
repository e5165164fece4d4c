//! `train`: full-batch GD or mini-batch SGD, optionally continuing from another model.
use hesslab_artifacts::{Dataset, Log, Model, Trajectory};
use hesslab_model::{LossKind, MAX_WIDTH, NetArch, Resume, Shape, Start, TrainParams, TrainState, initialize_network, network_of};
use hesslab_pipeline::resources::prod;
use hesslab_pipeline::{Estimate, Facts, InputFacts, Port, PortSpec, StageContext, StageError, StageKind, port, short_f64};

const INIT_FROM: PortSpec = port::<Model>().optional().renamed("init_from");

/// The optimizer's, schedule's and clipping's arguments, each in PyTorch's ranges (also for
/// the other stages that train: `init_ensemble`).
pub fn check_optimizer(p: &TrainParams) -> Vec<(String, String)> {
    use hesslab_model::optim::{OptimizerConfig as O, Schedule};
    let mut e = Vec::new();
    let mut bad = |key: &str, m: String| e.push((key.to_string(), m));
    let unit = |x: f64| (0.0..1.0).contains(&x);
    if p.momentum != 0.0 && !matches!(&p.optimizer, O::Sgd(c) if c.momentum == 0.0) {
        bad(
            "momentum",
            format!(
                "`momentum` is plain SGD's; give it in the optimizer's table (optimizer = {{ {} = {{ momentum = … }} }})",
                p.optimizer.name()
            ),
        );
    }
    match &p.optimizer {
        O::Sgd(c) => {
            if !unit(c.momentum) || !unit(c.dampening) || c.weight_decay < 0.0 {
                bad("optimizer", "sgd: momentum and dampening in [0, 1), weight_decay ≥ 0".into());
            }
            if c.nesterov && (p.momentum.max(c.momentum) == 0.0 || c.dampening != 0.0) {
                bad("optimizer", "sgd: nesterov needs momentum > 0 and dampening = 0 (as torch.optim.SGD)".into());
            }
        }
        O::Adam(c) | O::AdamW(c) => {
            if !unit(c.betas[0]) || !unit(c.betas[1]) || !(c.eps > 0.0) || c.weight_decay < 0.0 {
                bad("optimizer", format!("{}: betas in [0, 1), eps > 0, weight_decay ≥ 0", p.optimizer.name()));
            }
        }
        O::Rmsprop(c) => {
            if !unit(c.alpha) || !unit(c.momentum) || !(c.eps > 0.0) || c.weight_decay < 0.0 {
                bad("optimizer", "rmsprop: alpha and momentum in [0, 1), eps > 0, weight_decay ≥ 0".into());
            }
        }
        O::Muon(c) => {
            if !unit(c.momentum) || c.weight_decay < 0.0 || !(c.eps > 0.0) || c.ns_steps == 0 || c.ns_steps >= 100 {
                bad("optimizer", "muon: momentum in [0, 1), weight_decay ≥ 0, eps > 0, 1 ≤ ns_steps < 100".into());
            }
            if !["original", "match_rms_adamw", "spectral_unclamped"].contains(&c.adjust_lr_fn.as_str()) {
                bad("optimizer", format!("muon: adjust_lr_fn `{}`; known: original, match_rms_adamw, spectral_unclamped", c.adjust_lr_fn));
            }
            if !unit(c.adamw.betas[0]) || !unit(c.adamw.betas[1]) || !(c.adamw.eps > 0.0) || c.adamw.weight_decay < 0.0 || c.adamw.lr < 0.0
            {
                bad("optimizer", "muon.adamw: betas in [0, 1), eps > 0, weight_decay ≥ 0, lr ≥ 0 (0 = train's lr)".into());
            }
        }
    }
    match &p.schedule {
        Schedule::Step { step_size, gamma } if *step_size == 0 || !(*gamma > 0.0) => {
            bad("schedule", "step: step_size ≥ 1 and gamma > 0".into())
        }
        Schedule::Cosine(d) if !(0.0..=1.0).contains(&d.min_factor) => bad("schedule", "cosine: min_factor in [0, 1]".into()),
        Schedule::WarmupCosine(w) | Schedule::WarmupLinear(w) => {
            let t_max = if w.t_max == 0 { p.max_steps as u64 } else { w.t_max };
            if w.warmup == 0 || w.warmup >= t_max || !(0.0..=1.0).contains(&w.min_factor) {
                bad("schedule", format!("warmup: 1 ≤ warmup < t_max ({t_max}), min_factor in [0, 1]"));
            }
        }
        _ => {}
    }
    if !(p.grad_clip >= 0.0 && p.grad_clip.is_finite()) {
        bad("grad_clip", "grad_clip must be a finite number ≥ 0 (0 = off)".into());
    }
    e
}

/// The `train` stage kind.
pub struct Train;

impl StageKind for Train {
    type Params = TrainParams;
    const KIND: &'static str = "train";
    /// 2: `architecture` metadata is the PyTorch module list; 3: the optimizer state with the
    /// model and the trajectory.
    const VERSION: u32 = 3;
    const DOC: &'static str = "Train a network (`layers` = [conv2d, max_pool2d, avg_pool2d, flatten, linear, activations], or the MLP shorthand `hidden`) with full-batch or mini-batch updates by SGD, Adam, AdamW, RMSprop or Muon (`optimizer`, PyTorch's arguments), a learning-rate `schedule` and optional `grad_clip`; BatchNorm and dropout in train mode; optional `init_from` input continues from another model (LB→SB).";
    const INPUTS: &'static [PortSpec] = &[port::<Dataset>(), INIT_FROM];
    const OUTPUTS: &'static [PortSpec] = &[port::<Model>(), port::<Log>(), port::<Trajectory>().optional()];
    fn not_supported(key: &str) -> Option<&'static str> {
        match key {
            "betas" | "eps" | "weight_decay" | "nesterov" | "dampening" | "alpha" | "amsgrad" | "centered" => {
                Some("an optimizer's arguments go in its table: optimizer = { adam = { betas = [0.9, 0.999], weight_decay = 0.0 } }")
            }
            "scheduler" | "lr_schedule" | "warmup" => {
                Some("the schedule is `schedule`, e.g. schedule = { warmup_cosine = { warmup = 100 } }")
            }
            "clip_grad_norm" => Some("gradient clipping is `grad_clip` (a global norm)"),
            "dropout" => Some("dropout is a layer: { dropout = 0.1 } in `layers`"),
            _ => None,
        }
    }
    fn check(p: &TrainParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !(p.lr > 0.0 && p.lr.is_finite()) {
            e.push(("lr".into(), format!("lr must be > 0, got {}", short_f64(p.lr))));
        }
        if !(0.0..1.0).contains(&p.momentum) {
            e.push(("momentum".into(), "momentum must be in [0, 1)".into()));
        }
        e.extend(check_optimizer(p));
        if p.hidden.contains(&0) {
            e.push(("hidden".into(), "hidden widths must be ≥ 1".into()));
        }
        if let Some(w) = p.hidden.iter().find(|&&w| w > MAX_WIDTH) {
            e.push(("hidden".into(), format!("hidden width {w} is larger than {MAX_WIDTH}")));
        }
        if !p.layers.is_empty() {
            let d = TrainParams::default();
            if p.hidden != d.hidden || p.activation != d.activation || p.bias != d.bias {
                e.push((
                    "layers".into(),
                    "`layers` declares the whole network; remove `hidden`, `activation` and `bias` (the MLP shorthand)".into(),
                ));
            }
        }
        for (key, v) in [("init_std", p.init_std), ("init_radius", p.init_radius)] {
            if !(v > 0.0 && v.is_finite()) {
                e.push((key.into(), format!("{key} must be a finite number > 0, got {}", short_f64(v))));
            }
        }
        if p.sharpness_every > 0 && !p.sharpness_every.is_multiple_of(p.log_every.max(1)) {
            e.push((
                "sharpness_every".into(),
                format!("sharpness_every = {} must be a multiple of log_every = {}", p.sharpness_every, p.log_every),
            ));
        }
        if !(p.divergence_factor == 0.0 || (p.divergence_factor >= 1.0 && p.divergence_factor.is_finite())) {
            e.push((
                "divergence_factor".into(),
                format!("divergence_factor must be 0 (off) or a finite number ≥ 1, got {}", short_f64(p.divergence_factor)),
            ));
        }
        for (key, v) in [("target_loss", p.target_loss), ("grad_tol", p.grad_tol)] {
            if !(v >= 0.0 && v.is_finite()) {
                e.push((key.into(), format!("{key} must be a finite number ≥ 0 (0 = off), got {}", short_f64(v))));
            }
        }
        e
    }
    fn check_inputs(p: &TrainParams, inputs: &InputFacts) -> Vec<(String, String)> {
        let mut e = Vec::new();
        let data = inputs.get(Dataset::NAME).copied().unwrap_or_default();
        if let Some(k) = data.classes {
            if k < 2 {
                e.push((
                    "dataset".into(),
                    format!("the dataset has {k} class(es); a classifier needs at least 2 (with one class every loss is constant)"),
                ));
            } else if p.loss == LossKind::Logistic && k > 2 {
                e.push(("loss".into(), format!("loss = \"logistic\" needs 2 classes, the dataset has {k}")));
            }
        }
        // A sample shape that no network takes (as a file header may claim) is the dataset's
        // problem, not the layers'.
        if let Some(s) = data.shape
            && let Err(m) = Shape::from_dims(&s.iter().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect::<Vec<_>>())
        {
            e.push(("dataset".into(), format!("the dataset's sample shape {s:?} (from its source) is unusable: {m}")));
            return e;
        }
        if let Some(Err(m)) = planned_network(p, inputs) {
            e.push((if p.layers.is_empty() { "hidden" } else { "layers" }.into(), m));
        }
        e
    }
    fn facts(p: &TrainParams, inputs: &InputFacts) -> Facts {
        let data = inputs.get(Dataset::NAME).copied().unwrap_or_default();
        let arch = planned_network(p, inputs).and_then(Result::ok);
        // Snapshots at step 0, every `snapshot_every` steps and at most `max_steps` (a stop on
        // `target_loss` records fewer).
        let snapshots = (p.snapshot_every > 0).then(|| (p.max_steps / p.snapshot_every) as u64 + 1);
        Facts { params: arch.as_ref().map(|a| a.num_params() as u64), units: arch.map(|a| a.units()), snapshots, ..data }
    }
    fn estimate(p: &TrainParams, inputs: &InputFacts) -> Option<Estimate> {
        let data = inputs.get(Dataset::NAME)?;
        let (n, d) = (data.rows?, data.dim?);
        let arch = planned_network(p, inputs)?.ok()?;
        let params = arch.num_params() as u64;
        let units = arch.units();
        let snapshots = if p.snapshot_every > 0 { (p.max_steps / p.snapshot_every + 1) as u64 } else { 0 };
        let state = p.optimizer_config().state_vectors() as u64;
        // Data (and its train/test copies), activations and their gradients for every sample,
        // parameters with gradient, velocity and one partial gradient per 256-sample chunk.
        Some(
            Estimate::f64s(prod(&[n, d, 3]), format!("{n}×{d} data"))
                .plus(Estimate::f64s(prod(&[n, units, 4]), format!("activations of {units} units")))
                .plus(Estimate::f64s(prod(&[params, n.div_ceil(256).saturating_add(4)]), format!("{params} parameters with gradients")))
                .plus(Estimate::f64s(prod(&[params, state.saturating_add(1)]), format!("{} optimizer state", p.optimizer_config().name())))
                .plus(Estimate::f64s(
                    prod(&[params, snapshots, state.saturating_add(1)]),
                    if snapshots > 0 { format!("{snapshots} snapshots with optimizer state") } else { String::new() },
                )),
        )
    }
    fn run(p: &TrainParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ds = ctx.read::<Dataset>(Dataset::NAME)?;
        let (tr, te) = (ds.train(), ds.test());
        if tr.is_empty() {
            return Err(StageError::msg("the dataset has no training examples".to_string()));
        }
        if p.batch_size > tr.len() {
            return Err(StageError::msg(format!("batch_size {} exceeds the {} training examples", p.batch_size, tr.len())));
        }
        if ds.num_classes < 2 {
            return Err(StageError::msg(format!(
                "the dataset has {} class(es); a classifier needs at least 2 (with one class every loss is constant)",
                ds.num_classes
            )));
        }
        let out_dim = if p.loss == LossKind::Logistic {
            if ds.num_classes > 2 {
                return Err(StageError::msg(format!("loss = \"logistic\" needs 2 classes, the dataset has {}", ds.num_classes)));
            }
            1
        } else {
            ds.num_classes
        };
        let (mut net, step0, saved) = match ctx.read_opt::<Model>(INIT_FROM.name)? {
            Some(m) => {
                if m.net.input_dim() != ds.dim || m.net.output_dim() != out_dim {
                    return Err(StageError::msg(format!(
                        "`{}` model {} does not fit data with {} features and {out_dim} outputs",
                        INIT_FROM.name,
                        m.net.describe(),
                        ds.dim
                    )));
                }
                (m.net, m.steps, Some(m.train_state))
            }
            None => {
                let shape = Shape::from_dims(&ds.shape).map_err(StageError::msg)?;
                let arch = network_of(p, shape, ds.num_classes).map_err(StageError::other)?;
                (initialize_network(&arch, p.init, p.init_std, p.init_radius, ctx.seed), 0, None)
            }
        };
        let (start, continued) = continuation(p, step0, saved.as_ref(), ctx)?;
        let mut probe = (p.sharpness_every > 0).then(|| hesslab_hessian::HessianProbe::new(tr.clone()));
        let t0 = std::time::Instant::now();
        let tracking = probe.as_mut().map(|pr| pr as &mut dyn hesslab_model::SharpnessProbe);
        let mut log = hesslab_model::train_tracking_sharpness(&mut net, p, &tr, &te, ctx.seed, &start, &ctx.progress, tracking)
            .map_err(StageError::other)?;
        if let Some(probe) = &probe {
            // Wall times stay out of the artifacts (bit-identical outputs); this line says the cost.
            let total = t0.elapsed().as_secs_f64();
            ctx.progress.line(&format!(
                "sharpness tracking: {} Hessian-vector products; {:.2} s of {:.2} s in operator builds (which also give the log's full-batch pass) and products",
                log.sharpness_products,
                probe.seconds,
                total
            ));
        }
        let warning = (log.step.last().copied().unwrap_or(step0) > step0).then(|| untrained(&log, &tr)).flatten();
        if let Some(w) = &warning {
            ctx.progress.warn(w);
        }
        let steps = log.step.last().copied().unwrap_or(step0);
        let final_train_loss = log.train_loss.last().copied().unwrap_or(f64::NAN);
        let architecture = Some(net.arch());
        let snapshots = std::mem::take(&mut log.snapshots);
        let states = std::mem::take(&mut log.snapshot_states);
        let train_state = log.final_state.take();
        let lr = (!log.sharpness.is_empty()).then_some(p.lr);
        let warning_for_model = warning.clone();
        ctx.write::<Log>(Log::NAME, &Log { metrics: log, architecture: architecture.clone(), lr, continued, warning })?;
        if !snapshots.is_empty() {
            let optimizer = Some((p.optimizer_config(), states));
            ctx.write::<Trajectory>(Trajectory::NAME, &Trajectory { snapshots, architecture, optimizer })?;
        }
        ctx.write_shared::<Model>(
            Model::NAME,
            Model { net, steps, final_train_loss, train_state, warning: warning_for_model, imported: None },
        )
    }
}

/// Why a finished run plainly did not train the network, if it did not: a final training
/// accuracy at chance level (within a tenth of the way from the largest class's share to 1), or
/// a training loss that did not fall below its start.
fn untrained(log: &hesslab_model::TrainLog, train: &hesslab_data::Split) -> Option<String> {
    let (first, last, accuracy) = (*log.train_loss.first()?, *log.train_loss.last()?, *log.train_acc.last()?);
    let last_class = train.num_classes.max(1) - 1;
    let mut counts = vec![0usize; last_class + 1];
    train.y.iter().for_each(|&c| counts[(c as usize).min(last_class)] += 1);
    let chance = *counts.iter().max()? as f64 / train.len().max(1) as f64;
    let mut why = Vec::new();
    if accuracy < chance + 0.1 * (1.0 - chance) {
        why.push(format!("its training accuracy {accuracy:.3} is at chance level (the largest class is {chance:.3} of the samples)"));
    }
    if last >= first {
        why.push(format!("its training loss did not fall ({first:.4} at the start, {last:.4} at the end)"));
    }
    (!why.is_empty()).then(|| format!("the trained network looks untrained: {}; lower or raise `lr`, or train longer", why.join(", and ")))
}

/// Where a run continuing an `init_from` model (whose saved training state is `saved`; `None`
/// without `init_from`) starts, and what it continued, for the log: "weights", "optimizer" or
/// "exact".
fn continuation<'a>(
    p: &TrainParams,
    step0: u64,
    saved: Option<&'a Option<TrainState>>,
    ctx: &StageContext,
) -> Result<(Start<'a>, Option<String>), StageError> {
    let Some(saved) = saved else { return Ok((Start::at(step0), None)) };
    let config = p.optimizer_config();
    let weights = |why: Option<String>| {
        if let Some(why) = why {
            ctx.progress.line(&format!("train: continuing `{}` with a fresh {} optimizer: {why}", INIT_FROM.name, config.name()));
        }
        Ok((Start::at(step0), Some(Resume::Weights.name().to_string())))
    };
    let describe = |c: &hesslab_model::optim::OptimizerConfig| serde_json::to_string(c).unwrap_or_default();
    match (p.resume, saved) {
        (Resume::Weights, _) => weights(None),
        (Resume::Exact, None) => Err(StageError::msg(format!(
            "resume = \"exact\": the `{}` model has no training state (it was not written by `train`)",
            INIT_FROM.name
        ))),
        (Resume::Optimizer, None) => weights(None),
        (Resume::Exact, Some(s)) if s.optimizer != config => Err(StageError::msg(format!(
            "resume = \"exact\" needs the optimizer that trained the `{}` model, {}; this stage has {}",
            INIT_FROM.name,
            describe(&s.optimizer),
            describe(&config)
        ))),
        (Resume::Optimizer, Some(s)) if s.optimizer != config => {
            weights(Some(format!("the model was trained by {}, this stage has {}", describe(&s.optimizer), describe(&config))))
        }
        (Resume::Optimizer, Some(s)) => {
            Ok((Start { steps: step0, optimizer: Some(&s.state), batches: None }, Some(Resume::Optimizer.name().into())))
        }
        (Resume::Exact, Some(s)) => {
            Ok((Start { steps: step0, optimizer: Some(&s.state), batches: Some(s.batches) }, Some(Resume::Exact.name().into())))
        }
    }
}

/// The network the parameters declare on the planned dataset (None when its size is not
/// known before running).
fn planned_network(p: &TrainParams, inputs: &InputFacts) -> Option<Result<NetArch, String>> {
    let data = inputs.get(Dataset::NAME)?;
    // Through the checked constructor: a file header can claim any sizes.
    let dims: Vec<usize> = match data.shape {
        Some(s) => s.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?,
        None => vec![usize::try_from(data.dim?).ok()?],
    };
    let shape = match Shape::from_dims(&dims) {
        Ok(s) => s,
        Err(m) => return Some(Err(m)),
    };
    let classes = usize::try_from(data.classes?).ok()?;
    Some(network_of(p, shape, classes).map_err(|e| e.to_string()))
}
