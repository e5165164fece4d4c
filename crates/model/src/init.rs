//! Parameter initialization.
use crate::{Architecture, Mlp, NetArch, Network};
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

/// Parameters for the MLP `arch` drawn by `init` with `seed`.
pub fn initialize(arch: &Architecture, init: Init, std: f64, radius: f64, seed: u64) -> Mlp {
    match initialize_network(&NetArch::Mlp(arch.clone()), init, std, radius, seed) {
        Network::Mlp(m) => m,
        Network::Sequential(_) => unreachable!("an MLP architecture builds an MLP"),
    }
}

/// Parameters for `arch` drawn by `init` with `seed`.
pub fn initialize_network(arch: &NetArch, init: Init, std: f64, radius: f64, seed: u64) -> Network {
    let mut rng = Rng::new(seed);
    let mut p = vec![0.0; arch.num_params()];
    match init {
        Init::KaimingUniform => {
            // Tensor by tensor in `parameters()` order; a bias uses its weight's fan-in
            // (in_features, or in_channels·kh·kw), as PyTorch's Linear and Conv2d.
            let mut fan_in = 1;
            for (name, shape, range) in arch.tensors() {
                if name.ends_with(".weight") {
                    fan_in = shape[1..].iter().product::<usize>();
                }
                let bound = 1.0 / (fan_in as f64).sqrt();
                for v in &mut p[range] {
                    *v = rng.uniform_in(-bound, bound);
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
    Network::new(arch.clone(), p)
}
