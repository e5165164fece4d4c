//! One run per output directory at a time, and removal of what killed runs left behind:
//! staging directories, swapped-out old directories and half-written temporary files.
use crate::{Error, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The file whose exclusive lock a run holds (released by the kernel when the process dies).
pub const RUN_LOCK_NAME: &str = ".hesslab-run.lock";

fn run_lock_file(dir: &Path) -> Result<(File, PathBuf)> {
    let path = dir.join(RUN_LOCK_NAME);
    let file = open_engine_file(&path)?;
    Ok((file, path))
}

/// Refuse a symbolic link at `path` or at any directory between `root` (the pipeline's output
/// directory, which the user named) and `path`: the engine writes, renames and deletes below
/// `root` only, never through a link out of it.
pub fn refuse_links(root: &Path, path: &Path) -> Result<()> {
    let mut at = root.to_path_buf();
    for c in path.strip_prefix(root).unwrap_or(Path::new("")).components() {
        at.push(c);
        if let Ok(m) = std::fs::symlink_metadata(&at)
            && m.file_type().is_symlink()
        {
            let target = std::fs::read_link(&at).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
            return Err(Error::Link { path: at, target });
        }
    }
    Ok(())
}

/// Open (creating) one of the engine's own bookkeeping files for writing. A symbolic link in
/// its place is removed first — the link itself, never its target — so that no file is
/// created or truncated where the link points; any other non-regular file is an error.
pub fn open_engine_file(path: &Path) -> Result<File> {
    replace_link(path)?;
    if let Ok(m) = std::fs::metadata(path)
        && !m.is_file()
    {
        let message =
            format!("{} is {}, not the regular file hesslab keeps there; remove it", path.display(), hesslab_limits::file_kind(&m));
        return Err(Error::Io { path: path.into(), source: std::io::Error::new(std::io::ErrorKind::InvalidInput, message) });
    }
    File::options().create(true).truncate(false).write(true).open(path).map_err(|source| Error::Io { path: path.into(), source })
}

/// Remove `path` if it is a symbolic link (the link, not its target), saying so.
pub(crate) fn replace_link(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        eprintln!("warning: {} was a symbolic link; replaced by a file of its own (the link's target is untouched)", path.display());
        std::fs::remove_file(path).map_err(|source| Error::Io { path: path.into(), source })?;
    }
    Ok(())
}

/// Is `path` a real directory (not a link to one)?
fn real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Hold the run lock of `dir` (exclusive, or `shared` for single-instance executions); waits
/// (saying so once) while a conflicting holder has it.
fn hold(dir: &Path, shared: bool) -> Result<File> {
    let (file, path) = run_lock_file(dir)?;
    let attempt = if shared { file.try_lock_shared() } else { file.try_lock() };
    match attempt {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("waiting: another hesslab run is writing to {}", dir.display());
            let blocking = if shared { file.lock_shared() } else { file.lock() };
            blocking.map_err(|source| Error::Io { path: path.clone(), source })?;
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(Error::Io { path, source }),
    }
    Ok(file)
}

/// Hold the run lock of `dir`; waits (saying so once) while another run holds it.
pub fn lock_run(dir: &Path) -> Result<File> {
    hold(dir, false)
}

/// Hold the run lock of `dir` shared: many single-instance executions (`hesslab exec`, one per
/// Slurm job) may write at once, each to its own instance, but never beside a whole run, whose
/// exclusive lock also removes leftovers.
pub fn lock_run_shared(dir: &Path) -> Result<File> {
    hold(dir, true)
}

/// Take the run lock of `dir` exclusively without waiting: `Ok(None)` when a run or running
/// jobs hold it.
pub fn try_lock_run(dir: &Path) -> Result<Option<File>> {
    let (file, path) = run_lock_file(dir)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io { path, source }),
    }
}

/// Remove what a killed execution of one instance left: `<member>/.staging-<stage>-N`,
/// `<member>/.old-<stage>-N` and `<member>/<stage>/*.tmp-N`. Only the process about to run that
/// instance calls this, so nothing removed is live.
pub fn remove_instance_leftovers(member_dir: &Path, stage: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let ours = |name: &str| {
        [".staging-", ".old-"]
            .iter()
            .any(|p| name.strip_prefix(p).and_then(|rest| rest.rsplit_once('-')).is_some_and(|(s, _)| s == stage) && is_leftover(name))
    };
    for (dir, pick) in [(member_dir.to_path_buf(), true), (member_dir.join(stage), false)] {
        // Never read or delete through a link (a planted one would point out of --out).
        if !real_dir(&dir) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hit = if pick { ours(&name) } else { is_leftover(&name) };
            if hit {
                let path = e.path();
                // The entry's own type: a link named like a leftover is removed as a link.
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                let ok = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                if ok.is_ok() {
                    removed.push(path);
                }
            }
        }
    }
    removed
}

/// Is this a name the engine gives to work in progress? (`.staging-STAGE-PID`,
/// `.old-STAGE-PID`, `FILE.tmp-PID`; no user-chosen name can look like these, since pipeline,
/// stage and member names never start with `.` and ports are fixed words.)
pub fn is_leftover(name: &str) -> bool {
    let pid_suffix = |rest: &str| rest.rsplit_once('-').is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    (name.starts_with(".staging-") || name.starts_with(".old-")) && pid_suffix(name)
        || name.rsplit_once(".tmp-").is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Remove every leftover below `dir` (called while holding the run lock, so none is live).
/// Returns what was removed.
pub fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    if !real_dir(dir) {
        return removed;
    }
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if is_leftover(&name) {
                let ok = if ft.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                if ok.is_ok() {
                    removed.push(path);
                }
            } else if ft.is_dir() && depth < 4 {
                // <out>/<name>/<member>/<stage>/ is as deep as artifacts go.
                stack.push((path, depth + 1));
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names() {
        for n in [".staging-train-123", ".old-eigen-9", "matrix.parquet.tmp-4242", "hesslab.lock.tmp-1", "report.html.tmp-77"] {
            assert!(is_leftover(n), "{n}");
        }
        for n in ["train", "matrix.parquet", ".staging-x", "a.tmp-", "data.classes=2", "x.tmp-12a", "main"] {
            assert!(!is_leftover(n), "{n}");
        }
    }

    #[test]
    fn instance_leftovers_are_only_its_own() {
        let d = std::env::temp_dir().join(format!("hesslab-leftovers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for sub in [".staging-eigen-12", ".staging-eigen-top-12", ".old-eigen-3", ".staging-train-5", "eigen"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("eigen/eigenvalues.parquet.tmp-9"), b"x").unwrap();
        std::fs::write(d.join("eigen/eigenvalues.parquet"), b"x").unwrap();
        let mut removed: Vec<String> =
            remove_instance_leftovers(&d, "eigen").iter().map(|p| p.strip_prefix(&d).unwrap().display().to_string()).collect();
        removed.sort();
        assert_eq!(removed, [".old-eigen-3", ".staging-eigen-12", "eigen/eigenvalues.parquet.tmp-9"]);
        assert!(d.join(".staging-eigen-top-12").exists() && d.join(".staging-train-5").exists());
        assert!(d.join("eigen/eigenvalues.parquet").exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
