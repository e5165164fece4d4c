//! A per-thread pool of temporaries of the R-operator kernels.
use faer::Mat;

/// Free matrices by shape (rows, columns).
type Pool = std::collections::HashMap<(usize, usize), Vec<Mat<f64>>>;

/// Bytes a thread's pool keeps at most (beyond it, returned matrices are freed).
const POOL_BYTES: usize = 32 << 20;

thread_local! {
    /// Temporaries of the R-operator kernel, reused by shape: an operator is applied thousands of
    /// times with the same shapes, and fresh multi-megabyte allocations cost page faults and
    /// zeroing (a third of the time of dense materialization before this pool).
    static SCRATCH: std::cell::RefCell<Pool> = Default::default();
    /// Bytes held by this thread's pool.
    static POOL_HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A matrix of the given shape with unspecified contents (callers overwrite or zero it).
pub(crate) fn scratch(r: usize, c: usize) -> Mat<f64> {
    match SCRATCH.with(|p| p.borrow_mut().get_mut(&(r, c)).and_then(|v| v.pop())) {
        Some(m) => {
            POOL_HELD.with(|h| h.set(h.get().saturating_sub(bytes(&m))));
            m
        }
        None => Mat::zeros(r, c),
    }
}

pub(crate) fn zeroed(r: usize, c: usize) -> Mat<f64> {
    let mut m = scratch(r, c);
    m.fill(0.0);
    m
}

/// Returns `m` to this thread's pool, unless the pool would exceed [`POOL_BYTES`] or already
/// holds eight of this shape.
pub(crate) fn recycle(m: Mat<f64>) {
    let size = bytes(&m);
    if POOL_HELD.with(|h| h.get()) + size > POOL_BYTES {
        return;
    }
    SCRATCH.with(|p| {
        let mut p = p.borrow_mut();
        let v = p.entry((m.nrows(), m.ncols())).or_default();
        if v.len() < 8 {
            v.push(m);
            POOL_HELD.with(|h| h.set(h.get() + size));
        }
    });
}

fn bytes(m: &Mat<f64>) -> usize {
    m.nrows() * m.ncols() * std::mem::size_of::<f64>()
}
