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
/// The file whose exclusive `flock` serializes read-modify-write updates of the lock file by
/// concurrent processes (Slurm jobs finishing together). `hesslab.lock` itself is replaced by
/// rename on every save, so it cannot carry the lock.
pub const LOCK_GUARD_NAME: &str = ".hesslab.lock.flock";

/// Hash and stat of one output file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileHash {
    pub sha256: String,
    pub size: u64,
    /// Modification time (ns since the epoch), to skip re-hashing unchanged files.
    pub mtime_ns: u128,
    /// Inode change time (ns since the epoch). Unlike the mtime, no user call can set it back,
    /// so a same-size rewrite with the mtime restored still differs here (0 in old locks).
    #[serde(default)]
    pub ctime_ns: u128,
}

/// What the lock file records of one stage instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockEntry {
    /// Its kind.
    pub kind: String,
    /// The kind's version when it ran.
    pub kind_version: u32,
    /// The cache key (kind, version, parameters, seed, input hashes).
    pub key: String,
    /// Its seed.
    pub seed: u64,
    /// Resolved parameters.
    pub params: serde_json::Value,
    /// Its output files.
    pub outputs: BTreeMap<String, FileHash>,
    /// Wall time of the run that produced the outputs (kept here, not in the Parquet files,
    /// so that artifacts stay bit-identical between runs).
    pub seconds: f64,
    /// The hesslab version that ran it (part of the key; kept to say why a stage reruns).
    #[serde(default)]
    pub hesslab_version: String,
}

/// `hesslab.lock`: what ran, with which key, producing which files (DVC-style).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LockFile {
    /// The hesslab version that wrote it.
    pub hesslab_version: String,
    /// Keyed by `member/stage`.
    pub stages: BTreeMap<String, LockEntry>,
    /// Member directory name -> the sweep values it stands for (`stage.param` -> value), so a
    /// hashed directory name can be traced back to its value.
    #[serde(default)]
    pub members: BTreeMap<String, BTreeMap<String, String>>,
}

impl LockFile {
    /// The lock file of an output directory: empty when missing, or when it is not a regular
    /// file of valid JSON (then every stage reruns; [`LockFile::update`] keeps such a file
    /// aside and says so).
    pub fn load(dir: &Path) -> LockFile {
        Self::read(&dir.join(LOCK_NAME)).ok().flatten().unwrap_or_default()
    }

    /// `Ok(None)` when missing, `Err` with the reason when unusable.
    fn read(p: &Path) -> std::result::Result<Option<LockFile>, String> {
        match std::fs::symlink_metadata(p) {
            Err(_) => return Ok(None),
            Ok(m) if m.file_type().is_symlink() => return Err("it is a symbolic link, which hesslab does not follow".into()),
            Ok(m) if !m.is_file() => return Err(format!("it is {}", hesslab_limits::file_kind(&m))),
            Ok(_) => {}
        }
        // A lock of 10 000 members is a few MB; a quarter of the memory budget is plenty.
        let cap = hesslab_limits::memory_budget().0 / 4;
        let bytes = hesslab_limits::read_regular(p, cap).map_err(|e| e.to_string())?;
        let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
        serde_json::from_str(&text).map(Some).map_err(|e| format!("it is not a valid lock file ({e})"))
    }

    /// Like `load`, but an unusable lock file is moved aside to `hesslab.lock.invalid` (a
    /// link is only removed) with a warning, so that the new one does not overwrite it unseen.
    fn load_for_update(dir: &Path) -> Result<LockFile> {
        let p = dir.join(LOCK_NAME);
        match Self::read(&p) {
            Ok(l) => Ok(l.unwrap_or_default()),
            Err(why) => {
                let is_link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
                let kept = dir.join(format!("{LOCK_NAME}.invalid"));
                if is_link {
                    std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
                    eprintln!("warning: {}: {why}; removed the link and rebuilt the lock file: stages rerun", p.display());
                } else if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                    std::fs::rename(&p, &kept).map_err(|e| io_err(&p, e))?;
                    eprintln!("warning: {}: {why}; kept as {} and rebuilt: stages rerun", p.display(), kept.display());
                } else {
                    return Err(Error::Lock { path: p.clone(), message: format!("{why}; remove it (hesslab keeps its lock file there)") });
                }
                Ok(LockFile::default())
            }
        }
    }
    /// Read, change and write the lock file of `dir` while holding its exclusive update lock,
    /// so that processes recording different instances at the same time never lose each
    /// other's entries. Returns the lock file as written.
    pub fn update(dir: &Path, change: impl FnOnce(&mut LockFile)) -> Result<LockFile> {
        let guard_path = dir.join(LOCK_GUARD_NAME);
        let guard = crate::cleanup::open_engine_file(&guard_path)?;
        guard.lock().map_err(|e| Error::Lock { path: guard_path.clone(), message: format!("cannot take the update lock: {e}") })?;
        let mut l = LockFile::load_for_update(dir)?;
        change(&mut l);
        l.save(dir)?;
        Ok(l) // the kernel releases the lock when `guard` closes
    }

    /// Write it atomically (callers that may race with other processes use `update`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = dir.join(LOCK_NAME);
        let s = serde_json::to_string_pretty(self).map_err(|e| Error::Lock { path: p.clone(), message: e.to_string() })?;
        crate::artifact::write_file_atomic(&p, s.as_bytes())
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0)
}

#[cfg(unix)]
fn ctime_ns(meta: &std::fs::Metadata) -> u128 {
    use std::os::unix::fs::MetadataExt;
    (meta.ctime().max(0) as u128) * 1_000_000_000 + meta.ctime_nsec().max(0) as u128
}
#[cfg(not(unix))]
fn ctime_ns(_: &std::fs::Metadata) -> u128 {
    0 // no inode change time: every check re-hashes
}

/// Do `a` and `b` hold hard links to the same files (same names, same inodes)?
pub fn same_files(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let names = |d: &Path| -> Option<Vec<(std::ffi::OsString, u64, u64)>> {
            let mut v = Vec::new();
            for e in std::fs::read_dir(d).ok()? {
                let e = e.ok()?;
                let m = e.metadata().ok()?;
                v.push((e.file_name(), m.dev(), m.ino()));
            }
            v.sort();
            Some(v)
        };
        matches!((names(a), names(b)), (Some(x), Some(y)) if x == y)
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

pub fn hash_file(path: &Path) -> Result<FileHash> {
    let meta = hesslab_limits::regular_file(path).map_err(|e| io_err(path, e))?;
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
    Ok(FileHash { sha256: crate::hex(&h.finalize()), size: meta.len(), mtime_ns: mtime_ns(&meta), ctime_ns: ctime_ns(&meta) })
}

/// Hash every regular file directly in `dir`.
pub fn hash_dir(dir: &Path) -> Result<BTreeMap<String, FileHash>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        let p = e.path();
        // The entry's own type: links (which could point anywhere) are not outputs.
        if e.file_type().is_ok_and(|t| t.is_file()) {
            out.insert(e.file_name().to_string_lossy().into_owned(), hash_file(&p)?);
        }
    }
    Ok(out)
}

/// Are the recorded outputs present and unchanged? Files whose size, mtime and ctime all match
/// the record are trusted; any other is re-hashed. Returns the outputs with refreshed file
/// stats, or `None` when a file is missing or its content changed.
pub fn outputs_intact(dir: &Path, outputs: &BTreeMap<String, FileHash>) -> Option<BTreeMap<String, FileHash>> {
    let mut fresh = BTreeMap::new();
    for (name, h) in outputs {
        // A lock entry names files of the stage directory only: a path (`/dev/zero`,
        // `../x`) or anything but a regular file there is not an intact output.
        if !crate::names::is_plain_component(name) {
            return None;
        }
        let p: PathBuf = dir.join(name);
        let m = std::fs::symlink_metadata(&p).ok()?;
        if !m.is_file() || m.len() != h.size {
            return None;
        }
        if mtime_ns(&m) == h.mtime_ns && ctime_ns(&m) == h.ctime_ns && h.ctime_ns != 0 {
            fresh.insert(name.clone(), h.clone());
            continue;
        }
        let now = hash_file(&p).ok()?;
        if now.sha256 != h.sha256 {
            return None;
        }
        fresh.insert(name.clone(), now);
    }
    Some(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers in parallel (each `update` opens its own file description, so the `flock`s
    /// conflict exactly as between processes) never lose an entry.
    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = std::env::temp_dir().join(format!("hesslab-lock-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let entry = |key: String| LockEntry {
            kind: "k".into(),
            kind_version: 1,
            key,
            seed: 0,
            params: serde_json::Value::Null,
            outputs: BTreeMap::new(),
            seconds: 0.0,
            hesslab_version: String::new(),
        };
        std::thread::scope(|s| {
            for t in 0..8 {
                let (dir, entry) = (&dir, &entry);
                s.spawn(move || {
                    for i in 0..25 {
                        LockFile::update(dir, |l| {
                            l.stages.insert(format!("m{t}/s{i}"), entry(format!("{t}-{i}")));
                        })
                        .unwrap();
                    }
                });
            }
        });
        let l = LockFile::load(&dir);
        assert_eq!(l.stages.len(), 8 * 25);
        assert!(l.stages.iter().all(|(id, e)| id == &format!("m{}/s{}", &e.key[..1], &e.key[2..])));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
