//! A smooth elementwise map y = f(x) written as f, f' and f'' only: the layer, its gradient,
//! its R-operator and its second-order term come from here. A new activation is a
//! [`Pointwise`] type in its own file (see `silu.rs`) and one registry line.
use super::{Bare, Config, Entry, Shape, one_input};
use crate::layer::{Aux, Io, Layer, SecondOrder, col};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::marker::PhantomData;

/// An elementwise function with its first two derivatives.
pub trait Pointwise: std::fmt::Debug + Send + Sync + 'static {
    /// TOML name.
    const NAME: &'static str;
    /// PyTorch module (constructed without arguments).
    const TORCH: &'static str;
    /// f(z).
    fn f(z: f64) -> f64;
    /// f'(z).
    fn d1(z: f64) -> f64;
    /// f''(z).
    fn d2(z: f64) -> f64;
}

fn build<P: Pointwise>(inputs: &[Shape]) -> Result<Box<dyn Layer>, String> {
    Ok(Box::new(PointwiseLayer::<P> { shape: one_input(P::NAME, inputs)?, p: PhantomData }))
}

fn parse<P: Pointwise>(arg: Option<&Value>) -> Result<Config, String> {
    Bare::parse(P::NAME, build::<P>, arg)
}

fn from_torch<P: Pointwise>(_: &Value, _: &[Shape]) -> Result<Config, String> {
    Ok(Bare::config(P::NAME, build::<P>))
}

/// The registry entry of `P`.
pub const fn entry<P: Pointwise>() -> Entry {
    Entry { name: P::NAME, torch: P::TORCH, parse: parse::<P>, from_torch: from_torch::<P> }
}

/// g_in += f''(z) ⊙ R{z} ⊙ g for every block of R{z} (k blocks of g's rows): the second-order
/// term of any elementwise map; `d2(c, out)` writes f''(z) of column c into `out`.
pub(crate) fn add_second_order(g_in: &mut Mat<f64>, r: &Mat<f64>, sig: MatRef<'_, f64>, d2: impl Fn(usize, &mut [f64])) {
    let n = sig.nrows().max(1);
    let mut d = vec![0.0; sig.nrows()];
    for c in 0..g_in.ncols() {
        d2(c, &mut d);
        let sc = col(sig, c);
        for (gb, rb) in g_in.col_as_slice_mut(c).chunks_mut(n).zip(col(r.as_ref(), c).chunks(n)) {
            for q in 0..gb.len() {
                gb[q] += d[q] * rb[q] * sc[q];
            }
        }
    }
}

/// The layer y = f(x).
#[derive(Debug)]
pub struct PointwiseLayer<P> {
    shape: Shape,
    p: PhantomData<P>,
}

/// f'(z) ⊙ t for k stacked blocks t of z's rows.
fn times_d1<P: Pointwise>(z: MatRef<'_, f64>, t: MatRef<'_, f64>) -> Mat<f64> {
    let n = z.nrows().max(1);
    let mut out = Mat::<f64>::zeros(t.nrows(), t.ncols());
    for c in 0..t.ncols() {
        let zc = col(z, c);
        for (o, tb) in out.col_as_slice_mut(c).chunks_mut(n).zip(col(t, c).chunks(n)) {
            for q in 0..o.len() {
                o[q] = tb[q] * P::d1(zc[q]);
            }
        }
    }
    out
}

impl<P: Pointwise> Layer for PointwiseLayer<P> {
    fn kind(&self) -> &'static str {
        P::NAME
    }
    fn output_shape(&self) -> Shape {
        self.shape
    }
    fn torch_module(&self) -> Value {
        json!({ "module": P::TORCH })
    }
    fn describe(&self) -> String {
        P::NAME.into()
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let x = inputs[0];
        (Mat::from_fn(x.nrows(), x.ncols(), |r, c| P::f(x[(r, c)])), None)
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        vec![times_d1::<P>(io.inputs[0], g)]
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        Some(times_d1::<P>(io.inputs[0], t[0]?.as_ref()))
    }
    fn r_backward(
        &self,
        io: &Io<'_>,
        rg: MatRef<'_, f64>,
        _: MatRef<'_, f64>,
        _: usize,
        second: Option<&SecondOrder<'_>>,
        _: &mut Mat<f64>,
        need_inputs: bool,
    ) -> Vec<Mat<f64>> {
        if !need_inputs {
            return vec![];
        }
        let z = io.inputs[0];
        let mut g_in = times_d1::<P>(z, rg);
        // + f''(z) R{z} ⊙ g.
        if let Some(s) = second
            && let Some(r) = s.r_inputs[0]
        {
            add_second_order(&mut g_in, r, s.sig, |c, d| d.iter_mut().zip(col(z, c)).for_each(|(d, &z)| *d = P::d2(z)));
        }
        vec![g_in]
    }
}
