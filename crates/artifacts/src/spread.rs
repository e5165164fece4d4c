//! What `compare` writes about replicates (sweep keys that only change a seed): `spread`
//! (each summary statistic's mean, std, min and max over the replicates of a group) and
//! `rank_spread` (the same for the eigenvalue at each rank).
use crate::Meta;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, Encoded, MetaKey, Port, StageError};
use std::sync::Arc;

/// Mean, sample standard deviation (n − 1; NaN for one replicate), min and max of n values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Number of replicates.
    pub n: u64,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation (divided by n − 1); NaN when n < 2.
    pub std: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Stats {
    /// Statistics of `values`, summed in their order (bit-identical for the same input).
    pub fn of(values: &[f64]) -> Stats {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n < 2 { f64::NAN } else { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() };
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Stats { n: n as u64, mean, std, min, max }
    }
}

const STAT_COLS: [&str; 4] = ["mean", "std", "min", "max"];
const REPLICATES: &str = "replicates";
const QUANTITY: &str = "quantity";
const END: &str = "end";
const RANK: &str = "rank";
const REPLICATE_KEYS: MetaKey =
    MetaKey { key: "replicate_keys", doc: "JSON list of the sweep keys whose values are replicates (seeds); the statistics run over them" };

fn stat_fields() -> Vec<Field> {
    let mut f = vec![u64_field(REPLICATES)];
    f.extend(STAT_COLS.iter().map(|c| f64_field(c)));
    f
}

fn stat_arrays<'a>(stats: impl Iterator<Item = &'a Stats> + Clone) -> Vec<ArrayRef> {
    vec![
        u64_array(stats.clone().map(|s| s.n)),
        f64_array(stats.clone().map(|s| s.mean)),
        f64_array(stats.clone().map(|s| s.std)),
        f64_array(stats.clone().map(|s| s.min)),
        f64_array(stats.map(|s| s.max)),
    ]
}

fn read_stats(a: &Artifact) -> Result<Vec<Stats>, StageError> {
    let err = |m: String| StageError::from(a.column_error(m));
    let n = u64_values(&a.batch, REPLICATES).map_err(err)?;
    let c: Vec<Vec<f64>> = STAT_COLS.iter().map(|c| f64_values(&a.batch, c).map_err(err)).collect::<Result<_, _>>()?;
    Ok((0..n.len()).map(|r| Stats { n: n[r], mean: c[0][r], std: c[1][r], min: c[2][r], max: c[3][r] }).collect())
}

/// The group label columns (every column not in `known`).
fn read_labels(a: &Artifact, known: &[&str]) -> Result<Vec<(String, Vec<String>)>, StageError> {
    let mut labels = Vec::new();
    for f in a.batch.schema().fields() {
        if !known.contains(&f.name().as_str()) {
            labels.push((f.name().clone(), utf8_values(&a.batch, f.name()).map_err(|m| StageError::from(a.column_error(m)))?));
        }
    }
    Ok(labels)
}

fn batch(labels: &[(String, Vec<String>)], mut fields: Vec<Field>, mut cols: Vec<ArrayRef>) -> Result<RecordBatch, StageError> {
    let mut f: Vec<Field> = labels.iter().map(|(k, _)| utf8_field(k)).collect();
    let mut c: Vec<ArrayRef> = labels.iter().map(|(_, v)| utf8_array(v.iter())).collect();
    f.append(&mut fields);
    c.append(&mut cols);
    RecordBatch::try_new(Arc::new(Schema::new(f)), c).map_err(StageError::other)
}

fn meta(keys: &[String]) -> Meta {
    let mut m = Meta::new();
    m.put(REPLICATE_KEYS, serde_json::to_string(keys).unwrap_or_default());
    m
}

fn read_keys(a: &Artifact) -> Vec<String> {
    a.meta(REPLICATE_KEYS.key).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

/// Summary statistics over replicates: the `spread` port.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// Sweep keys that are not replicates, with each row's value (one column each).
    pub labels: Vec<(String, Vec<String>)>,
    /// The summary column each row is about (`max`, `outliers_heuristic`, ...).
    pub quantity: Vec<String>,
    /// Its statistics over the replicates.
    pub stats: Vec<Stats>,
    /// The sweep keys treated as replicates.
    pub replicate_keys: Vec<String>,
}

impl Port for Spread {
    type Value = Self;
    const NAME: &'static str = "spread";
    const DOC: &'static str = "one Utf8 column per swept key that is not a replicate (seed), quantity Utf8 (a summary column, or slq_near_zero / slq_negative: the SLQ share of the spectrum with |λ| < slq_zero_tol / below −slq_zero_tol when nodes are connected (with full spectra connected too, exact_near_zero / exact_negative and slq_near_zero_error / slq_negative_error, SLQ − exact), or bulk_q01 / bulk_median / bulk_q99 / bulk_abs_mean: quantiles and mean |λ| of the eigenvalues from `bulk_from_rank` on; from `line_spread`: test_accuracy_difference, test_accuracy_a/_b, train_loss_a/_b, barrier), replicates UInt64, mean, std (sample, n − 1), min, max Float64: each quantity over the replicates of a group";
    const METADATA: &'static [MetaKey] = &[REPLICATE_KEYS];
    fn schema() -> Schema {
        let mut f = vec![utf8_field(QUANTITY)];
        f.extend(stat_fields());
        Schema::new(f)
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let mut cols = vec![utf8_array(v.quantity.iter())];
        cols.extend(stat_arrays(v.stats.iter()));
        Ok(Encoded::one(
            batch(&v.labels, Self::schema().fields().iter().map(|f| f.as_ref().clone()).collect(), cols)?,
            meta(&v.replicate_keys).0,
        ))
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let known = [QUANTITY, REPLICATES, "mean", "std", "min", "max"];
        Ok(Spread {
            labels: read_labels(a, &known)?,
            quantity: utf8_values(&a.batch, QUANTITY).map_err(|m| StageError::from(a.column_error(m)))?,
            stats: read_stats(a)?,
            replicate_keys: read_keys(a),
        })
    }
}

/// Eigenvalues by rank over replicates: the `rank_spread` port.
#[derive(Debug, Clone, PartialEq)]
pub struct RankSpread {
    /// Sweep keys that are not replicates, with each row's value (one column each).
    pub labels: Vec<(String, Vec<String>)>,
    /// "largest" (rank 0 = the largest eigenvalue) or "smallest" (rank 0 = the smallest).
    pub end: Vec<String>,
    /// Rank from that end.
    pub rank: Vec<u32>,
    /// The eigenvalue's statistics over the replicates.
    pub stats: Vec<Stats>,
    /// The sweep keys treated as replicates.
    pub replicate_keys: Vec<String>,
}

impl Port for RankSpread {
    type Value = Self;
    const NAME: &'static str = "rank_spread";
    const DOC: &'static str = "one Utf8 column per swept key that is not a replicate (seed), end Utf8 (\"largest\": rank 0 is the largest eigenvalue; \"smallest\": rank 0 is the smallest), rank UInt32, replicates UInt64, mean, std (sample, n − 1), min, max Float64 of the eigenvalue at that rank over the replicates (ranks every replicate has)";
    const METADATA: &'static [MetaKey] = &[REPLICATE_KEYS];
    fn schema() -> Schema {
        let mut f = vec![utf8_field(END), u32_field(RANK)];
        f.extend(stat_fields());
        Schema::new(f)
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let mut cols = vec![utf8_array(v.end.iter()), u32_array(v.rank.iter().copied())];
        cols.extend(stat_arrays(v.stats.iter()));
        Ok(Encoded::one(
            batch(&v.labels, Self::schema().fields().iter().map(|f| f.as_ref().clone()).collect(), cols)?,
            meta(&v.replicate_keys).0,
        ))
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let known = [END, RANK, REPLICATES, "mean", "std", "min", "max"];
        Ok(RankSpread {
            labels: read_labels(a, &known)?,
            end: utf8_values(&a.batch, END).map_err(err)?,
            rank: u32_values(&a.batch, RANK).map_err(err)?,
            stats: read_stats(a)?,
            replicate_keys: read_keys(a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn stats_are_the_sample_statistics() {
        let s = Stats::of(&[1.0, 2.0, 4.0]);
        assert_eq!((s.n, s.min, s.max), (3, 1.0, 4.0));
        assert!((s.mean - 7.0 / 3.0).abs() < 1e-15);
        // Σ (x − 7/3)² = 16/9 + 1/9 + 25/9 = 42/9; / (n − 1) = 21/9.
        assert!((s.std - (21.0f64 / 9.0).sqrt()).abs() < 1e-15);
        assert!(Stats::of(&[3.0]).std.is_nan());
    }
}
