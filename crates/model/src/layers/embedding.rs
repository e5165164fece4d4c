//! Token embeddings: `{ embedding = { num_embeddings = V, embedding_dim = d } }` maps a sample of
//! T token ids ([T], the ids stored as numbers) to the sequence [T, d] of their rows of the
//! table W (V × d, PyTorch's `nn.Embedding.weight`, drawn N(0, 1)).
//!
//! y is linear in W and the ids are data, so the derivatives are row gathers and scatters:
//! ∂L/∂W[v] = Σ over positions holding v of ∂L/∂y; R{y} = V_W rows; no second-order term.
//! A sample with an id that is not an integer in 0..V gives NaN at every position, which every
//! stage downstream refuses as a non-finite loss (the forward pass cannot fail on its own).
use super::{Config, Entry, Shape, as_usize, needs_arguments, one_input, table};
use crate::layer::{Aux, DefaultInit, Io, Layer, LayerConfig, ParamCursor, RBackward, Tensor, col};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct EmbeddingConfig {
    vocab: usize,
    dim: usize,
}

fn args(v: &Value, what: &str) -> Result<EmbeddingConfig, String> {
    let t = table(what, v, &["num_embeddings", "embedding_dim"])?;
    let need = |k: &str| t.get(k).ok_or_else(|| format!("{what} needs {k}")).and_then(|x| as_usize(x, k));
    let (vocab, dim) = (need("num_embeddings")?, need("embedding_dim")?);
    if vocab == 0 || dim == 0 {
        return Err(format!("{what} needs num_embeddings ≥ 1 and embedding_dim ≥ 1"));
    }
    Ok(EmbeddingConfig { vocab, dim })
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "embedding",
    torch: "Embedding",
    parse: |arg| Ok(Arc::new(args(needs_arguments("embedding", arg)?, "embedding")?) as Config),
    from_torch: |m, _| {
        let fixed =
            [("padding_idx", Value::Null), ("max_norm", Value::Null), ("scale_grad_by_freq", json!(false)), ("sparse", json!(false))];
        super::refuse_other_torch_args(m, "Embedding", &fixed)?;
        let mut t = m.as_object().cloned().unwrap_or_default();
        t.retain(|k, _| k == "num_embeddings" || k == "embedding_dim");
        Ok(Arc::new(args(&Value::Object(t), "Embedding")?) as Config)
    },
};

impl LayerConfig for EmbeddingConfig {
    fn name(&self) -> &'static str {
        "embedding"
    }
    fn to_value(&self) -> Value {
        json!({"embedding": {"num_embeddings": self.vocab, "embedding_dim": self.dim}})
    }
    fn build(&self, inputs: &[Shape], params: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        let Shape::Flat(t) = one_input("embedding", inputs)? else {
            return Err("embedding reads token ids: its input is one sequence of T ids per sample, shape [T]".into());
        };
        let w = params.take((self.vocab as u64).saturating_mul(self.dim as u64))?;
        Ok(Box::new(Embedding { vocab: self.vocab, dim: self.dim, t, w }))
    }
}

/// Rows of the table W, one per token.
#[derive(Debug)]
pub struct Embedding {
    vocab: usize,
    dim: usize,
    /// Positions per sample.
    t: usize,
    /// Offset of W (V × d, row-major).
    w: usize,
}

impl Embedding {
    /// The token id at position p of sample s, if it is one.
    fn id(&self, x: MatRef<'_, f64>, s: usize, p: usize) -> Option<usize> {
        let v = x[(s, p)];
        (v >= 0.0 && v.fract() == 0.0 && v < self.vocab as f64).then_some(v as usize)
    }
    /// For every sample and position of `x`: rows of `table` (V × d at `off` in `w`) into a
    /// (samples·T) × d matrix, NaN for an invalid id.
    fn gather(&self, table: &[f64], x: MatRef<'_, f64>) -> Mat<f64> {
        let n = x.nrows();
        let mut out = Mat::<f64>::zeros(n * self.t, self.dim);
        for s in 0..n {
            // One invalid id poisons the whole sample: every position a later layer may read.
            let ids: Option<Vec<usize>> = (0..self.t).map(|p| self.id(x, s, p)).collect();
            for p in 0..self.t {
                let row = s * self.t + p;
                match &ids {
                    Some(ids) => (0..self.dim).for_each(|c| out[(row, c)] = table[ids[p] * self.dim + c]),
                    None => (0..self.dim).for_each(|c| out[(row, c)] = f64::NAN),
                }
            }
        }
        out
    }
    /// Σ of `g`'s rows into the table rows of their tokens (the table at `off` of `into`).
    fn scatter(&self, x: MatRef<'_, f64>, g: MatRef<'_, f64>, into: &mut [f64]) {
        for s in 0..x.nrows() {
            for p in 0..self.t {
                if let Some(v) = self.id(x, s, p) {
                    let row = s * self.t + p;
                    for c in 0..self.dim {
                        into[self.w + v * self.dim + c] += g[(row, c)];
                    }
                }
            }
        }
    }
    fn table<'a>(&self, w: &'a [f64]) -> &'a [f64] {
        &w[self.w..self.w + self.vocab * self.dim]
    }
}

impl Layer for Embedding {
    fn kind(&self) -> &'static str {
        "embedding"
    }
    fn output_shape(&self) -> Shape {
        Shape::Seq { t: self.t, d: self.dim }
    }
    fn tensors(&self) -> Vec<Tensor> {
        vec![Tensor {
            name: "weight",
            shape: vec![self.vocab, self.dim],
            range: self.w..self.w + self.vocab * self.dim,
            default_init: DefaultInit::Normal { std: 1.0 },
        }]
    }
    fn torch_module(&self) -> Value {
        json!({"module": "Embedding", "num_embeddings": self.vocab, "embedding_dim": self.dim})
    }
    fn describe(&self) -> String {
        format!("embedding {}→{}", self.vocab, self.dim)
    }
    fn forward(&self, w: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        (self.gather(self.table(w), inputs[0]), None)
    }
    fn adjoint(&self, io: &Io<'_>, _: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>> {
        // Token ids are data: nothing flows back into them.
        vec![Mat::zeros(k * io.inputs[0].nrows(), self.t)]
    }
    fn backward(&self, io: &Io<'_>, g: MatRef<'_, f64>, grad: &mut [f64], need_inputs: bool) -> Vec<Mat<f64>> {
        self.scatter(io.inputs[0], g, grad);
        if need_inputs { self.adjoint(io, g, 1) } else { Vec::new() }
    }
    fn tangent(&self, io: &Io<'_>, _: &[Option<&Mat<f64>>], v: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>> {
        let x = io.inputs[0];
        let rows = x.nrows() * self.t;
        let mut out = Mat::<f64>::zeros(k * rows, self.dim);
        for j in 0..k {
            let block = self.gather(self.table(col(v, j)), x);
            out.as_mut().subrows_mut(j * rows, rows).copy_from(&block);
        }
        Some(out)
    }
    fn r_backward(&self, r: &RBackward<'_>, out: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let x = r.io.inputs[0];
        let rows = x.nrows() * self.t;
        for j in 0..r.k {
            self.scatter(x, r.rg.subrows(j * rows, rows), out.col_as_slice_mut(j));
        }
        if r.need_inputs { self.adjoint(r.io, r.rg, r.k) } else { Vec::new() }
    }
}
