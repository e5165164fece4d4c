//! The elementwise nonlinearities the fused MLP kernels also know: relu, tanh, sigmoid,
//! identity (PyTorch's ReLU, Tanh, Sigmoid, Identity).
use super::pointwise::add_second_order;
use super::{Bare, Entry, Shape, one_input};
use crate::Activation;
use crate::layer::{Aux, Io, Layer, RBackward, col};
use faer::{Mat, MatRef};
use serde_json::{Value, json};

macro_rules! activation_entry {
    ($const:ident, $act:expr, $name:literal, $torch:literal) => {
        /// Registry entry.
        pub const $const: Entry = {
            fn build(inputs: &[Shape]) -> Result<Box<dyn Layer>, String> {
                Ok(Box::new(ActivationLayer { act: $act, shape: one_input($name, inputs)? }))
            }
            Entry {
                name: $name,
                torch: $torch,
                parse: |arg| Bare::parse($name, build, arg),
                from_torch: |_, _| Ok(Bare::config($name, build)),
            }
        };
    };
}
activation_entry!(RELU, Activation::Relu, "relu", "ReLU");
activation_entry!(TANH, Activation::Tanh, "tanh", "Tanh");
activation_entry!(SIGMOID, Activation::Sigmoid, "sigmoid", "Sigmoid");
activation_entry!(IDENTITY, Activation::Identity, "identity", "Identity");

/// σ applied to every value.
#[derive(Debug)]
pub struct ActivationLayer {
    /// Which σ.
    pub act: Activation,
    shape: Shape,
}

/// σ'(z) ⊙ t for k stacked blocks t (the signal back through an activation, or the tangent
/// forward: the same diagonal Jacobian); z and σ(z) are the primal input and output.
pub(crate) fn times_derivative(a: Activation, z: MatRef<'_, f64>, y: MatRef<'_, f64>, t: MatRef<'_, f64>) -> Mat<f64> {
    let n = z.nrows();
    // Written straight into a zeroed matrix: a copy of `t` first (`to_owned`) ran element by
    // element, at a third of the speed of this pass.
    let mut out = Mat::<f64>::zeros(t.nrows(), t.ncols());
    for c in 0..out.ncols() {
        let (zc, yc, tc) = (z.col(c), y.col(c), t.col(c));
        match (zc.try_as_col_major(), yc.try_as_col_major(), tc.try_as_col_major()) {
            // Block by block over the column slices: one dispatch per block, not per element.
            (Some(zs), Some(ys), Some(ts)) if n > 0 => {
                for (block, tb) in out.col_as_slice_mut(c).chunks_mut(n).zip(ts.as_slice().chunks(n)) {
                    a.mul_d1_into(block, tb, zs.as_slice(), ys.as_slice());
                }
            }
            _ => {
                for (r, v) in out.col_as_slice_mut(c).iter_mut().enumerate() {
                    *v = tc[r] * a.d1(zc[r % n], yc[r % n]);
                }
            }
        }
    }
    out
}

impl Layer for ActivationLayer {
    fn kind(&self) -> &'static str {
        self.act.name()
    }
    fn output_shape(&self) -> Shape {
        self.shape
    }
    fn torch_module(&self) -> Value {
        json!({"module": match self.act {
            Activation::Relu => "ReLU",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
            Activation::Identity => "Identity",
        }})
    }
    fn describe(&self) -> String {
        self.act.name().into()
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let mut out = inputs[0].to_owned();
        for c in 0..out.ncols() {
            self.act.f_in_place(out.col_as_slice_mut(c));
        }
        (out, None)
    }
    fn evaluate(&self, _: &[f64], mut input: Mat<f64>) -> Mat<f64> {
        for c in 0..input.ncols() {
            self.act.f_in_place(input.col_as_slice_mut(c));
        }
        input
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        vec![times_derivative(self.act, io.inputs[0], io.output, g)]
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        Some(times_derivative(self.act, io.inputs[0], io.output, t[0]?.as_ref()))
    }
    fn r_backward(&self, r: &RBackward<'_>, _: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let RBackward { io, rg, second, need_inputs, .. } = *r;
        if !need_inputs {
            return vec![];
        }
        let (input, output) = (io.inputs[0], io.output);
        let mut g_in = times_derivative(self.act, input, output, rg);
        // That is `adjoint`; then the second-order term.
        // + σ''(z) R{z} ⊙ g: the only second-order term of an elementwise map.
        if let (Some(s), true) = (second, self.act.has_second_derivative())
            && let Some(r) = s.r_inputs[0]
        {
            add_second_order(&mut g_in, r, s.sig, |c, d| {
                let (z, y) = (col(input, c), col(output, c));
                (0..d.len()).for_each(|q| d[q] = self.act.d2(z[q], y[q]));
            });
        }
        vec![g_in]
    }
    fn as_activation(&self) -> Option<Activation> {
        Some(self.act)
    }
}
