//! The dataset port written and read back in batches: the same examples as the whole decode,
//! and errors that count rows across batches.
use super::*;
use hesslab_data::{GaussianMixture, MixtureParams};
use hesslab_pipeline::{ArtifactReader, read_artifact, write_batches_atomic};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-dataset-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("dataset.parquet")
}

fn write(path: &Path, ds: &hesslab_data::Dataset) -> usize {
    let enc = Dataset::encode(ds).unwrap();
    let batches: Vec<RecordBatch> = enc.batches.collect::<Result<_, _>>().unwrap();
    write_batches_atomic(path, enc.schema, &batches, &enc.metadata).unwrap();
    batches.len()
}

fn streamed(path: &Path) -> Result<hesslab_data::Dataset, String> {
    let reader = ArtifactReader::open(path, Some(&Dataset::schema())).map_err(|e| e.to_string())?;
    Dataset::read(reader).map_err(|e| e.to_string())
}

fn whole(path: &Path) -> Result<hesslab_data::Dataset, String> {
    Dataset::decode(&read_artifact(path, Some(&Dataset::schema())).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

#[test]
fn batches_read_back_the_examples_the_whole_decode_does() {
    // 3000 examples of 784 features: 1338 a batch, so three batches each way.
    let ds = GaussianMixture::generate(&MixtureParams { classes: 4, dim: 784, samples: 3000, ..Default::default() }, 7);
    let path = tmp("batches");
    assert_eq!(write(&path, &ds), 3);
    for (how, got) in [("batches", streamed(&path).unwrap()), ("whole", whole(&path).unwrap())] {
        let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(bits(&got.x) == bits(&ds.x), "{how}: features differ");
        assert_eq!(
            (&got.y, &got.split, got.dim, got.num_classes, &got.shape),
            (&ds.y, &ds.split, ds.dim, ds.num_classes, &ds.shape),
            "{how}"
        );
    }
}

#[test]
fn a_bad_split_in_a_later_batch_names_its_row_and_the_file() {
    let ds = GaussianMixture::generate(&MixtureParams { classes: 2, dim: 784, samples: 3000, ..Default::default() }, 8);
    let path = tmp("split");
    let enc = Dataset::encode(&ds).unwrap();
    let (schema, metadata) = (enc.schema.clone(), enc.metadata.clone());
    // Row 2000 sits in the second batch; rewrite that batch with a bad split value.
    let mut batches: Vec<RecordBatch> = enc.batches.collect::<Result<_, _>>().unwrap();
    let (r0, r1) = (1338, 2676);
    let split: Vec<&str> = (r0..r1)
        .map(|r| {
            if r == 2000 {
                "validation"
            } else if ds.split[r] {
                TRAIN
            } else {
                TEST
            }
        })
        .collect();
    batches[1] = RecordBatch::try_new(
        schema.clone(),
        vec![fixed_f64_array(&ds.x[r0 * 784..r1 * 784], 784), u32_array(ds.y[r0..r1].iter().copied()), utf8_array(split)],
    )
    .unwrap();
    write_batches_atomic(&path, schema, &batches, &metadata).unwrap();
    for (how, result) in [("batches", streamed(&path)), ("whole", whole(&path))] {
        let e = result.unwrap_err();
        assert!(e.contains("column `split` row 2000: `validation`") && e.contains("dataset.parquet"), "{how}: {e}");
    }
}
