//! Concatenation of two or more inputs along channels (images of one height and width) or
//! features (vectors): `torch.cat(xs, dim=1)`.
use super::{Bare, Entry, Shape};
use crate::layer::{Aux, Io, Layer};
use faer::{Mat, MatRef};
use serde_json::{Value, json};

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "concat",
    torch: "Concat",
    parse: |arg| Bare::parse("concat", build, arg),
    from_torch: |_, _| Ok(Bare::config("concat", build)),
};

fn build(inputs: &[Shape]) -> Result<Box<dyn Layer>, String> {
    if inputs.len() < 2 {
        return Err(format!("concat takes two or more inputs, got {} (in a graph node, name them in `inputs`)", inputs.len()));
    }
    if inputs.iter().any(|s| matches!(s, Shape::Seq { .. })) {
        return Err("concat of sequences is not supported yet (it would join PyTorch's dim 2, not 1)".into());
    }
    let same = |s: &Shape| s.with_columns(1) == inputs[0].with_columns(1);
    if let Some(s) = inputs.iter().find(|s| !same(s)) {
        return Err(format!("concat joins along channels/features; {} and {} differ elsewhere", inputs[0].show(), s.show()));
    }
    let widths: Vec<usize> = inputs.iter().map(Shape::columns).collect();
    Ok(Box::new(Concat { shape: inputs[0].with_columns(widths.iter().sum()), widths }))
}

/// [x₀ x₁ …] along columns (channels-last storage makes channels columns).
#[derive(Debug)]
pub struct Concat {
    shape: Shape,
    widths: Vec<usize>,
}

impl Concat {
    fn join(&self, parts: &[Option<MatRef<'_, f64>>]) -> Option<Mat<f64>> {
        let rows = parts.iter().flatten().next()?.nrows();
        let mut out = Mat::<f64>::zeros(rows, self.shape.columns());
        let mut c0 = 0;
        for (p, &w) in parts.iter().zip(&self.widths) {
            if let Some(p) = p {
                out.as_mut().subcols_mut(c0, w).copy_from(p);
            }
            c0 += w;
        }
        Some(out)
    }
    fn split(&self, g: MatRef<'_, f64>) -> Vec<Mat<f64>> {
        let mut c0 = 0;
        self.widths
            .iter()
            .map(|&w| {
                let part = g.subcols(c0, w).to_owned();
                c0 += w;
                part
            })
            .collect()
    }
}

impl Layer for Concat {
    fn kind(&self) -> &'static str {
        "concat"
    }
    fn output_shape(&self) -> Shape {
        self.shape
    }
    fn torch_module(&self) -> Value {
        json!({"module": "Concat", "dim": 1})
    }
    fn describe(&self) -> String {
        format!("concat→{}", self.shape.times())
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let parts: Vec<_> = inputs.iter().map(|x| Some(*x)).collect();
        (self.join(&parts).expect("two or more inputs"), None)
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>> {
        let _ = (io, k);
        self.split(g)
    }
    fn tangent(&self, _: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        let parts: Vec<_> = t.iter().map(|x| x.map(|m| m.as_ref())).collect();
        self.join(&parts)
    }
}
