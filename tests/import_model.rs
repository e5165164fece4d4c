//! Bring your own model (#41): networks trained in PyTorch (scripts/import_fixtures.py — an MLP,
//! a LeNet-style class with a functional forward, a ResNet with BatchNorm in eval mode and
//! nanoGPT's 2-layer GPT on modular addition),
//! exported by scripts/export_torch.py (state_dict as safetensors + architecture JSON) and read
//! by `import_model`. hesslab's loss, gradient and top-10 Hessian eigenvalues equal PyTorch's
//! own (committed in expected.json, float64), a hesslab model survives the trip through torch
//! bit for bit, and every malformed file is refused at validate time with its key.
mod common;
use common::run_measured;
use hesslab_artifacts::{Dataset, Eigenvalues, Model};
use hesslab_pipeline::{Port, read_artifact};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/import").canonicalize().unwrap()
}

fn sandbox(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-import-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(d: &Path, src: &str, cmd: &str) -> (i32, String) {
    std::fs::write(d.join("p.toml"), src).unwrap();
    let args: &[&str] = if cmd == "run" { &["run", "p.toml", "--out", "out"] } else { &[cmd, "p.toml"] };
    let (code, out, err, _) = run_measured(args, d, Duration::from_secs(300));
    (code, format!("{out}{err}"))
}

/// A pipeline: the data PyTorch trained on, the imported network `name`, its top 10.
fn pipeline(weights: &Path, architecture: &Path) -> String {
    pipeline_on("digits.npz", weights, architecture)
}

fn pipeline_on(data: &str, weights: &Path, architecture: &Path) -> String {
    format!(
        r#"[pipeline]
name = "imported"
seed = 1
[stages.data]
kind = "tensors"
path = "{}"
[stages.model]
kind = "import_model"
weights = "{}"
architecture = "{}"
[stages.top]
kind = "eigenvalues"
model = "model.model"
dataset = "data.dataset"
solver = "lanczos"
k = 10
which = "largest"
tol = 1e-12
"#,
        fixtures().join(data).display(),
        weights.display(),
        architecture.display()
    )
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn pytorch_trained_networks_have_pytorchs_loss_gradient_and_top_eigenvalues() {
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    // nanoGPT's GPT (2 layers, read at the last position) through safetensors only.
    let cases = ["mlp", "lenet", "resnet_bn"].into_iter().flat_map(|n| [(n, false), (n, true)]).chain([("gpt", false)]);
    for (net, through_onnx) in cases {
        let e = &expected[net];
        let name = format!("{net}{}", if through_onnx { " (ONNX)" } else { "" });
        let d = sandbox(&format!("{net}-{through_onnx}"));
        let (weights, arch_path) = (fixtures().join(format!("{net}.safetensors")), fixtures().join(format!("{net}.json")));
        let onnx = fixtures().join(format!("{net}.onnx"));
        let data = if net == "gpt" { "tokens.npz" } else { "digits.npz" };
        let mut src = pipeline_on(data, &weights, &arch_path);
        if through_onnx {
            src = src.replace(
                &format!("weights = \"{}\"\narchitecture = \"{}\"", weights.display(), arch_path.display()),
                &format!("onnx = \"{}\"", onnx.display()),
            );
            assert!(src.contains("onnx ="));
        }
        let (code, out) = run(&d, &src, "run");
        assert_eq!(code, 0, "{name}: {out}");
        let main = d.join("out/imported/main");
        let m = Model::decode(&read_artifact(&main.join("model/model.parquet"), None).unwrap()).unwrap();
        assert_eq!(m.net.num_params() as u64, e["params"].as_u64().unwrap(), "{name}");
        let imported = m.imported.as_ref().expect("imported metadata");
        assert_eq!(imported["widened_to_float64"].as_bool(), Some(e["dtype"] == "float32"), "{name}: {imported}");

        let ds = Dataset::decode(&read_artifact(&main.join("data/dataset.parquet"), None).unwrap()).unwrap();
        let train = ds.train();
        let expected_train = if net == "gpt" { 32 } else { 240 };
        assert_eq!(train.len(), expected_train, "the file's split (every fifth digit, every third equation, is a test sample)");
        let (loss, grad) = m.net.loss_grad(train.x.as_ref(), &train.y);
        let torch_loss = e["loss"].as_f64().unwrap();
        assert!((loss - torch_loss).abs() <= 1e-12 * torch_loss, "{name}: loss {loss} vs torch {torch_loss}");
        // The gradient, tensor by tensor under its state_dict name.
        let json: serde_json::Value = if through_onnx {
            // The architecture the ONNX graph maps to, with its initializers' names as paths.
            let m = hesslab_data::read_onnx(onnx.to_str().unwrap()).unwrap();
            hesslab_model::network_of_onnx(&m, "cross_entropy").unwrap().architecture
        } else {
            serde_json::from_str(&std::fs::read_to_string(&arch_path).unwrap()).unwrap()
        };
        let layout = hesslab_model::StateDictLayout::of(&m.net.arch(), &json);
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for (tname, _, range) in &layout.params {
            let t = floats(e["grad"].get(tname).unwrap_or_else(|| panic!("{name}: no torch gradient for `{tname}`")));
            assert_eq!(t.len(), range.len(), "{name}: {tname}");
            for (a, b) in grad[range.clone()].iter().zip(&t) {
                num += (a - b) * (a - b);
                den += b * b;
            }
        }
        let rel = (num / den).sqrt();
        assert!(rel <= 1e-9, "{name}: gradient relative difference {rel:e}");

        let ev = Eigenvalues::decode(&read_artifact(&main.join("top/eigenvalues.parquet"), None).unwrap()).unwrap().values;
        let torch = floats(&e["top10"]);
        let worst = ev.iter().zip(&torch).map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0, f64::max);
        eprintln!(
            "{name}: P = {}, loss relative difference {:.1e}, gradient {rel:.1e}, top-10 eigenvalues at most {worst:.1e}",
            m.net.num_params(),
            (loss - torch_loss).abs() / torch_loss
        );
        for (i, (a, b)) in ev.iter().zip(&torch).enumerate() {
            assert!((a - b).abs() <= 1e-9 * b.abs(), "{name}: λ{} = {a} vs torch {b} (relative {:e})", i + 1, (a - b).abs() / b.abs());
        }
        if let Some(dense) = e.get("dense_eigenvalues_top10") {
            for (a, b) in ev.iter().zip(floats(dense)) {
                assert!((a - b).abs() <= 1e-9 * b.abs(), "{name}: {a} vs torch's dense Hessian {b}");
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// hesslab → PyTorch → hesslab: a hesslab-trained residual network with a named-node graph
/// (tests/fixtures/resnet_digits.toml), loaded into torch by the README's rebuild and saved by
/// `safetensors.torch.save_file`, imports with bit-identical parameters and equal eigenvalues.
#[test]
fn a_model_exported_to_pytorch_imports_back_bit_identically() {
    let f = fixtures();
    let original = Model::decode(&read_artifact(&f.join("roundtrip_resnet_digits.model.parquet"), None).unwrap()).unwrap();
    let d = sandbox("roundtrip");
    // The pipeline that trained it (tests/fixtures/resnet_digits.toml: digits n = 300, seed 5)
    // with the import in place of `train`, and every eigenvalue of the dense Hessian.
    let src = format!(
        "[pipeline]\nname = \"rt\"\nseed = 5\n[stages.data]\nkind = \"digits\"\nn = 300\n[stages.model]\nkind = \"import_model\"\nweights = \"{}\"\narchitecture = \"{}\"\n[stages.eigen]\nkind = \"eigenvalues\"\nmodel = \"model.model\"\ndataset = \"data.dataset\"\n",
        f.join("roundtrip_resnet_digits.safetensors").display(),
        f.join("roundtrip_resnet_digits.json").display()
    );
    let (code, out) = run(&d, &src, "run");
    assert_eq!(code, 0, "{out}");
    let main = d.join("out/rt/main");
    let back = Model::decode(&read_artifact(&main.join("model/model.parquet"), None).unwrap()).unwrap();
    assert_eq!(back.net.arch(), original.net.arch());
    assert_eq!(back.net.params().len(), original.net.params().len());
    let same = back.net.params().iter().zip(original.net.params()).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "parameters differ after the round trip");
    let ds = Dataset::decode(&read_artifact(&main.join("data/dataset.parquet"), None).unwrap()).unwrap();
    let train = ds.train();
    let (l0, g0) = original.net.loss_grad(train.x.as_ref(), &train.y);
    let (l1, g1) = back.net.loss_grad(train.x.as_ref(), &train.y);
    assert!(l0.to_bits() == l1.to_bits() && g0.iter().zip(&g1).all(|(a, b)| a.to_bits() == b.to_bits()));
    // Its eigenvalues are the ones PyTorch computed for the hesslab-trained original
    // (tests/fixtures/torch_resnet_digits.json, every eigenvalue of the dense Hessian).
    let torch: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f.join("../torch_resnet_digits.json")).unwrap()).unwrap();
    let torch = floats(&torch["eigenvalues"]);
    let ev = Eigenvalues::decode(&read_artifact(&main.join("eigen/eigenvalues.parquet"), None).unwrap()).unwrap().values;
    assert_eq!(ev.len(), torch.len());
    let worst = ev.iter().zip(&torch).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / torch[0].abs();
    assert!(worst <= 1e-10, "eigenvalues of the round-tripped model: largest difference {worst:e} × λ₁");
    let _ = std::fs::remove_dir_all(&d);
}

/// Every malformed file class, at validate time, with the key and what is wrong.
#[test]
fn malformed_imports_are_refused_before_anything_runs() {
    let f = fixtures();
    let d = sandbox("bad");
    let arch: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f.join("mlp.json")).unwrap()).unwrap();
    let write_json = |name: &str, v: &serde_json::Value| {
        let p = d.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    let good_weights = f.join("mlp.safetensors");
    let bytes = std::fs::read(&good_weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let check = |weights: &Path, arch_path: &Path, want: &[&str]| {
        let src = format!(
            "[pipeline]\nname = \"bad\"\n[stages.model]\nkind = \"import_model\"\nweights = \"{}\"\narchitecture = \"{}\"\n",
            weights.display(),
            arch_path.display()
        );
        let (code, out) = run(&d, &src, "validate");
        assert_ne!(code, 0, "{out}");
        for w in want {
            assert!(out.contains(w), "expected `{w}` in:\n{out}");
        }
        assert!(out.contains("p.toml:"), "the error names the pipeline file and line:\n{out}");
        assert!(!out.contains("panicked"), "{out}");
    };
    let good_arch = f.join("mlp.json");

    // A truncated file: the header claims more than there is.
    let truncated = d.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..8 + header_len / 2]).unwrap();
    check(&truncated, &good_arch, &["weights", "truncated"]);
    // A lying shape: the header says [32, 65] where the data holds 32 × 64.
    let text = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let lying_text = text.replacen("[32,64]", "[32,65]", 1);
    assert_ne!(lying_text, text, "the fixture's header names the shape [32,64]: {text}");
    let mut lying = (lying_text.len() as u64).to_le_bytes().to_vec();
    lying.extend(lying_text.as_bytes());
    lying.extend(&bytes[8 + header_len..]);
    let lying_path = d.join("lying.safetensors");
    std::fs::write(&lying_path, &lying).unwrap();
    check(&lying_path, &good_arch, &["weights", "do not fit"]);
    // Mismatched architectures: a wider layer, a transposed one, a missing and an extra tensor.
    let mut wider = arch.clone();
    wider["modules"][1]["out_features"] = 33.into();
    wider["modules"][3]["in_features"] = 33.into();
    check(
        &good_weights,
        &write_json("wider.json", &wider),
        &["`1.weight` has shape [32, 64] in the file, the architecture needs [33, 64]"],
    );
    let mut no_bias = arch.clone();
    no_bias["modules"][3]["bias"] = false.into();
    check(&good_weights, &write_json("no_bias.json", &no_bias), &["not in the architecture: 3.bias"]);
    let mut renamed = arch.clone();
    renamed["modules"][1]["path"] = "fc1".into();
    check(
        &good_weights,
        &write_json("renamed.json", &renamed),
        &["missing: `fc1.weight` [32, 64]", "not in the architecture: 1.bias, 1.weight"],
    );
    let mut transposed = arch.clone();
    transposed["input_shape"] = serde_json::json!([32]);
    transposed["modules"] = serde_json::json!([{"module": "Linear", "in_features": 32, "out_features": 64, "bias": false, "path": "1"}, {"module": "Tanh"}, {"module": "Linear", "in_features": 64, "out_features": 10, "path": "3"}]);
    check(&good_weights, &write_json("transposed.json", &transposed), &["transposed or permuted layout"]);
    // A layer hesslab does not have, and an architecture that is not one.
    let mut unknown = arch.clone();
    unknown["modules"][2] = serde_json::json!({"module": "GroupNorm", "num_groups": 2});
    check(&good_weights, &write_json("unknown.json", &unknown), &["architecture", "unknown module `GroupNorm`"]);
    let mut dilated = serde_json::json!({"input_shape": [1, 8, 8], "loss": "cross_entropy", "modules": [
        {"module": "Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "dilation": 2}, {"module": "Flatten"},
        {"module": "Linear", "in_features": 8, "out_features": 10}]});
    check(&good_weights, &write_json("dilated.json", &dilated), &["Conv2d with dilation = 2 is not supported"]);
    dilated["modules"][0]["dilation"] = 1.into();
    dilated["modules"][0]["groups"] = 2.into();
    check(&good_weights, &write_json("grouped.json", &dilated), &["Conv2d with groups = 2 is not supported"]);
    let not_json = d.join("not.json");
    std::fs::write(&not_json, "{ modules: ").unwrap();
    check(&good_weights, &not_json, &["architecture", "is not JSON"]);
    // ONNX: an operator hesslab does not have (the MLP's Tanh renamed to Sinh, same length),
    // a truncated file, and an ONNX file given with weights.
    let onnx = std::fs::read(f.join("mlp.onnx")).unwrap();
    let renamed: Vec<u8> = {
        let mut b = onnx.clone();
        let at: Vec<usize> = b.windows(4).enumerate().filter(|(_, w)| *w == b"Tanh").map(|(i, _)| i).collect();
        assert!(!at.is_empty());
        at.into_iter().for_each(|i| b[i..i + 4].copy_from_slice(b"Sinh"));
        b
    };
    let onnx_case = |name: &str, bytes: &[u8], extra: &str, want: &[&str]| {
        let path = d.join(name);
        std::fs::write(&path, bytes).unwrap();
        let src = format!("[pipeline]\nname = \"bad\"\n[stages.model]\nkind = \"import_model\"\nonnx = \"{}\"\n{extra}", path.display());
        let (code, out) = run(&d, &src, "validate");
        assert_ne!(code, 0, "{out}");
        for w in want {
            assert!(out.contains(w), "expected `{w}` in:\n{out}");
        }
        assert!(!out.contains("panicked"), "{out}");
    };
    onnx_case("sinh.onnx", &renamed, "", &["onnx", "operator `Sinh` is not supported", "supported: Gemm"]);
    onnx_case("cut.onnx", &onnx[..onnx.len() / 2], "", &["onnx", "past the end"]);
    onnx_case("both.onnx", &onnx, &format!("weights = \"{}\"\n", good_weights.display()), &["either `onnx` or `weights`"]);
    let src = format!(
        "[pipeline]\nname = \"bad\"\n[stages.model]\nkind = \"import_model\"\nweights = \"{}\"\narchitecture = \"{}\"\nloss = \"mse\"\n",
        good_weights.display(),
        good_arch.display()
    );
    let (code, out) = run(&d, &src, "validate");
    assert!(code != 0 && out.contains("`loss` goes with `onnx`"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

/// A re-exported checkpoint reruns the import: the weights file is part of the cache key.
#[test]
fn a_changed_weights_file_reruns_the_import() {
    let f = fixtures();
    let d = sandbox("rerun");
    let w = d.join("w.safetensors");
    std::fs::copy(f.join("mlp.safetensors"), &w).unwrap();
    let src = format!(
        "[pipeline]\nname = \"rr\"\n[stages.model]\nkind = \"import_model\"\nweights = \"{}\"\narchitecture = \"{}\"\n",
        w.display(),
        f.join("mlp.json").display()
    );
    let model = || Model::decode(&read_artifact(&d.join("out/rr/main/model/model.parquet"), None).unwrap()).unwrap();
    assert_eq!(run(&d, &src, "run").0, 0);
    let first = model().net.params().to_vec();
    // The same tensors with every value of the first one changed (same size: only content differs).
    let mut bytes = std::fs::read(&w).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    assert!(last > 8 + n);
    std::fs::write(&w, &bytes).unwrap();
    let (code, out) = run(&d, &src, "run");
    assert_eq!(code, 0, "{out}");
    assert_ne!(model().net.params(), &first[..], "the stage reran on the changed file");
    let _ = std::fs::remove_dir_all(&d);
}
