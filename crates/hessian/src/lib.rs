//! Curvature operators of a network's loss: exact Hessian-vector products (R-operator),
//! generalized Gauss-Newton and residual terms, empirical Fisher and gradient covariance,
//! parameter-block restrictions, finite-difference cross-checks, and dense materialization.
#![warn(missing_docs)]
mod dense;
mod error;
mod operator;
mod probe;
mod rop;
mod rop_graph;
mod rop_mlp;
mod scratch;
mod spec;

pub use dense::{DenseMatrix, materialize};
pub use error::{HessianError, Result};
pub use operator::{Counter, DenseOperator, FaerLinOp, LinearOperator, Preconditioned, Restricted, symmetrize};
pub use probe::HessianProbe;
pub use rop::{BatchNormMode, CurvatureKind, ModelCurvature, finite_difference_hvp, gradient_and_product, hessian_vector_product};
pub use spec::{BuiltOperator, OperatorSpec, SampleSet};
