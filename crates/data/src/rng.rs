//! Seeded random numbers: a portable generator (xoshiro256++) and the few distributions
//! hesslab needs, written out so results do not depend on a distribution crate's version.
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// A seeded generator: the same seed gives the same stream on every machine.
pub struct Rng {
    inner: Xoshiro256PlusPlus,
    spare: Option<f64>,
}

impl Rng {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { inner: Xoshiro256PlusPlus::seed_from_u64(seed), spare: None }
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.inner.random::<f64>()
    }
    /// Uniform in [lo, hi).
    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// Standard normal (Marsaglia polar method).
    pub fn normal(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let m = (-2.0 * s.ln() / s).sqrt();
                self.spare = Some(v * m);
                return u * m;
            }
        }
    }
    /// ±1 with equal probability (Rademacher).
    pub fn sign(&mut self) -> f64 {
        if self.inner.random::<bool>() { 1.0 } else { -1.0 }
    }
    /// Uniform integer in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        self.inner.random_range(0..n)
    }
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}
