//! Parquet artifacts: written to a temporary file and renamed, read back with a schema check.
use crate::footprint::Footprint;
use crate::{Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An artifact read back from disk: its rows as one batch and its key-value metadata.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its rows.
    pub batch: RecordBatch,
    /// Its key-value metadata (without the Arrow schema entry).
    pub metadata: BTreeMap<String, String>,
}

impl Artifact {
    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(|s| s.as_str())
    }
    /// Parse a JSON metadata entry.
    pub fn meta_json(&self, key: &str) -> Result<serde_json::Value> {
        let s =
            self.meta(key).ok_or_else(|| Error::Schema { path: self.path.clone(), message: format!("metadata key `{key}` is missing") })?;
        serde_json::from_str(s)
            .map_err(|e| Error::Schema { path: self.path.clone(), message: format!("metadata key `{key}` is not valid JSON: {e}") })
    }
    /// A column error that names this file.
    pub fn column_error(&self, message: String) -> Error {
        Error::Schema { path: self.path.clone(), message }
    }
}

/// Read a Parquet artifact; if `declared` is given, check the schema and name the offending
/// column on mismatch.
pub fn read_artifact(path: &Path, declared: Option<&Schema>) -> Result<Artifact> {
    ArtifactReader::open(path, declared)?.into_artifact()
}

/// An artifact opened for reading: its schema (checked) and metadata now, its rows batch by
/// batch. Why: the Parquet reader's buffers for one batch of every row are several times the
/// rows themselves (a 4270² dense matrix, 146 MB, peaked at 665 MB read whole and at 100 MB
/// read in 8 MB batches), so a type too large to hold twice decodes batch by batch
/// ([`crate::Port::read`]).
pub struct ArtifactReader {
    path: PathBuf,
    metadata: BTreeMap<String, String>,
    builder: ParquetRecordBatchReaderBuilder<File>,
    footprint: Footprint,
}

impl ArtifactReader {
    /// Open `path`; with `declared`, check the schema (naming the offending column).
    /// The file must be a regular file, and one decompressed page per column (what its page
    /// headers claim) must fit the memory budget.
    pub fn open(path: &Path, declared: Option<&Schema>) -> Result<Self> {
        let file = hesslab_limits::open_regular(path).map_err(|source| Error::Io { path: path.into(), source })?;
        let probe = file.try_clone().map_err(|source| Error::Io { path: path.into(), source })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| Error::Parquet { path: path.into(), source })?;
        let footprint = crate::footprint::footprint(&probe, builder.metadata())
            .map_err(|message| Error::Schema { path: path.into(), message: format!("not a readable Parquet file: {message}") })?;
        too_large(path, footprint.pages, "one decompressed page per column, as the page headers claim")?;
        if let Some(d) = declared {
            crate::check_schema(d, builder.schema()).map_err(|message| Error::Schema { path: path.into(), message })?;
        }
        let mut metadata = BTreeMap::new();
        if let Some(kv) = builder.metadata().file_metadata().key_value_metadata() {
            for KeyValue { key, value } in kv {
                if key != "ARROW:schema" {
                    metadata.insert(key.clone(), value.clone().unwrap_or_default());
                }
            }
        }
        Ok(ArtifactReader { path: path.into(), metadata, builder, footprint })
    }

    /// The file's schema.
    pub fn schema(&self) -> &SchemaRef {
        self.builder.schema()
    }

    /// Its row count (from the footer).
    pub fn rows(&self) -> u64 {
        self.builder.metadata().file_metadata().num_rows().max(0) as u64
    }

    /// The artifact without its rows (an empty batch): its path and metadata, for the
    /// metadata helpers that take an [`Artifact`].
    pub fn header(&self) -> Artifact {
        Artifact { path: self.path.clone(), batch: RecordBatch::new_empty(self.schema().clone()), metadata: self.metadata.clone() }
    }

    /// The rows in batches of at most `rows_per_batch` rows, in file order.
    /// What one batch decodes to (from the footer and page headers) is checked against the
    /// memory budget first.
    pub fn batches(self, rows_per_batch: usize) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
        let rows = rows_per_batch.max(1) as u64;
        too_large(
            &self.path,
            self.footprint.for_batch(rows),
            &format!("batches of {} rows of the decoded columns", rows.min(self.rows())),
        )?;
        let path = self.path;
        let reader =
            self.builder.with_batch_size(rows_per_batch.max(1)).build().map_err(|source| Error::Parquet { path: path.clone(), source })?;
        Ok(reader.map(move |b| b.map_err(|source| Error::Arrow { path: path.clone(), source })))
    }

    /// Every row as one batch.
    /// Every row as one batch (checked first: the decoded columns, twice while they are
    /// joined, must fit the memory budget).
    pub fn into_artifact(self) -> Result<Artifact> {
        too_large(&self.path, self.footprint.whole(), &format!("{} rows of decoded columns, held twice while joined", self.rows()))?;
        let (path, schema, metadata) = (self.path.clone(), self.schema().clone(), self.metadata.clone());
        let batches = self.batches(8192)?.collect::<Result<Vec<_>>>()?;
        let batch =
            arrow_select::concat::concat_batches(&schema, &batches).map_err(|source| Error::Arrow { path: path.clone(), source })?;
        Ok(Artifact { path, batch, metadata })
    }
}

fn too_large(path: &Path, needed: u64, what: &str) -> Result<()> {
    hesslab_limits::check_memory(needed, what).map_err(|over| Error::TooLarge { path: path.into(), over })
}

/// Writes one Parquet file through a temporary name; the final name appears only on `finish`.
/// Dropping an unfinished writer removes the temporary file, so no partial artifact is left.
pub struct ArtifactWriter {
    tmp: PathBuf,
    dest: PathBuf,
    writer: Option<ArrowWriter<File>>,
}

pub(crate) fn tmp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    dest.with_file_name(name)
}

impl ArtifactWriter {
    /// Start writing `dest` (through a temporary file) with this schema and metadata.
    pub fn create(dest: &Path, schema: SchemaRef, metadata: &BTreeMap<String, String>) -> Result<Self> {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.into(), source })?;
        }
        // The metadata also goes into the Arrow schema (the `ARROW:schema` footer entry), where
        // `pyarrow.parquet.read_table(p).schema.metadata` and other Arrow readers look for it;
        // the Parquet key-value metadata keeps it for Parquet-level tools.
        let schema =
            Arc::new(schema.as_ref().clone().with_metadata(
                metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<std::collections::HashMap<String, String>>(),
            ));
        let tmp = tmp_path(dest);
        let file = File::create(&tmp).map_err(|source| Error::Io { path: tmp.clone(), source })?;
        let kv: Vec<KeyValue> = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(kv))
            .set_created_by(format!("hesslab {}", crate::HESSLAB_VERSION))
            .build();
        let writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|source| Error::Parquet { path: dest.into(), source })?;
        Ok(ArtifactWriter { tmp, dest: dest.into(), writer: Some(writer) })
    }

    /// Append a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let Some(w) = self.writer.as_mut() else {
            return Err(Error::Schema { path: self.dest.clone(), message: "artifact writer used after finish".into() });
        };
        w.write(batch).map_err(|source| Error::Parquet { path: self.dest.clone(), source })?;
        // Bound memory for large artifacts (dense Hessians): flush row groups as they fill.
        if w.in_progress_size() > 64 << 20 {
            w.flush().map_err(|source| Error::Parquet { path: self.dest.clone(), source })?;
        }
        Ok(())
    }

    /// Close the file and give it its final name.
    pub fn finish(mut self) -> Result<PathBuf> {
        let Some(w) = self.writer.take() else {
            return Err(Error::Schema { path: self.dest.clone(), message: "artifact writer finished twice".into() });
        };
        let result = w
            .into_inner()
            .map_err(|source| Error::Parquet { path: self.dest.clone(), source })
            .and_then(|file| file.sync_all().map_err(|source| Error::Io { path: self.tmp.clone(), source }))
            .and_then(|()| std::fs::rename(&self.tmp, &self.dest).map_err(|source| Error::Io { path: self.dest.clone(), source }));
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp); // a failed write leaves nothing behind
        }
        result.map(|()| self.dest.clone())
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Write batches to `dest` atomically.
pub fn write_batches_atomic(
    dest: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    metadata: &BTreeMap<String, String>,
) -> Result<PathBuf> {
    let mut w = ArtifactWriter::create(dest, schema, metadata)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()
}

/// Write arbitrary bytes atomically (plots, reports).
pub fn write_file_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.into(), source })?;
    }
    let tmp = tmp_path(dest);
    let result = std::fs::write(&tmp, bytes)
        .map_err(|source| Error::Io { path: tmp.clone(), source })
        .and_then(|()| std::fs::rename(&tmp, dest).map_err(|source| Error::Io { path: dest.into(), source }));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp); // a failed write leaves nothing behind
    }
    result
}

/// Row count and size metadata of an artifact of port `spec`, from its footer alone.
pub fn read_facts(path: &Path, spec: &crate::PortSpec) -> Result<crate::Facts> {
    let file = hesslab_limits::open_regular(path).map_err(|source| Error::Io { path: path.into(), source })?;
    let reader =
        parquet::file::serialized_reader::SerializedFileReader::new(file).map_err(|source| Error::Parquet { path: path.into(), source })?;
    use parquet::file::reader::FileReader;
    let meta = reader.metadata().file_metadata();
    let kv: BTreeMap<String, String> =
        meta.key_value_metadata().into_iter().flatten().map(|k| (k.key.clone(), k.value.clone().unwrap_or_default())).collect();
    Ok(spec.facts(meta.num_rows().max(0) as u64, &kv))
}
