//! The shape of one sample between layers, and the geometry of a sliding window.

/// A (height, width) pair: kernel size, stride or padding.
pub type Pair = [usize; 2];

/// The largest number of values per sample at any layer.
pub const MAX_UNITS: u64 = 1 << 32;

/// The shape of one sample at some point of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Channels × height × width (stored channels-last inside the network).
    Image {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// A vector.
    Flat(usize),
    /// A sequence of `t` positions of `d` features each (PyTorch's (T, C) per sample, as a
    /// transformer's activations are): `t` rows of `d` columns, row-major like PyTorch.
    Seq {
        /// Positions.
        t: usize,
        /// Features per position.
        d: usize,
    },
}

impl Shape {
    /// Numbers per sample.
    pub fn size(&self) -> usize {
        match *self {
            Shape::Image { c, h, w } => c * h * w,
            Shape::Flat(d) => d,
            Shape::Seq { t, d } => t * d,
        }
    }
    /// Columns of a batch in this shape: channels of an image, features of a vector.
    pub fn columns(&self) -> usize {
        match *self {
            Shape::Image { c, .. } => c,
            Shape::Flat(d) | Shape::Seq { d, .. } => d,
        }
    }
    /// Rows per sample of a batch in this shape: positions of an image, 1 for a vector.
    pub fn rows_per_sample(&self) -> usize {
        match *self {
            Shape::Image { h, w, .. } => h * w,
            Shape::Flat(_) => 1,
            Shape::Seq { t, .. } => t,
        }
    }
    /// The same rows per sample with `c` columns.
    pub fn with_columns(&self, c: usize) -> Shape {
        match *self {
            Shape::Image { h, w, .. } => Shape::Image { c, h, w },
            Shape::Flat(_) => Shape::Flat(c),
            Shape::Seq { t, .. } => Shape::Seq { t, d: c },
        }
    }
    /// PyTorch's shape of one sample: [C, H, W], [T, d] or [d].
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Image { c, h, w } => vec![c, h, w],
            Shape::Flat(d) => vec![d],
            Shape::Seq { t, d } => vec![t, d],
        }
    }
    /// From [C, H, W], [T, d] (a sequence) or [d].
    pub fn from_dims(d: &[usize]) -> Result<Shape, String> {
        let total = d.iter().try_fold(1u64, |a, &b| a.checked_mul(b as u64));
        if d.contains(&0) || total.is_none_or(|t| t > MAX_UNITS) {
            return Err(format!("sample shape {d:?} is empty or has more than 2^32 values"));
        }
        match *d {
            [c, h, w] => Ok(Shape::Image { c, h, w }),
            [t, d] => Ok(Shape::Seq { t, d }),
            [n] => Ok(Shape::Flat(n)),
            _ => Err(format!("a sample shape is [C, H, W], [T, d] or [d], got {d:?}")),
        }
    }
    /// "[1, 28, 28]".
    pub fn show(&self) -> String {
        format!("{:?}", self.dims())
    }
    /// "1×28×28".
    pub fn times(&self) -> String {
        self.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
    }
}

/// Geometry of a window sliding over an image: a convolution or a pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Input channels.
    pub c: usize,
    /// Input height and width.
    pub input: Pair,
    /// Output height and width.
    pub output: Pair,
    /// Kernel height and width.
    pub kernel: Pair,
    /// Stride.
    pub stride: Pair,
    /// Zero padding.
    pub padding: Pair,
}

impl Window {
    /// Input positions per sample.
    pub fn in_hw(&self) -> usize {
        self.input[0] * self.input[1]
    }
    /// Output positions per sample.
    pub fn out_hw(&self) -> usize {
        self.output[0] * self.output[1]
    }
    /// Columns of the unfolded input: C·kh·kw.
    pub fn patch(&self) -> usize {
        self.c * self.kernel[0] * self.kernel[1]
    }
    /// The window of `kernel`/`stride`/`padding` over an image input: errors say why none fits.
    pub fn over(input: Shape, kernel: Pair, stride: Pair, padding: Pair, what: &str) -> Result<Window, String> {
        let Shape::Image { c, h, w } = input else {
            return Err(format!("{what} needs an image input [C, H, W]"));
        };
        if kernel.contains(&0) || stride.contains(&0) {
            return Err("kernel_size and stride must be ≥ 1".into());
        }
        let out_len = |i: usize, k: usize, s: usize, p: usize| {
            let padded = i + 2 * p;
            (k <= padded).then(|| (padded - k) / s + 1)
        };
        match (out_len(h, kernel[0], stride[0], padding[0]), out_len(w, kernel[1], stride[1], padding[1])) {
            (Some(oh), Some(ow)) => Ok(Window { c, input: [h, w], output: [oh, ow], kernel, stride, padding }),
            _ if what != "conv2d" => Err(format!("window {kernel:?} is larger than the input {:?}", [h, w])),
            _ => Err(format!("kernel {kernel:?} is larger than the padded input {:?}", [h + 2 * padding[0], w + 2 * padding[1]])),
        }
    }
    /// The output image shape with `c_out` channels.
    pub fn output_shape(&self, c_out: usize) -> Shape {
        Shape::Image { c: c_out, h: self.output[0], w: self.output[1] }
    }
}
