//! What a running stage sees: its inputs, its seed, and writers for its outputs.
use crate::artifact::{Artifact, ArtifactWriter, write_file_atomic};
use crate::{Error, PortSpec, Progress, Result, StageError, read_artifact};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Something kept in memory next to an artifact, so a following stage need not re-read it.
pub type Shared = Arc<dyn Any + Send + Sync>;

/// One input artifact of a running stage.
#[derive(Clone)]
pub struct InputArtifact {
    pub path: PathBuf,
    /// Member that produced it and its sweep labels (`stage.param` -> value).
    pub member: String,
    pub labels: BTreeMap<String, String>,
    pub(crate) declared: SchemaRef,
    pub(crate) shared: Option<Shared>,
}

impl InputArtifact {
    /// Read the Parquet file, checking the declared schema.
    pub fn read(&self) -> Result<Artifact> {
        read_artifact(&self.path, Some(&self.declared))
    }
    /// The in-memory object the producer shared with this artifact, if it is still there.
    pub fn shared<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.shared.clone().and_then(|a| a.downcast::<T>().ok())
    }
}

pub struct StageContext {
    pub stage: String,
    pub member: String,
    pub seed: u64,
    /// Sweep labels of this member (empty when gathering all members).
    pub labels: BTreeMap<String, String>,
    pub progress: Progress,
    /// The pipeline file's text, for reports.
    pub pipeline_source: String,
    pub pipeline_name: String,
    pub(crate) dir: PathBuf,
    pub(crate) final_dir: PathBuf,
    pub(crate) inputs: BTreeMap<String, Vec<InputArtifact>>,
    pub(crate) outputs: Vec<PortSpec>,
    pub(crate) base_meta: BTreeMap<String, String>,
    pub(crate) shared_out: BTreeMap<PathBuf, Shared>,
}

impl StageContext {
    /// A context for running a stage outside a pipeline (tests, benches): inputs are files.
    pub fn standalone(
        dir: &Path,
        seed: u64,
        inputs: BTreeMap<String, Vec<PathBuf>>,
        input_specs: &[PortSpec],
        outputs: Vec<PortSpec>,
    ) -> Self {
        let inputs = inputs
            .into_iter()
            .map(|(port, paths)| {
                let declared = input_specs
                    .iter()
                    .find(|p| p.name == port)
                    .map(|p| p.schema.clone())
                    .unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()));
                let arts = paths
                    .into_iter()
                    .map(|path| InputArtifact {
                        path,
                        member: "main".into(),
                        labels: BTreeMap::new(),
                        declared: declared.clone(),
                        shared: None,
                    })
                    .collect();
                (port, arts)
            })
            .collect();
        StageContext {
            stage: "standalone".into(),
            member: "main".into(),
            seed,
            labels: BTreeMap::new(),
            progress: Progress::hidden(),
            pipeline_source: String::new(),
            pipeline_name: "standalone".into(),
            dir: dir.into(),
            final_dir: dir.into(),
            inputs,
            outputs,
            base_meta: BTreeMap::new(),
            shared_out: BTreeMap::new(),
        }
    }

    /// The single artifact connected to `port`.
    pub fn input(&self, port: &str) -> Result<&InputArtifact, StageError> {
        self.input_opt(port).ok_or_else(|| StageError::msg(format!("input `{port}` is not connected")))
    }
    pub fn input_opt(&self, port: &str) -> Option<&InputArtifact> {
        self.inputs.get(port).and_then(|v| v.first())
    }
    /// Every artifact connected to a gathering input (one per sweep member).
    pub fn inputs(&self, port: &str) -> &[InputArtifact] {
        self.inputs.get(port).map(|v| v.as_slice()).unwrap_or(&[])
    }
    pub fn read(&self, port: &str) -> Result<Artifact, StageError> {
        Ok(self.input(port)?.read()?)
    }

    fn spec(&self, port: &str) -> Result<&PortSpec, StageError> {
        self.outputs.iter().find(|p| p.name == port).ok_or_else(|| StageError::msg(format!("stage wrote undeclared output port `{port}`")))
    }

    /// Metadata every artifact carries, plus stage-specific entries.
    pub fn metadata(&self, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut m = self.base_meta.clone();
        m.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        m
    }

    /// Open a streaming writer for an output port (large artifacts).
    pub fn writer(&self, port: &str, schema: SchemaRef, extra: &BTreeMap<String, String>) -> Result<ArtifactWriter, StageError> {
        let spec = self.spec(port)?;
        crate::check_schema(&spec.schema, &schema)
            .map_err(|m| StageError::msg(format!("output `{port}` does not match its declared schema: {m}")))?;
        Ok(ArtifactWriter::create(&self.dir.join(format!("{port}.parquet")), schema, &self.metadata(extra))?)
    }

    /// Write one batch as the artifact of `port`.
    pub fn write(&self, port: &str, batch: RecordBatch, extra: &BTreeMap<String, String>) -> Result<(), StageError> {
        let mut w = self.writer(port, batch.schema(), extra)?;
        w.write(&batch)?;
        w.finish()?;
        Ok(())
    }

    /// Keep an object in memory with the artifact of `port` for downstream stages of this run.
    pub fn share<T: Any + Send + Sync>(&mut self, port: &str, value: Arc<T>) {
        self.shared_out.insert(self.final_dir.join(format!("{port}.parquet")), value);
    }

    /// Write a non-Parquet file (plot, report) into the stage's directory.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, StageError> {
        let p = self.dir.join(name);
        write_file_atomic(&p, bytes)?;
        Ok(self.final_dir.join(name))
    }
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.into(), source }
}
