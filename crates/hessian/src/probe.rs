//! The curvature side of sharpness tracking during training (the training loop sits in the
//! model crate, below this one).
use crate::{CurvatureKind, LinearOperator, ModelCurvature};
use hesslab_data::Split;
use hesslab_model::{ModelError, Network, Result, SharpnessProbe};
use std::sync::Arc;

/// Sharpness tracking's Hessian: the exact curvature operator of the full training batch,
/// rebuilt at each measurement's weights (its cache is that step's forward and backward pass).
pub struct HessianProbe {
    data: Arc<Split>,
    op: Option<ModelCurvature>,
    /// Time in operator builds (each also gives the log's full-batch loss and gradient, which
    /// would cost a pass anyway) and products; reported, never written.
    pub seconds: f64,
}

impl HessianProbe {
    /// A probe of the Hessian of the mean loss over `data`.
    pub fn new(data: Split) -> Self {
        HessianProbe { data: Arc::new(data), op: None, seconds: 0.0 }
    }
}

impl SharpnessProbe for HessianProbe {
    fn prepare(&mut self, net: &Network) -> Result<(f64, Vec<f64>, f64)> {
        let t0 = std::time::Instant::now();
        // The previous operator is freed before the next is built, so that the allocator hands
        // its cache's memory straight to the new one. Freed after (as until session 12, for
        // glibc), mimalloc purged it ~10 ms later, between measurements, and every build
        // faulted a fresh cache in: probe time 0.52 → 0.45 s over 1 000 E2 steps (`bench
        // --only sharpness`'s network, sharpness_every = 10).
        self.op = None;
        let op = ModelCurvature::new(net.clone(), self.data.clone(), CurvatureKind::Hessian);
        let out = (op.loss, op.mean_gradient().to_vec(), op.accuracy);
        self.op = Some(op);
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(out)
    }
    fn prepare_with_product(&mut self, net: &Network, v: &[f64]) -> Result<((f64, Vec<f64>, f64), Vec<f64>)> {
        let t0 = std::time::Instant::now();
        // One pass, no operator kept: each chunk's cache is used while it is in cache, and no
        // operator's worth of memory is allocated and zeroed per measurement.
        self.op = None;
        let (loss, grad, accuracy, hv) = crate::rop::gradient_and_product(net, self.data.clone(), CurvatureKind::Hessian, v);
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(((loss, grad, accuracy), hv))
    }
    fn hvp(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        let t0 = std::time::Instant::now();
        let op = self.op.as_ref().ok_or_else(|| ModelError::Invalid("Hessian-vector product before prepare".into()))?;
        let hv = LinearOperator::apply_vec(op, v);
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(hv)
    }
}
