//! The operator types live in `hesslab-linop` (the eigensolvers use them without depending on
//! networks); re-exported here for the curvature code and its users.
pub use hesslab_linop::{Counter, DenseOperator, FaerLinOp, LinearOperator, Preconditioned, Restricted, symmetrize};
