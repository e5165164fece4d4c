//! A fully connected network evaluated in batches with faer matrix products.
//!
//! Samples are rows: activations are N × width matrices. A weight W (n_out × n_in, row-major in
//! the flat vector, PyTorch's layout) is, read column-major, exactly Wᵀ (n_in × n_out), so
//! Z = A·Wᵀ + 1bᵀ uses the parameter slice in place with no copy.
use crate::arch::{Architecture, LayerLayout, LossKind, sigmoid};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Rows per chunk when a batch is split across threads. Fixed (not derived from the thread
/// count) so that sums are formed in the same order whatever the parallelism: bit-identical.
pub const CHUNK_ROWS: usize = 256;

/// A fully connected network: architecture and flat parameters in PyTorch order.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// Layer sizes, activation, bias, loss.
    pub arch: Architecture,
    /// Parameters, PyTorch `parameters()` order, row-major weights.
    pub params: Vec<f64>,
}

/// Pre-activations `z[l]` and activations `a[l]` of every layer (the last layer is linear:
/// `a[L-1]` is not stored, its output is `z[L-1]`).
#[derive(Debug, Clone)]
pub struct Forward {
    /// Pre-activations of every layer (samples × units).
    pub z: Vec<Mat<f64>>,
    /// Activations of every layer.
    pub a: Vec<Mat<f64>>,
}

impl Forward {
    /// The network's outputs (pre-softmax).
    pub fn output(&self) -> MatRef<'_, f64> {
        self.z.last().unwrap().as_ref()
    }
    /// Input of layer l: x for l = 0, else a[l-1].
    pub fn input<'a>(&'a self, x: MatRef<'a, f64>, l: usize) -> MatRef<'a, f64> {
        if l == 0 { x } else { self.a[l - 1].as_ref() }
    }
}

/// Loss of a batch and its first derivative with respect to the outputs.
#[derive(Debug, Clone)]
pub struct LossEval {
    /// Sum over samples (divide by N for the mean).
    pub loss_sum: f64,
    /// Per-sample ∂ℓ/∂f (N × C), not divided by N.
    pub dz: Mat<f64>,
    /// Softmax probabilities (cross-entropy), sigmoid outputs (logistic), outputs (MSE).
    pub probs: Mat<f64>,
    /// Correctly classified samples.
    pub correct: usize,
}

/// Wᵀ of layer `ly` as an n_in × n_out view of the flat parameters.
#[inline]
pub fn weight_t<'a>(params: &'a [f64], ly: &LayerLayout) -> MatRef<'a, f64> {
    MatRef::from_column_major_slice(&params[ly.w..ly.w + ly.n_in * ly.n_out], ly.n_in, ly.n_out)
}
/// The weight of layer `ly`, transposed (n_in × n_out), mutable.
#[inline]
pub fn weight_t_mut<'a>(params: &'a mut [f64], ly: &LayerLayout) -> MatMut<'a, f64> {
    MatMut::from_column_major_slice_mut(&mut params[ly.w..ly.w + ly.n_in * ly.n_out], ly.n_in, ly.n_out)
}

/// dst (+)= lhs · rhs, sequential (parallelism is over chunks, above this level).
#[inline]
pub fn mm(dst: MatMut<'_, f64>, acc: Accum, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) {
    matmul(dst, acc, lhs, rhs, 1.0, Par::Seq);
}

impl Mlp {
    /// A network with these parameters.
    pub fn new(arch: Architecture, params: Vec<f64>) -> Self {
        assert_eq!(params.len(), arch.num_params());
        Mlp { arch, params }
    }
    /// Number of parameters P.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// Forward pass of the rows of `x` with parameters `w` (defaults to self.params).
    pub fn forward_with(&self, w: &[f64], x: MatRef<'_, f64>) -> Forward {
        let layers = self.arch.layers();
        let nl = layers.len();
        let n = x.nrows();
        let mut z = Vec::with_capacity(nl);
        let mut a: Vec<Mat<f64>> = Vec::with_capacity(nl);
        for (l, ly) in layers.iter().enumerate() {
            let mut zl = Mat::<f64>::zeros(n, ly.n_out);
            let input = if l == 0 { x } else { a[l - 1].as_ref() };
            mm(zl.as_mut(), Accum::Replace, input, weight_t(w, ly));
            if let Some(b) = ly.b {
                for j in 0..ly.n_out {
                    let bj = w[b + j];
                    for v in zl.col_mut(j).iter_mut() {
                        *v += bj;
                    }
                }
            }
            if l + 1 < nl {
                let act = self.arch.activation;
                let mut al = Mat::<f64>::zeros(n, ly.n_out);
                for j in 0..ly.n_out {
                    act.f_slice(zl.col_as_slice(j), al.col_as_slice_mut(j));
                }
                a.push(al);
            }
            z.push(zl);
        }
        Forward { z, a }
    }
    /// The forward pass at the network's own parameters.
    pub fn forward(&self, x: MatRef<'_, f64>) -> Forward {
        self.forward_with(&self.params, x)
    }

    /// Loss value, ∂ℓ/∂f and predictions for outputs `f` and labels `y`.
    pub fn eval_loss(&self, f: MatRef<'_, f64>, y: &[u32]) -> LossEval {
        eval_loss(self.arch.loss, f, y)
    }

    /// Back-propagate output signals `g_out` (N × C): the signal at every layer's pre-activation.
    pub fn backprop(&self, w: &[f64], fwd: &Forward, g_out: Mat<f64>) -> Vec<Mat<f64>> {
        let layers = self.arch.layers();
        let nl = layers.len();
        let mut sig: Vec<Mat<f64>> = vec![Mat::new(); nl];
        sig[nl - 1] = g_out;
        for l in (1..nl).rev() {
            let ly = &layers[l];
            let g = &sig[l];
            let mut prev = Mat::<f64>::zeros(g.nrows(), ly.n_in);
            mm(prev.as_mut(), Accum::Replace, g.as_ref(), weight_t(w, ly).transpose());
            let act = self.arch.activation;
            let (zp, ap) = (&fwd.z[l - 1], &fwd.a[l - 1]);
            for j in 0..ly.n_in {
                act.mul_d1_slice(prev.col_as_slice_mut(j), zp.col_as_slice(j), ap.col_as_slice(j));
            }
            sig[l - 1] = prev;
        }
        sig
    }

    /// out (+)= Σ_l gradient contributions of layer signals: dWᵀ = Aᵀ G, db = 1ᵀG.
    pub fn accumulate(&self, x: MatRef<'_, f64>, fwd: &Forward, sig: &[Mat<f64>], out: &mut [f64]) {
        for (l, ly) in self.arch.layers().iter().enumerate() {
            let input = fwd.input(x, l);
            mm(weight_t_mut(out, ly), Accum::Add, input.transpose(), sig[l].as_ref());
            if let Some(b) = ly.b {
                for j in 0..ly.n_out {
                    out[b + j] += sig[l].col(j).iter().sum::<f64>();
                }
            }
        }
    }

    /// Mean loss and its gradient over the rows of `x` at parameters `w`, computed in fixed
    /// chunks in parallel and summed in chunk order.
    pub fn loss_grad_at(&self, w: &[f64], x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>) {
        let (loss, grad, _) = self.loss_grad_accuracy_at(w, x, y);
        (loss, grad)
    }

    /// Mean loss, gradient and accuracy from one forward/backward pass.
    pub fn loss_grad_accuracy_at(&self, w: &[f64], x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>, f64) {
        let n = x.nrows();
        let parts: Vec<(f64, Vec<f64>, usize)> = chunks(n)
            .into_par_iter()
            .map(|(r0, r1)| {
                let xc = x.subrows(r0, r1 - r0);
                let fwd = self.forward_with(w, xc);
                let le = eval_loss(self.arch.loss, fwd.output(), &y[r0..r1]);
                let mut g = le.dz;
                for v in g.as_mut().col_iter_mut().flat_map(|c| c.iter_mut()) {
                    *v /= n as f64;
                }
                let sig = self.backprop(w, &fwd, g);
                let mut out = vec![0.0; w.len()];
                self.accumulate(xc, &fwd, &sig, &mut out);
                (le.loss_sum, out, le.correct)
            })
            .collect();
        let mut loss = 0.0;
        let mut correct = 0;
        let mut grad = vec![0.0; w.len()];
        for (l, g, c) in parts {
            loss += l;
            correct += c;
            for (a, b) in grad.iter_mut().zip(&g) {
                *a += b;
            }
        }
        (loss / n as f64, grad, correct as f64 / n as f64)
    }
    /// Mean loss and its gradient over the rows of `x`.
    pub fn loss_grad(&self, x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>) {
        self.loss_grad_at(&self.params, x, y)
    }

    /// Mean loss and accuracy (no gradient).
    pub fn evaluate(&self, x: MatRef<'_, f64>, y: &[u32]) -> (f64, f64) {
        let n = x.nrows();
        if n == 0 {
            return (f64::NAN, f64::NAN);
        }
        let parts: Vec<(f64, usize)> = chunks(n)
            .into_par_iter()
            .map(|(r0, r1)| {
                let fwd = self.forward(x.subrows(r0, r1 - r0));
                let le = self.eval_loss(fwd.output(), &y[r0..r1]);
                (le.loss_sum, le.correct)
            })
            .collect();
        let (l, c) = parts.iter().fold((0.0, 0), |(a, b), (l, c)| (a + l, b + c));
        (l / n as f64, c as f64 / n as f64)
    }

    /// Per-sample output Jacobian ∂f(xᵢ)/∂w (C × P) of one example.
    pub fn output_jacobian(&self, x_row: MatRef<'_, f64>) -> Mat<f64> {
        assert_eq!(x_row.nrows(), 1);
        let c = self.arch.output_dim();
        let p = self.num_params();
        let fwd = self.forward(x_row);
        let mut j = Mat::<f64>::zeros(c, p);
        for k in 0..c {
            let mut g = Mat::<f64>::zeros(1, c);
            g[(0, k)] = 1.0;
            let sig = self.backprop(&self.params, &fwd, g);
            let mut row = vec![0.0; p];
            self.accumulate(x_row, &fwd, &sig, &mut row);
            for (q, v) in row.iter().enumerate() {
                j[(k, q)] = *v;
            }
        }
        j
    }
}

/// Row ranges of at most CHUNK_ROWS rows.
pub fn chunks(n: usize) -> Vec<(usize, usize)> {
    (0..n.div_ceil(CHUNK_ROWS)).map(|c| (c * CHUNK_ROWS, ((c + 1) * CHUNK_ROWS).min(n))).collect()
}

/// Loss value, its derivative and class probabilities of outputs `f`.
pub fn eval_loss(kind: LossKind, f: MatRef<'_, f64>, y: &[u32]) -> LossEval {
    match kind {
        LossKind::CrossEntropy => cross_entropy(f, y),
        LossKind::Mse => mse(f, y),
        LossKind::Logistic => logistic(f, y),
    }
}

/// Softmax cross-entropy, class column by class column so that the exponentials run as
/// vectorized kernels over the samples; every sum keeps its order (over classes per sample,
/// then over samples).
fn cross_entropy(f: MatRef<'_, f64>, y: &[u32]) -> LossEval {
    let (n, c) = (f.nrows(), f.ncols());
    // Row maxima and the first class attaining them (the prediction).
    let mut m = vec![f64::NEG_INFINITY; n];
    let mut arg = vec![0usize; n];
    for k in 0..c {
        for (i, &v) in f.col(k).iter().enumerate() {
            if v > m[i] {
                m[i] = v;
                arg[i] = k;
            }
        }
    }
    let mut sum = vec![0.0; n];
    let mut col = vec![0.0; n];
    for k in 0..c {
        col.iter_mut().zip(f.col(k).iter()).for_each(|(d, &v)| *d = v);
        crate::vmath::exp_shifted_in_place(&mut col, &m);
        sum.iter_mut().zip(&col).for_each(|(s, e)| *s += e);
    }
    let lse: Vec<f64> = m.iter().zip(&sum).map(|(m, s)| m + s.ln()).collect();
    let (mut loss, mut correct) = (0.0, 0);
    for i in 0..n {
        loss += lse[i] - f[(i, y[i] as usize)];
        correct += usize::from(arg[i] == y[i] as usize);
    }
    let mut dz = Mat::<f64>::zeros(n, c);
    let mut probs = Mat::<f64>::zeros(n, c);
    for k in 0..c {
        let p = probs.col_as_slice_mut(k);
        p.iter_mut().zip(f.col(k).iter()).for_each(|(d, &v)| *d = v);
        crate::vmath::exp_shifted_in_place(p, &lse);
        for ((d, &pi), &yi) in dz.col_as_slice_mut(k).iter_mut().zip(&*p).zip(y) {
            *d = pi - if yi as usize == k { 1.0 } else { 0.0 };
        }
    }
    LossEval { loss_sum: loss, dz, probs, correct }
}

/// ½‖f − onehot(y)‖² per sample.
fn mse(f: MatRef<'_, f64>, y: &[u32]) -> LossEval {
    let (n, c) = (f.nrows(), f.ncols());
    let mut dz = Mat::<f64>::zeros(n, c);
    let mut probs = Mat::<f64>::zeros(n, c);
    let (mut loss, mut correct) = (0.0, 0);
    for i in 0..n {
        let yi = y[i] as usize;
        let mut arg = 0;
        for k in 0..c {
            let t = if k == yi { 1.0 } else { 0.0 };
            let d = f[(i, k)] - t;
            loss += 0.5 * d * d;
            dz[(i, k)] = d;
            probs[(i, k)] = f[(i, k)];
            if f[(i, k)] > f[(i, arg)] {
                arg = k;
            }
        }
        correct += usize::from(arg == yi);
    }
    LossEval { loss_sum: loss, dz, probs, correct }
}

/// Binary logistic loss on one output: softplus(z) − t z.
fn logistic(f: MatRef<'_, f64>, y: &[u32]) -> LossEval {
    let (n, c) = (f.nrows(), f.ncols());
    let mut dz = Mat::<f64>::zeros(n, c);
    let mut probs = Mat::<f64>::zeros(n, c);
    let (mut loss, mut correct) = (0.0, 0);
    for i in 0..n {
        let z = f[(i, 0)];
        let t = y[i] as f64;
        // Stable for large |z|.
        let sp = if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
        loss += sp - t * z;
        let s = sigmoid(z);
        probs[(i, 0)] = s;
        dz[(i, 0)] = s - t;
        correct += usize::from((s > 0.5) == (y[i] == 1));
    }
    LossEval { loss_sum: loss, dz, probs, correct }
}

/// Per-sample ∂²ℓ/∂f² applied to the rows of `r` (N × C), given `probs` from `eval_loss`.
pub fn loss_hess_apply(kind: LossKind, probs: MatRef<'_, f64>, r: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
    let (n, c) = (r.nrows(), r.ncols());
    match kind {
        LossKind::CrossEntropy => {
            for i in 0..n {
                let mut pr = 0.0;
                for k in 0..c {
                    pr += probs[(i, k)] * r[(i, k)];
                }
                for k in 0..c {
                    out[(i, k)] = probs[(i, k)] * (r[(i, k)] - pr);
                }
            }
        }
        LossKind::Mse => out.copy_from(r),
        LossKind::Logistic => {
            for i in 0..n {
                let s = probs[(i, 0)];
                out[(i, 0)] = s * (1.0 - s) * r[(i, 0)];
            }
        }
    }
}
