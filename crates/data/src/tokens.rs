//! Token datasets. `modular_arithmetic`: every equation `a ∘ b =` over Z_p as four tokens with
//! its answer `(a ∘ b) mod p` as the label — the grokking setup of Power et al. (2022). Tokens
//! 0..p are the numbers, p is the operation and p + 1 is `=`, so the vocabulary (and the
//! classifier's outputs) has p + 2 entries; a seeded `train_fraction` of the equations trains.
use crate::rng::Rng;
use crate::{DataError, Dataset, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The operation of `modular_arithmetic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Operation {
    /// a + b mod p.
    #[serde(rename = "+")]
    Add,
    /// a − b mod p.
    #[serde(rename = "-")]
    Sub,
    /// a · b mod p.
    #[serde(rename = "*")]
    Mul,
    /// a · b⁻¹ mod p (b ≠ 0; p must be prime).
    #[serde(rename = "/")]
    Div,
}

/// Parameters of `modular_arithmetic`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModularParams {
    /// The modulus p (97 in Power et al.).
    pub p: usize,
    /// "+", "-", "*" or "/".
    pub operation: Operation,
    /// Fraction of all equations in the training split (seeded; the rest is the test split).
    pub train_fraction: f64,
}

impl Default for ModularParams {
    fn default() -> Self {
        ModularParams { p: 97, operation: Operation::Add, train_fraction: 0.3 }
    }
}

/// The largest modulus (p² equations of four tokens).
pub const MAX_MODULUS: usize = 4096;

fn is_prime(p: usize) -> bool {
    p >= 2 && (2..).take_while(|d| d * d <= p).all(|d| p % d != 0)
}

/// b⁻¹ mod p for prime p (Fermat: b^(p−2)).
fn inverse(b: usize, p: usize) -> usize {
    let (mut result, mut base, mut e) = (1u64, b as u64 % p as u64, p as u64 - 2);
    while e > 0 {
        if e & 1 == 1 {
            result = result * base % p as u64;
        }
        base = base * base % p as u64;
        e >>= 1;
    }
    result as usize
}

/// Problems with the parameters, by key.
pub fn check_modular(p: &ModularParams) -> Vec<(String, String)> {
    let mut e = Vec::new();
    if !(2..=MAX_MODULUS).contains(&p.p) {
        e.push(("p".into(), format!("p must be in 2..={MAX_MODULUS}, got {}", p.p)));
    } else if p.operation == Operation::Div && !is_prime(p.p) {
        e.push(("p".into(), format!("division needs a prime p (b⁻¹ mod {} does not exist for every b ≠ 0)", p.p)));
    }
    if !(p.train_fraction > 0.0 && p.train_fraction < 1.0) {
        e.push(("train_fraction".into(), format!("train_fraction must be in (0, 1), got {}", p.train_fraction)));
    }
    e
}

/// Every equation of `p`, a seeded `train_fraction` of them in the training split.
pub fn modular_arithmetic(p: &ModularParams, seed: u64) -> Result<Dataset> {
    if let Some((key, m)) = check_modular(p).into_iter().next() {
        return Err(DataError::Invalid(format!("{key}: {m}")));
    }
    let m = p.p;
    let (op_token, eq_token) = (m, m + 1);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for a in 0..m {
        for b in 0..m {
            let answer = match p.operation {
                Operation::Add => (a + b) % m,
                Operation::Sub => (a + m - b) % m,
                Operation::Mul => a * b % m,
                Operation::Div if b == 0 => continue,
                Operation::Div => a * inverse(b, m) % m,
            };
            x.extend([a as f64, op_token as f64, b as f64, eq_token as f64]);
            y.push(answer as u32);
        }
    }
    let n = y.len();
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    let n_train = ((n as f64 * p.train_fraction).round() as usize).clamp(1, n - 1);
    let mut split = vec![false; n];
    order[..n_train].iter().for_each(|&i| split[i] = true);
    let symbol = match p.operation {
        Operation::Add => "+",
        Operation::Sub => "-",
        Operation::Mul => "*",
        Operation::Div => "/",
    };
    let vocabulary: Vec<String> = (0..m).map(|v| v.to_string()).chain([symbol.to_string(), "=".to_string()]).collect();
    Ok(Dataset {
        dim: 4,
        shape: vec![4],
        num_classes: m + 2,
        x,
        y,
        split,
        feature_names: vec!["a".into(), "op".into(), "b".into(), "eq".into()],
        info: serde_json::json!({
            "generator": "modular_arithmetic",
            "params": p,
            "vocabulary": vocabulary,
            "target": "last",
            "train_equations": n_train,
            "equations": n,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equations_answers_and_the_split_are_as_stated() {
        let d = modular_arithmetic(&ModularParams { p: 7, operation: Operation::Div, train_fraction: 0.5 }, 3).unwrap();
        assert_eq!(d.y.len(), 7 * 6, "b = 0 has no inverse");
        for (row, &ans) in d.x.chunks(4).zip(&d.y) {
            let (a, b) = (row[0] as usize, row[2] as usize);
            assert_eq!((ans as usize * b) % 7, a, "{a} / {b} = {ans}");
            assert_eq!((row[1], row[3]), (7.0, 8.0));
        }
        assert_eq!(d.split.iter().filter(|&&s| s).count(), 21);
        assert_eq!(d.num_classes, 9);
        let again = modular_arithmetic(&ModularParams { p: 7, operation: Operation::Div, train_fraction: 0.5 }, 3).unwrap();
        assert_eq!(d, again, "seeded");
        let add = modular_arithmetic(&ModularParams { p: 5, operation: Operation::Sub, train_fraction: 0.3 }, 1).unwrap();
        assert!(add.x.chunks(4).zip(&add.y).all(|(r, &y)| (y as usize + r[2] as usize) % 5 == r[0] as usize));
        assert!(check_modular(&ModularParams { p: 8, operation: Operation::Div, train_fraction: 0.3 })[0].1.contains("prime"));
        assert!(!check_modular(&ModularParams { p: 8, operation: Operation::Mul, train_fraction: 1.0 }).is_empty());
        assert_eq!(inverse(3, 7), 5);
    }
}
