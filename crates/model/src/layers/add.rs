//! The sum of two or more inputs of one shape (a residual connection's `+`).
use super::{Bare, Entry, Shape};
use crate::layer::{Aux, Io, Layer};
use faer::{Mat, MatRef};
use serde_json::{Value, json};

/// Registry entry.
pub const ENTRY: Entry =
    Entry { name: "add", torch: "Add", parse: |arg| Bare::parse("add", build, arg), from_torch: |_, _| Ok(Bare::config("add", build)) };

fn build(inputs: &[Shape]) -> Result<Box<dyn Layer>, String> {
    if inputs.len() < 2 {
        return Err(format!("add takes two or more inputs, got {} (in a graph node, name them in `inputs`)", inputs.len()));
    }
    if let Some(s) = inputs.iter().find(|s| **s != inputs[0]) {
        return Err(format!("add's inputs differ in shape: {} and {}", inputs[0].show(), s.show()));
    }
    Ok(Box::new(Add { shape: inputs[0], n: inputs.len() }))
}

/// y = x₀ + x₁ + …
#[derive(Debug)]
pub struct Add {
    shape: Shape,
    n: usize,
}

/// Σ of the present terms in order; `None` when none is.
fn sum<'a>(terms: impl Iterator<Item = Option<MatRef<'a, f64>>>) -> Option<Mat<f64>> {
    let mut acc: Option<Mat<f64>> = None;
    for t in terms.flatten() {
        match &mut acc {
            None => acc = Some(t.to_owned()),
            Some(a) => *a += t,
        }
    }
    acc
}

impl Layer for Add {
    fn kind(&self) -> &'static str {
        "add"
    }
    fn output_shape(&self) -> Shape {
        self.shape
    }
    fn torch_module(&self) -> Value {
        json!({"module": "Add"})
    }
    fn describe(&self) -> String {
        "add".into()
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        (sum(inputs.iter().map(|x| Some(*x))).expect("two or more inputs"), None)
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>> {
        let _ = (io, k);
        (0..self.n).map(|_| g.to_owned()).collect()
    }
    fn tangent(&self, _: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        sum(t.iter().map(|x| x.map(|m| m.as_ref())))
    }
}
