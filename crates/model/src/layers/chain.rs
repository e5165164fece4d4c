//! A layer made of layers in a chain, built when the input's shape is known — nanoGPT's
//! `CausalSelfAttention` is `c_attn` (Linear d → 3d), the causal attention core and `c_proj`
//! (Linear d → d). Its derivatives chain the parts' own: backward and R-backward run the parts
//! in reverse, the exact Hessian's second-order terms get each part's input tangent (the
//! R-forward through the parts before it) and its output's primal signal (the adjoint through
//! the parts after it), exactly as the network does between layers.
use super::{Config, Entry, Shape, as_bias, needs_arguments, one_input, table};
use crate::layer::{Aux, Io, Layer, LayerConfig, ParamCursor, RBackward, SecondOrder, Tensor, aux};
use faer::{Mat, MatRef};
use serde_json::{Value, json};
use std::sync::Arc;

/// Layers applied one after another, their tensors renamed by part.
#[derive(Debug)]
pub struct Chain {
    kind: &'static str,
    parts: Vec<Box<dyn Layer>>,
    /// The PyTorch name of each part's tensors, in order ("c_attn.weight", …).
    names: &'static [&'static str],
    module: Value,
    describe: String,
}

/// Each part's output but the last (the chain's output) and each part's aux.
struct ChainAux {
    values: Vec<Mat<f64>>,
    auxes: Vec<Aux>,
}

impl Chain {
    /// The values around part i: its input and output.
    fn io<'a>(&self, io: &'a Io<'a>, st: &'a ChainAux, i: usize, input: &'a [MatRef<'a, f64>; 1]) -> Io<'a> {
        let output = if i + 1 == self.parts.len() { io.output } else { st.values[i].as_ref() };
        Io { w: io.w, inputs: input, output, aux: &st.auxes[i] }
    }
    fn input_of<'a>(&self, io: &'a Io<'a>, st: &'a ChainAux, i: usize) -> [MatRef<'a, f64>; 1] {
        [if i == 0 { io.inputs[0] } else { st.values[i - 1].as_ref() }]
    }
}

impl Layer for Chain {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn output_shape(&self) -> Shape {
        self.parts.last().expect("a chain has parts").output_shape()
    }
    fn tensors(&self) -> Vec<Tensor> {
        self.parts.iter().flat_map(|p| p.tensors()).zip(self.names).map(|(t, n)| Tensor { name: n, ..t }).collect()
    }
    fn torch_module(&self) -> Value {
        self.module.clone()
    }
    fn describe(&self) -> String {
        self.describe.clone()
    }
    fn flops_per_sample(&self) -> f64 {
        self.parts.iter().map(|p| p.flops_per_sample()).sum()
    }
    fn forward(&self, w: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux) {
        let (mut values, mut auxes) = (Vec::with_capacity(self.parts.len()), Vec::with_capacity(self.parts.len()));
        let mut x = inputs[0].to_owned();
        for p in &self.parts {
            let (y, a) = p.forward(w, &[x.as_ref()]);
            values.push(std::mem::replace(&mut x, y));
            auxes.push(a);
        }
        values.remove(0); // the chain's input is the network's, not kept twice
        (x, Some(Box::new(ChainAux { values, auxes })))
    }
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>> {
        let st = aux::<ChainAux>(io.aux);
        let mut g = g.to_owned();
        for i in (0..self.parts.len()).rev() {
            let input = self.input_of(io, st, i);
            g = self.parts[i].adjoint(&self.io(io, st, i, &input), g.as_ref(), k).remove(0);
        }
        vec![g]
    }
    fn backward(&self, io: &Io<'_>, g: MatRef<'_, f64>, grad: &mut [f64], need_inputs: bool) -> Vec<Mat<f64>> {
        let st = aux::<ChainAux>(io.aux);
        let mut g = g.to_owned();
        for i in (0..self.parts.len()).rev() {
            let input = self.input_of(io, st, i);
            let mut out = self.parts[i].backward(&self.io(io, st, i, &input), g.as_ref(), grad, i > 0 || need_inputs);
            if out.is_empty() {
                return out;
            }
            g = out.remove(0);
        }
        vec![g]
    }
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], v: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>> {
        let st = aux::<ChainAux>(io.aux);
        let mut t = t[0].cloned();
        for i in 0..self.parts.len() {
            let input = self.input_of(io, st, i);
            t = self.parts[i].tangent(&self.io(io, st, i, &input), &[t.as_ref()], v, k);
        }
        t
    }
    fn r_backward(&self, r: &RBackward<'_>, out: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let (io, n) = (r.io, self.parts.len());
        let st = aux::<ChainAux>(io.aux);
        // For the second-order terms: every part's input tangent and output signal.
        let (mut tangents, mut signals): (Vec<Option<Mat<f64>>>, Vec<Mat<f64>>) = (Vec::new(), Vec::new());
        if let Some(second) = r.second {
            tangents.push(second.r_inputs[0].cloned());
            for i in 0..n - 1 {
                let input = self.input_of(io, st, i);
                let next = self.parts[i].tangent(&self.io(io, st, i, &input), &[tangents[i].as_ref()], r.v, r.k);
                tangents.push(next);
            }
            signals.push(second.sig.to_owned());
            for i in (1..n).rev() {
                let input = self.input_of(io, st, i);
                let s = self.parts[i].adjoint(&self.io(io, st, i, &input), signals.last().expect("one").as_ref(), 1).remove(0);
                signals.push(s);
            }
            signals.reverse(); // signals[i]: at part i's output
        }
        let mut rg = r.rg.to_owned();
        for i in (0..n).rev() {
            let input = self.input_of(io, st, i);
            let part_io = self.io(io, st, i, &input);
            let r_inputs = [tangents.get(i).and_then(Option::as_ref)];
            let so = r.second.map(|_| SecondOrder { r_inputs: &r_inputs, sig: signals[i].as_ref() });
            let step =
                RBackward { io: &part_io, rg: rg.as_ref(), v: r.v, k: r.k, second: so.as_ref(), need_inputs: i > 0 || r.need_inputs };
            let mut back = self.parts[i].r_backward(&step, out);
            if back.is_empty() {
                return back;
            }
            rg = back.remove(0);
        }
        vec![rg]
    }
}

// ---- nanoGPT's CausalSelfAttention as a chain ----

#[derive(Debug)]
struct SelfAttentionConfig {
    heads: usize,
    bias: bool,
}

/// Registry entry: `{ causal_self_attention = { heads, bias = true } }`.
pub const SELF_ATTENTION: Entry = Entry {
    name: "causal_self_attention",
    torch: "CausalSelfAttention",
    parse: |arg| {
        let t = table("causal_self_attention", needs_arguments("causal_self_attention", arg)?, &["heads", "bias"])?;
        let heads = super::as_usize(t.get("heads").ok_or("causal_self_attention needs heads")?, "heads")?;
        Ok(Arc::new(SelfAttentionConfig { heads, bias: as_bias(t)? }) as Config)
    },
    from_torch: |m, _| {
        let t = m.as_object().ok_or("CausalSelfAttention entry is not an object")?;
        let heads = super::as_usize(m.get("n_head").ok_or("CausalSelfAttention lacks `n_head`")?, "n_head")?;
        Ok(Arc::new(SelfAttentionConfig { heads, bias: as_bias(t)? }) as Config)
    },
};

const ATTENTION_NAMES: [&str; 4] = ["c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias"];
const ATTENTION_NAMES_NO_BIAS: [&str; 2] = ["c_attn.weight", "c_proj.weight"];

impl LayerConfig for SelfAttentionConfig {
    fn name(&self) -> &'static str {
        "causal_self_attention"
    }
    fn to_value(&self) -> Value {
        json!({"causal_self_attention": {"heads": self.heads, "bias": self.bias}})
    }
    fn build(&self, inputs: &[Shape], params: &mut ParamCursor) -> Result<Box<dyn Layer>, String> {
        let Shape::Seq { d, .. } = one_input("causal_self_attention", inputs)? else {
            return Err("causal_self_attention needs a sequence input [T, d]".into());
        };
        let linear = |out: usize| super::LayerSpec::layer("linear", Some(json!({"out_features": out, "bias": self.bias})));
        let core = super::LayerSpec::layer("causal_attention", Some(json!({"heads": self.heads})));
        let mut parts: Vec<Box<dyn Layer>> = Vec::new();
        let mut shape = inputs[0];
        for spec in [linear(3 * d)?, core?, linear(d)?] {
            let super::LayerSpec::Layer(c) = spec else { unreachable!("registry layers") };
            let part = c.build(&[shape], params)?;
            shape = part.output_shape();
            parts.push(part);
        }
        let names: &'static [&'static str] = if self.bias { &ATTENTION_NAMES } else { &ATTENTION_NAMES_NO_BIAS };
        let module = json!({"module": "CausalSelfAttention", "n_embd": d, "n_head": self.heads, "bias": self.bias});
        Ok(Box::new(Chain { kind: "causal_self_attention", parts, names, module, describe: format!("self-attention ×{}", self.heads) }))
    }
}
