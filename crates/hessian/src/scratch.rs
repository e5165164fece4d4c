//! A per-thread pool of temporaries of the R-operator kernels.
use faer::Mat;

/// Free matrices by shape (rows, columns).
type Pool = std::collections::HashMap<(usize, usize), Vec<Mat<f64>>>;

thread_local! {
    /// Temporaries of the R-operator kernel, reused by shape: an operator is applied thousands of
    /// times with the same shapes, and fresh multi-megabyte allocations cost page faults and
    /// zeroing (a third of the time of dense materialization before this pool).
    static SCRATCH: std::cell::RefCell<Pool> = Default::default();
}

/// A matrix of the given shape with unspecified contents (callers overwrite or zero it).
pub(crate) fn scratch(r: usize, c: usize) -> Mat<f64> {
    SCRATCH.with(|p| p.borrow_mut().get_mut(&(r, c)).and_then(|v| v.pop())).unwrap_or_else(|| Mat::zeros(r, c))
}

pub(crate) fn zeroed(r: usize, c: usize) -> Mat<f64> {
    let mut m = scratch(r, c);
    m.fill(0.0);
    m
}

pub(crate) fn recycle(m: Mat<f64>) {
    SCRATCH.with(|p| {
        let mut p = p.borrow_mut();
        let v = p.entry((m.nrows(), m.ncols())).or_default();
        if v.len() < 8 {
            v.push(m);
        }
    });
}
