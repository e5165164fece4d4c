//! The last position of a sequence, [T, d] → [d] (PyTorch's `x[:, -1, :]`): what a classifier
//! of a whole sequence reads, as the answer token of modular arithmetic is predicted from the
//! last input position.
use super::{Bare, Entry, Shape, one_input};
use crate::layer::{Aux, Io, Layer};
use faer::{Mat, MatRef};
use serde_json::{Value, json};

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "last_position",
    torch: "LastPosition",
    parse: |arg| Bare::parse("last_position", build, arg),
    from_torch: |_, _| Ok(Bare::config("last_position", build)),
};

fn build(inputs: &[Shape]) -> Result<Box<dyn Layer>, String> {
    let Shape::Seq { t, d } = one_input("last_position", inputs)? else {
        return Err("last_position needs a sequence input [T, d]".into());
    };
    Ok(Box::new(LastPosition { t, d }))
}

/// Row t − 1 of each sample's t rows.
#[derive(Debug)]
pub struct LastPosition {
    t: usize,
    d: usize,
}

impl LastPosition {
    /// Rows s·t + t − 1 of `m` (k stacked blocks of n·t rows): one row per sample and block.
    fn pick(&self, m: MatRef<'_, f64>) -> Mat<f64> {
        Mat::from_fn(m.nrows() / self.t, self.d, |s, c| m[(s * self.t + self.t - 1, c)])
    }
}

impl Layer for LastPosition {
    fn kind(&self) -> &'static str {
        "last_position"
    }
    fn output_shape(&self) -> Shape {
        Shape::Flat(self.d)
    }
    fn torch_module(&self) -> Value {
        json!({"module": "LastPosition"})
    }
    fn describe(&self) -> String {
        "last position".into()
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        (self.pick(inputs[0]), None)
    }
    fn adjoint(&self, _: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        let mut out = Mat::<f64>::zeros(g.nrows() * self.t, self.d);
        for s in 0..g.nrows() {
            for c in 0..self.d {
                out[(s * self.t + self.t - 1, c)] = g[(s, c)];
            }
        }
        vec![out]
    }
    fn tangent(&self, _: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        Some(self.pick(t[0]?.as_ref()))
    }
}
