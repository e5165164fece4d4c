//! The parameter-free core of nanoGPT's `CausalSelfAttention`: `{ causal_attention = { heads } }`
//! reads a sequence [T, 3d] whose position rows are [q | k | v] (what `c_attn` writes), and per
//! head (d/heads features each) computes softmax(mask(Q Kᵀ / √(d/heads))) V with the causal mask
//! (position i attends to j ≤ i), heads side by side: [T, d] (before `c_proj`).
//!
//! Per sample and head, with s = 1/√hd, S = s Q Kᵀ, A = softmax_rows(S) (0 above the diagonal),
//! Y = A V and signal G = ∂L/∂Y:
//! - backward: dV = Aᵀ G, dA = G Vᵀ, dS = A ⊙ (dA − rowsum(A ⊙ dA)), dQ = s dS K, dK = s dSᵀ Q;
//! - R-forward: tS = s (tQ Kᵀ + Q tKᵀ), tA = A ⊙ (tS − rowsum(A ⊙ tS)), tY = tA V + A tV;
//! - R-backward (the exact Hessian adds the terms through tA, tQ, tK, tV with the primal G):
//!   R{dV} = Aᵀ R + tAᵀ G, R{dA} = R Vᵀ + G tVᵀ,
//!   R{dS} = A ⊙ (R{dA} − rowsum(A ⊙ R{dA} + tA ⊙ dA)) + tA ⊙ (dA − rowsum(A ⊙ dA)),
//!   R{dQ} = s (R{dS} K + dS tK), R{dK} = s (R{dS}ᵀ Q + dSᵀ tQ).
use super::{Config, Entry, Shape, as_usize, needs_arguments, one_input, table};
use crate::layer::{Aux, Io, Layer, LayerConfig, ParamCursor, RBackward, aux};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct CausalAttentionConfig {
    heads: usize,
}

fn heads(v: &Value) -> Result<usize, String> {
    let h = if v.is_object() {
        let t = table("causal_attention", v, &["heads"])?;
        as_usize(t.get("heads").ok_or("causal_attention needs heads")?, "heads")?
    } else {
        as_usize(v, "heads")?
    };
    if h == 0 { Err("causal_attention needs heads ≥ 1".into()) } else { Ok(h) }
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "causal_attention",
    torch: "CausalAttention",
    parse: |arg| Ok(Arc::new(CausalAttentionConfig { heads: heads(needs_arguments("causal_attention", arg)?)? }) as Config),
    from_torch: |m, _| {
        Ok(Arc::new(CausalAttentionConfig { heads: heads(m.get("n_head").ok_or("CausalAttention lacks `n_head`")?)? }) as Config)
    },
};

impl LayerConfig for CausalAttentionConfig {
    fn name(&self) -> &'static str {
        "causal_attention"
    }
    fn to_value(&self) -> Value {
        json!({"causal_attention": {"heads": self.heads}})
    }
    fn build(&self, inputs: &[Shape], _: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        let Shape::Seq { t, d: d3 } = one_input("causal_attention", inputs)? else {
            return Err("causal_attention needs a sequence input [T, 3d] (q, k, v side by side, as c_attn writes them)".into());
        };
        if d3 % 3 != 0 || (d3 / 3) % self.heads != 0 {
            return Err(format!("causal_attention: the input's {d3} features are not 3 × d with d divisible by heads = {}", self.heads));
        }
        Ok(Box::new(CausalAttention { t, d: d3 / 3, heads: self.heads }))
    }
}

/// Causal multi-head softmax attention of q, k, v rows.
#[derive(Debug)]
pub struct CausalAttention {
    t: usize,
    d: usize,
    heads: usize,
}

/// The attention weights A of every (sample, head), kept by the forward pass.
struct Weights(Vec<Mat<f64>>);

impl CausalAttention {
    fn hd(&self) -> usize {
        self.d / self.heads
    }
    fn scale(&self) -> f64 {
        1.0 / (self.hd() as f64).sqrt()
    }
    /// Part `which` (0 = q, 1 = k, 2 = v) of head h of sample s of `x` (rows s·T.., [q | k | v]).
    fn part(&self, x: MatRef<'_, f64>, s: usize, h: usize, which: usize) -> Mat<f64> {
        let c0 = which * self.d + h * self.hd();
        x.submatrix(s * self.t, c0, self.t, self.hd()).to_owned()
    }
    /// Head h of sample s of an output-shaped matrix (rows s·T.., d columns).
    fn head(&self, y: MatRef<'_, f64>, s: usize, h: usize) -> Mat<f64> {
        y.submatrix(s * self.t, h * self.hd(), self.t, self.hd()).to_owned()
    }
    /// A ⊙ (M − rowsum(A ⊙ M)): the softmax's Jacobian (transposed, it is symmetric) on M.
    fn softmax_jvp(a: &Mat<f64>, m: &Mat<f64>) -> Mat<f64> {
        let t = a.nrows();
        let mut out = Mat::<f64>::zeros(t, t);
        for i in 0..t {
            let dot: f64 = (0..t).map(|j| a[(i, j)] * m[(i, j)]).sum();
            for j in 0..t {
                out[(i, j)] = a[(i, j)] * (m[(i, j)] - dot);
            }
        }
        out
    }
    /// rowsum(P ⊙ Q) per row, as a column broadcast: the extra term of R{dS}.
    fn rowdot(p: &Mat<f64>, q: &Mat<f64>) -> Vec<f64> {
        (0..p.nrows()).map(|i| (0..p.ncols()).map(|j| p[(i, j)] * q[(i, j)]).sum()).collect()
    }
    /// Write head h of sample s: dQ, dK, dV into columns [q | k | v] of `out` at rows `r0`.
    fn put(&self, out: &mut Mat<f64>, r0: usize, h: usize, parts: [&Mat<f64>; 3]) {
        for (which, m) in parts.into_iter().enumerate() {
            let c0 = which * self.d + h * self.hd();
            for i in 0..self.t {
                for c in 0..self.hd() {
                    out[(r0 + i, c0 + c)] += m[(i, c)];
                }
            }
        }
    }
    /// The input signal of `g` (k stacked blocks) with the forward pass's weights: J_xᵀ g.
    fn signal(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Mat<f64> {
        let x = io.inputs[0];
        let a = &aux::<Weights>(io.aux).0;
        let n = x.nrows() / self.t;
        let s = self.scale();
        let mut out = Mat::<f64>::zeros(k * x.nrows(), 3 * self.d);
        for j in 0..k {
            let gj = g.subrows(j * x.nrows(), x.nrows());
            for smp in 0..n {
                for h in 0..self.heads {
                    let (q, kk, v) = (self.part(x, smp, h, 0), self.part(x, smp, h, 1), self.part(x, smp, h, 2));
                    let (aw, gh) = (&a[smp * self.heads + h], self.head(gj, smp, h));
                    let dv = aw.transpose() * &gh;
                    let ds = Self::softmax_jvp(aw, &(&gh * v.transpose()));
                    let dq = &ds * &kk * faer::Scale(s);
                    let dk = ds.transpose() * &q * faer::Scale(s);
                    self.put(&mut out, j * x.nrows() + smp * self.t, h, [&dq, &dk, &dv]);
                }
            }
        }
        out
    }
}

impl Layer for CausalAttention {
    fn kind(&self) -> &'static str {
        "causal_attention"
    }
    fn output_shape(&self) -> Shape {
        Shape::Seq { t: self.t, d: self.d }
    }
    fn torch_module(&self) -> Value {
        json!({"module": "CausalAttention", "n_embd": self.d, "n_head": self.heads})
    }
    fn describe(&self) -> String {
        format!("causal attention ×{}", self.heads)
    }
    fn flops_per_sample(&self) -> f64 {
        // Q Kᵀ and A V per head: 2 · T² · hd each, ×2 for multiply-adds.
        4.0 * (self.t * self.t * self.d) as f64
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let x = inputs[0];
        let n = x.nrows() / self.t;
        let s = self.scale();
        let mut y = Mat::<f64>::zeros(x.nrows(), self.d);
        let mut weights = Vec::with_capacity(n * self.heads);
        for smp in 0..n {
            for h in 0..self.heads {
                let (q, k, v) = (self.part(x, smp, h, 0), self.part(x, smp, h, 1), self.part(x, smp, h, 2));
                let scores = &q * k.transpose() * faer::Scale(s);
                let mut a = Mat::<f64>::zeros(self.t, self.t);
                for i in 0..self.t {
                    let m = (0..=i).map(|j| scores[(i, j)]).fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = (0..=i).map(|j| (scores[(i, j)] - m).exp()).sum();
                    (0..=i).for_each(|j| a[(i, j)] = (scores[(i, j)] - m).exp() / z);
                }
                let yh = &a * &v;
                y.as_mut().submatrix_mut(smp * self.t, h * self.hd(), self.t, self.hd()).copy_from(&yh);
                weights.push(a);
            }
        }
        (y, Some(Box::new(Weights(weights))))
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>> {
        vec![self.signal(io, g, k)]
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>> {
        let tx = t[0]?;
        let x = io.inputs[0];
        let a = &aux::<Weights>(io.aux).0;
        let (n, rows, s) = (x.nrows() / self.t, x.nrows(), self.scale());
        let mut out = Mat::<f64>::zeros(k * rows, self.d);
        for j in 0..k {
            let txj = tx.as_ref().subrows(j * rows, rows);
            for smp in 0..n {
                for h in 0..self.heads {
                    let (q, kk, v) = (self.part(x, smp, h, 0), self.part(x, smp, h, 1), self.part(x, smp, h, 2));
                    let (tq, tk, tv) = (self.part(txj, smp, h, 0), self.part(txj, smp, h, 1), self.part(txj, smp, h, 2));
                    let aw = &a[smp * self.heads + h];
                    let ts = (&tq * kk.transpose() + &q * tk.transpose()) * faer::Scale(s);
                    let ta = Self::softmax_jvp(aw, &ts);
                    let ty = &ta * &v + aw * &tv;
                    out.as_mut().submatrix_mut(j * rows + smp * self.t, h * self.hd(), self.t, self.hd()).copy_from(&ty);
                }
            }
        }
        Some(out)
    }
    fn r_backward(&self, r: &RBackward<'_>, _: &mut Mat<f64>) -> Vec<Mat<f64>> {
        if !r.need_inputs {
            return Vec::new();
        }
        let mut out = self.signal(r.io, r.rg, r.k);
        let Some(second) = r.second else { return vec![out] };
        let Some(tx) = second.r_inputs[0] else { return vec![out] };
        // The terms of the exact Hessian: the primal signal through the tangents.
        let x = r.io.inputs[0];
        let a = &aux::<Weights>(r.io.aux).0;
        let (n, rows, s) = (x.nrows() / self.t, x.nrows(), self.scale());
        for j in 0..r.k {
            let txj = tx.as_ref().subrows(j * rows, rows);
            for smp in 0..n {
                for h in 0..self.heads {
                    let (q, kk, v) = (self.part(x, smp, h, 0), self.part(x, smp, h, 1), self.part(x, smp, h, 2));
                    let (tq, tk, tv) = (self.part(txj, smp, h, 0), self.part(txj, smp, h, 1), self.part(txj, smp, h, 2));
                    let (aw, g) = (&a[smp * self.heads + h], self.head(second.sig, smp, h));
                    let ta = Self::softmax_jvp(aw, &((&tq * kk.transpose() + &q * tk.transpose()) * faer::Scale(s)));
                    let da = &g * v.transpose();
                    let ds = Self::softmax_jvp(aw, &da);
                    // R{dS} beyond the part `signal` computed from R alone (A ⊙ (R{dA}' − …)):
                    // the G tVᵀ share of R{dA}, the tA ⊙ dA share of the row sum, and tA's term.
                    let extra_da = &g * tv.transpose();
                    let extra = Self::softmax_jvp(aw, &extra_da);
                    let cross = Self::rowdot(&ta, &da);
                    let base = Self::rowdot(aw, &da);
                    let mut rds = extra;
                    for i in 0..self.t {
                        for jj in 0..self.t {
                            rds[(i, jj)] += -aw[(i, jj)] * cross[i] + ta[(i, jj)] * (da[(i, jj)] - base[i]);
                        }
                    }
                    let dv = ta.transpose() * &g;
                    let dq = (&rds * &kk + &ds * &tk) * faer::Scale(s);
                    let dk = (rds.transpose() * &q + ds.transpose() * &tq) * faer::Scale(s);
                    self.put(&mut out, j * rows + smp * self.t, h, [&dq, &dk, &dv]);
                }
            }
        }
        vec![out]
    }
}
