//! The one trait every layer implements, and the one a declared layer implements.
//!
//! A layer is a type holding its resolved shapes and parameter offsets; it computes its
//! forward pass and its derivatives on batches. The network ([`crate::GraphNet`]), the trainer
//! and the curvature operators only compose layers through this trait: there is no match over
//! layer kinds outside the registry (`layers/mod.rs`), so a new layer is one file and one
//! registry line.
//!
//! Batches are matrices: rows are samples (or, for images, sample × position, channels-last),
//! columns are features (or channels). The R-operator stacks the k tangents of a block of
//! vectors vertically: block j of a tangent is vector j's, and every method that takes `k`
//! works on all blocks at once, sharing the primal values of one block.
use crate::layers::Shape;
use faer::{Mat, MatRef};
use serde_json::Value;
use std::any::Any;
use std::fmt::Debug;
use std::ops::Range;

/// What a layer's forward pass keeps for its derivatives besides its output (e.g. the argmax
/// of a max pooling); `None` for most layers.
pub type Aux = Option<Box<dyn Any + Send + Sync>>;

/// One parameter tensor of a layer: its name inside the layer ("weight", "bias"), its PyTorch
/// shape, its range in the flat parameters and how PyTorch's module initializes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Name within the layer, as PyTorch's attribute.
    pub name: &'static str,
    /// PyTorch's shape.
    pub shape: Vec<usize>,
    /// Range in the flat parameter vector.
    pub range: Range<usize>,
    /// PyTorch's default initialization of this tensor (what `init = "kaiming_uniform"` draws).
    pub default_init: DefaultInit,
}

/// How a PyTorch module initializes a tensor by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultInit {
    /// U(−b, b) with b = 1/√fan_in (Linear and Conv2d weights and biases: kaiming_uniform with
    /// a = √5 is exactly this bound for the weight).
    FanInUniform {
        /// in_features, or in_channels · kh · kw.
        fan_in: usize,
    },
    /// Every entry the same (a normalization's scale 1, shift 0).
    Constant(f64),
    /// N(0, std²) (an embedding table: PyTorch's `nn.Embedding` draws N(0, 1)).
    Normal {
        /// The standard deviation.
        std: f64,
    },
}

/// The primal values around a layer in one chunk of samples.
pub struct Io<'a> {
    /// All parameters of the network (a layer reads its own ranges).
    pub w: &'a [f64],
    /// The layer's inputs.
    pub inputs: &'a [MatRef<'a, f64>],
    /// Its output.
    pub output: MatRef<'a, f64>,
    /// What its forward pass kept.
    pub aux: &'a Aux,
}

/// The second-order terms' data of an R-backward step (exact Hessian and residual part).
pub struct SecondOrder<'a> {
    /// R{x} of each input (k blocks); `None` where it is zero.
    pub r_inputs: &'a [Option<&'a Mat<f64>>],
    /// The primal signal ∂L/∂y at the layer's output (one block).
    pub sig: MatRef<'a, f64>,
}

/// What one R-backward step reads: the forward pass at the layer, R{∂L/∂y} and the vectors.
#[derive(Clone, Copy)]
pub struct RBackward<'a> {
    /// The layer's inputs, output and forward aux.
    pub io: &'a Io<'a>,
    /// R{∂L/∂y} at its output (k stacked blocks).
    pub rg: MatRef<'a, f64>,
    /// The k vectors (P × k) the product is taken with.
    pub v: MatRef<'a, f64>,
    /// How many vectors.
    pub k: usize,
    /// The second-order terms' data (exact Hessian and residual part); `None` for Gauss-Newton.
    pub second: Option<&'a SecondOrder<'a>>,
    /// Whether R{∂L/∂x} of the inputs is wanted (not for the first layer).
    pub need_inputs: bool,
}

/// Allocates parameter ranges in declaration (= PyTorch `parameters()`) order.
#[derive(Debug, Default)]
pub struct ParamCursor {
    next: u64,
    buffers: u64,
}

impl ParamCursor {
    /// Parameters allocated so far.
    pub fn len(&self) -> usize {
        self.next as usize
    }
    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.next == 0
    }
    /// The offset of `n` more parameters (checked against [`crate::layers::MAX_PARAMS`]).
    pub fn take(&mut self, n: u64) -> Result<usize, String> {
        bump(&mut self.next, n, "parameters")
    }
    /// Buffers (state that is not a parameter: running statistics) allocated so far.
    pub fn buffers(&self) -> usize {
        self.buffers as usize
    }
    /// The offset of `n` more buffer values.
    pub fn take_buffers(&mut self, n: u64) -> Result<usize, String> {
        bump(&mut self.buffers, n, "buffer values")
    }
}

/// `n` more from `counter`: its old value, or an error past 2^36.
fn bump(counter: &mut u64, n: u64, what: &str) -> Result<usize, String> {
    let o = *counter;
    *counter = o.checked_add(n).filter(|&t| t <= crate::layers::MAX_PARAMS).ok_or(format!("more than 2^36 {what}"))?;
    Ok(o as usize)
}

/// A layer as a pipeline declares it, before the shape of its input is known.
pub trait LayerConfig: Debug + Send + Sync {
    /// Its TOML name (`"linear"`, `"relu"`).
    fn name(&self) -> &'static str;
    /// Its TOML form (what `[stages.X].layers` holds), for round trips and cache keys.
    fn to_value(&self) -> Value;
    /// The layer on inputs of these shapes, its parameters taken from `params`. Errors say
    /// what is wrong; the caller adds where.
    fn build(&self, inputs: &[Shape], params: &mut ParamCursor) -> Result<Box<dyn Layer>, String>;
}

/// A resolved layer: shapes and parameter offsets fixed, ready to evaluate and differentiate.
///
/// Derivative conventions (L the loss, y the output, x the inputs, θ the layer's parameters):
/// `backward` maps ∂L/∂y to ∂L/∂x and adds ∂L/∂θ; `tangent` is the R-forward
/// R{y} = J_x R{x} + (∂y/∂θ) v; `r_backward` is R{∂L/∂x} = J_xᵀ R{∂L/∂y} (+ second-order terms
/// (∂²y/∂x∂θ v)ᵀ g + (∂²y/∂x² R{x})ᵀ g) and adds the parameter part
/// (∂y/∂θ)ᵀ R{∂L/∂y} (+ (∂²y/∂θ∂x R{x})ᵀ g) to column j of `out` for vector j.
pub trait Layer: Debug + Send + Sync {
    /// The TOML name of its kind.
    fn kind(&self) -> &'static str;
    /// Shape of its output per sample.
    fn output_shape(&self) -> Shape;
    /// Its parameter tensors in PyTorch `parameters()` order (none for most layers).
    fn tensors(&self) -> Vec<Tensor> {
        Vec::new()
    }
    /// Its buffers in PyTorch `buffers()` order: state that is not a parameter (a BatchNorm's
    /// running statistics), ranges in the network's buffer vector.
    fn buffers(&self) -> Vec<Tensor> {
        Vec::new()
    }
    /// Its PyTorch module: `{"module": "Linear", "in_features": …}` with the constructor's
    /// argument names, so `getattr(torch.nn, m.pop("module"))(**m)` rebuilds it.
    fn torch_module(&self) -> Value;
    /// A short description for `describe()` ("relu", "linear→10", "conv5×5→10×24×24").
    fn describe(&self) -> String;
    /// Multiply-adds per sample of its forward pass, ×2 (FLOP), for benchmark rates.
    fn flops_per_sample(&self) -> f64 {
        0.0
    }

    /// The output on a batch of inputs at parameters `w`, and what the derivatives need.
    fn forward(&self, w: &[f64], inputs: &[MatRef<'_, f64>]) -> (Mat<f64>, Aux);
    /// The output only (evaluation keeps nothing); may reuse the single input's storage.
    fn evaluate(&self, w: &[f64], input: Mat<f64>) -> Mat<f64> {
        self.forward(w, &[input.as_ref()]).0
    }
    /// J_xᵀ g for every input, on k stacked blocks of g: the signal at the inputs from the
    /// signal at the output, without parameter or second-order terms.
    fn adjoint(&self, io: &Io<'_>, g: MatRef<'_, f64>, k: usize) -> Vec<Mat<f64>>;
    /// ∂L/∂x of every input from `g` = ∂L/∂y (when `need_inputs`), adding ∂L/∂θ to `grad`.
    /// The default is [`Layer::adjoint`]: right for layers without parameters.
    fn backward(&self, io: &Io<'_>, g: MatRef<'_, f64>, grad: &mut [f64], need_inputs: bool) -> Vec<Mat<f64>> {
        let _ = grad;
        if need_inputs { self.adjoint(io, g, 1) } else { Vec::new() }
    }
    /// R{y} for the k vectors of `v` from the inputs' tangents `t` (k blocks; `None` = zero).
    fn tangent(&self, io: &Io<'_>, t: &[Option<&Mat<f64>>], v: MatRef<'_, f64>, k: usize) -> Option<Mat<f64>>;
    /// R{∂L/∂x} of every input (when `need_inputs`) from `rg` = R{∂L/∂y} (k blocks), adding the
    /// parameter part to `out` (P × k); `second` adds the second-order terms. The default is
    /// [`Layer::adjoint`]: right for layers without parameters that are linear in their inputs.
    fn r_backward(&self, r: &RBackward<'_>, out: &mut Mat<f64>) -> Vec<Mat<f64>> {
        let _ = out;
        if r.need_inputs { self.adjoint(r.io, r.rg, r.k) } else { Vec::new() }
    }

    /// An elementwise nonlinearity of the fused MLP kernels, if it is one (lets the network
    /// recognise an MLP and fuse an activation with the max pooling after it).
    fn as_activation(&self) -> Option<crate::Activation> {
        None
    }
    /// The window of a max pooling, if it is one (the activation fusion above).
    fn as_max_pool(&self) -> Option<crate::Window> {
        None
    }
    /// The batch normalization it is, if it is one: its statistics differ between passes
    /// (running or batch), and batch statistics couple the samples of a pass.
    fn as_batch_norm(&self) -> Option<&crate::layers::BatchNorm> {
        None
    }
    /// The drop probability of a dropout, if it is one (active in training passes only).
    fn as_dropout(&self) -> Option<&crate::layers::Dropout> {
        None
    }
    /// (inputs, outputs, bias) of a fully connected layer, if it is one (MLP recognition).
    fn as_linear(&self) -> Option<(usize, usize, bool)> {
        None
    }
}

/// Column c of a matrix whose columns are contiguous (layer values and tangents always are).
pub fn col(m: MatRef<'_, f64>, c: usize) -> &[f64] {
    m.col(c).try_as_col_major().expect("contiguous columns").as_slice()
}

/// Σ of each column of every block j of `g` (k blocks) added to column j of `out` at `b`: a
/// bias's share of the parameter part.
pub fn add_bias_parts(g: MatRef<'_, f64>, k: usize, b: usize, out: &mut Mat<f64>) {
    let rows = g.nrows() / k.max(1);
    for j in 0..k {
        let g_j = g.subrows(j * rows, rows);
        let oc = out.col_as_slice_mut(j);
        for o in 0..g.ncols() {
            oc[b + o] += g_j.col(o).iter().sum::<f64>();
        }
    }
}

/// For downcasting a layer's [`Aux`].
pub fn aux<T: 'static>(a: &Aux) -> &T {
    a.as_ref().and_then(|b| b.downcast_ref::<T>()).expect("the layer's own forward pass kept this")
}
