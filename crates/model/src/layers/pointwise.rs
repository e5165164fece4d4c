//! A smooth (or piecewise smooth) elementwise map y = f(x) written as f, f′ and f″ only: the
//! layer, its gradient, its R-operator and its second-order term come from here. A new
//! activation is a [`Pointwise`] type in its own file (see `silu.rs`) and one registry line.
use super::{Bare, Config, Entry, Shape, one_input};
use crate::layer::{Aux, Io, Layer, LayerConfig, ParamCursor, RBackward, col};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

/// An elementwise function with its first two derivatives (and its arguments, if any).
pub trait Pointwise: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// TOML name.
    const NAME: &'static str;
    /// f(z).
    fn f(&self, z: f64) -> f64;
    /// f′(z).
    fn d1(&self, z: f64) -> f64;
    /// f″(z).
    fn d2(&self, z: f64) -> f64;
    /// Its PyTorch module with the constructor's arguments.
    fn torch_module(&self) -> Value;
    /// Its TOML form (`"silu"`, `{ leaky_relu = 0.2 }`).
    fn to_value(&self) -> Value {
        json!(Self::NAME)
    }
}

/// The declaration of a pointwise layer with its arguments.
#[derive(Debug)]
struct PointwiseConfig<P>(P);

impl<P: Pointwise> LayerConfig for PointwiseConfig<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn to_value(&self) -> Value {
        self.0.to_value()
    }
    fn build(&self, inputs: &[Shape], _: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        Ok(Box::new(PointwiseLayer { p: self.0.clone(), shape: one_input(P::NAME, inputs)? }))
    }
}

/// The declaration of `p` (for layers with arguments: their parse functions call this).
pub fn config<P: Pointwise>(p: P) -> Config {
    Arc::new(PointwiseConfig(p))
}

fn build<P: Pointwise + Default>(inputs: &[Shape]) -> Result<Box<dyn Layer>, String> {
    Ok(Box::new(PointwiseLayer::<P> { p: P::default(), shape: one_input(P::NAME, inputs)? }))
}

fn parse<P: Pointwise + Default>(arg: Option<&Value>) -> Result<Config, String> {
    Bare::parse(P::NAME, build::<P>, arg)
}

/// A PyTorch entry of an argument-free layer: its arguments must be the fixed ones hesslab's
/// layer has (`ELU` with alpha = 0.5 is another function, refused rather than read as α = 1).
fn from_torch<P: Pointwise + Default>(m: &Value, _: &[Shape]) -> Result<Config, String> {
    let ours = P::default().torch_module();
    if let (Some(given), Some(fixed)) = (m.as_object(), ours.as_object()) {
        for (k, v) in given {
            if k == "module" || k == "inplace" {
                continue;
            }
            match fixed.get(k) {
                Some(f) if f.as_f64().zip(v.as_f64()).is_some_and(|(a, b)| a == b) || f == v => {}
                Some(f) => {
                    return Err(format!(
                        "{} with {k} = {v}: hesslab's `{}` has {k} = {f} only",
                        fixed["module"].as_str().unwrap_or("?"),
                        P::NAME
                    ));
                }
                None => {
                    return Err(format!(
                        "{}: unknown argument `{k}` (hesslab's `{}` takes none)",
                        fixed["module"].as_str().unwrap_or("?"),
                        P::NAME
                    ));
                }
            }
        }
    }
    Ok(Bare::config(P::NAME, build::<P>))
}

/// The registry entry of an argument-free `P` whose PyTorch module is `torch`.
pub const fn entry<P: Pointwise + Default>(torch: &'static str) -> Entry {
    Entry { name: P::NAME, torch, parse: parse::<P>, from_torch: from_torch::<P> }
}

/// g_in += f″(z) ⊙ R{z} ⊙ g for every block of R{z} (k blocks of g's rows): the second-order
/// term of any elementwise map; `d2(c, out)` writes f″(z) of column c into `out`.
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
    p: P,
    shape: Shape,
}

impl<P: Pointwise> PointwiseLayer<P> {
    /// f′(z) ⊙ t for k stacked blocks t of z's rows.
    fn times_d1(&self, z: MatRef<'_, f64>, t: MatRef<'_, f64>) -> Mat<f64> {
        let n = z.nrows().max(1);
        let mut out = Mat::<f64>::zeros(t.nrows(), t.ncols());
        let mut d = vec![0.0; z.nrows()];
        for c in 0..t.ncols() {
            d.iter_mut().zip(col(z, c)).for_each(|(d, &z)| *d = self.p.d1(z));
            for (o, tb) in out.col_as_slice_mut(c).chunks_mut(n).zip(col(t, c).chunks(n)) {
                for q in 0..o.len() {
                    o[q] = tb[q] * d[q];
                }
            }
        }
        out
    }
}

impl<P: Pointwise> Layer for PointwiseLayer<P> {
    fn kind(&self) -> &'static str {
        P::NAME
    }
    fn output_shape(&self) -> Shape {
        self.shape
    }
    fn torch_module(&self) -> Value {
        self.p.torch_module()
    }
    fn describe(&self) -> String {
        P::NAME.into()
    }
    fn forward(&self, _: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let x = inputs[0];
        let mut out = Mat::<f64>::zeros(x.nrows(), x.ncols());
        for c in 0..x.ncols() {
            out.col_as_slice_mut(c).iter_mut().zip(col(x, c)).for_each(|(y, &z)| *y = self.p.f(z));
        }
        (out, None)
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, _: usize) -> Vec<Mat<f64>> {
        vec![self.times_d1(io.inputs[0], g)]
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], _: MatRef<'_, f64>, _: usize) -> Option<Mat<f64>> {
        Some(self.times_d1(io.inputs[0], t[0]?.as_ref()))
    }
    fn r_backward(&self, r: &RBackward<'_>, _: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let RBackward { io, rg, second, need_inputs, .. } = *r;
        if !need_inputs {
            return vec![];
        }
        let z = io.inputs[0];
        let mut g_in = self.times_d1(z, rg);
        // + f″(z) R{z} ⊙ g.
        if let Some(s) = second
            && let Some(r) = s.r_inputs[0]
        {
            add_second_order(&mut g_in, r, s.sig, |c, d| d.iter_mut().zip(col(z, c)).for_each(|(d, &z)| *d = self.p.d2(z)));
        }
        vec![g_in]
    }
}
