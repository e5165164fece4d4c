//! Loaders on small files written in the real formats; generators' shapes and checks.
use hesslab_artifacts::Dataset as DatasetPort;
use hesslab_data::*;
use hesslab_pipeline::{Port, StageContext, StageKind, port, read_artifact};
use hesslab_stages::data::{Cifar10Stage as Cifar10, DigitsStage as Digits, IdxStage as IdxImages, TableStage as TableImport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run<S: StageKind>(p: &S::Params, dir: &Path) -> Result<Dataset, String> {
    let mut ctx = StageContext::standalone_for::<S>(dir, 5, BTreeMap::new());
    S::run(p, &mut ctx).map_err(|e| e.to_string())?;
    Ok(DatasetPort::decode(&read_artifact(&dir.join("dataset.parquet"), Some(&port::<DatasetPort>().schema())).unwrap()).unwrap())
}

fn idx_file(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

#[test]
fn idx_loader_reads_mnist_format() {
    let d = tmp("idx");
    let n = 40u32;
    let pixels: Vec<u8> = (0..n * 4 * 4).map(|i| (i % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    std::fs::write(d.join("img"), idx_file(&[n, 4, 4], &pixels)).unwrap();
    std::fs::write(d.join("lab"), idx_file(&[n], &labels)).unwrap();
    let p = loaders_params::idx(&d);
    let ds = run::<IdxImages>(&p, &d).unwrap();
    assert_eq!(ds.dim, 16);
    assert_eq!(ds.len(), 20);
    assert_eq!(ds.num_classes, 10);
    assert!(ds.x.iter().all(|v| (0.0..=1.0).contains(v)));
    // Each kept row is one of the original images.
    let row0: Vec<f64> = ds.x[..16].to_vec();
    assert!((0..n as usize).any(|i| (0..16).all(|j| (pixels[i * 16 + j] as f64 / 255.0 - row0[j]).abs() < 1e-15)));
    // Truncated payload: a clear error.
    std::fs::write(d.join("img"), idx_file(&[n, 4, 4], &pixels[..100])).unwrap();
    let e = run::<IdxImages>(&p, &d).unwrap_err();
    assert!(e.contains("malformed IDX file") && e.contains("file has 100"), "{e}");
}

#[test]
fn idx_loader_reads_gzip_files_gives_the_image_shape_and_balanced_subsets() {
    use std::io::Write;
    let d = tmp("idxgz");
    let n = 60u32;
    let pixels: Vec<u8> = (0..n * 3 * 5).map(|i| (i * 7 % 256) as u8).collect();
    // Classes 0..9 with 6 examples each except class 9, which has 6 too; 60 in all.
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let gz = |b: Vec<u8>| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&b).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(d.join("img"), idx_file(&[n, 3, 5], &pixels)).unwrap();
    std::fs::write(d.join("lab"), idx_file(&[n], &labels)).unwrap();
    let plain = run::<IdxImages>(&hesslab_data::IdxParams { n: 0, ..loaders_params::idx(&d) }, &d).unwrap();
    std::fs::write(d.join("img"), gz(idx_file(&[n, 3, 5], &pixels))).unwrap();
    std::fs::write(d.join("lab"), gz(idx_file(&[n], &labels))).unwrap();
    let p = hesslab_data::IdxParams { n: 0, ..loaders_params::idx(&d) };
    let zipped = run::<IdxImages>(&p, &d).unwrap();
    assert_eq!(plain.x, zipped.x);
    assert_eq!(plain.y, zipped.y);
    assert_eq!(zipped.shape, vec![1, 3, 5]);
    assert_eq!(hesslab_data::idx_dims(d.join("img").to_str().unwrap()), Some(vec![60, 3, 5]));
    // Class-balanced: exactly 4 of every class, 1 of each held out.
    let b = run::<IdxImages>(&hesslab_data::IdxParams { samples_per_class: 4, test_fraction: 0.25, ..p.clone() }, &d).unwrap();
    for c in 0..10u32 {
        let (tr, te): (Vec<_>, Vec<_>) = b.y.iter().zip(&b.split).filter(|(y, _)| **y == c).partition(|(_, t)| **t);
        assert_eq!((tr.len(), te.len()), (3, 1), "class {c}");
    }
    let e = run::<IdxImages>(&hesslab_data::IdxParams { samples_per_class: 7, ..p.clone() }, &d).unwrap_err();
    assert!(e.contains("samples_per_class = 7") && e.contains("only 6"), "{e}");
    // A separate test set: all of its examples are the test split, after 4 per class of training
    // examples (test_fraction is not used), in file order.
    let test_pixels: Vec<u8> = (0..20 * 15).map(|i| (i * 3 % 256) as u8).collect();
    std::fs::write(d.join("timg"), idx_file(&[20, 3, 5], &test_pixels)).unwrap();
    std::fs::write(d.join("tlab"), idx_file(&[20], &labels[..20])).unwrap();
    let (ti, tl) = (d.join("timg").to_str().unwrap().to_string(), d.join("tlab").to_str().unwrap().to_string());
    let s = hesslab_data::IdxParams { samples_per_class: 4, test_images: ti.clone(), test_labels: tl, ..p.clone() };
    let s = run::<IdxImages>(&s, &d).unwrap();
    assert_eq!(s.split.iter().filter(|t| **t).count(), 40);
    assert_eq!(s.split[40..], [false; 20]);
    assert_eq!(s.y[40..], labels[..20].iter().map(|&l| l as u32).collect::<Vec<_>>()[..]);
    assert_eq!(s.x[40 * 15..], test_pixels.iter().map(|&b| b as f64 * (1.0 / 255.0)).collect::<Vec<_>>()[..]);
    // Random inputs (S16 P2): the same selection, labels and split, pixels replaced by uniform
    // noise in [0, 1).
    let real = run::<IdxImages>(&hesslab_data::IdxParams { samples_per_class: 4, ..p.clone() }, &d).unwrap();
    let noise = run::<IdxImages>(&hesslab_data::IdxParams { samples_per_class: 4, random_inputs: true, ..p.clone() }, &d).unwrap();
    assert_eq!((&real.y, &real.split, &real.shape), (&noise.y, &noise.split, &noise.shape));
    assert!(noise.x.iter().all(|v| (0.0..1.0).contains(v)) && noise.x != real.x);
    std::fs::write(d.join("timg"), idx_file(&[20, 5, 3], &test_pixels)).unwrap();
    let e = run::<IdxImages>(
        &hesslab_data::IdxParams { test_images: ti, test_labels: d.join("tlab").to_str().unwrap().into(), ..p.clone() },
        &d,
    )
    .unwrap_err();
    assert!(e.contains("differ in shape"), "{e}");
    // A corrupt gzip stream: a clear error naming the file.
    let mut bad = gz(idx_file(&[n, 3, 5], &pixels));
    bad.truncate(bad.len() / 2);
    std::fs::write(d.join("img"), bad).unwrap();
    let e = run::<IdxImages>(&p, &d).unwrap_err();
    assert!(e.contains("gzip IDX file") && e.contains("img"), "{e}");
}

#[test]
fn cifar10_loader_reads_binary_batches() {
    let d = tmp("cifar");
    let mut b = Vec::new();
    for r in 0..30u32 {
        b.push((r % 10) as u8);
        b.extend((0..3072).map(|i| ((i + r as usize) % 256) as u8));
    }
    std::fs::write(d.join("data_batch_1.bin"), &b).unwrap();
    let p = loaders_params::cifar(&d);
    let ds = run::<Cifar10>(&p, &d).unwrap();
    assert_eq!(ds.dim, 3072);
    assert_eq!(ds.len(), 30);
    std::fs::write(d.join("data_batch_1.bin"), &b[..5000]).unwrap();
    let e = run::<Cifar10>(&p, &d).unwrap_err();
    assert!(e.contains("not a multiple of the 3073-byte record"), "{e}");
}

#[test]
fn table_loader_reads_csv_and_rejects_bad_labels() {
    let d = tmp("table");
    std::fs::write(d.join("t.csv"), "a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,1,0\n").unwrap();
    let mut p = loaders_params::table(&d.join("t.csv"));
    let ds = run::<TableImport>(&p, &d).unwrap();
    assert_eq!((ds.dim, ds.num_classes, ds.len()), (2, 2, 5));
    assert_eq!(ds.feature_names, ["a", "b"]);
    p.label = "nope".into();
    assert!(run::<TableImport>(&p, &d).unwrap_err().contains("has no column `nope`"));
    std::fs::write(d.join("t.csv"), "a,label\n1,0\n2,x\n").unwrap();
    p.label = "label".into();
    assert!(run::<TableImport>(&p, &d).unwrap_err().contains("`x` is not a class label"));
}

#[test]
fn labels_at_or_above_num_classes_are_rejected() {
    let d = tmp("labels");
    let mut ds = GaussianMixture::generate(&MixtureParams { classes: 3, dim: 2, samples: 30, ..Default::default() }, 1);
    ds.y[4] = 7;
    let ctx = StageContext::standalone(&d, 1, BTreeMap::new(), &[], vec![port::<DatasetPort>()]);
    ctx.write::<DatasetPort>("dataset", &ds).unwrap();
    let a = read_artifact(&d.join("dataset.parquet"), None).unwrap();
    let e = DatasetPort::decode(&a).unwrap_err().to_string();
    assert!(e.contains("column `y` row 4: label 7 ≥ num_classes 3"), "{e}");
}

#[test]
fn mixture_and_digits_have_the_stated_shapes() {
    let ds = GaussianMixture::generate(&MixtureParams { classes: 10, ..Default::default() }, 3);
    assert_eq!((ds.dim, ds.len(), ds.train().len(), ds.test().len()), (100, 1250, 1000, 250));
    let tr = ds.train();
    for j in 0..5 {
        let mean: f64 = (0..tr.len()).map(|i| tr.x[(i, j)]).sum::<f64>() / tr.len() as f64;
        assert!(mean.abs() < 1e-12, "feature {j} not centred: {mean}");
    }
    let d = tmp("digits");
    let dg = run::<Digits>(&DigitsParams { n: 1000, ..Default::default() }, &d).unwrap();
    assert_eq!((dg.dim, dg.len(), dg.num_classes), (64, 1000, 10));
    let mut per_class = [0usize; 10];
    dg.y.iter().for_each(|&y| per_class[y as usize] += 1);
    assert!(per_class.iter().all(|&c| (95..=105).contains(&c)), "not stratified: {per_class:?}");
    let full = run::<Digits>(&DigitsParams::default(), &d).unwrap();
    assert_eq!(full.len(), 1797);
}

mod loaders_params {
    use std::path::Path;
    pub fn idx(d: &Path) -> hesslab_data::IdxParams {
        serde_json::from_value(serde_json::json!({"images": d.join("img"), "labels": d.join("lab"), "n": 20})).unwrap()
    }
    pub fn cifar(d: &Path) -> hesslab_data::CifarParams {
        serde_json::from_value(serde_json::json!({"files": [d.join("data_batch_1.bin")], "n": 0})).unwrap()
    }
    pub fn table(p: &Path) -> hesslab_stages::data::TableParams {
        serde_json::from_value(serde_json::json!({"path": p})).unwrap()
    }
}

#[test]
fn table_loader_reads_parquet_with_mixed_numeric_types() {
    use arrow_array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch};
    use std::sync::Arc;
    let d = tmp("table-parquet");
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("a", Arc::new(Float64Array::from(vec![1.5, 3.0, 5.0, 7.0, 9.0, 2.0]))),
        ("b", Arc::new(Float32Array::from(vec![2.0f32, 4.0, 6.0, 8.0, 1.0, 3.0]))),
        ("label", Arc::new(Int64Array::from(vec![0i64, 1, 0, 1, 0, 1]))),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let path = d.join("t.parquet");
    hesslab_pipeline::write_batches_atomic(&path, batch.schema(), &[batch], &BTreeMap::new()).unwrap();
    let mut p = loaders_params::table(&path);
    p.test_fraction = 0.0;
    let ds = run::<TableImport>(&p, &d).unwrap();
    assert_eq!((ds.dim, ds.num_classes, ds.len()), (2, 2, 6));
    assert_eq!(ds.feature_names, vec!["a", "b"]);
    // Every (a, b, label) row of the file is a row of the dataset (rows may be reordered).
    let rows = [(1.5, 2.0, 0), (3.0, 4.0, 1), (5.0, 6.0, 0), (7.0, 8.0, 1), (9.0, 1.0, 0), (2.0, 3.0, 1)];
    for i in 0..ds.len() {
        let r = (ds.x[2 * i], ds.x[2 * i + 1], ds.y[i]);
        assert!(rows.contains(&r), "row {i}: {r:?}");
    }
}

#[test]
fn csv_quoted_fields_keep_their_commas_and_ragged_rows_are_named() {
    let d = tmp("quoted");
    std::fs::write(d.join("q.csv"), "\"x, first\",note,label\n1.5,\"a, b\",0\n2.5,\"c\",1\n3.5,\"d, \"\"e\"\"\",0\n4.5,f,1\n").unwrap();
    let mut p = loaders_params::table(&d.join("q.csv"));
    p.features = vec!["x, first".into()];
    let ds = run::<TableImport>(&p, &d).unwrap();
    assert_eq!((ds.dim, ds.len()), (1, 4));
    assert_eq!(ds.feature_names, ["x, first"]);
    // The columns are resolved from the header before rows are read (rows are converted as they
    // stream): this file's columns must then exist for its ragged row to be the error.
    std::fs::write(d.join("q.csv"), "a,label\n1,0\n2,1,9\n").unwrap();
    p.features = vec!["a".into()];
    let e = run::<TableImport>(&p, &d).unwrap_err();
    assert!(e.contains("q.csv") && e.contains("line 3"), "{e}");
}
