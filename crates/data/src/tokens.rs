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

/// The largest modulus: p² equations of four tokens, 32 MB of features at 1024 (the grokking
/// literature uses p ≤ 113), checked before anything is generated.
pub const MAX_MODULUS: usize = 1024;

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

    #[test]
    fn text_windows_are_the_file_s_and_the_test_part_does_not_overlap_training() {
        let dir = std::env::temp_dir().join(format!("hesslab-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.txt");
        let text = "abcabd ééx".repeat(20);
        std::fs::write(&path, &text).unwrap();
        let p = TextParams { path: path.to_string_lossy().into(), context: 4, samples: 0, test_fraction: 0.25 };
        let d = load_text(&p, 1).unwrap();
        let vocab: Vec<String> = serde_json::from_value(d.info["vocabulary"].clone()).unwrap();
        assert_eq!(vocab, [" ", "a", "b", "c", "d", "x", "é"], "code-point order, multi-byte characters whole");
        let chars: Vec<char> = text.chars().collect();
        for (w, &y) in d.x.chunks(4).zip(&d.y) {
            let s: String = w.iter().map(|&v| vocab[v as usize].clone()).chain([vocab[y as usize].clone()]).collect();
            assert!(chars.windows(5).any(|c| c.iter().collect::<String>() == s), "{s} is a window");
        }
        let test = d.split.iter().filter(|&&s| !s).count();
        assert!(test > 0 && test < d.split.len());
        // Too short a text, and a file that is not UTF-8, are errors.
        std::fs::write(&path, "ab").unwrap();
        assert!(load_text(&p, 1).unwrap_err().to_string().contains("too few"));
        std::fs::write(&path, [0x61, 0xff, 0x62]).unwrap();
        assert!(load_text(&p, 1).unwrap_err().to_string().contains("not UTF-8"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Parameters of `text`: character-level windows of a UTF-8 file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TextParams {
    /// The UTF-8 text file.
    pub path: String,
    /// Characters of context per sample (T); the label is the character after them.
    pub context: usize,
    /// Windows drawn (seeded, without replacement where the text allows; 0 = every window).
    pub samples: usize,
    /// The last fraction of the text whose windows are the test split (train/test by position,
    /// so no test window overlaps a training one).
    pub test_fraction: f64,
}

impl Default for TextParams {
    fn default() -> Self {
        TextParams { path: String::new(), context: 32, samples: 2000, test_fraction: 0.1 }
    }
}

/// Problems with the parameters, by key.
pub fn check_text(p: &TextParams) -> Vec<(String, String)> {
    let mut e = Vec::new();
    if p.path.is_empty() {
        e.push(("path".into(), "path of a UTF-8 text file is required".into()));
    }
    if p.context == 0 || p.context > 4096 {
        e.push(("context".into(), format!("context must be in 1..=4096, got {}", p.context)));
    }
    if !(0.0..1.0).contains(&p.test_fraction) {
        e.push(("test_fraction".into(), "test_fraction must be in [0, 1)".into()));
    }
    e
}

/// Windows of `context + 1` characters of the file: `context` character ids as the sample, the
/// next one's as the label; the vocabulary is the file's characters in code-point order.
pub fn load_text(p: &TextParams, seed: u64) -> Result<Dataset> {
    if let Some((key, m)) = check_text(p).into_iter().next() {
        return Err(DataError::Invalid(format!("{key}: {m}")));
    }
    let bytes = crate::error::read_file(&p.path, "text file", 16)?;
    let text = String::from_utf8(bytes).map_err(|e| DataError::Malformed {
        format: "UTF-8 text",
        path: p.path.clone(),
        message: format!("byte {} is not UTF-8", e.utf8_error().valid_up_to()),
    })?;
    let chars: Vec<char> = text.chars().collect();
    let mut vocabulary: Vec<char> = chars.clone();
    vocabulary.sort_unstable();
    vocabulary.dedup();
    if vocabulary.len() > crate::MAX_CLASSES {
        return Err(DataError::Invalid(format!(
            "`{}` has {} distinct characters, more than {}",
            p.path,
            vocabulary.len(),
            crate::MAX_CLASSES
        )));
    }
    let ids: Vec<u32> = chars.iter().map(|c| vocabulary.binary_search(c).expect("in the vocabulary") as u32).collect();
    let t = p.context;
    let windows = ids.len().saturating_sub(t);
    // Train windows end before the test part begins; test windows lie wholly inside it.
    let boundary = ((ids.len() as f64) * (1.0 - p.test_fraction)).floor() as usize;
    let train: Vec<usize> = (0..windows).filter(|&s| s + t < boundary).collect();
    let test: Vec<usize> = (0..windows).filter(|&s| s >= boundary).collect();
    if train.is_empty() || (p.test_fraction > 0.0 && test.is_empty()) {
        return Err(DataError::Invalid(format!(
            "`{}` has {} characters: too few for windows of {} + 1 with test_fraction = {}",
            p.path,
            ids.len(),
            t,
            p.test_fraction
        )));
    }
    let mut rng = Rng::new(seed);
    let mut pick = |mut from: Vec<usize>, n: usize| {
        rng.shuffle(&mut from);
        from.truncate(n);
        from.sort_unstable();
        from
    };
    let n_test = if p.samples == 0 { test.len() } else { ((p.samples as f64) * p.test_fraction).round() as usize }.min(test.len());
    let n_train = if p.samples == 0 { train.len() } else { p.samples - n_test.min(p.samples) }.min(train.len());
    let (train, test) = (pick(train, n_train), pick(test, n_test));
    let mut x = Vec::with_capacity((train.len() + test.len()) * t);
    let (mut y, mut split) = (Vec::new(), Vec::new());
    for (starts, is_train) in [(&train, true), (&test, false)] {
        for &s in starts {
            x.extend(ids[s..s + t].iter().map(|&v| v as f64));
            y.push(ids[s + t]);
            split.push(is_train);
        }
    }
    Ok(Dataset {
        dim: t,
        shape: vec![t],
        num_classes: vocabulary.len(),
        x,
        y,
        split,
        feature_names: (0..t).map(|i| format!("c{i}")).collect(),
        info: serde_json::json!({
            "generator": "text",
            "params": p,
            "vocabulary": vocabulary.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "target": "last",
            "characters": ids.len(),
        }),
    })
}
