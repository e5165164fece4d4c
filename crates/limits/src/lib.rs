//! What every reader of a user's file checks before it reads, once for the whole workspace:
//!
//! - **Inputs are regular files.** A FIFO blocks the reader until someone writes to it, a
//!   device such as `/dev/zero` never ends; both are refused by their type before they are
//!   opened ([`regular_file`], [`open_regular`]).
//! - **Reads are capped.** A file is read only up to a stated number of bytes, and a
//!   decompressor's output likewise ([`read_capped`]): a gzip bomb stops at the cap instead of
//!   filling memory.
//! - **One memory budget per process** ([`set_memory_budget`], [`memory_budget`],
//!   [`check_memory`]): `--max-memory`, or what the kernel says is available. A reader checks
//!   what a file's header or footer says it will allocate against it *before* allocating.
#![warn(missing_docs)]

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;

/// What kind of file system object `meta` describes, for messages ("a FIFO").
pub fn file_kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// The metadata of `path` (links followed) if it is a regular file; otherwise an
/// `InvalidInput` error saying what it is. Checked before opening, since opening a FIFO for
/// reading already blocks.
pub fn regular_file(path: &Path) -> io::Result<Metadata> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        Ok(meta)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is {}; inputs must be regular files", path.display(), file_kind(&meta)),
        ))
    }
}

/// Open `path` for reading if it is a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    regular_file(path)?;
    File::open(path)
}

/// Read at most `cap` bytes from `r`; more is an error naming `what` and the cap, raised
/// after reading `cap + 1` bytes at the most (the buffer grows with what arrives, never to
/// a size the source claims).
pub fn read_capped(mut r: impl Read, cap: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    (&mut r).take(cap.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is larger than {} (the most this read takes)", human_bytes(cap)),
        ));
    }
    Ok(out)
}

/// Read a whole regular file of at most `cap` bytes (its size checked before reading).
pub fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let meta = regular_file(path)?;
    if meta.len() > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} has {}, more than the {} this read takes", path.display(), human_bytes(meta.len()), human_bytes(cap)),
        ));
    }
    read_capped(File::open(path)?, cap, &path.display().to_string())
}

/// Where the process's memory budget comes from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// `--max-memory` (or a caller that set it).
    MaxMemory,
    /// `MemAvailable` when it was first asked for.
    Available,
    /// Nothing is known: no limit.
    Unknown,
}

impl fmt::Display for BudgetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetSource::MaxMemory => "is allowed by --max-memory",
            BudgetSource::Available => "is available (MemAvailable)",
            BudgetSource::Unknown => "is the limit",
        })
    }
}

static BUDGET: Mutex<Option<(u64, BudgetSource)>> = Mutex::new(None);

/// Set the memory budget of this process (what `--max-memory` says).
pub fn set_memory_budget(bytes: u64) {
    *BUDGET.lock().unwrap_or_else(|e| e.into_inner()) = Some((bytes, BudgetSource::MaxMemory));
}

/// The memory budget: what [`set_memory_budget`] set, else `MemAvailable` when first asked.
pub fn memory_budget() -> (u64, BudgetSource) {
    let mut b = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    *b.get_or_insert_with(|| match available_memory() {
        Some(m) => (m, BudgetSource::Available),
        None => (u64::MAX, BudgetSource::Unknown),
    })
}

/// A read or allocation that would not fit the memory budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    /// Bytes it needs.
    pub needed: u64,
    /// What for.
    pub what: String,
    /// The budget.
    pub allowed: u64,
    /// Where the budget comes from.
    pub source: BudgetSource,
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "needs about {} ({}), but {} {}", human_bytes(self.needed), self.what, human_bytes(self.allowed), self.source)?;
        if self.source != BudgetSource::MaxMemory {
            write!(f, "; --max-memory sets the limit")?;
        }
        Ok(())
    }
}

impl std::error::Error for OverBudget {}

/// `Ok` if `needed` bytes fit the budget; checked before allocating them.
pub fn check_memory(needed: u64, what: impl Into<String>) -> Result<(), OverBudget> {
    let (allowed, source) = memory_budget();
    if needed <= allowed { Ok(()) } else { Err(OverBudget { needed, what: what.into(), allowed, source }) }
}

/// Memory the kernel says can be allocated without swapping (`MemAvailable`), if known.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Bytes in binary units: "1.5 GiB"; the saturated maximum reads "more than 16 EiB".
pub fn human_bytes(b: u64) -> String {
    if b == u64::MAX {
        return "more than 16 EiB".into();
    }
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", units[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_by_type() {
        let e = regular_file(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("/dev/zero is a character device; inputs must be regular files"), "{e}");
        let e = open_regular(Path::new("/tmp")).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let d = std::env::temp_dir().join(format!("hesslab-limits-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let fifo = d.join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = open_regular(&fifo).unwrap_err().to_string();
        assert!(e.contains("is a FIFO"), "{e}");
        std::fs::write(d.join("f"), b"12345").unwrap();
        assert_eq!(read_regular(&d.join("f"), 5).unwrap(), b"12345");
        assert!(read_regular(&d.join("f"), 4).unwrap_err().to_string().contains("more than the 4 B"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn capped_reads_stop_at_the_cap() {
        // An endless source: the read ends after cap + 1 bytes with an error.
        let e = read_capped(io::repeat(0), 1 << 20, "the stream").unwrap_err().to_string();
        assert!(e.contains("the stream is larger than 1.0 MiB"), "{e}");
        assert_eq!(read_capped(&b"abc"[..], 3, "x").unwrap(), b"abc");
    }

    #[test]
    fn the_budget_check_names_the_numbers() {
        let e = OverBudget { needed: 3 << 30, what: "decoded columns".into(), allowed: 1 << 30, source: BudgetSource::MaxMemory };
        assert_eq!(e.to_string(), "needs about 3.0 GiB (decoded columns), but 1.0 GiB is allowed by --max-memory");
        assert_eq!(human_bytes(u64::MAX), "more than 16 EiB");
    }
}
