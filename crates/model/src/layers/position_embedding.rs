//! Learned position embeddings: `{ position_embedding = { max_len = L } }` adds row p of a table
//! P (L × d, drawn N(0, 1)) to position p of a sequence [T, d], T ≤ L — nanoGPT's
//! `tok_emb + transformer.wpe(pos)` as one layer. Linear in P and the identity in x: the
//! derivatives sum signals per position; no second-order term.
use super::{Config, Entry, Shape, as_usize, needs_arguments, one_input, table};
use crate::layer::{Aux, DefaultInit, Io, Layer, LayerConfig, ParamCursor, RBackward, Tensor, col};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct PositionEmbeddingConfig {
    max_len: usize,
}

fn args(v: &Value, what: &str) -> Result<PositionEmbeddingConfig, String> {
    let max_len = if v.is_object() {
        let t = table(what, v, &["max_len"])?;
        as_usize(t.get("max_len").ok_or_else(|| format!("{what} needs max_len"))?, "max_len")?
    } else {
        as_usize(v, "max_len")?
    };
    if max_len == 0 {
        return Err(format!("{what} needs max_len ≥ 1"));
    }
    Ok(PositionEmbeddingConfig { max_len })
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "position_embedding",
    torch: "PositionEmbedding",
    parse: |arg| Ok(Arc::new(args(needs_arguments("position_embedding", arg)?, "position_embedding")?) as Config),
    from_torch: |m, _| {
        let l = m.get("num_embeddings").ok_or("PositionEmbedding entry lacks `num_embeddings`")?;
        Ok(Arc::new(args(l, "PositionEmbedding")?) as Config)
    },
};

impl LayerConfig for PositionEmbeddingConfig {
    fn name(&self) -> &'static str {
        "position_embedding"
    }
    fn to_value(&self) -> Value {
        json!({"position_embedding": {"max_len": self.max_len}})
    }
    fn build(&self, inputs: &[Shape], params: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        let Shape::Seq { t, d } = one_input("position_embedding", inputs)? else {
            return Err("position_embedding needs a sequence input [T, d] (after an embedding)".into());
        };
        if t > self.max_len {
            return Err(format!("the sequence has {t} positions, more than max_len = {}", self.max_len));
        }
        let w = params.take((self.max_len as u64).saturating_mul(d as u64))?;
        Ok(Box::new(PositionEmbedding { max_len: self.max_len, t, d, w }))
    }
}

/// x + P[position].
#[derive(Debug)]
pub struct PositionEmbedding {
    max_len: usize,
    t: usize,
    d: usize,
    /// Offset of P (max_len × d, row-major).
    w: usize,
}

impl PositionEmbedding {
    /// `m` + the table at `w` by position (rows r of `m` are position r mod T).
    fn add_table(&self, m: &mut Mat<f64>, w: &[f64]) {
        for c in 0..self.d {
            let column = m.col_as_slice_mut(c);
            for (r, x) in column.iter_mut().enumerate() {
                *x += w[self.w + (r % self.t) * self.d + c];
            }
        }
    }
    /// Σ over samples of `g`'s rows per position, into the table at `w` of `into`.
    fn table_part(&self, g: MatRef<'_, f64>, into: &mut [f64]) {
        for c in 0..self.d {
            for (r, x) in col(g, c).iter().enumerate() {
                into[self.w + (r % self.t) * self.d + c] += x;
            }
        }
    }
}

impl Layer for PositionEmbedding {
    fn kind(&self) -> &'static str {
        "position_embedding"
    }
    fn output_shape(&self) -> Shape {
        Shape::Seq { t: self.t, d: self.d }
    }
    fn tensors(&self) -> Vec<Tensor> {
        vec![Tensor {
            name: "weight",
            shape: vec![self.max_len, self.d],
            range: self.w..self.w + self.max_len * self.d,
            default_init: DefaultInit::Normal { std: 1.0 },
        }]
    }
    fn torch_module(&self) -> Value {
        json!({"module": "PositionEmbedding", "num_embeddings": self.max_len, "embedding_dim": self.d})
    }
    fn describe(&self) -> String {
        format!("+position({})", self.max_len)
    }
    fn forward(&self, w: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let mut y = inputs[0].to_owned();
        self.add_table(&mut y, w);
        (y, None)
    }
    fn adjoint(&self, _: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        vec![g.to_owned()]
    }
    fn backward(&self, io: &Io<'_>, g: MatRef<'_, f64>, grad: &mut [f64], need_inputs: bool) -> Vec<Mat<f64>> {
        self.table_part(g, grad);
        if need_inputs { self.adjoint(io, g, 1) } else { Vec::new() }
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], v: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>> {
        let rows = io.inputs[0].nrows();
        let mut out = t[0].cloned().unwrap_or_else(|| Mat::zeros(k * rows, self.d));
        for j in 0..k {
            let mut block = out.as_mut().subrows_mut(j * rows, rows).to_owned();
            self.add_table(&mut block, col(v, j));
            out.as_mut().subrows_mut(j * rows, rows).copy_from(&block);
        }
        Some(out)
    }
    fn r_backward(&self, r: &RBackward<'_>, out: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let rows = r.io.inputs[0].nrows();
        for j in 0..r.k {
            self.table_part(r.rg.subrows(j * rows, rows), out.col_as_slice_mut(j));
        }
        if r.need_inputs { self.adjoint(r.io, r.rg, r.k) } else { Vec::new() }
    }
}
