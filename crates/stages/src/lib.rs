//! The stage kinds over the math crates — data loaders and generators, training, dense
//! curvature and the eigensolvers — each a thin adapter: parameters in, the math crate's
//! function, a typed artifact out. The analysis stages live in `hesslab-analysis`.
#![warn(missing_docs)]
mod curvature_dense;
pub mod data;
pub mod estimates;
mod figure_files;
mod import_model;
pub mod solvers;
mod train;

pub use curvature_dense::{CurvatureDense, CurvatureDenseParams};
pub use figure_files::WriteFigure;
pub use import_model::{ImportModel, ImportModelParams};
pub use train::{Train, check_optimizer};

/// Register every stage kind of this crate.
pub fn register(r: &mut hesslab_pipeline::Registry) {
    r.add::<data::GaussianMixtureStage>();
    r.add::<data::DigitsStage>();
    r.add::<data::IdxStage>();
    r.add::<data::Cifar10Stage>();
    r.add::<data::TableStage>();
    r.add::<data::TensorsStage>();
    r.add::<data::ModularArithmeticStage>();
    r.add::<data::TextStage>();
    r.add::<Train>();
    r.add::<ImportModel>();
    r.add::<CurvatureDense>();
    r.add::<solvers::EigenStage>();
    r.add::<solvers::SlqStage>();
    r.add::<solvers::TraceStage>();
}
