//! Parameter initialization.
use crate::layer::DefaultInit;
use crate::{Architecture, Mlp, NetArch, Network};
use hesslab_data::rng::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How parameters are initialized.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// PyTorch's default of each module: Linear and Conv2d W, b ~ U(−1/√fan_in, 1/√fan_in)
    /// (each layer's [`crate::Tensor::default_init`]).
    KaimingUniform,
    /// Every parameter ~ N(0, init_std²).
    Normal,
    /// A uniformly random point on the sphere of radius init_radius (S16 P4).
    Sphere,
}

/// Parameters for the MLP `arch` drawn by `init` with `seed`.
pub fn initialize(arch: &Architecture, init: Init, std: f64, radius: f64, seed: u64) -> Mlp {
    let net = initialize_network(&NetArch::mlp(arch.clone()), init, std, radius, seed);
    net.as_mlp().expect("an MLP architecture builds an MLP").clone()
}

/// Parameters for `arch` drawn by `init` with `seed`.
pub fn initialize_network(arch: &NetArch, init: Init, std: f64, radius: f64, seed: u64) -> Network {
    let mut rng = Rng::new(seed);
    let mut p = vec![0.0; arch.num_params()];
    match init {
        Init::KaimingUniform => {
            // Tensor by tensor in `parameters()` order, as each layer's PyTorch module does (a
            // bias uses its weight's fan-in).
            for t in arch.graph().nodes.iter().flat_map(|n| n.layer.tensors()) {
                match t.default_init {
                    DefaultInit::FanInUniform { fan_in } => {
                        let bound = 1.0 / (fan_in as f64).sqrt();
                        p[t.range].iter_mut().for_each(|v| *v = rng.uniform_in(-bound, bound));
                    }
                    DefaultInit::Constant(c) => p[t.range].iter_mut().for_each(|v| *v = c),
                    DefaultInit::Normal { std } => p[t.range].iter_mut().for_each(|v| *v = std * rng.normal()),
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
