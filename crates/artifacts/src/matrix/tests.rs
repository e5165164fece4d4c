//! The matrix port read back whole and batch by batch: the same bits, and clear errors for
//! missing, repeated and out-of-range rows (before allocating the claimed P²).
use super::*;
use hesslab_pipeline::{ArtifactReader, ArtifactWriter, read_artifact};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-matrix-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("matrix.parquet")
}

/// A p × p matrix that is not quite symmetric (so symmetrizing has work to do), within the
/// tolerance a read accepts (an asymmetric one is refused: `a_matrix_that_is_not_symmetric_is_refused`).
fn unsymmetric(p: usize) -> Mat<f64> {
    Mat::from_fn(p, p, |i, j| (((i + j) * 5 + i * j % 7 + j * i % 7) as f64).sin() + if i > j { 1e-9 * (i as f64).cos() } else { 0.0 })
}

#[test]
fn a_matrix_that_is_not_symmetric_is_refused() {
    let a = Mat::from_fn(6, 6, |i, j| ((i * 7 + j * 3) as f64).sin());
    let path = tmp("asymmetric");
    write(&path, &a, &(0..6).collect::<Vec<u32>>(), 2, 6);
    for result in [streamed(&path), whole(&path)] {
        let e = result.unwrap_err();
        assert!(e.contains("the matrix is not symmetric") && e.contains("matrix.parquet"), "{e}");
    }
}

/// Writes row r of `a` for each r of `rows`, in that order, `per_batch` rows a batch, with a
/// list size of `side` (the matrix side the file claims). An index past `a` carries its last
/// row's values.
fn write(path: &Path, a: &Mat<f64>, rows: &[u32], per_batch: usize, side: usize) {
    let schema = Arc::new(Schema::new(vec![u32_field(ROW), fixed_f64_field(VALUES, side as i32)]));
    let mut meta = BTreeMap::new();
    meta.insert(OPERATOR.key.to_string(), "hessian".to_string());
    let mut w = ArtifactWriter::create(path, schema.clone(), &meta).unwrap();
    for chunk in rows.chunks(per_batch.max(1)) {
        let flat: Vec<f64> = chunk.iter().flat_map(|&r| (0..side).map(move |c| a[((r as usize).min(a.nrows() - 1), c)])).collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![u32_array(chunk.iter().copied()), fixed_f64_array(&flat, side)]).unwrap();
        w.write(&batch).unwrap();
    }
    w.finish().unwrap();
}

fn streamed(path: &Path) -> Result<Matrix, String> {
    ArtifactReader::open(path, Some(&Matrix::schema())).map_err(|e| e.to_string()).and_then(|r| Matrix::read(r).map_err(|e| e.to_string()))
}

fn whole(path: &Path) -> Result<Matrix, String> {
    Matrix::decode(&read_artifact(path, Some(&Matrix::schema())).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn bits(m: &Matrix) -> Vec<u64> {
    let a = &m.dense.matrix;
    (0..a.ncols()).flat_map(|j| (0..a.nrows()).map(move |i| a[(i, j)].to_bits())).collect()
}

#[test]
fn read_in_batches_equals_the_whole_decode_and_the_symmetrized_matrix() {
    // P = 1100 > 2²⁰ / P, so `read` takes two batches; rows shuffled, written 97 a batch.
    let p = 1100;
    let a = unsymmetric(p);
    let rows: Vec<u32> = (0..p as u32).map(|k| (k * 389) % p as u32).collect();
    let path = tmp("batches");
    write(&path, &a, &rows, 97, p);
    let mut expected = a.clone();
    let error = symmetrize(&mut expected);
    let (s, w) = (streamed(&path).unwrap(), whole(&path).unwrap());
    let want: Vec<u64> = (0..p).flat_map(|j| (0..p).map(move |i| (i, j))).map(|(i, j)| expected[(i, j)].to_bits()).collect();
    assert!(bits(&s) == want, "batch-by-batch read differs from the symmetrized matrix");
    assert!(bits(&w) == want, "whole decode differs from the symmetrized matrix");
    assert_eq!(s.dense.symmetry_error.to_bits(), error.to_bits());
    assert_eq!(w.dense.symmetry_error.to_bits(), error.to_bits());
    assert_eq!(s.dense.operator, "hessian");
}

#[test]
fn missing_repeated_and_out_of_range_rows_are_errors_naming_the_file() {
    let a = unsymmetric(6);
    for (name, rows, message) in [
        ("missing", vec![0, 1, 2, 3, 4], "5 rows for a 6×6 matrix"),
        ("repeated", vec![0, 1, 2, 3, 4, 4], "row index 4 is out of range or repeated"),
        ("outside", vec![0, 1, 2, 3, 4, 9], "row index 9 is out of range or repeated"),
    ] {
        let path = tmp(name);
        write(&path, &a, &rows, 2, 6);
        for (how, result) in [("batches", streamed(&path)), ("whole", whole(&path))] {
            let e = result.expect_err(name);
            assert!(e.contains(message) && e.contains("matrix.parquet"), "{name} ({how}): {e}");
        }
    }
}

#[test]
fn a_huge_claimed_side_is_an_error_before_any_allocation() {
    // No rows, list size 50 000 000: allocating the claimed matrix (2·10¹⁶ bytes) would abort
    // the process; the row count is checked first.
    let path = tmp("huge");
    write(&path, &Mat::zeros(0, 0), &[], 1, 50_000_000);
    for result in [streamed(&path), whole(&path)] {
        let e = result.unwrap_err();
        assert!(e.contains("0 rows for a 50000000×50000000 matrix"), "{e}");
    }
}
