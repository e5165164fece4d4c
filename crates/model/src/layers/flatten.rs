//! Flatten C×H×W to C·H·W (PyTorch's `nn.Flatten`: C, H, W row-major); the identity on a vector.
use super::{Bare, Entry, Shape, one_input};
use crate::kernels::{flatten, unflatten};
use crate::layer::{Aux, Io, Layer};
use faer::{Mat, MatRef};
use serde_json::{Value, json};

/// Registry entry.
pub const ENTRY: Entry = Entry {
    name: "flatten",
    torch: "Flatten",
    parse: |arg| Bare::parse("flatten", build, arg),
    from_torch: |_, _| Ok(Bare::config("flatten", build)),
};

fn build(inputs: &[Shape]) -> Result<Box<dyn Layer>, String> {
    let input = one_input("flatten", inputs)?;
    if matches!(input, Shape::Seq { .. }) {
        return Err(
            "flatten of a sequence [T, d] is not supported yet; end a sequence with \"last_position\" (an [H, W] image needs its channel axis: N × 1 × H × W)".into(),
        );
    }
    // A vector is flattened as a one-position image of d channels: the identity.
    Ok(Box::new(Flatten { c: input.columns(), hw: input.rows_per_sample() }))
}

/// Channels-last image to PyTorch's C, H, W flat order.
#[derive(Debug)]
pub struct Flatten {
    c: usize,
    hw: usize,
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }
    fn output_shape(&self) -> Shape {
        Shape::Flat(self.c * self.hw)
    }
    fn torch_module(&self) -> Value {
        json!({"module": "Flatten"})
    }
    fn describe(&self) -> String {
        "flatten".into()
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        (flatten(inputs[0], self.c, self.hw), None)
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>> {
        let _ = (io, k);
        vec![unflatten(g, self.c, self.hw)]
    }
    fn tangent(&self, _: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        Some(flatten(t[0]?.as_ref(), self.c, self.hw))
    }
}
