#![warn(missing_docs)]
//! Progress on stderr, shown only when stderr is a terminal (or forced).
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A handle a stage uses to report long work; invisible when not on a terminal.
#[derive(Clone)]
pub struct Progress {
    enabled: bool,
    prefix: String,
}

impl Progress {
    /// Progress shown when stderr is a terminal.
    pub fn new(prefix: impl Into<String>) -> Self {
        Progress { enabled: std::io::stderr().is_terminal(), prefix: prefix.into() }
    }
    /// Progress never shown.
    pub fn hidden() -> Self {
        Progress { enabled: false, prefix: String::new() }
    }
    /// Progress always shown (`--verbose`).
    pub fn forced(prefix: impl Into<String>) -> Self {
        Progress { enabled: true, prefix: prefix.into() }
    }
    /// Is it shown?
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// A bar of `len` steps, labelled `what`.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{prefix} {msg} [{bar:30}] {pos}/{len} {elapsed}/{eta} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(self.prefix.clone());
        pb.set_message(what.to_string());
        pb
    }
    /// A warning on stderr, shown whether or not progress is (it is part of the result).
    pub fn warn(&self, msg: &str) {
        match self.prefix.as_str() {
            "" => eprintln!("warning: {msg}"),
            p => eprintln!("warning: {p} {msg}"),
        }
    }
    /// A line on stderr (when enabled).
    pub fn line(&self, msg: &str) {
        if self.enabled {
            eprintln!("{} {msg}", self.prefix);
        }
    }
}
