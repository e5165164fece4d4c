//! Ports decoded batch by batch (a dense matrix, a dataset). Why: read as one batch of every
//! row, the Parquet reader's buffers are several times the values themselves (a 4270² matrix,
//! 146 MB, peaked at 665 MB; read in 8 MB batches, at 100 MB), so these ports are written and
//! read ~8 MB at a time, straight into the value.
use arrow_array::RecordBatch;
use hesslab_pipeline::columns::fixed_list_len;
use hesslab_pipeline::{Artifact, ArtifactReader, StageError};

/// The rows of a port read so far.
pub(crate) trait Batched: Sized {
    /// The `FixedSizeList` column whose width sizes the batches.
    const LIST_COLUMN: &'static str;
    /// What the rows make.
    type Value;
    /// An empty accumulator for `rows` rows of `width` values (checking the sizes before it
    /// allocates: a footer may claim anything).
    fn new(width: usize, rows: u64) -> Result<Self, String>;
    /// One batch of rows.
    fn add(&mut self, batch: &RecordBatch) -> Result<(), String>;
    /// The value, with the artifact's metadata (`header`: its rows need not be there).
    fn finish(self, header: &Artifact) -> Result<Self::Value, String>;
}

/// Rows per batch, written and read: about 1 Mi values (8 MB) of a list column this wide.
pub(crate) fn rows_per_batch(width: usize) -> usize {
    (1 << 20) / width.max(1) + 1
}

/// `Port::decode` of a batched port: the artifact's one batch.
pub(crate) fn decode_whole<B: Batched>(a: &Artifact) -> Result<B::Value, StageError> {
    let err = |m: String| StageError::from(a.column_error(m));
    let mut rows = B::new(fixed_list_len(&a.batch.schema(), B::LIST_COLUMN).map_err(err)?, a.batch.num_rows() as u64).map_err(err)?;
    rows.add(&a.batch).map_err(err)?;
    rows.finish(a).map_err(err)
}

/// `Port::read` of a batched port: ~8 MB of rows at a time.
pub(crate) fn read_in_batches<B: Batched>(reader: ArtifactReader) -> Result<B::Value, StageError> {
    let header = reader.header();
    let err = |m: String| StageError::from(header.column_error(m));
    let width = fixed_list_len(reader.schema(), B::LIST_COLUMN).map_err(err)?;
    let mut rows = B::new(width, reader.rows()).map_err(err)?;
    for batch in reader.batches(rows_per_batch(width))? {
        rows.add(&batch?).map_err(err)?;
    }
    rows.finish(&header).map_err(err)
}
