//! A network as a graph of layers: residual blocks and named-node graphs flattened into one
//! topologically ordered node list, evaluated in batches with the same fixed chunks and
//! chunk-order sums as the fused MLP, so results are bit-identical for any thread count.
//!
//! Value 0 is the input (channels-last for images); node i reads the values its `inputs` name
//! and writes value i + 1; the last value is the network's output. A chain of layers is the
//! special case where node i reads value i.
use crate::layer::{Aux, Io, Layer, ParamCursor};
use crate::layers::{LayerSpec, MAX_UNITS, Shape};
use crate::mlp::{CHUNK_ROWS, eval_loss};
use crate::{Activation, LossKind, ModelError, PooledDerivatives, Window};
use faer::{Mat, MatRef};
use rayon::prelude::*;
use serde_json::{Value, json};

/// One node: a layer and the values it reads.
#[derive(Debug)]
pub struct Node {
    /// The layer.
    pub layer: Box<dyn Layer>,
    /// Indices of the values it reads (0 = the network's input).
    pub inputs: Vec<usize>,
    /// Its PyTorch attribute path ("layers.3", "layers.2.body.0"), the prefix of its tensors.
    pub path: String,
}

/// A resolved network: nodes, value shapes, parameter count and the loss.
#[derive(Debug)]
pub struct GraphArch {
    /// Shape of one input sample.
    pub input: Shape,
    /// The layers as declared.
    pub specs: Vec<LayerSpec>,
    /// The nodes in evaluation order.
    pub nodes: Vec<Node>,
    /// Shape of every value (`shapes[0]` the input, `shapes[i + 1]` node i's output).
    pub shapes: Vec<Shape>,
    /// Number of parameters.
    pub num_params: usize,
    /// The loss on the outputs.
    pub loss: LossKind,
    /// PyTorch modules of the declared layers (the `architecture` metadata's `modules`).
    pub modules: Vec<Value>,
    /// How many node inputs read each value.
    pub readers: Vec<usize>,
}

struct Builder {
    nodes: Vec<Node>,
    shapes: Vec<Shape>,
    params: ParamCursor,
}

fn invalid(m: String) -> ModelError {
    ModelError::Invalid(m)
}

impl Builder {
    fn push(&mut self, layer: Box<dyn Layer>, inputs: Vec<usize>, at: &dyn Fn(String) -> ModelError) -> Result<usize, ModelError> {
        let out = layer.output_shape();
        if out.size() as u64 > MAX_UNITS {
            return Err(at(format!("its output {} has more than 2^32 values per sample", out.show())));
        }
        self.nodes.push(Node { layer, inputs, path: String::new() });
        self.shapes.push(out);
        Ok(self.shapes.len() - 1)
    }

    /// Prefix the paths of the nodes from `n0` on with `part` (".3", ".body").
    fn prefix(&mut self, n0: usize, part: &str) {
        for n in &mut self.nodes[n0..] {
            n.path = format!("{part}{}", n.path);
        }
    }

    /// One declared entry on value `x`; `place` is where it is declared ("layers[2]").
    fn entry(&mut self, spec: &LayerSpec, inputs: Vec<usize>, place: &str) -> Result<(usize, Value), ModelError> {
        let shapes: Vec<Shape> = inputs.iter().map(|&v| self.shapes[v]).collect();
        let there = shapes.iter().map(Shape::show).collect::<Vec<_>>().join(" and ");
        let at = |m: String| invalid(format!("{place} ({}): {m} (input shape there: {there})", spec.name()));
        let single = || match inputs[..] {
            [x] => Ok(x),
            _ => Err(at(format!("a {} block takes one input", spec.name()))),
        };
        match spec {
            LayerSpec::Layer(config) => {
                let layer = config.build(&shapes, &mut self.params).map_err(&at)?;
                let module = layer.torch_module();
                Ok((self.push(layer, inputs, &at)?, module))
            }
            LayerSpec::Residual { body, shortcut } => {
                let x = single()?;
                let n0 = self.nodes.len();
                let (b, body_modules) = self.chain(body, x, &format!("{place}.body"))?;
                self.prefix(n0, ".body");
                let n1 = self.nodes.len();
                let (s, shortcut_modules) = self.chain(shortcut, x, &format!("{place}.shortcut"))?;
                self.prefix(n1, ".shortcut");
                if self.shapes[b] != self.shapes[s] {
                    return Err(at(format!(
                        "the body's output {} differs from the shortcut's {}; add a projection, e.g. shortcut = [{{ conv2d = {{ kernel_size = 1, … }} }}]",
                        self.shapes[b].show(),
                        self.shapes[s].show()
                    )));
                }
                let add = LayerSpec::layer("add", None).map_err(&at)?;
                let LayerSpec::Layer(add) = add else { unreachable!("add is a registry layer") };
                let layer = add.build(&[self.shapes[s], self.shapes[b]], &mut self.params).map_err(&at)?;
                let out = self.push(layer, vec![s, b], &at)?;
                Ok((out, json!({"module": "Residual", "body": body_modules, "shortcut": shortcut_modules})))
            }
            LayerSpec::Graph(nodes) => {
                let x = single()?;
                let mut names: Vec<(&str, usize)> = vec![("input", x)];
                let mut modules = Vec::with_capacity(nodes.len());
                let mut last = x;
                for (j, n) in nodes.iter().enumerate() {
                    let here = format!("{place}.graph[{j}]");
                    if names.iter().any(|(m, _)| *m == n.name) {
                        return Err(invalid(format!("{here}: node name `{}` is used twice (`input` is the graph's input)", n.name)));
                    }
                    let ins = match &n.inputs {
                        None => vec![last],
                        Some(list) => list
                            .iter()
                            .map(|name| {
                                names.iter().find(|(m, _)| m == name).map(|(_, v)| *v).ok_or_else(|| {
                                    let known = names.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ");
                                    invalid(format!("{here}: input `{name}` is not an earlier node; known: {known}"))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                    };
                    let n0 = self.nodes.len();
                    let (v, module) = self.entry(&n.layer, ins.clone(), &here)?;
                    self.prefix(n0, &format!(".{}", n.name));
                    let read = n.inputs.clone().unwrap_or_else(|| vec![names.last().expect("input").0.to_string()]);
                    modules.push(json!({"name": n.name, "inputs": read, "module": module}));
                    names.push((&n.name, v));
                    last = v;
                }
                // Every node but the last must be read by a later one: a dead branch would
                // get no signal and its parameters a silent zero gradient.
                for (name, v) in &names[1..names.len() - 1] {
                    let read = self.nodes.iter().any(|n| n.inputs.contains(v));
                    if !read {
                        return Err(invalid(format!(
                            "{place}.graph: node `{name}`'s output is never read; every node but the last must be an input of a later one"
                        )));
                    }
                }
                Ok((last, json!({"module": "Graph", "nodes": modules})))
            }
        }
    }

    /// A list of entries from value `x`; tensor paths count the entries with parameters.
    fn chain(&mut self, specs: &[LayerSpec], mut x: usize, place: &str) -> Result<(usize, Vec<Value>), ModelError> {
        let mut modules = Vec::with_capacity(specs.len());
        let mut k = 0;
        for (i, spec) in specs.iter().enumerate() {
            let (n0, p0) = (self.nodes.len(), self.params.len());
            let (v, module) = self.entry(spec, vec![x], &format!("{place}[{i}]"))?;
            if self.params.len() > p0 {
                self.prefix(n0, &format!(".{k}"));
                k += 1;
            }
            modules.push(module);
            x = v;
        }
        Ok((x, modules))
    }
}

impl GraphArch {
    /// Resolve `specs` on inputs of shape `input`; the output must be a vector. Errors name
    /// the layer (`layers[3]`, `layers[2].body[1]`) and the shape there.
    pub fn new(input: Shape, specs: Vec<LayerSpec>, loss: LossKind) -> Result<Self, ModelError> {
        let g = Self::new_unchecked_output(input, specs)?;
        let out = *g.shapes.last().expect("the input");
        if !matches!(out, Shape::Flat(_)) {
            return Err(invalid(format!(
                "the network ends with an image of shape {:?}; end with \"flatten\" and a linear layer",
                out.dims()
            )));
        }
        Ok(GraphArch { loss, ..g })
    }

    /// [`GraphArch::new`] without the check that the output is a vector (and with the MSE loss
    /// as a placeholder): the shapes of a part of a network.
    pub fn new_unchecked_output(input: Shape, specs: Vec<LayerSpec>) -> Result<Self, ModelError> {
        let loss = LossKind::Mse;
        if input.size() == 0 {
            return Err(invalid(format!("the input shape {} is empty", input.show())));
        }
        let mut b = Builder { nodes: Vec::new(), shapes: vec![input], params: ParamCursor::default() };
        let (out, modules) = b.chain(&specs, 0, "layers")?;
        b.prefix(0, "layers");
        debug_assert_eq!(out, b.shapes.len() - 1, "the output is the last value");
        let mut readers = vec![0; b.shapes.len()];
        b.nodes.iter().flat_map(|n| &n.inputs).for_each(|&v| readers[v] += 1);
        Ok(GraphArch { input, specs, num_params: b.params.len(), nodes: b.nodes, shapes: b.shapes, loss, modules, readers })
    }
    /// Outputs of the network.
    pub fn output_dim(&self) -> usize {
        self.shapes.last().expect("the input").size()
    }
    /// Values per sample at the input and after every node, added up.
    pub fn units(&self) -> u64 {
        self.shapes.iter().fold(0u64, |a, s| a.saturating_add(s.size() as u64))
    }
    /// The most values per sample of any value.
    pub fn widest(&self) -> usize {
        self.shapes.iter().map(Shape::size).max().unwrap_or(1)
    }
    /// Row ranges of the chunks that the gradient, evaluation and curvature passes split the
    /// samples into (each chunk one task, results summed in chunk order): at most CHUNK_ROWS
    /// rows, fewer when the widest value would pass ~2 MB per chunk. Why: a chunk's layer
    /// values are allocated per pass, and a convnet's at 256 samples (12 MB per layer for S18
    /// E4's) neither stayed in L2 nor were reused by the allocator (fresh zeroed pages were
    /// 11 % of a curvature product's time); at ~2 MB E4's gradient took 62–68 ms, not 80–83.
    pub fn chunks(&self, n: usize) -> Vec<(usize, usize)> {
        let rows = (CHUNK_BYTES / (8 * self.widest()).max(1)).clamp(1, CHUNK_ROWS);
        (0..n.div_ceil(rows)).map(|c| (c * rows, ((c + 1) * rows).min(n))).collect()
    }
    /// The rows of `x` (PyTorch's flat sample order) as the first node reads them.
    pub fn input_values(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        match self.input {
            Shape::Image { c, h, w } => crate::kernels::unflatten(x, c, h * w),
            Shape::Flat(_) => x.to_owned(),
        }
    }
    /// Tensor names, PyTorch shapes and ranges, in `parameters()` order.
    pub fn tensors(&self) -> crate::Tensors {
        let mut v = Vec::new();
        for n in &self.nodes {
            for t in n.layer.tensors() {
                v.push((format!("{}.{}", n.path, t.name), t.shape, t.range));
            }
        }
        v
    }
    /// Short description, e.g. "1×28×28 conv5×5→10×24×24 relu maxpool2 … linear→10" (a
    /// residual block: its body, its shortcut, then "add").
    pub fn describe(&self) -> String {
        let mut s = self.input.times();
        for n in &self.nodes {
            s.push(' ');
            s.push_str(&n.layer.describe());
        }
        s
    }
    /// FLOP of one sample's forward pass (multiply-adds × 2).
    pub fn flops_per_sample(&self) -> f64 {
        self.nodes.iter().map(|n| n.layer.flops_per_sample()).sum()
    }
    /// The (activation, max pooling) pairs evaluated as one step: `Some` at the activation
    /// node, when the pooling is the next node and the activation's only reader.
    pub fn fused_pairs(&self) -> Vec<Option<(Activation, Window)>> {
        (0..self.nodes.len())
            .map(|i| {
                let next = self.nodes.get(i + 1)?;
                let act = self.nodes[i].layer.as_activation()?;
                let win = next.layer.as_max_pool()?;
                (next.inputs == [i + 1] && self.readers[i + 1] == 1).then_some((act, win))
            })
            .collect()
    }
}

/// Bytes of the widest value in one chunk of samples (see [`GraphArch::chunks`]).
const CHUNK_BYTES: usize = 2 << 20;

/// Bytes of the widest value in one evaluation tile (kept within a core's L2).
const EVAL_TILE_BYTES: usize = 256 << 10;

/// Values of a forward pass: `vals[0]` the input, `vals[i + 1]` node i's output, `aux[i]`
/// what node i kept for its derivatives.
#[derive(Debug)]
pub struct GraphForward {
    /// Input and node outputs.
    pub vals: Vec<Mat<f64>>,
    /// What each node kept.
    pub aux: Vec<Aux>,
}

impl GraphForward {
    /// The network's outputs (n × C).
    pub fn output(&self) -> MatRef<'_, f64> {
        self.vals.last().expect("input").as_ref()
    }
    /// The inputs of node `node` of `arch`.
    pub fn inputs_of<'a>(&'a self, arch: &GraphArch, node: usize) -> Vec<MatRef<'a, f64>> {
        arch.nodes[node].inputs.iter().map(|&v| self.vals[v].as_ref()).collect()
    }
}

/// Adds `m` into the signal slot `acc` (the first contribution is moved in).
pub fn accumulate(acc: &mut Option<Mat<f64>>, m: Mat<f64>) {
    match acc {
        None => *acc = Some(m),
        Some(a) => *a += &m,
    }
}

/// A graph network and its flat parameters in PyTorch order.
#[derive(Debug, Clone)]
pub struct GraphNet {
    /// The nodes.
    pub arch: std::sync::Arc<GraphArch>,
    /// Parameters, PyTorch `parameters()` order, row-major weights.
    pub params: Vec<f64>,
}

impl GraphNet {
    /// A network with these parameters.
    pub fn new(arch: std::sync::Arc<GraphArch>, params: Vec<f64>) -> Self {
        assert_eq!(params.len(), arch.num_params);
        GraphNet { arch, params }
    }

    /// Forward pass of the rows of `x` (PyTorch's flat sample order) at parameters `w`.
    pub fn forward_with(&self, w: &[f64], x: MatRef<'_, f64>) -> GraphForward {
        let nodes = &self.arch.nodes;
        let mut f = GraphForward { vals: Vec::with_capacity(nodes.len() + 1), aux: Vec::with_capacity(nodes.len()) };
        f.vals.push(self.arch.input_values(x));
        for i in 0..nodes.len() {
            let (o, a) = nodes[i].layer.forward(w, &f.inputs_of(&self.arch, i));
            f.vals.push(o);
            f.aux.push(a);
        }
        f
    }

    /// Back-propagate the output signal `g_out`: the signal at every node's output
    /// (`sig[i]` for node i) when `keep`, and the parameter gradient added to `grad`.
    pub fn backward(&self, w: &[f64], fwd: &GraphForward, g_out: Mat<f64>, grad: &mut [f64], keep: bool) -> Vec<Mat<f64>> {
        let nodes = &self.arch.nodes;
        let nn = nodes.len();
        let mut acc: Vec<Option<Mat<f64>>> = (0..=nn).map(|_| None).collect();
        acc[nn] = Some(g_out);
        let mut sig: Vec<Option<Mat<f64>>> = (0..if keep { nn } else { 0 }).map(|_| None).collect();
        // Without the signals kept, an activation and the max pooling after it are one step.
        let fused = if keep { vec![None; nn] } else { self.arch.fused_pairs() };
        let mut i = nn;
        while i > 0 {
            i -= 1;
            let g = acc[i + 1].take().expect("every value but the output has a reader");
            if let Some((act, win)) = i.checked_sub(1).and_then(|a| fused[a]) {
                let arg = crate::layer::aux::<Vec<usize>>(&fwd.aux[i]);
                let x = nodes[i - 1].inputs[0];
                if x != 0 {
                    let pd = PooledDerivatives::new(act, win, fwd.vals[x].as_ref(), fwd.vals[i + 1].as_ref(), arg, false);
                    accumulate(&mut acc[x], pd.backward(g, arg, None, 1));
                }
                i -= 1;
                continue;
            }
            let node = &nodes[i];
            let inputs = fwd.inputs_of(&self.arch, i);
            let io = Io { w, inputs: &inputs, output: fwd.vals[i + 1].as_ref(), aux: &fwd.aux[i] };
            let need = node.inputs.iter().any(|&v| v != 0);
            let g_in = node.layer.backward(&io, g.as_ref(), grad, need);
            for (&v, m) in node.inputs.iter().zip(g_in) {
                if v != 0 {
                    accumulate(&mut acc[v], m);
                }
            }
            if keep {
                sig[i] = Some(g);
            }
        }
        sig.into_iter().map(|s| s.expect("every node's output has a signal")).collect()
    }

    /// Mean loss, gradient and accuracy over the rows of `x` at parameters `w`, in fixed
    /// chunks summed in chunk order.
    pub fn loss_grad_accuracy_at(&self, w: &[f64], x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>, f64) {
        let n = x.nrows();
        let parts: Vec<(f64, Vec<f64>, usize)> = self
            .arch
            .chunks(n)
            .into_par_iter()
            .map(|(r0, r1)| {
                let fwd = self.forward_with(w, x.subrows(r0, r1 - r0));
                let le = eval_loss(self.arch.loss, fwd.output(), &y[r0..r1]);
                let mut g = le.dz;
                g.as_mut().col_iter_mut().for_each(|c| c.iter_mut().for_each(|v| *v /= n as f64));
                let mut out = vec![0.0; w.len()];
                self.backward(w, &fwd, g, &mut out, false);
                (le.loss_sum, out, le.correct)
            })
            .collect();
        let (mut loss, mut correct, mut grad) = (0.0, 0, vec![0.0; w.len()]);
        for (l, g, c) in parts {
            loss += l;
            correct += c;
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        }
        (loss / n as f64, grad, correct as f64 / n as f64)
    }

    /// The network's outputs on the rows of `x` at parameters `w`, keeping no intermediate
    /// values: a few samples at a time through every node, a value's storage reused by its
    /// last reader (activations in place), so each tile's values stay in cache (an evaluation
    /// pass streamed every layer's output of a whole chunk through memory, and that was most
    /// of its time). Per sample the same operations as [`GraphNet::forward_with`].
    pub fn outputs(&self, w: &[f64], x: MatRef<'_, f64>) -> Mat<f64> {
        let n = x.nrows();
        let per_tile = (EVAL_TILE_BYTES / (8 * self.arch.widest()).max(1)).clamp(1, n.max(1));
        let mut out = Mat::<f64>::zeros(n, self.arch.output_dim());
        let nodes = &self.arch.nodes;
        for s0 in (0..n).step_by(per_tile) {
            let ns = per_tile.min(n - s0);
            let mut vals: Vec<Option<Mat<f64>>> = (0..=nodes.len()).map(|_| None).collect();
            let mut left = self.arch.readers.clone();
            vals[0] = Some(self.arch.input_values(x.subrows(s0, ns)));
            for (i, node) in nodes.iter().enumerate() {
                let o = match node.inputs[..] {
                    [v] if left[v] == 1 => node.layer.evaluate(w, vals[v].take().expect("a value is read after it is made")),
                    _ => {
                        let ins: Vec<MatRef<'_, f64>> = node.inputs.iter().map(|&v| vals[v].as_ref().expect("made").as_ref()).collect();
                        node.layer.forward(w, &ins).0
                    }
                };
                for &v in &node.inputs {
                    left[v] -= 1;
                    if left[v] == 0 {
                        vals[v] = None;
                    }
                }
                vals[i + 1] = Some(o);
            }
            out.as_mut().subrows_mut(s0, ns).copy_from(vals[nodes.len()].as_ref().expect("the output"));
        }
        out
    }

    /// Mean loss and accuracy (no gradient).
    pub fn evaluate(&self, x: MatRef<'_, f64>, y: &[u32]) -> (f64, f64) {
        let n = x.nrows();
        if n == 0 {
            return (f64::NAN, f64::NAN);
        }
        let parts: Vec<(f64, usize)> = self
            .arch
            .chunks(n)
            .into_par_iter()
            .map(|(r0, r1)| {
                let out = self.outputs(&self.params, x.subrows(r0, r1 - r0));
                let le = eval_loss(self.arch.loss, out.as_ref(), &y[r0..r1]);
                (le.loss_sum, le.correct)
            })
            .collect();
        let (l, c) = parts.iter().fold((0.0, 0), |(a, b), (l, c)| (a + l, b + c));
        (l / n as f64, c as f64 / n as f64)
    }
}
