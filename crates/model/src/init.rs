//! Parameter initialization.
use crate::{Architecture, Mlp};
use hesslab_data::rng::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How parameters are initialized.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// PyTorch's nn.Linear default: W, b ~ U(−1/√fan_in, 1/√fan_in).
    KaimingUniform,
    /// Every parameter ~ N(0, init_std²).
    Normal,
    /// A uniformly random point on the sphere of radius init_radius (S16 P4).
    Sphere,
}

/// Parameters for `arch` drawn by `init` with `seed`.
pub fn initialize(arch: &Architecture, init: Init, std: f64, radius: f64, seed: u64) -> Mlp {
    let mut rng = Rng::new(seed);
    let mut p = vec![0.0; arch.num_params()];
    match init {
        Init::KaimingUniform => {
            for ly in arch.layers() {
                let bound = 1.0 / (ly.n_in as f64).sqrt();
                for v in &mut p[ly.w..ly.w + ly.n_in * ly.n_out] {
                    *v = rng.uniform_in(-bound, bound);
                }
                if let Some(b) = ly.b {
                    for v in &mut p[b..b + ly.n_out] {
                        *v = rng.uniform_in(-bound, bound);
                    }
                }
            }
        }
        Init::Normal => p.iter_mut().for_each(|v| *v = std * rng.normal()),
        Init::Sphere => {
            p.iter_mut().for_each(|v| *v = rng.normal());
            let n = p.iter().map(|v| v * v).sum::<f64>().sqrt();
            p.iter_mut().for_each(|v| *v *= radius / n);
        }
    }
    Mlp::new(arch.clone(), p)
}
