//! One run per output directory at a time, and removal of what killed runs left behind:
//! staging directories, swapped-out old directories and half-written temporary files.
use crate::{Error, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The file whose exclusive lock a run holds (released by the kernel when the process dies).
pub const RUN_LOCK_NAME: &str = ".hesslab-run.lock";

/// Hold the run lock of `dir`; waits (saying so once) while another run holds it.
pub fn lock_run(dir: &Path) -> Result<File> {
    let path = dir.join(RUN_LOCK_NAME);
    let file =
        File::options().create(true).truncate(false).write(true).open(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("waiting: another hesslab run is writing to {}", dir.display());
            file.lock().map_err(|source| Error::Io { path: path.clone(), source })?;
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(Error::Io { path, source }),
    }
    Ok(file)
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
}
