//! Matrix-free symmetric linear operators on ℝⁿ applied to blocks of vectors: the interface
//! every hesslab eigensolver takes and every curvature operator implements, with the dense
//! matrix, a coordinate restriction, faer's `LinOp` adapter and symmetrization.
//!
//! What this crate may depend on: faer only.
#![warn(missing_docs)]
use faer::prelude::ReborrowMut;
use faer::{Mat, MatMut, MatRef};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A symmetric linear operator applied to blocks of vectors (columns).
pub trait LinearOperator: Send + Sync {
    /// Side of the (square, symmetric) operator.
    fn dim(&self) -> usize;
    /// out = A · v for every column of v (v and out are dim × k).
    fn apply_block(&self, v: MatRef<'_, f64>, out: MatMut<'_, f64>);
    /// Operator-vector products applied so far (a block of k counts k).
    fn applications(&self) -> u64;
    /// What the operator is, for messages.
    fn describe(&self) -> String;

    /// A·v for one vector.
    fn apply_vec(&self, v: &[f64]) -> Vec<f64> {
        let mut out = Mat::<f64>::zeros(v.len(), 1);
        self.apply_block(MatRef::from_column_major_slice(v, v.len(), 1), out.as_mut());
        out.col(0).iter().copied().collect()
    }
}

/// Counts applications; shared by operator implementations.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);
impl Counter {
    /// Count `k` more applications.
    pub fn add(&self, k: usize) {
        self.0.fetch_add(k as u64, Ordering::Relaxed);
    }
    /// Applications so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A dense symmetric matrix as an operator.
pub struct DenseOperator {
    /// The matrix.
    pub matrix: Arc<Mat<f64>>,
    /// What it is.
    pub name: String,
    count: Counter,
}

impl DenseOperator {
    /// An operator applying `matrix`.
    pub fn new(matrix: Arc<Mat<f64>>, name: impl Into<String>) -> Self {
        DenseOperator { matrix, name: name.into(), count: Counter::default() }
    }
}

impl LinearOperator for DenseOperator {
    fn dim(&self) -> usize {
        self.matrix.nrows()
    }
    fn apply_block(&self, v: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        self.count.add(v.ncols());
        faer::linalg::matmul::matmul(out, faer::Accum::Replace, self.matrix.as_ref(), v, 1.0, faer::get_global_parallelism());
    }
    fn applications(&self) -> u64 {
        self.count.get()
    }
    fn describe(&self) -> String {
        format!("dense {} ({}×{})", self.name, self.dim(), self.dim())
    }
}

/// Pᵀ A P for a coordinate subset P (a parameter block: one layer's weights, biases, ...).
pub struct Restricted {
    /// The full operator.
    pub inner: Arc<dyn LinearOperator>,
    /// Indices of the block's parameters, ascending.
    pub index: Vec<usize>,
}

impl LinearOperator for Restricted {
    fn dim(&self) -> usize {
        self.index.len()
    }
    fn apply_block(&self, v: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        let n = self.inner.dim();
        let mut full = Mat::<f64>::zeros(n, v.ncols());
        for j in 0..v.ncols() {
            for (r, &i) in self.index.iter().enumerate() {
                full[(i, j)] = v[(r, j)];
            }
        }
        let mut res = Mat::<f64>::zeros(n, v.ncols());
        self.inner.apply_block(full.as_ref(), res.as_mut());
        for j in 0..v.ncols() {
            for (r, &i) in self.index.iter().enumerate() {
                out[(r, j)] = res[(i, j)];
            }
        }
    }
    fn applications(&self) -> u64 {
        self.inner.applications()
    }
    fn describe(&self) -> String {
        format!("{} restricted to {} coordinates", self.inner.describe(), self.index.len())
    }
}

/// D A D for a positive diagonal D, symmetric when A is: with D = P^{-1/2} it has the
/// eigenvalues of P⁻¹A (the preconditioned Hessian of an adaptive optimizer, Cohen et al. 2022).
pub struct Preconditioned {
    /// The operator A.
    pub inner: Arc<dyn LinearOperator>,
    /// The diagonal of D.
    pub d: Vec<f64>,
}

impl Preconditioned {
    /// D A D with D = P^{-1/2} for the diagonal preconditioner `p` (all entries > 0).
    pub fn inverse_sqrt(inner: Arc<dyn LinearOperator>, p: &[f64]) -> Self {
        Preconditioned { inner, d: p.iter().map(|x| 1.0 / x.sqrt()).collect() }
    }
}

impl LinearOperator for Preconditioned {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn apply_block(&self, v: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        let scaled = Mat::<f64>::from_fn(v.nrows(), v.ncols(), |i, j| self.d[i] * v[(i, j)]);
        self.inner.apply_block(scaled.as_ref(), out.rb_mut());
        for j in 0..out.ncols() {
            for i in 0..out.nrows() {
                out[(i, j)] *= self.d[i];
            }
        }
    }
    fn applications(&self) -> u64 {
        self.inner.applications()
    }
    fn describe(&self) -> String {
        format!("P^-1/2 ({}) P^-1/2", self.inner.describe())
    }
}

/// Any `LinearOperator` as faer's matrix-free `LinOp`, so faer's Krylov solvers accept it.
#[derive(Clone)]
pub struct FaerLinOp(pub Arc<dyn LinearOperator>);

impl std::fmt::Debug for FaerLinOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaerLinOp({})", self.0.describe())
    }
}

impl faer::matrix_free::LinOp<f64> for FaerLinOp {
    fn apply_scratch(&self, _rhs_ncols: usize, _par: faer::Par) -> faer::dyn_stack::StackReq {
        faer::dyn_stack::StackReq::EMPTY
    }
    fn nrows(&self) -> usize {
        self.0.dim()
    }
    fn ncols(&self) -> usize {
        self.0.dim()
    }
    fn apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, _par: faer::Par, _stack: &mut faer::dyn_stack::MemStack) {
        self.0.apply_block(rhs, out);
    }
    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: faer::Par, stack: &mut faer::dyn_stack::MemStack) {
        self.apply(out, rhs, par, stack);
    }
}

/// Replace A by (A + Aᵀ)/2; return max|A − Aᵀ| / max|A| of the input.
pub fn symmetrize(a: &mut Mat<f64>) -> f64 {
    let p = a.nrows();
    let (mut maxdiff, mut maxabs) = (0.0f64, 0.0f64);
    for j in 0..p {
        for i in 0..=j {
            let (x, y) = (a[(i, j)], a[(j, i)]);
            maxdiff = maxdiff.max((x - y).abs());
            maxabs = maxabs.max(x.abs()).max(y.abs());
            let m = 0.5 * (x + y);
            a[(i, j)] = m;
            a[(j, i)] = m;
        }
    }
    if maxabs > 0.0 { maxdiff / maxabs } else { 0.0 }
}
