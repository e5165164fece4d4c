//! Curvature operators of a network's loss: exact Hessian-vector products (R-operator),
//! generalized Gauss-Newton and residual terms, empirical Fisher and gradient covariance,
//! parameter-block restrictions, finite-difference cross-checks, and dense materialization.
mod dense;
mod operator;
mod rop;
mod spec;

pub use dense::{
    CurvatureDense, CurvatureDenseParams, DenseMatrix, materialize, matrix_port, read_matrix, read_matrix_input, symmetrize, write_matrix,
};
pub use operator::{Counter, DenseOperator, FaerLinOp, LinearOperator, Restricted};
pub use rop::{CurvatureKind, ModelCurvature, finite_difference_hvp};
pub use spec::{BuiltOperator, OperatorSpec, SampleSet, dense_estimate, operator_estimate};

pub fn register(r: &mut hesslab_pipeline::Registry) {
    r.add::<CurvatureDense>();
}
