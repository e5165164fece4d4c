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
    /// Its hesslab attribute path ("layers.3", "layers.2.body.0"), the prefix of its tensors'
    /// names in the `model` artifact.
    pub path: String,
    /// Its path in the PyTorch module that the `architecture` JSON rebuilds (the README's
    /// `seq(modules)`: "3", "2.body.2", "6.m.1"), the prefix of its `state_dict()` names.
    pub torch_path: String,
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
    /// Number of buffer values (running statistics: state that is not a parameter).
    pub num_buffers: usize,
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
        self.nodes.push(Node { layer, inputs, path: String::new(), torch_path: String::new() });
        self.shapes.push(out);
        Ok(self.shapes.len() - 1)
    }

    /// Prefix the paths of the nodes from `n0` on with `part` (".3", ".body") and their
    /// PyTorch paths with `torch_part`.
    fn prefix(&mut self, n0: usize, part: &str, torch_part: &str) {
        for n in &mut self.nodes[n0..] {
            n.path = format!("{part}{}", n.path);
            n.torch_path = format!("{torch_part}{}", n.torch_path);
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
                self.prefix(n0, ".body", ".body");
                let n1 = self.nodes.len();
                let (s, shortcut_modules) = self.chain(shortcut, x, &format!("{place}.shortcut"))?;
                self.prefix(n1, ".shortcut", ".shortcut");
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
                    self.prefix(n0, &format!(".{}", n.name), &format!(".m.{j}"));
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

    /// A list of entries from value `x`; tensor paths count the entries with parameters or
    /// buffers (hesslab's naming since its first MLPs: `layers.K` is the K-th such entry).
    fn chain(&mut self, specs: &[LayerSpec], mut x: usize, place: &str) -> Result<(usize, Vec<Value>), ModelError> {
        let mut modules = Vec::with_capacity(specs.len());
        let mut k = 0;
        for (i, spec) in specs.iter().enumerate() {
            let (n0, p0, b0) = (self.nodes.len(), self.params.len(), self.params.buffers());
            let (v, module) = self.entry(spec, vec![x], &format!("{place}[{i}]"))?;
            // PyTorch's Sequential counts every module.
            self.prefix(n0, "", &format!(".{i}"));
            if self.params.len() > p0 || self.params.buffers() > b0 {
                self.prefix(n0, &format!(".{k}"), "");
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
        b.prefix(0, "layers", "");
        debug_assert_eq!(out, b.shapes.len() - 1, "the output is the last value");
        let mut readers = vec![0; b.shapes.len()];
        b.nodes.iter().flat_map(|n| &n.inputs).for_each(|&v| readers[v] += 1);
        Ok(GraphArch {
            input,
            specs,
            num_params: b.params.len(),
            num_buffers: b.params.buffers(),
            nodes: b.nodes,
            shapes: b.shapes,
            loss,
            modules,
            readers,
        })
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
        chunks_of(n, (CHUNK_BYTES / (8 * self.widest()).max(1)).clamp(1, CHUNK_ROWS))
    }
    /// The rows of `x` (PyTorch's flat sample order) as the first node reads them.
    pub fn input_values(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        match self.input {
            Shape::Image { c, h, w } => crate::kernels::unflatten(x, c, h * w),
            Shape::Flat(_) => x.to_owned(),
            // Row-major (T, d) per sample: position t of sample s is row s·T + t.
            Shape::Seq { t, d } => Mat::from_fn(x.nrows() * t, d, |r, c| x[(r / t, (r % t) * d + c)]),
        }
    }
    /// Tensor names, PyTorch shapes and ranges, in `parameters()` order.
    pub fn tensors(&self) -> crate::Tensors {
        self.named(false, |n| &n.path)
    }
    /// Buffer names, PyTorch shapes and ranges in the buffer vector, in `buffers()` order.
    pub fn buffer_tensors(&self) -> crate::Tensors {
        self.named(true, |n| &n.path)
    }
    /// As [`GraphArch::tensors`] and [`GraphArch::buffer_tensors`], named as the `state_dict()`
    /// of the PyTorch module the `architecture` JSON rebuilds names them ("0.weight",
    /// "2.body.2.bias", "6.m.1.weight", "1.running_mean").
    pub fn torch_tensors(&self, buffers: bool) -> crate::Tensors {
        self.named(buffers, |n| &n.torch_path)
    }
    fn named(&self, buffers: bool, path: impl Fn(&Node) -> &String) -> crate::Tensors {
        let mut v = Vec::new();
        for n in &self.nodes {
            let p = path(n).trim_start_matches('.');
            for t in if buffers { n.layer.buffers() } else { n.layer.tensors() } {
                v.push((if p.is_empty() { t.name.to_string() } else { format!("{p}.{}", t.name) }, t.shape, t.range));
            }
        }
        v
    }
    /// The buffers' initial values (PyTorch's: running mean 0, variance 1, no batches).
    pub fn initial_buffers(&self) -> Vec<f64> {
        let mut b = vec![0.0; self.num_buffers];
        for n in &self.nodes {
            for t in n.layer.buffers() {
                if let crate::layer::DefaultInit::Constant(c) = t.default_init {
                    b[t.range].fill(c);
                }
            }
        }
        b
    }
    /// Whether a pass in `mode` couples the samples (BatchNorm with batch statistics), so its
    /// chunks must meet at every BatchNorm node.
    pub fn coupled(&self, mode: PassMode) -> bool {
        mode != PassMode::Eval && self.nodes.iter().any(|n| n.layer.as_batch_norm().is_some())
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

/// Row ranges of `n` samples in chunks of `rows`.
pub fn chunks_of(n: usize, rows: usize) -> Vec<(usize, usize)> {
    let rows = rows.max(1);
    (0..n.div_ceil(rows)).map(|c| (c * rows, ((c + 1) * rows).min(n))).collect()
}

/// How the layers that differ between training and evaluation act in a pass (PyTorch's
/// `train()` and `eval()`): BatchNorm's statistics and dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassMode {
    /// `model.eval()`: BatchNorm normalizes with its running statistics; dropout is the
    /// identity. Each sample is on its own.
    Eval,
    /// BatchNorm normalizes with the statistics of the whole batch of the pass, and the
    /// derivatives pass through them; dropout is the identity (`batch_norm = "batch"`).
    Batch,
    /// `model.train()`: batch statistics, and dropout with masks drawn from `seed`.
    Train {
        /// This step's seed.
        seed: u64,
    },
}

/// A pass over every chunk's state `states`, node by node in `order`: a run of nodes where
/// `rounds(i)` is 0 runs on each chunk in parallel; a node with r > 0 rounds (a BatchNorm with
/// batch statistics) gets, for each round in turn, every chunk's `sums` (given the earlier
/// rounds' totals) added in chunk order, then `step` on every chunk with all rounds' totals.
/// Returns the totals of each node (empty for the others), for the passes after this one.
/// With one chunk this is that chunk's pass; the totals do not depend on the thread count.
pub fn synced<S: Send + Sync>(
    states: &mut [S],
    order: &[usize],
    rounds: impl Fn(usize) -> usize + Sync,
    sums: impl Fn(&S, usize, &[Vec<f64>]) -> Vec<f64> + Sync,
    step: impl Fn(&mut S, usize, &[Vec<f64>]) + Sync,
) -> Vec<Vec<Vec<f64>>> {
    let mut totals: Vec<Vec<Vec<f64>>> = vec![Vec::new(); order.iter().max().map_or(0, |m| m + 1)];
    let mut a = 0;
    while a < order.len() {
        let mut b = a;
        while b < order.len() && rounds(order[b]) == 0 {
            b += 1;
        }
        if b > a {
            let run = &order[a..b];
            states.par_iter_mut().for_each(|s| run.iter().for_each(|&i| step(s, i, &[])));
        }
        if b == order.len() {
            break;
        }
        let i = order[b];
        let mut t: Vec<Vec<f64>> = Vec::new();
        for _ in 0..rounds(i) {
            let parts: Vec<Vec<f64>> = states.par_iter().map(|s| sums(s, i, &t)).collect();
            let mut total = parts.first().cloned().unwrap_or_default();
            for p in parts.iter().skip(1) {
                total.iter_mut().zip(p).for_each(|(x, y)| *x += y);
            }
            t.push(total);
        }
        states.par_iter_mut().for_each(|s| step(s, i, &t));
        totals[i] = t;
        a = b + 1;
    }
    totals
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
    /// Buffers (running statistics), PyTorch `buffers()` order.
    pub buffers: Vec<f64>,
}

impl GraphNet {
    /// A network with these parameters and PyTorch's initial buffers.
    pub fn new(arch: std::sync::Arc<GraphArch>, params: Vec<f64>) -> Self {
        assert_eq!(params.len(), arch.num_params);
        let buffers = arch.initial_buffers();
        GraphNet { arch, params, buffers }
    }

    /// Forward pass of the rows of `x` (PyTorch's flat sample order) at parameters `w`, in
    /// evaluation mode.
    pub fn forward_with(&self, w: &[f64], x: MatRef<'_, f64>) -> GraphForward {
        self.forward_mode(w, x, PassMode::Eval, 0)
    }

    /// Forward pass in `mode` of rows `row0..` of a batch given as `x`; with batch statistics
    /// `x` is the whole batch (else see [`GraphNet::forward_chunks`]).
    pub fn forward_mode(&self, w: &[f64], x: MatRef<'_, f64>, mode: PassMode, row0: usize) -> GraphForward {
        let nodes = &self.arch.nodes;
        let mut f = GraphForward { vals: Vec::with_capacity(nodes.len() + 1), aux: Vec::with_capacity(nodes.len()) };
        f.vals.push(self.arch.input_values(x));
        for i in 0..nodes.len() {
            let (o, a) = self.forward_node(i, w, &f.inputs_of(&self.arch, i), mode, row0);
            f.vals.push(o);
            f.aux.push(a);
        }
        f
    }

    /// Node i's forward pass in `mode` on one chunk (rows `row0..` of the batch), with the
    /// chunk as the whole batch for batch statistics.
    fn forward_node(&self, i: usize, w: &[f64], inputs: &[MatRef<'_, f64>], mode: PassMode, row0: usize) -> (Mat<f64>, Aux) {
        let layer = &self.arch.nodes[i].layer;
        match (mode, layer.as_batch_norm(), layer.as_dropout()) {
            (PassMode::Eval, Some(bn), _) => bn.normalize(w, inputs[0], bn.running_stats(&self.buffers)),
            (PassMode::Train { seed }, _, Some(d)) => {
                d.forward_train(inputs[0], seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), row0)
            }
            _ => layer.forward(w, inputs),
        }
    }

    /// Forward passes in `mode` of the rows of `x` in the chunks `chunks`, meeting at every
    /// BatchNorm node for the whole batch's statistics when the mode couples the samples.
    pub fn forward_chunks(&self, w: &[f64], x: MatRef<'_, f64>, chunks: &[(usize, usize)], mode: PassMode) -> Vec<GraphForward> {
        let nn = self.arch.nodes.len();
        let mut states: Vec<(usize, GraphForward)> = chunks
            .iter()
            .map(|&(r0, r1)| (r0, GraphForward { vals: vec![self.arch.input_values(x.subrows(r0, r1 - r0))], aux: Vec::with_capacity(nn) }))
            .collect();
        let coupled = self.arch.coupled(mode);
        let bn = |i: usize| if coupled { self.arch.nodes[i].layer.as_batch_norm() } else { None };
        let order: Vec<usize> = (0..nn).collect();
        synced(
            &mut states,
            &order,
            |i| if bn(i).is_some() { 2 } else { 0 },
            |(_, f), i, t| {
                let (b, x) = (bn(i).expect("a batch norm"), f.vals[self.arch.nodes[i].inputs[0]].as_ref());
                match t {
                    [] => {
                        let mut s = b.sums_x(x);
                        s.push(x.nrows() as f64);
                        s
                    }
                    [sx, ..] => {
                        let count = sx[b.channels()];
                        let mean: Vec<f64> = sx[..b.channels()].iter().map(|v| v / count).collect();
                        b.sums_dev(x, &mean)
                    }
                }
            },
            |(r0, f), i, t| {
                let (o, a) = match (bn(i), t) {
                    (Some(b), [sx, dev]) => {
                        let c = b.channels();
                        let st = b.batch_stats(&sx[..c], Some(dev), sx[c] as usize);
                        b.normalize(w, f.vals[self.arch.nodes[i].inputs[0]].as_ref(), st)
                    }
                    _ => self.forward_node(i, w, &f.inputs_of(&self.arch, i), mode, *r0),
                };
                f.vals.push(o);
                f.aux.push(a);
            },
        );
        states.into_iter().map(|(_, f)| f).collect()
    }

    /// Node i's step of a backward pass: its signal (taken from `acc`) back to its inputs'
    /// slots in `acc`, its parameter gradient added to `grad`; `totals` are the batch's sums
    /// at a BatchNorm with batch statistics. Returns node i's signal, except for a max pooling
    /// fused with its activation (fusion happens only when the signals are not kept).
    #[allow(clippy::too_many_arguments)]
    fn backward_step(
        &self,
        w: &[f64],
        fwd: &GraphForward,
        acc: &mut [Option<Mat<f64>>],
        i: usize,
        fused: &[Option<(Activation, Window)>],
        grad: &mut [f64],
        totals: Option<&[f64]>,
    ) -> Option<Mat<f64>> {
        let nodes = &self.arch.nodes;
        let g = acc[i + 1].take().expect("every value but the output has a reader");
        if let Some((act, win)) = i.checked_sub(1).and_then(|a| fused[a]) {
            // An activation and the max pooling after it, as one step.
            let arg = crate::layer::aux::<Vec<usize>>(&fwd.aux[i]);
            let x = nodes[i - 1].inputs[0];
            if x != 0 {
                let pd = PooledDerivatives::new(act, win, fwd.vals[x].as_ref(), fwd.vals[i + 1].as_ref(), arg, false);
                accumulate(&mut acc[x], pd.backward(g, arg, None, 1));
            }
            return None;
        }
        let node = &nodes[i];
        let inputs = fwd.inputs_of(&self.arch, i);
        let io = Io { w, inputs: &inputs, output: fwd.vals[i + 1].as_ref(), aux: &fwd.aux[i] };
        let need = node.inputs.iter().any(|&v| v != 0);
        let g_in = match (totals, node.layer.as_batch_norm()) {
            (Some(t), Some(bn)) => bn.backward_with(&io, g.as_ref(), Some(t), grad, need),
            _ => node.layer.backward(&io, g.as_ref(), grad, need),
        };
        for (&v, m) in node.inputs.iter().zip(g_in) {
            if v != 0 {
                accumulate(&mut acc[v], m);
            }
        }
        Some(g)
    }

    /// Nodes a backward pass visits, in order (an activation fused with the max pooling after
    /// it is visited with the pooling), and the fused pairs.
    fn backward_order(&self, keep: bool) -> (Vec<usize>, Vec<Option<(Activation, Window)>>) {
        let nn = self.arch.nodes.len();
        // Without the signals kept, an activation and the max pooling after it are one step.
        let fused = if keep { vec![None; nn] } else { self.arch.fused_pairs() };
        let order = (0..nn).rev().filter(|&i| fused[i].is_none()).collect();
        (order, fused)
    }

    /// Back-propagate the output signal `g_out`: the signal at every node's output
    /// (`sig[i]` for node i) when `keep`, and the parameter gradient added to `grad`.
    pub fn backward(&self, w: &[f64], fwd: &GraphForward, g_out: Mat<f64>, grad: &mut [f64], keep: bool) -> Vec<Mat<f64>> {
        let nn = self.arch.nodes.len();
        let mut acc: Vec<Option<Mat<f64>>> = (0..=nn).map(|_| None).collect();
        acc[nn] = Some(g_out);
        let mut sig: Vec<Option<Mat<f64>>> = (0..if keep { nn } else { 0 }).map(|_| None).collect();
        let (order, fused) = self.backward_order(keep);
        for i in order {
            let g = self.backward_step(w, fwd, &mut acc, i, &fused, grad, None);
            if keep {
                sig[i] = g;
            }
        }
        sig.into_iter().map(|s| s.expect("every node's output has a signal")).collect()
    }

    /// [`GraphNet::backward`] of every chunk of a coupled pass (from
    /// [`GraphNet::forward_chunks`]), meeting at every BatchNorm node for the batch's sums.
    /// Returns each chunk's gradient and (when `keep`) signals, and each node's totals.
    #[allow(clippy::type_complexity)]
    pub fn backward_chunks(
        &self,
        w: &[f64],
        fwds: &[GraphForward],
        g_outs: Vec<Mat<f64>>,
        keep: bool,
    ) -> (Vec<(Vec<f64>, Vec<Mat<f64>>)>, Vec<Vec<Vec<f64>>>) {
        struct State<'a> {
            fwd: &'a GraphForward,
            acc: Vec<Option<Mat<f64>>>,
            sig: Vec<Option<Mat<f64>>>,
            grad: Vec<f64>,
        }
        let nn = self.arch.nodes.len();
        let mut states: Vec<State<'_>> = fwds
            .iter()
            .zip(g_outs)
            .map(|(fwd, g)| {
                let mut acc: Vec<Option<Mat<f64>>> = (0..=nn).map(|_| None).collect();
                acc[nn] = Some(g);
                State { fwd, acc, sig: (0..nn).map(|_| None).collect(), grad: vec![0.0; w.len()] }
            })
            .collect();
        let (order, fused) = self.backward_order(keep);
        let bn = |i: usize| self.arch.nodes[i].layer.as_batch_norm();
        let coupled =
            |i: usize| bn(i).is_some_and(|_| fwds.first().is_some_and(|f| crate::layer::aux::<crate::layers::BatchStats>(&f.aux[i]).batch));
        let totals = synced(
            &mut states,
            &order,
            |i| usize::from(coupled(i)),
            |s, i, _| {
                let inputs = s.fwd.inputs_of(&self.arch, i);
                let io = Io { w, inputs: &inputs, output: s.fwd.vals[i + 1].as_ref(), aux: &s.fwd.aux[i] };
                bn(i).expect("a batch norm").backward_sums(&io, s.acc[i + 1].as_ref().expect("its signal").as_ref(), 1)
            },
            |s, i, t| {
                let g = self.backward_step(w, s.fwd, &mut s.acc, i, &fused, &mut s.grad, t.first().map(Vec::as_slice));
                if keep {
                    s.sig[i] = g;
                }
            },
        );
        let out = states
            .into_iter()
            .map(|s| {
                (s.grad, if keep { s.sig.into_iter().map(|g| g.expect("every node's output has a signal")).collect() } else { vec![] })
            })
            .collect();
        (out, totals)
    }

    /// Mean loss, gradient and accuracy over the rows of `x` at parameters `w`, in fixed
    /// chunks summed in chunk order, in evaluation mode.
    pub fn loss_grad_accuracy_at(&self, w: &[f64], x: MatRef<'_, f64>, y: &[u32]) -> (f64, Vec<f64>, f64) {
        self.loss_grad_accuracy_mode(w, x, y, PassMode::Eval).0
    }

    /// Mean loss, gradient and accuracy in `mode`, and the forward pass of the first chunk
    /// (whose BatchNorm nodes hold the batch's statistics).
    pub fn loss_grad_accuracy_mode(
        &self,
        w: &[f64],
        x: MatRef<'_, f64>,
        y: &[u32],
        mode: PassMode,
    ) -> ((f64, Vec<f64>, f64), Option<GraphForward>) {
        let n = x.nrows();
        let chunks = self.arch.chunks(n);
        let scale = |mut g: Mat<f64>| {
            g.as_mut().col_iter_mut().for_each(|c| c.iter_mut().for_each(|v| *v /= n as f64));
            g
        };
        type Parts = Vec<(f64, Vec<f64>, usize)>;
        let (parts, first): (Parts, Option<GraphForward>) = if self.arch.coupled(mode) {
            let mut fwds = self.forward_chunks(w, x, &chunks, mode);
            let les: Vec<_> = fwds.iter().zip(&chunks).map(|(f, &(r0, r1))| eval_loss(self.arch.loss, f.output(), &y[r0..r1])).collect();
            let (grads, _) = self.backward_chunks(w, &fwds, les.iter().map(|le| scale(le.dz.clone())).collect(), false);
            let parts = les.iter().zip(grads).map(|(le, (g, _))| (le.loss_sum, g, le.correct)).collect();
            (parts, if fwds.is_empty() { None } else { Some(fwds.swap_remove(0)) })
        } else {
            let parts = chunks
                .into_par_iter()
                .map(|(r0, r1)| {
                    let fwd = self.forward_mode(w, x.subrows(r0, r1 - r0), mode, r0);
                    let le = eval_loss(self.arch.loss, fwd.output(), &y[r0..r1]);
                    let mut out = vec![0.0; w.len()];
                    self.backward(w, &fwd, scale(le.dz), &mut out, false);
                    (le.loss_sum, out, le.correct)
                })
                .collect();
            (parts, None)
        };
        let (mut loss, mut correct, mut grad) = (0.0, 0, vec![0.0; w.len()]);
        for (l, g, c) in parts {
            loss += l;
            correct += c;
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        }
        ((loss / n as f64, grad, correct as f64 / n as f64), first)
    }

    /// One training step's loss and gradient on the mini-batch `x` (`model.train()`: batch
    /// statistics, dropout masks from `seed`), updating the running statistics as PyTorch does.
    pub fn train_loss_grad(&mut self, x: MatRef<'_, f64>, y: &[u32], seed: u64) -> (f64, Vec<f64>) {
        let ((loss, grad, _), first) = self.loss_grad_accuracy_mode(&self.params, x, y, PassMode::Train { seed });
        if let Some(f) = first {
            for (i, node) in self.arch.nodes.iter().enumerate() {
                if let Some(bn) = node.layer.as_batch_norm() {
                    bn.update_running(&mut self.buffers, crate::layer::aux::<crate::layers::BatchStats>(&f.aux[i]));
                }
            }
        }
        (loss, grad)
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
                    [v] if node.layer.as_batch_norm().is_some() => {
                        self.forward_node(i, w, &[vals[v].as_ref().expect("made").as_ref()], PassMode::Eval, 0).0
                    }
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
