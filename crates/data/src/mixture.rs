//! `gaussian_mixture`: k Gaussian clusters in d dimensions (S18 E2, S16 P3).
use crate::{Dataset, dataset_port, rng::Rng};
use hesslab_pipeline::resources::prod;
use hesslab_pipeline::{Estimate, Facts, InputFacts, PortSpec, StageContext, StageError, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MixtureParams {
    /// Number of clusters k (one class per cluster).
    pub classes: usize,
    /// Input dimension d.
    pub dim: usize,
    /// Total number of examples (train + test), split evenly over classes.
    pub samples: usize,
    /// Examples per class; when > 0 it overrides `samples`.
    pub samples_per_class: usize,
    /// Cluster means are drawn as N(0, mean_scale² I) unless `means` is given.
    pub mean_scale: f64,
    /// Explicit cluster means (k rows of d numbers), e.g. [[1,1],[-1,-1]] for S16's blobs.
    pub means: Vec<Vec<f64>>,
    /// Standard deviation of the isotropic noise around each mean.
    pub std: f64,
    /// Covariance multiplier: noise covariance = cov_multiplier · std² · I (S18 Table 1: 1 or 10).
    pub cov_multiplier: f64,
    /// Standardize every feature with training-split mean and std (S18: "globally normalized").
    pub normalize: bool,
    /// Fraction of each class held out as the test split.
    pub test_fraction: f64,
}

impl Default for MixtureParams {
    fn default() -> Self {
        MixtureParams {
            classes: 10,
            dim: 100,
            samples: 1250,
            samples_per_class: 0,
            mean_scale: 1.0,
            means: vec![],
            std: 1.0,
            cov_multiplier: 1.0,
            normalize: true,
            test_fraction: 0.2,
        }
    }
}

pub struct GaussianMixture;

impl GaussianMixture {
    pub fn generate(p: &MixtureParams, seed: u64) -> Dataset {
        let mut rng = Rng::new(seed);
        let (k, d) = (p.classes, p.dim);
        let means: Vec<Vec<f64>> = if p.means.is_empty() {
            (0..k).map(|_| (0..d).map(|_| p.mean_scale * rng.normal()).collect()).collect()
        } else {
            p.means.clone()
        };
        let per_class: Vec<usize> = if p.samples_per_class > 0 {
            vec![p.samples_per_class; k]
        } else {
            (0..k).map(|c| p.samples / k + usize::from(c < p.samples % k)).collect()
        };
        let sd = p.std * p.cov_multiplier.sqrt();
        let (mut x, mut y, mut split) = (Vec::new(), Vec::new(), Vec::new());
        for (c, &n) in per_class.iter().enumerate() {
            let n_test = ((n as f64) * p.test_fraction).round() as usize;
            for i in 0..n {
                for j in 0..d {
                    x.push(means[c][j] + sd * rng.normal());
                }
                y.push(c as u32);
                split.push(i < n - n_test);
            }
        }
        let mut ds = Dataset {
            dim: d,
            num_classes: k,
            x,
            y,
            split,
            feature_names: (0..d).map(|j| format!("x{j}")).collect(),
            info: serde_json::json!({"generator": "gaussian_mixture", "params": p, "seed": seed}),
        };
        if p.normalize {
            ds.standardize();
        }
        ds
    }
}

impl StageKind for GaussianMixture {
    type Params = MixtureParams;
    const KIND: &'static str = "gaussian_mixture";
    const VERSION: u32 = 1;
    const DOC: &'static str = "k Gaussian clusters in d dimensions, one class each, isotropic noise (std, covariance multiplier), optional global normalization, stratified train/test split.";
    fn inputs() -> Vec<PortSpec> {
        vec![]
    }
    fn outputs() -> Vec<PortSpec> {
        vec![dataset_port()]
    }
    fn check(p: &MixtureParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.classes > crate::dataset::MAX_CLASSES {
            e.push(("classes".into(), format!("classes must be ≤ {}", crate::dataset::MAX_CLASSES)));
        }
        if p.classes == 0 {
            e.push(("classes".into(), "classes must be ≥ 1 (k = 0 clusters makes no data)".into()));
        }
        if p.dim == 0 {
            e.push(("dim".into(), "dim must be ≥ 1".into()));
        }
        if p.samples_per_class == 0 && p.samples < p.classes {
            e.push(("samples".into(), format!("samples ({}) must be ≥ classes ({})", p.samples, p.classes)));
        }
        if !(p.std >= 0.0 && p.std.is_finite()) {
            e.push(("std".into(), "std must be a finite number ≥ 0".into()));
        }
        if !(p.cov_multiplier > 0.0 && p.cov_multiplier.is_finite()) {
            e.push(("cov_multiplier".into(), "cov_multiplier must be > 0".into()));
        }
        if !(0.0..1.0).contains(&p.test_fraction) {
            e.push(("test_fraction".into(), "test_fraction must be in [0, 1)".into()));
        }
        if !p.means.is_empty() && (p.means.len() != p.classes || p.means.iter().any(|m| m.len() != p.dim)) {
            e.push(("means".into(), format!("means must be {} rows of {} numbers (classes × dim)", p.classes, p.dim)));
        }
        e
    }
    fn facts(p: &MixtureParams, _: &InputFacts) -> Facts {
        Facts { rows: Some(total_samples(p)), dim: Some(p.dim as u64), classes: Some(p.classes as u64), ..Facts::default() }
    }
    fn estimate(p: &MixtureParams, _: &InputFacts) -> Option<Estimate> {
        let (n, d, k) = (total_samples(p), p.dim as u64, p.classes as u64);
        // The examples (generated, then written as one Arrow column) and the class means.
        Some(Estimate::f64s(prod(&[n, d, 2]), format!("{n}×{d} examples")).plus(Estimate::f64s(prod(&[k, d]), String::new())))
    }
    fn run(p: &MixtureParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ds = GaussianMixture::generate(p, ctx.seed);
        ds.write(ctx, "dataset")?;
        ctx.share("dataset", std::sync::Arc::new(ds));
        Ok(())
    }
}

/// Examples the generator makes: `samples_per_class × classes` or `samples`.
fn total_samples(p: &MixtureParams) -> u64 {
    if p.samples_per_class > 0 { (p.samples_per_class as u64).saturating_mul(p.classes as u64) } else { p.samples as u64 }
}
