//! DVC-style lock file: per stage instance, the cache key it ran with and the hashes of the
//! files it wrote. A stage whose key matches and whose files are intact is skipped.
use crate::context::io_err;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const LOCK_NAME: &str = "hesslab.lock";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileHash {
    pub sha256: String,
    pub size: u64,
    /// Modification time (ns since the epoch), to skip re-hashing unchanged files.
    pub mtime_ns: u128,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockEntry {
    pub kind: String,
    pub kind_version: u32,
    pub key: String,
    pub seed: u64,
    pub params: serde_json::Value,
    pub outputs: BTreeMap<String, FileHash>,
    /// Wall time of the run that produced the outputs (kept here, not in the Parquet files,
    /// so that artifacts stay bit-identical between runs).
    pub seconds: f64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LockFile {
    pub hesslab_version: String,
    /// Keyed by `member/stage`.
    pub stages: BTreeMap<String, LockEntry>,
}

impl LockFile {
    pub fn load(dir: &Path) -> LockFile {
        let p = dir.join(LOCK_NAME);
        std::fs::read_to_string(&p).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
    }
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = dir.join(LOCK_NAME);
        let s = serde_json::to_string_pretty(self).map_err(|e| Error::Lock { path: p.clone(), message: e.to_string() })?;
        crate::artifact::write_file_atomic(&p, s.as_bytes())
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0)
}

pub fn hash_file(path: &Path) -> Result<FileHash> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    let mut f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(FileHash { sha256: crate::hex(&h.finalize()), size: meta.len(), mtime_ns: mtime_ns(&meta) })
}

/// Hash every regular file directly in `dir`.
pub fn hash_dir(dir: &Path) -> Result<BTreeMap<String, FileHash>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        let p = e.path();
        if p.is_file() {
            out.insert(e.file_name().to_string_lossy().into_owned(), hash_file(&p)?);
        }
    }
    Ok(out)
}

/// Are the recorded outputs present and unchanged? Files whose size and mtime match are
/// trusted; others are re-hashed.
pub fn outputs_intact(dir: &Path, outputs: &BTreeMap<String, FileHash>) -> bool {
    outputs.iter().all(|(name, h)| {
        let p: PathBuf = dir.join(name);
        match std::fs::metadata(&p) {
            Ok(m) if m.len() == h.size && mtime_ns(&m) == h.mtime_ns => true,
            Ok(m) if m.len() == h.size => hash_file(&p).map(|x| x.sha256 == h.sha256).unwrap_or(false),
            _ => false,
        }
    })
}
