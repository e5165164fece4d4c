//! Memory estimates: what a stage will allocate at its peak, from its parameters and what is
//! known of its inputs, checked against the machine before the stage starts.
use std::collections::BTreeMap;
use std::fmt;

/// What is known of the size of a stage's outputs: before a run, propagated from parameters
/// (`StageKind::facts`); during a run, read from the input artifacts' footers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Rows (samples of a dataset, entries of a spectrum).
    pub rows: Option<u64>,
    /// Feature dimension of a dataset, or the side P of a matrix / spectrum.
    pub dim: Option<u64>,
    /// Number of classes of a dataset.
    pub classes: Option<u64>,
    /// Number of network parameters P of a model.
    pub params: Option<u64>,
    /// Number of units of a model (input, hidden and output widths added up): what a forward
    /// pass stores per sample.
    pub units: Option<u64>,
    /// Shape [C, H, W] of one example of an image dataset.
    pub shape: Option<[u64; 3]>,
    /// Parameter snapshots a trajectory holds (not its dataset's rows).
    pub snapshots: Option<u64>,
}

/// The facts of every input port of a stage (for a gathering input, of its first artifact).
pub type InputFacts = BTreeMap<String, Facts>;

/// Look up one field of one input port.
pub fn fact(inputs: &InputFacts, port: &str, field: fn(&Facts) -> Option<u64>) -> Option<u64> {
    inputs.get(port).and_then(field)
}

/// Peak memory a stage expects, and what dominates it (for messages and `hesslab dag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Bytes.
    pub bytes: u64,
    /// What they are for.
    pub what: String,
}

impl Estimate {
    /// `count` values of 8 bytes (saturating: an absurd size stays absurd, never wraps).
    pub fn f64s(count: u64, what: impl Into<String>) -> Estimate {
        Estimate { bytes: count.saturating_mul(8), what: what.into() }
    }
    /// Add another allocation that is alive at the same time.
    pub fn plus(mut self, other: Estimate) -> Estimate {
        self.bytes = self.bytes.saturating_add(other.bytes);
        if !other.what.is_empty() {
            self.what = format!("{} + {}", self.what, other.what);
        }
        self
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", human_bytes(self.bytes), self.what)
    }
}

/// Saturating product of sizes.
pub fn prod(xs: &[u64]) -> u64 {
    xs.iter().fold(1u64, |a, &b| a.saturating_mul(b))
}

pub use hesslab_limits::{available_memory, human_bytes};

/// Parse "512M", "24G", "1.5GiB", "1000000" (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("`{s}` is not a size such as 512M, 24G or 1.5T"))?;
    let mult: f64 = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024f64.powi(2),
        "G" => 1024f64.powi(3),
        "T" => 1024f64.powi(4),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use K, M, G or T)")),
    };
    let bytes = v * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!("`{s}` is not a usable size"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("24G").unwrap(), 24 << 30);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("lots").is_err() && parse_bytes("1e400G").is_err() && parse_bytes("5X").is_err());
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(u64::MAX), "more than 16 EiB");
        assert_eq!(Estimate::f64s(prod(&[u64::MAX, 3]), "x").bytes, u64::MAX);
    }
}
