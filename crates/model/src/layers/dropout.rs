//! Dropout (PyTorch's `nn.Dropout(p)`): in a training pass each value is zeroed with
//! probability p and the rest scaled by 1/(1 − p); in every other pass — evaluation and every
//! curvature stage — the identity, as `model.eval()`. `{ dropout = 0.1 }`.
//!
//! Masks are drawn from a counter-based generator of (training step seed, node, row of the
//! batch, column), not from a stream: a rerun draws the same masks whatever the chunking or
//! thread count (bit-identical Parquet), though not PyTorch's (its generator is another).
use super::{Config, Entry, Shape, needs_arguments, one_input};
use crate::layer::{Aux, Io, Layer, LayerConfig, ParamCursor, aux};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct DropoutConfig {
    p: f64,
}

fn probability(v: &Value) -> Result<Config, String> {
    let p = v.as_f64().filter(|p| (0.0..1.0).contains(p)).ok_or(format!("dropout's probability must be a number in [0, 1), got {v}"))?;
    Ok(Arc::new(DropoutConfig { p }) as Config)
}

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "dropout",
    torch: "Dropout",
    parse: |arg| probability(needs_arguments("dropout", arg)?),
    from_torch: |m, _| probability(m.get("p").unwrap_or(&json!(0.5))),
};

impl LayerConfig for DropoutConfig {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn to_value(&self) -> Value {
        json!({ "dropout": self.p })
    }
    fn build(&self, inputs: &[Shape], _: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        Ok(Box::new(Dropout { shape: one_input("dropout", inputs)?, p: self.p }))
    }
}

/// Zeroes values with probability `p` in training passes.
#[derive(Debug)]
pub struct Dropout {
    shape: Shape,
    p: f64,
}

/// The kept values' scale (0 or 1/(1 − p)) of a training pass, per value.
struct Mask(Mat<f64>);

/// SplitMix64's finalizer: a well-mixed 64-bit value of a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Dropout {
    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }
    /// A training pass on rows `row0..` of the batch, masks drawn from `seed` (one per step
    /// and node).
    pub fn forward_train(&self, x: MatRef<'_, f64>, seed: u64, row0: usize) -> (Mat<f64>, Aux) {
        let scale = 1.0 / (1.0 - self.p);
        let cols = x.ncols() as u64;
        let mask = Mat::<f64>::from_fn(x.nrows(), x.ncols(), |r, c| {
            let u = (mix(seed ^ mix((row0 + r) as u64 * cols + c as u64)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            if u < self.p { 0.0 } else { scale }
        });
        let y = Mat::<f64>::from_fn(x.nrows(), x.ncols(), |r, c| x[(r, c)] * mask[(r, c)]);
        (y, Some(Box::new(Mask(mask))))
    }
    fn apply(a: &Aux, g: MatRef<'_, f64>) -> Mat<f64> {
        match a {
            None => g.to_owned(),
            Some(_) => {
                let m = &aux::<Mask>(a).0;
                let rows = m.nrows();
                Mat::<f64>::from_fn(g.nrows(), g.ncols(), |r, c| g[(r, c)] * m[(r % rows, c)])
            }
        }
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }
    fn output_shape(&self) -> Shape {
        self.shape
    }
    fn torch_module(&self) -> Value {
        json!({"module": "Dropout", "p": self.p})
    }
    fn describe(&self) -> String {
        format!("dropout{}", self.p)
    }
    fn as_dropout(&self) -> Option<&Dropout> {
        Some(self)
    }
    /// The identity (evaluation); training passes call [`Dropout::forward_train`].
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        (inputs[0].to_owned(), None)
    }
    fn evaluate(&self, _: &[f64], input: Mat<f64>) -> Mat<f64> {
        input
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        vec![Self::apply(io.aux, g)]
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        Some(Self::apply(io.aux, t[0]?.as_ref()))
    }
}
