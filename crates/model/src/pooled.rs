//! An activation followed by a max pooling, as one step of the tangent and signal passes.
use crate::kernels::{gather_argmax, scatter_argmax};
use crate::{Activation, Window};
use faer::{Mat, MatRef};

/// σ'(z) (and σ''(z) where σ has one) at the argmax of the max pooling after an activation,
/// in the pooling's output shape. Why: only those positions reach the rest of the network, so
/// the R-operator routes tangents and signals through (activation, pooling) as one gather or
/// scatter scaled by these, instead of two passes over the activation's full-size values
/// (they were a tenth of a convnet HVP's time).
pub struct PooledDerivatives {
    win: Window,
    d1: Mat<f64>,
    d2: Option<Mat<f64>>,
}

impl PooledDerivatives {
    /// For activation σ = `act` on input `z` followed by the max pooling `win` with output
    /// `y` and routing `arg`; σ'' only if `second`.
    pub fn new(act: Activation, win: Window, z: MatRef<'_, f64>, y: MatRef<'_, f64>, arg: &[usize], second: bool) -> Self {
        let z = gather_argmax(z, arg, &win, 1);
        let mut d1 = Mat::<f64>::zeros(z.nrows(), z.ncols());
        for c in 0..z.ncols() {
            act.d1_slice(col(z.as_ref(), c), col(y, c), d1.col_as_slice_mut(c));
        }
        let d2 = (second && act.has_second_derivative()).then(|| Mat::from_fn(z.nrows(), z.ncols(), |r, c| act.d2(z[(r, c)], y[(r, c)])));
        PooledDerivatives { win, d1, d2 }
    }

    /// The pooling's output tangent from the activation's input tangent `t` (k blocks).
    pub fn forward(&self, t: MatRef<'_, f64>, arg: &[usize], k: usize) -> Mat<f64> {
        let mut out = gather_argmax(t, arg, &self.win, k);
        // .max(1): an empty chunk (none is made today) must not reach chunks_exact_mut(0).
        let rows = self.d1.nrows().max(1);
        for c in 0..out.ncols() {
            let d1 = self.d1.col_as_slice(c);
            out.col_as_slice_mut(c).chunks_exact_mut(rows).for_each(|b| b.iter_mut().zip(d1).for_each(|(t, d)| *t *= d));
        }
        out
    }

    /// The signal at the activation's input from `g` at the pooling's output (k blocks); with
    /// `second` = (the activation's input tangent R{z}, the signal at the pooling's output),
    /// plus the second-order term σ''(z) R{z} ⊙ signal, each product in the order of the
    /// unfused pass.
    pub fn backward(&self, mut g: Mat<f64>, arg: &[usize], second: Option<(&Mat<f64>, MatRef<'_, f64>)>, k: usize) -> Mat<f64> {
        let rows = self.d1.nrows().max(1);
        let rz = match (&self.d2, second) {
            (Some(_), Some((r, sig))) => Some((gather_argmax(r.as_ref(), arg, &self.win, k), sig)),
            _ => None,
        };
        for c in 0..g.ncols() {
            let d1 = self.d1.col_as_slice(c);
            let gc = g.col_as_slice_mut(c);
            gc.chunks_exact_mut(rows).for_each(|b| b.iter_mut().zip(d1).for_each(|(t, d)| *t *= d));
            if let (Some(d2), Some((rz, sig))) = (&self.d2, &rz) {
                let (d2, s) = (d2.col_as_slice(c), col(*sig, c));
                for (b, rb) in gc.chunks_exact_mut(rows).zip(rz.col_as_slice(c).chunks_exact(rows)) {
                    for q in 0..rows {
                        b[q] += d2[q] * rb[q] * s[q];
                    }
                }
            }
        }
        scatter_argmax(g.as_ref(), arg, &self.win, k)
    }
}

/// Column c of a matrix whose columns are contiguous (layer values always are).
fn col(m: MatRef<'_, f64>, c: usize) -> &[f64] {
    m.col(c).try_as_col_major().expect("contiguous layer values").as_slice()
}
