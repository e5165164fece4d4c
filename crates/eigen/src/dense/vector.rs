//! The two short vector loops of the reductions' level-2 parts (the panel QR, the bulge chase),
//! for pulp's runtime dispatch: called inside `pulp::Arch::dispatch` they run on the widest
//! vector unit the CPU has (in a portable build the compiler's own loops were 2-lane SSE2).
//! Each gives the same bits on every vector width, so results do not depend on the CPU.
use pulp::Simd;

/// Σ xᵢ yᵢ with eight partial sums (element i into sum i mod 8) added in a fixed order: the
/// same operations on every vector width (8, 4 or 1 lanes), so the same bits on every CPU and
/// thread count.
#[inline(always)]
pub(super) fn dot<S: Simd>(simd: S, x: &[f64], y: &[f64]) -> f64 {
    const PARTIAL: usize = 8;
    let n = x.len().min(y.len());
    let whole = n / PARTIAL * PARTIAL;
    let per = PARTIAL / S::F64_LANES;
    let (xv, _) = S::as_simd_f64s(&x[..whole]);
    let (yv, _) = S::as_simd_f64s(&y[..whole]);
    let mut acc = [simd.splat_f64s(0.0); PARTIAL];
    for (xb, yb) in xv.chunks_exact(per).zip(yv.chunks_exact(per)) {
        for p in 0..per {
            acc[p] = simd.add_f64s(acc[p], simd.mul_f64s(xb[p], yb[p]));
        }
    }
    let mut s = [0.0f64; PARTIAL];
    let (sv, _) = S::as_mut_simd_f64s(&mut s);
    sv.copy_from_slice(&acc[..per]);
    let mut tail = 0.0;
    for (a, b) in x[whole..n].iter().zip(&y[whole..n]) {
        tail += a * b;
    }
    (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))) + tail
}

/// y += α x (a multiply then an add, as the scalar code: no fused multiply-add, so the same
/// bits on every CPU).
#[inline(always)]
pub(super) fn axpy<S: Simd>(simd: S, alpha: f64, x: &[f64], y: &mut [f64]) {
    let n = x.len().min(y.len());
    let (xv, xt) = S::as_simd_f64s(&x[..n]);
    let (yv, yt) = S::as_mut_simd_f64s(&mut y[..n]);
    let a = simd.splat_f64s(alpha);
    for (yi, xi) in yv.iter_mut().zip(xv) {
        *yi = simd.add_f64s(*yi, simd.mul_f64s(a, *xi));
    }
    for (yi, xi) in yt.iter_mut().zip(xt) {
        *yi += alpha * xi;
    }
}

/// y ← (y + α x) + β z in one pass over y: the same operations, so the same bits, as
/// `axpy(α, x, y)` then `axpy(β, z, y)` (a rank-2 update's column reads and writes y once).
#[inline(always)]
pub(super) fn axpy2<S: Simd>(simd: S, alpha: f64, x: &[f64], beta: f64, z: &[f64], y: &mut [f64]) {
    let n = x.len().min(z.len()).min(y.len());
    let (xv, xt) = S::as_simd_f64s(&x[..n]);
    let (zv, zt) = S::as_simd_f64s(&z[..n]);
    let (yv, yt) = S::as_mut_simd_f64s(&mut y[..n]);
    let (a, b) = (simd.splat_f64s(alpha), simd.splat_f64s(beta));
    for ((yi, xi), zi) in yv.iter_mut().zip(xv).zip(zv) {
        *yi = simd.add_f64s(simd.add_f64s(*yi, simd.mul_f64s(a, *xi)), simd.mul_f64s(b, *zi));
    }
    for ((yi, xi), zi) in yt.iter_mut().zip(xt).zip(zt) {
        *yi = (*yi + alpha * xi) + beta * zi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hesslab_data::rng::Rng;

    /// The kernels on a backend, for every length 0..=70 and start offsets 0..3 (unaligned).
    fn run<S: Simd>(simd: S) -> Vec<u64> {
        let mut rng = Rng::new(3);
        let x: Vec<f64> = (0..80).map(|_| rng.normal()).collect();
        let mut bits = Vec::new();
        for off in 0..3 {
            for n in 0..=70 {
                let (a, b) = (&x[off..off + n], &x[80 - n..]);
                bits.push(dot(simd, a, b).to_bits());
                let mut y = b.to_vec();
                axpy(simd, -0.37, a, &mut y);
                bits.extend(y.iter().map(|v| v.to_bits()));
                // axpy2 is the two axpys it replaces, bit for bit.
                let z = &x[..n];
                let mut fused = b.to_vec();
                axpy2(simd, -0.37, a, 1.9, z, &mut fused);
                axpy(simd, 1.9, z, &mut y);
                assert_eq!(fused.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), y.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
        }
        bits
    }

    #[test]
    fn same_bits_on_every_vector_width() {
        let scalar = run(pulp::Scalar::new());
        // The scalar backend against the plain sums it stands for.
        let x: Vec<f64> = (0..21).map(|i| (i as f64).sin()).collect();
        let mut s = [0.0; 8];
        x.iter().take(16).enumerate().for_each(|(i, v)| s[i % 8] += v * v);
        let tail: f64 = x[16..].iter().map(|v| v * v).sum();
        let plain = (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))) + tail;
        assert_eq!(dot(pulp::Scalar::new(), &x, &x).to_bits(), plain.to_bits());
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = pulp::x86::V3::try_new() {
                assert_eq!(simd.vectorize(Run(simd)), scalar, "AVX2");
            }
            if let Some(simd) = pulp::x86::V4::try_new() {
                assert_eq!(simd.vectorize(Run(simd)), scalar, "AVX-512");
            }
        }
        assert_eq!(pulp::Arch::new().dispatch(Dispatched), scalar, "the dispatched backend");
    }

    #[derive(Clone, Copy)]
    struct Run<S>(S);
    impl<S: Simd> pulp::NullaryFnOnce for Run<S> {
        type Output = Vec<u64>;
        #[inline(always)]
        fn call(self) -> Vec<u64> {
            run(self.0)
        }
    }

    struct Dispatched;
    impl pulp::WithSimd for Dispatched {
        type Output = Vec<u64>;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> Vec<u64> {
            run(simd)
        }
    }
}
