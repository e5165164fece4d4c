//! Helpers shared by the integration tests.
#![allow(dead_code)]
use hesslab_pipeline::Error;

/// An error with its whole chain of sources, as the binary prints it.
pub fn full_error(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(" | ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// A 2→1 linear model with two parameters, for tests that need any valid model artifact.
pub fn tiny_model() -> hesslab_model::Network {
    use hesslab_model::{Activation, Architecture, LossKind, Mlp, Network};
    Network::Mlp(Mlp::new(
        Architecture { sizes: vec![2, 1], activation: Activation::Relu, bias: false, loss: LossKind::Mse },
        vec![0.5, 0.5],
    ))
}
