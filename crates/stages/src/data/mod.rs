//! Stages that make a `dataset`: generators, the vendored digits, and loaders of user files.
mod table;
mod tensors;

pub use table::{TableParams, TableStage};
pub use tensors::{TensorsParams, TensorsStage};

use hesslab_artifacts::Dataset;
use hesslab_data::{CifarParams, DigitsParams, GaussianMixture, IdxParams, MAX_CLASSES, MixtureParams, total_samples};
use hesslab_pipeline::resources::prod;
use hesslab_pipeline::{Estimate, Facts, InputFacts, PortSpec, StageContext, StageError, StageKind, port};

const DATASET: PortSpec = port::<Dataset>();

/// A named input path that cannot be read: missing, unreadable, or not a regular file (a FIFO
/// would block the run, a device never end) — said at validate time with its key, before any
/// stage runs. Relative paths are from the current directory, as the stage reads them.
pub(crate) fn unreadable_input(key: &str, path: &str) -> Option<(String, String)> {
    if path.is_empty() {
        return None;
    }
    let p = std::path::Path::new(path);
    let problem = match hesslab_limits::open_regular(p) {
        Ok(_) => return None,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => e.to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::env::current_dir() {
            Ok(cwd) if p.is_relative() => format!("`{path}` does not exist (relative to the current directory {})", cwd.display()),
            _ => format!("`{path}` does not exist"),
        },
        Err(e) => format!("`{path}` cannot be read: {e}"),
    };
    Some((key.into(), problem))
}

/// `gaussian_mixture`: k Gaussian clusters in d dimensions (S18 E2, S16 P3).
pub struct GaussianMixtureStage;

impl StageKind for GaussianMixtureStage {
    type Params = MixtureParams;
    const KIND: &'static str = "gaussian_mixture";
    /// 2: datasets carry their sample `shape`.
    const VERSION: u32 = 2;
    const DOC: &'static str = "k Gaussian clusters in d dimensions, one class each, isotropic noise (std, covariance multiplier), optional global normalization, stratified train/test split.";
    const OUTPUTS: &'static [PortSpec] = &[DATASET];
    fn check(p: &MixtureParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.classes > MAX_CLASSES {
            e.push(("classes".into(), format!("classes must be ≤ {MAX_CLASSES}")));
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
        ctx.write_shared::<Dataset>(DATASET.name, ds)
    }
}

/// `digits`: the vendored UCI optical digits.
pub struct DigitsStage;

impl StageKind for DigitsStage {
    type Params = DigitsParams;
    const KIND: &'static str = "digits";
    /// 2: datasets carry their sample `shape`.
    const VERSION: u32 = 2;
    const DOC: &'static str = "UCI optical digits (1797 8×8 images, 10 classes; CC BY 4.0, Alpaydin & Kaynak 1998), stratified subsample, pixel scaling, test split. Stands in for the papers' 1K MNIST subsets.";
    const OUTPUTS: &'static [PortSpec] = &[DATASET];
    fn input_files(p: &DigitsParams) -> Vec<String> {
        p.path.iter().cloned().collect()
    }
    fn check(p: &DigitsParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !(0.0..1.0).contains(&p.test_fraction) {
            e.push(("test_fraction".into(), "test_fraction must be in [0, 1)".into()));
        }
        if p.n > 1797 && p.path.is_none() {
            e.push(("n".into(), format!("n = {} exceeds the 1797 examples of the digits data", p.n)));
        }
        e.extend(p.path.as_deref().and_then(|f| unreadable_input("path", f)));
        e
    }
    fn facts(p: &DigitsParams, _: &InputFacts) -> Facts {
        let rows = if p.path.is_none() { Some(if p.n == 0 { 1797 } else { p.n.min(1797) } as u64) } else { None };
        Facts { rows, dim: Some(64), classes: Some(10), shape: Some([1, 8, 8]), ..Default::default() }
    }
    fn run(p: &DigitsParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ds = hesslab_data::load_digits(p, ctx.seed).map_err(StageError::other)?;
        ctx.write_shared::<Dataset>(DATASET.name, ds)
    }
}

/// `modular_arithmetic`: every equation `a ∘ b =` of Z_p (the grokking task).
pub struct ModularArithmeticStage;

impl StageKind for ModularArithmeticStage {
    type Params = hesslab_data::ModularParams;
    const KIND: &'static str = "modular_arithmetic";
    const DOC: &'static str = "Every equation a ∘ b = over Z_p (operation +, -, * or /) as four tokens [a, ∘, b, =] with its answer (a ∘ b) mod p as the label — Power et al.'s grokking task; tokens 0..p are numbers, p the operation, p + 1 `=` (vocabulary p + 2, listed in the dataset's info); a seeded train_fraction trains.";
    const OUTPUTS: &'static [PortSpec] = &[DATASET];
    fn check(p: &hesslab_data::ModularParams) -> Vec<(String, String)> {
        hesslab_data::check_modular(p)
    }
    fn facts(p: &hesslab_data::ModularParams, _: &InputFacts) -> Facts {
        let n = if p.operation == hesslab_data::Operation::Div { p.p * (p.p.saturating_sub(1)) } else { p.p * p.p };
        Facts { rows: Some(n as u64), dim: Some(4), classes: Some(p.p as u64 + 2), ..Default::default() }
    }
    fn run(p: &hesslab_data::ModularParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ds = hesslab_data::modular_arithmetic(p, ctx.seed).map_err(StageError::other)?;
        ctx.write_shared::<Dataset>(DATASET.name, ds)
    }
}

/// `text`: character-level windows of a UTF-8 file.
pub struct TextStage;

impl StageKind for TextStage {
    type Params = hesslab_data::TextParams;
    const KIND: &'static str = "text";
    const DOC: &'static str = "Character-level windows of a UTF-8 file: `context` character ids as the sample, the next character as the label; the vocabulary is the file's characters (listed in the dataset's info); a seeded sample of `samples` windows, train/test by position (the text's last test_fraction gives the test windows).";
    const OUTPUTS: &'static [PortSpec] = &[DATASET];
    fn input_files(p: &hesslab_data::TextParams) -> Vec<String> {
        vec![p.path.clone()]
    }
    fn check(p: &hesslab_data::TextParams) -> Vec<(String, String)> {
        let mut e = hesslab_data::check_text(p);
        e.extend(unreadable_input("path", &p.path));
        e
    }
    fn facts(p: &hesslab_data::TextParams, _: &InputFacts) -> Facts {
        Facts { rows: (p.samples > 0).then_some(p.samples as u64), dim: Some(p.context as u64), ..Default::default() }
    }
    fn run(p: &hesslab_data::TextParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ds = hesslab_data::load_text(p, ctx.seed).map_err(StageError::other)?;
        ctx.write_shared::<Dataset>(DATASET.name, ds)
    }
}

/// `idx`: MNIST-style IDX files.
pub struct IdxStage;

impl StageKind for IdxStage {
    type Params = IdxParams;
    const KIND: &'static str = "idx";
    /// 2: datasets carry their sample `shape`.
    const VERSION: u32 = 2;
    const DOC: &'static str = "MNIST-style IDX image and label files, plain or gzip (Fashion-MNIST: Debian package dataset-fashion-mnist), stratified or class-balanced (samples_per_class) subsample, test split; shape [1, H, W].";
    const OUTPUTS: &'static [PortSpec] = &[DATASET];
    fn input_files(p: &IdxParams) -> Vec<String> {
        [&p.images, &p.labels, &p.test_images, &p.test_labels].into_iter().filter(|f| !f.is_empty()).cloned().collect()
    }
    fn check(p: &IdxParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.images.is_empty() {
            e.push(("images".into(), "path of the IDX images file is required".into()));
        }
        if p.labels.is_empty() {
            e.push(("labels".into(), "path of the IDX labels file is required".into()));
        }
        if p.test_images.is_empty() != p.test_labels.is_empty() {
            e.push(("test_labels".into(), "test_images and test_labels go together".into()));
        }
        for (key, path) in [("images", &p.images), ("labels", &p.labels), ("test_images", &p.test_images), ("test_labels", &p.test_labels)]
        {
            if let Some(problem) = unreadable_input(key, path) {
                e.push(problem);
            } else if key.ends_with("images")
                && let Some(dims) = hesslab_data::idx_dims(path)
                && (dims.len() < 2 || dims.contains(&0))
            {
                e.push((key.into(), format!("`{path}`: the IDX header's dimensions {dims:?} are not [count, height, width] images")));
            }
        }
        e
    }
    /// From the files' headers when they can be read now (shape errors of a network on these
    /// images are then reported by `validate`).
    fn facts(p: &IdxParams, _: &InputFacts) -> Facts {
        let Some(dims) = hesslab_data::idx_dims(&p.images).filter(|d| !d.is_empty()) else { return Facts::default() };
        let shape = match dims[1..] {
            [h, w] => Some([1, h as u64, w as u64]),
            [c, h, w] => Some([c as u64, h as u64, w as u64]),
            _ => None,
        };
        let total = dims[0] as u64;
        let test_rows = hesslab_data::idx_dims(&p.test_images).and_then(|d| d.first().map(|&n| n as u64)).unwrap_or(0);
        let rows = test_rows
            + if p.samples_per_class > 0 {
                (p.samples_per_class as u64).saturating_mul(10)
            } else if p.n == 0 {
                total
            } else {
                (p.n as u64).min(total)
            };
        Facts {
            rows: Some(rows),
            dim: Some(dims[1..].iter().fold(1u64, |a, &b| a.saturating_mul(b as u64))),
            classes: Some(10),
            shape,
            ..Default::default()
        }
    }
    fn run(p: &IdxParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ds = hesslab_data::load_idx(p, ctx.seed).map_err(StageError::other)?;
        ctx.write::<Dataset>(DATASET.name, &ds)
    }
}

/// `cifar10`: CIFAR-10 binary batches.
pub struct Cifar10Stage;

impl StageKind for Cifar10Stage {
    type Params = CifarParams;
    const KIND: &'static str = "cifar10";
    /// 2: datasets carry their sample `shape`.
    const VERSION: u32 = 2;
    const DOC: &'static str =
        "CIFAR-10 binary batches from local paths (pixels ÷255, channel-major 3×32×32), stratified subsample, test split.";
    const OUTPUTS: &'static [PortSpec] = &[DATASET];
    fn input_files(p: &CifarParams) -> Vec<String> {
        p.files.clone()
    }
    fn check(p: &CifarParams) -> Vec<(String, String)> {
        if p.files.is_empty() {
            return vec![("files".into(), "list at least one CIFAR-10 binary batch file".into())];
        }
        p.files.iter().filter_map(|f| unreadable_input("files", f)).collect()
    }
    fn facts(p: &CifarParams, _: &InputFacts) -> Facts {
        Facts { rows: (p.n > 0).then_some(p.n as u64), dim: Some(3072), classes: Some(10), shape: Some([3, 32, 32]), ..Default::default() }
    }
    fn run(p: &CifarParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ds = hesslab_data::load_cifar10(p, ctx.seed).map_err(StageError::other)?;
        ctx.write::<Dataset>(DATASET.name, &ds)
    }
}
