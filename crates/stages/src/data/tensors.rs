//! `tensors`: a dataset from the arrays a PyTorch or NumPy user already has (`.npz`,
//! `.safetensors`).
use super::DATASET;
use hesslab_artifacts::Dataset;
use hesslab_data::{load_tensors, subsample};
use hesslab_pipeline::{PortSpec, StageContext, StageError, StageKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `tensors`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TensorsParams {
    /// A `.npz` archive (`numpy.savez(path, x=..., y=...)`, also `savez_compressed`) or a
    /// `.safetensors` file (`safetensors.torch.save_file({"x": ..., "y": ...}, path)`).
    pub path: String,
    /// The features: one row per sample, any sample shape (N × C × H × W images keep theirs).
    pub x: String,
    /// The class labels: N integers (or integral floats) in 0..classes.
    pub y: String,
    /// An optional per-sample split array (0/false = train, 1/true = test); used when the file
    /// has it, and then `test_fraction` is not.
    pub split: String,
    /// Fraction of each class held out as the test split when the file has no split array
    /// (seeded; 0 keeps every sample for training).
    pub test_fraction: f64,
}

impl Default for TensorsParams {
    fn default() -> Self {
        TensorsParams { path: String::new(), x: "x".into(), y: "y".into(), split: "split".into(), test_fraction: 0.2 }
    }
}

/// The `tensors` stage kind.
pub struct TensorsStage;

impl StageKind for TensorsStage {
    type Params = TensorsParams;
    const KIND: &'static str = "tensors";
    const DOC: &'static str = "A dataset from arrays: x (N × any sample shape) and y (N class labels), with an optional split array, from a .npz archive or a .safetensors file (float32 and integer arrays are widened to float64; the dataset's info says what they were).";
    const OUTPUTS: &'static [PortSpec] = &[DATASET];
    fn input_files(p: &TensorsParams) -> Vec<String> {
        vec![p.path.clone()]
    }
    fn check(p: &TensorsParams) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if p.path.is_empty() {
            e.push(("path".into(), "path of the .npz or .safetensors file is required".into()));
        } else if !(p.path.ends_with(".npz") || p.path.ends_with(".safetensors")) {
            e.push(("path".into(), format!("`{}`: a tensors file ends in .npz (numpy.savez) or .safetensors", p.path)));
        } else {
            e.extend(super::unreadable_input("path", &p.path));
        }
        if !(0.0..1.0).contains(&p.test_fraction) {
            e.push(("test_fraction".into(), "test_fraction must be in [0, 1)".into()));
        }
        for (key, v) in [("x", &p.x), ("y", &p.y)] {
            if v.is_empty() {
                e.push((key.into(), format!("the name of the {key} array is required")));
            }
        }
        e
    }
    fn run(p: &TensorsParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let t = load_tensors(&p.path, &p.x, &p.y, &p.split).map_err(StageError::other)?;
        let d: usize = t.shape.iter().product();
        let k = t.y.iter().copied().max().map_or(0, |m| m as usize + 1);
        let from_file = t.test.is_some();
        let (x, y, split) = match t.test {
            Some(test) => (t.x, t.y, test.into_iter().map(|is_test| !is_test).collect()),
            None => subsample(t.x, t.y, d, k, 0, p.test_fraction, ctx.seed),
        };
        let ds = hesslab_data::Dataset {
            dim: d,
            shape: t.shape,
            num_classes: k,
            x,
            y,
            split,
            feature_names: (0..d).map(|i| format!("x{i}")).collect(),
            info: serde_json::json!({
                "generator": "tensors",
                "params": p,
                "x_dtype": t.x_dtype,
                "widened_to_float64": t.x_dtype != "float64",
                "split": if from_file { "from the file" } else { "test_fraction" },
            }),
        };
        ctx.write::<Dataset>(DATASET.name, &ds)
    }
}
