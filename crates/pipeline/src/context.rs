//! What a running stage sees: its inputs, its seed, and writers for its outputs.
use crate::artifact::{Artifact, ArtifactWriter, write_file_atomic};
use crate::{Error, Port, PortSpec, Progress, Result, StageError, read_artifact};
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
    /// The artifact's path.
    pub path: PathBuf,
    /// Member that produced it and its sweep labels (`stage.param` -> value).
    pub member: String,
    /// Sweep labels of the member that produced it.
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
    /// The artifact as a `P` value: the producer's in-memory copy when there is one, else
    /// decoded from the file.
    pub fn decode<P: Port>(&self) -> Result<P::Value, StageError> {
        if let Some(v) = self.shared::<P::Value>() {
            return Ok((*v).clone());
        }
        P::read(crate::ArtifactReader::open(&self.path, Some(&self.declared))?)
    }
}

/// Where a stage runs and what it sees: its inputs, seed, progress, and its outputs.
pub struct StageContext {
    /// The stage's name in the pipeline.
    pub stage: String,
    /// The sweep member this instance runs for (`main` without sweeps).
    pub member: String,
    /// The stage's own seed, derived from the pipeline seed and its name.
    pub seed: u64,
    /// Sweep labels of this member (empty when gathering all members).
    pub labels: BTreeMap<String, String>,
    /// Progress on stderr (hidden unless on a terminal or `--verbose`).
    pub progress: Progress,
    /// The pipeline file's text, for reports.
    pub pipeline_source: String,
    /// The pipeline's name.
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
                    .map(|p| p.schema())
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

    /// A context for running kind `S` outside a pipeline, with its declared ports.
    pub fn standalone_for<S: crate::StageKind>(dir: &Path, seed: u64, inputs: BTreeMap<String, Vec<PathBuf>>) -> Self {
        Self::standalone(dir, seed, inputs, S::INPUTS, S::OUTPUTS.to_vec())
    }

    /// The single artifact connected to `port`.
    pub fn input(&self, port: &str) -> Result<&InputArtifact, StageError> {
        self.input_opt(port).ok_or_else(|| StageError::msg(format!("input `{port}` is not connected")))
    }
    /// The single artifact connected to `port`, if the port is connected.
    pub fn input_opt(&self, port: &str) -> Option<&InputArtifact> {
        self.inputs.get(port).and_then(|v| v.first())
    }
    /// Every artifact connected to a gathering input (one per sweep member).
    pub fn inputs(&self, port: &str) -> &[InputArtifact] {
        self.inputs.get(port).map(|v| v.as_slice()).unwrap_or(&[])
    }
    /// The value of input `port`, of artifact type `P`.
    pub fn read<P: Port>(&self, port: &str) -> Result<P::Value, StageError> {
        self.input(port)?.decode::<P>()
    }
    /// The value of an optional input, `None` when it is not connected.
    pub fn read_opt<P: Port>(&self, port: &str) -> Result<Option<P::Value>, StageError> {
        self.input_opt(port).map(|i| i.decode::<P>()).transpose()
    }

    fn spec<P: Port>(&self, port: &str) -> Result<&PortSpec, StageError> {
        let spec = self
            .outputs
            .iter()
            .find(|p| p.name == port)
            .ok_or_else(|| StageError::msg(format!("stage wrote undeclared output port `{port}`")))?;
        if spec.artifact != P::NAME {
            return Err(StageError::msg(format!(
                "stage wrote a `{}` artifact to output `{port}`, declared as `{}`",
                P::NAME,
                spec.artifact
            )));
        }
        Ok(spec)
    }

    /// Metadata every artifact carries, plus the artifact type's entries.
    fn metadata(&self, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut m = self.base_meta.clone();
        m.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        m
    }

    /// Write `value` as the artifact of output `port` (atomically: the file appears complete
    /// or not at all).
    pub fn write<P: Port>(&self, port: &str, value: &P::Value) -> Result<(), StageError> {
        let spec = self.spec::<P>(port)?;
        let encoded = P::encode(value)?;
        crate::check_schema(&spec.schema(), &encoded.schema)
            .map_err(|m| StageError::msg(format!("output `{port}` does not match its declared schema: {m}")))?;
        let mut w = ArtifactWriter::create(&self.dir.join(format!("{port}.parquet")), encoded.schema, &self.metadata(&encoded.metadata))?;
        for batch in encoded.batches {
            w.write(&batch?)?;
        }
        w.finish()?;
        Ok(())
    }

    /// `write`, and keep the value in memory for the downstream stages of this run, which
    /// then skip decoding the file.
    pub fn write_shared<P: Port>(&mut self, port: &str, value: P::Value) -> Result<(), StageError> {
        self.write::<P>(port, &value)?;
        self.shared_out.insert(self.final_dir.join(format!("{port}.parquet")), Arc::new(value));
        Ok(())
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
