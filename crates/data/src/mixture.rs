//! `gaussian_mixture`: k Gaussian clusters in d dimensions (S18 E2, S16 P3).
use crate::{Dataset, rng::Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of the `gaussian_mixture` generator.
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

/// k Gaussian clusters in d dimensions, one class each.
pub struct GaussianMixture;

impl GaussianMixture {
    /// The dataset `p` describes, drawn with `seed`.
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
            shape: vec![d],
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

/// Examples the generator makes: `samples_per_class × classes` or `samples`.
pub fn total_samples(p: &MixtureParams) -> u64 {
    if p.samples_per_class > 0 { (p.samples_per_class as u64).saturating_mul(p.classes as u64) } else { p.samples as u64 }
}
