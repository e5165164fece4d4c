//! Exact curvature-vector products of a network's loss by the R-operator (forward-over-reverse,
//! Pearlmutter 1994), for blocks of vectors, split into the generalized Gauss-Newton and
//! residual parts: H v = G v + R v.
//!
//! Per chunk of samples the forward pass, the loss derivatives and the back-propagated signals
//! are computed once when the operator is built; an application then costs one R-forward and
//! one R-backward pass, expressed as matrix products over the k vectors of the block. The
//! kernels are the fused MLP's (`rop_mlp`) for networks that are MLPs, else each layer's own
//! R-operator composed over the graph (`rop_graph`).
use crate::operator::{Counter, LinearOperator};
use crate::scratch::{recycle, zeroed};
use faer::prelude::ReborrowMut;
use faer::{Mat, MatMut, MatRef};
use hesslab_data::Split;
use hesslab_model::{Network, PassMode};
use rayon::prelude::*;

/// Which curvature matrix an operator applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CurvatureKind {
    /// The exact Hessian of the mean loss.
    Hessian,
    /// Generalized Gauss-Newton G = (1/N) Σ Jᵢᵀ ∇²ℓᵢ Jᵢ.
    GaussNewton,
    /// Residual R = H − G = (1/N) Σ_c ∂ℓ/∂f_c ∇²f_c.
    Residual,
    /// Uncentered second moment of per-sample gradients (1/N) Σ gᵢgᵢᵀ.
    EmpiricalFisher,
    /// Centered covariance of per-sample gradients (1/N) Σ (gᵢ − ḡ)(gᵢ − ḡ)ᵀ.
    GradientCovariance,
}

impl CurvatureKind {
    /// The name pipelines and metadata use.
    pub fn name(self) -> &'static str {
        match self {
            CurvatureKind::Hessian => "hessian",
            CurvatureKind::GaussNewton => "gauss_newton",
            CurvatureKind::Residual => "residual",
            CurvatureKind::EmpiricalFisher => "empirical_fisher",
            CurvatureKind::GradientCovariance => "gradient_covariance",
        }
    }
}

/// Which statistics BatchNorm layers normalize with in a curvature operator (the `batch_norm`
/// key of every curvature stage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchNormMode {
    /// The running statistics: the Hessian of `model.eval()`'s loss (what PyHessian computes).
    #[default]
    Eval,
    /// The statistics of the whole batch the curvature is taken over, with the derivatives
    /// through them: the exact Hessian of the full-batch `model.train()` loss (dropout off).
    Batch,
}

impl BatchNormMode {
    /// The network pass mode.
    pub fn pass_mode(self) -> PassMode {
        match self {
            BatchNormMode::Eval => PassMode::Eval,
            BatchNormMode::Batch => PassMode::Batch,
        }
    }
    /// Whether it is the default, `eval` (left out of serialized parameters, so a stage's
    /// metadata and cache key are what they were before the key existed).
    pub fn is_eval(&self) -> bool {
        *self == BatchNormMode::Eval
    }
    /// The name pipelines and metadata use.
    pub fn name(self) -> &'static str {
        match self {
            BatchNormMode::Eval => "eval",
            BatchNormMode::Batch => "batch",
        }
    }
}

/// A network's cached passes over fixed chunks of samples: each chunk's share of a
/// curvature-block product.
pub(crate) trait ChunkedCurvature: Send + Sync {
    /// Chunks of samples.
    fn num_chunks(&self) -> usize;
    /// out (zeroed on entry, P × k) = chunk i's contribution to A·v (already divided by N).
    fn part(&self, data: &Split, kind: CurvatureKind, i: usize, v: MatRef<'_, f64>, out: &mut Mat<f64>);
    /// out (zeroed on entry, P × k) = A·v over all chunks at once, when the chunks' passes are
    /// coupled (BatchNorm with batch statistics) and `part` cannot be taken alone; false (and
    /// nothing done) otherwise.
    fn apply_coupled(&self, data: &Split, kind: CurvatureKind, v: MatRef<'_, f64>, out: &mut Mat<f64>) -> bool {
        let _ = (data, kind, v, out);
        false
    }
    /// Estimated f64 temporaries of one chunk's `part` per column of v (an upper estimate of the
    /// tangent activations, im2col buffers and per-layer weight-shaped products).
    fn scratch_per_column(&self) -> usize;
}

/// Bytes of temporaries one chunk's product may hold: v is applied in column blocks small
/// enough for this. Why: a 120-column block on a P = 55 660 network held 6 GB (every chunk's
/// P × k partial sum plus its tangent activations at once); the column block size does not
/// depend on the thread count, so results stay bit-identical for any number of threads.
const CHUNK_BYTES_BUDGET: usize = 32 << 20;

/// A curvature operator of a network's mean loss over a fixed set of samples.
pub struct ModelCurvature {
    /// The network at whose parameters the curvature is taken.
    pub model: Network,
    /// The examples the loss averages over (shared: sharpness tracking rebuilds the operator
    /// at every measurement over the same samples).
    pub data: std::sync::Arc<Split>,
    /// Which curvature matrix.
    pub kind: CurvatureKind,
    chunks: Box<dyn ChunkedCurvature>,
    mean_grad: Vec<f64>,
    /// The mean loss at the parameters.
    pub loss: f64,
    /// The fraction of samples classified correctly at the parameters.
    pub accuracy: f64,
    count: Counter,
}

impl ModelCurvature {
    /// The operator, with the forward pass, loss derivatives and back-propagated signals
    /// cached per chunk of samples.
    pub fn new(model: Network, data: impl Into<std::sync::Arc<Split>>, kind: CurvatureKind) -> Self {
        Self::build(model, data.into(), kind, true, BatchNormMode::Eval, None)
    }

    /// [`ModelCurvature::new`] with BatchNorm in `batch_norm` mode, the samples split in
    /// chunks of `chunk_rows` (default: the network's own; the result does not depend on it
    /// beyond rounding). The per-sample-gradient kinds are refused in batch mode on a network
    /// with BatchNorm: batch statistics couple the samples, so there are no per-sample gradients.
    pub fn with_options(
        model: Network,
        data: impl Into<std::sync::Arc<Split>>,
        kind: CurvatureKind,
        batch_norm: BatchNormMode,
        chunk_rows: Option<usize>,
    ) -> Result<Self, crate::HessianError> {
        let coupled = batch_norm == BatchNormMode::Batch && model.as_graph().is_some_and(|g| g.arch.coupled(PassMode::Batch));
        if coupled && matches!(kind, CurvatureKind::EmpiricalFisher | CurvatureKind::GradientCovariance) {
            return Err(crate::HessianError::Invalid(format!(
                "operator = \"{}\" needs per-sample gradients, which batch_norm = \"batch\" does not have (the batch statistics couple the samples); use batch_norm = \"eval\"",
                kind.name()
            )));
        }
        Ok(Self::build(model, data.into(), kind, true, batch_norm, chunk_rows))
    }

    /// With `with_gradient` false, an MLP's mean gradient is not computed (it stays empty):
    /// only for operators that never hand it out (see [`hessian_vector_product`]).
    fn build(
        model: Network,
        data: std::sync::Arc<Split>,
        kind: CurvatureKind,
        with_gradient: bool,
        batch_norm: BatchNormMode,
        chunk_rows: Option<usize>,
    ) -> Self {
        let (chunks, loss, mean_grad, accuracy): (Box<dyn ChunkedCurvature>, f64, Vec<f64>, f64) = match (model.as_mlp(), model.as_graph())
        {
            (Some(m), _) => {
                let (c, l, g, a) = crate::rop_mlp::MlpChunks::new(m.clone(), &data, with_gradient);
                (Box::new(c), l, g, a)
            }
            (None, Some(g)) => {
                let (c, l, gr, a) = crate::rop_graph::GraphChunks::new(g.clone(), &data, batch_norm.pass_mode(), chunk_rows);
                (Box::new(c), l, gr, a)
            }
            (None, None) => unreachable!("a network is an MLP or a graph"),
        };
        ModelCurvature { model, data, kind, chunks, mean_grad, loss, accuracy, count: Counter::default() }
    }

    /// Examples the loss averages over.
    pub fn num_samples(&self) -> usize {
        self.data.len()
    }
    /// The mean gradient at the parameters.
    pub fn mean_gradient(&self) -> &[f64] {
        &self.mean_grad
    }

    /// Σ over chunks (in chunk order) of the chunk's contribution to A·V, in column blocks of
    /// bounded memory; at most one chunk per thread is in flight, its partial sum added (in
    /// chunk order) before the next wave starts.
    fn apply_impl(&self, v: MatRef<'_, f64>, mut out: MatMut<'_, f64>, parallel: bool) {
        let p = self.model.num_params();
        let k = v.ncols();
        let per_column = 8 * (p + self.chunks.scratch_per_column()).max(1);
        let block = (CHUNK_BYTES_BUDGET / per_column).clamp(1, k.max(1));
        out.fill(0.0);
        let n = self.chunks.num_chunks();
        let wave = if parallel { rayon::current_num_threads().max(1) } else { 1 };
        for c0 in (0..k).step_by(block) {
            let c1 = (c0 + block).min(k);
            let vb = v.subcols(c0, c1 - c0);
            let mut ob = out.rb_mut().subcols_mut(c0, c1 - c0);
            let mut all = zeroed(p, c1 - c0);
            if self.chunks.apply_coupled(&self.data, self.kind, vb, &mut all) {
                ob += &all;
                continue;
            }
            recycle(all);
            let part = |i: usize| {
                let mut o = zeroed(p, c1 - c0);
                self.chunks.part(&self.data, self.kind, i, vb, &mut o);
                o
            };
            for w0 in (0..n).step_by(wave) {
                let w1 = (w0 + wave).min(n);
                let parts: Vec<Mat<f64>> = if w1 - w0 > 1 { (w0..w1).into_par_iter().map(part).collect() } else { vec![part(w0)] };
                for pm in parts {
                    ob += &pm;
                    recycle(pm);
                }
            }
        }
        if self.kind == CurvatureKind::GradientCovariance {
            // Subtract ḡ ḡᵀ v.
            let g = &self.mean_grad;
            for j in 0..k {
                let dot: f64 = (0..p).map(|i| g[i] * v[(i, j)]).sum();
                for i in 0..p {
                    out[(i, j)] -= g[i] * dot;
                }
            }
        }
    }

    /// Apply to a block without parallelism over samples (callers parallelize over blocks).
    pub fn apply_block_sequential(&self, v: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        self.count.add(v.ncols());
        self.apply_impl(v, out, false);
    }
}

impl LinearOperator for ModelCurvature {
    fn dim(&self) -> usize {
        self.model.num_params()
    }
    fn apply_block(&self, v: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        self.count.add(v.ncols());
        self.apply_impl(v, out, true);
    }
    fn applications(&self) -> u64 {
        self.count.get()
    }
    fn describe(&self) -> String {
        format!("{} of {} over {} samples", self.kind.name(), self.model.describe(), self.data.len())
    }
}

/// One curvature-vector product without keeping an operator (what an autodiff framework's
/// `jvp(grad)` computes): for an MLP each chunk's passes are built and used at once in one
/// parallel pass, without the mean gradient an operator keeps for solvers (a third of the
/// build) and without holding every chunk's cache. Equal to `ModelCurvature::new(..).apply_vec(v)`
/// bit for bit.
pub fn hessian_vector_product(model: &Network, data: impl Into<std::sync::Arc<Split>>, kind: CurvatureKind, v: &[f64]) -> Vec<f64> {
    assert_eq!(
        v.len(),
        model.num_params(),
        "hessian_vector_product: v has {} entries, the model {} parameters",
        v.len(),
        model.num_params()
    );
    let data = data.into();
    match model.as_mlp() {
        // The gradient covariance subtracts ḡḡᵀv, so it needs the mean gradient.
        Some(m) if kind != CurvatureKind::GradientCovariance => {
            let v = faer::MatRef::from_column_major_slice(v, v.len(), 1);
            crate::rop_mlp::MlpChunks::one_product(m, &data, kind, v).col(0).iter().copied().collect()
        }
        _ => ModelCurvature::build(model.clone(), data, kind, kind == CurvatureKind::GradientCovariance, BatchNormMode::Eval, None)
            .apply_vec(v),
    }
}

/// Central finite-difference Hessian-vector product of the mean loss: an independent
/// cross-check only (it is not exact).
pub fn finite_difference_hvp(model: &Network, data: &Split, v: &[f64], eps: f64) -> Vec<f64> {
    let wp: Vec<f64> = model.params().iter().zip(v).map(|(w, d)| w + eps * d).collect();
    let wm: Vec<f64> = model.params().iter().zip(v).map(|(w, d)| w - eps * d).collect();
    let (_, gp) = model.loss_grad_at(&wp, data.x.as_ref(), &data.y);
    let (_, gm) = model.loss_grad_at(&wm, data.x.as_ref(), &data.y);
    gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * eps)).collect()
}

/// The mean loss, gradient and accuracy of `model` over `data` with one curvature-vector
/// product, as `ModelCurvature::new` followed by `apply_vec` bit for bit; for an MLP (not the
/// gradient covariance) in one parallel pass that keeps no operator.
pub fn gradient_and_product(
    model: &Network,
    data: impl Into<std::sync::Arc<Split>>,
    kind: CurvatureKind,
    v: &[f64],
) -> (f64, Vec<f64>, f64, Vec<f64>) {
    assert_eq!(v.len(), model.num_params(), "gradient_and_product: v has {} entries, the model {} parameters", v.len(), model.num_params());
    let data = data.into();
    match model.as_mlp() {
        Some(m) if kind != CurvatureKind::GradientCovariance => {
            let v = faer::MatRef::from_column_major_slice(v, v.len(), 1);
            let (loss, grad, accuracy, hv) = crate::rop_mlp::MlpChunks::gradient_and_product(m, &data, kind, v);
            (loss, grad, accuracy, hv.col(0).iter().copied().collect())
        }
        _ => {
            let op = ModelCurvature::new(model.clone(), data, kind);
            let hv = op.apply_vec(v);
            (op.loss, op.mean_grad, op.accuracy, hv)
        }
    }
}
