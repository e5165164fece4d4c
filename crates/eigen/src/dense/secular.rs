//! The rank-one update D + ρ z zᵀ (D diagonal with strictly increasing entries, ρ > 0, every
//! zᵢ ≠ 0): its eigenvalues are the roots of the secular equation
//!
//!   f(λ) = 1/ρ + Σᵢ zᵢ² / (dᵢ − λ),
//!
//! one in each (dⱼ, dⱼ₊₁) and the last in (d_{k−1}, d_{k−1} + ρ‖z‖²]; its eigenvectors are
//! (zᵢ / (dᵢ − λⱼ))ᵢ, normalized (LAPACK's `dlaed4` / `dlaed3`).
//!
//! Accuracy comes from two devices. Each root is found as λ = d_o + τ, o the nearer pole, so
//! the differences dᵢ − λ are (dᵢ − d_o) − τ, accurate even when λ is within rounding of d_o;
//! and the vectors use the z recomputed from the computed roots (Gu & Eisenstat's Löwner
//! formula), which makes them orthogonal to working precision however close the roots are.
//! The iteration is LAPACK's rational model of f by its two nearest poles, kept inside a
//! bracket that shrinks at every step, with bisection whenever the model's step leaves it — so
//! it always converges (at worst at one bit per step).

/// Iterations before the root is accepted as it stands (bisection alone needs < 1100 to go
/// from the widest bracket to adjacent floats; the model converges in a handful).
const MAX_ITERATIONS: usize = 1200;

/// The j-th root (ascending) as (o, τ) with λⱼ = `d[o]` + τ, and `delta[i] = dᵢ − λⱼ`.
/// `z2` holds zᵢ².
pub(crate) fn secular_root(d: &[f64], z2: &[f64], rho: f64, j: usize, delta: &mut [f64]) -> (usize, f64) {
    let k = d.len();
    let rho_inv = 1.0 / rho;
    if k == 1 {
        let tau = rho * z2[0];
        delta[0] = -tau;
        return (0, tau);
    }
    // Pick the origin: the pole on the side of the root (f increases between poles).
    let (origin, mut lo, mut hi) = if j + 1 < k {
        let half = 0.5 * (d[j + 1] - d[j]);
        let f_mid = rho_inv + (0..k).map(|i| z2[i] / ((d[i] - d[j]) - half)).sum::<f64>();
        if f_mid >= 0.0 { (j, 0.0, half) } else { (j + 1, (d[j] + half) - d[j + 1], 0.0) }
    } else {
        (j, 0.0, rho * z2.iter().sum::<f64>())
    };
    let shifted: Vec<f64> = d.iter().map(|x| x - d[origin]).collect();
    // The two poles the model uses: those bounding the root (the last root: the top two).
    let (left, right) = if j + 1 < k { (j, j + 1) } else { (k - 2, k - 1) };
    let mut tau = 0.5 * (lo + hi);
    for _ in 0..MAX_ITERATIONS {
        for (x, s) in delta.iter_mut().zip(&shifted) {
            *x = s - tau;
        }
        let (mut psi, mut dpsi, mut phi, mut dphi, mut abs_sum) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..k {
            let t = z2[i] / delta[i];
            abs_sum += t.abs();
            if i <= left {
                psi += t;
                dpsi += t / delta[i];
            } else {
                phi += t;
                dphi += t / delta[i];
            }
        }
        let w = rho_inv + psi + phi;
        // Bound on the rounding error of f, as in dlaed4.
        if w.abs() <= f64::EPSILON * (8.0 * (rho_inv + abs_sum) + 3.0 * w.abs()) || w == 0.0 {
            break;
        }
        if w < 0.0 {
            lo = tau;
        } else {
            hi = tau;
        }
        if hi - lo <= 2.0 * f64::EPSILON * lo.abs().max(hi.abs()) {
            break;
        }
        let (dl, dr) = (delta[left], delta[right]);
        let dw = dpsi + dphi;
        let c = w - dl * dpsi - dr * dphi;
        let a = (dl + dr) * w - dl * dr * dw;
        let b = dl * dr * w;
        let disc = (a * a - 4.0 * b * c).abs().sqrt();
        let mut eta = if c == 0.0 {
            -w / dw
        } else if a <= 0.0 {
            (a - disc) / (2.0 * c)
        } else {
            2.0 * b / (a + disc)
        };
        if w * eta >= 0.0 || !eta.is_finite() {
            eta = -w / dw;
        }
        let next = tau + eta;
        tau = if next > lo && next < hi && next.is_finite() { next } else { 0.5 * (lo + hi) };
    }
    for (x, s) in delta.iter_mut().zip(&shifted) {
        *x = s - tau;
    }
    (origin, tau)
}

/// The eigenvectors from the roots' differences: `deltas` is k × k column-major, column j =
/// (dᵢ − λⱼ)ᵢ; it is overwritten with the normalized eigenvectors. `z_sign[i]` is the sign of
/// zᵢ (the recomputed z takes its magnitudes from the roots, its signs from z).
pub(crate) fn secular_vectors(d: &[f64], z_sign: &[f64], deltas: &mut [f64], par: faer::Par) {
    use rayon::prelude::*;
    let k = d.len();
    debug_assert_eq!(deltas.len(), k * k);
    // Löwner: ẑᵢ² = −Πⱼ (dᵢ − λⱼ) / Π_{j≠i} (dᵢ − dⱼ) (ẑ scaled by √ρ, which the
    // normalization removes). Accumulated column by column of `deltas` (contiguous), rows in
    // fixed chunks on `par`'s threads.
    let mut z_hat: Vec<f64> = (0..k).map(|i| deltas[i * k + i]).collect();
    {
        let deltas = &*deltas;
        let chunk = |(c, w): (usize, &mut [f64])| {
            let i0 = c * ROWS;
            for j in 0..k {
                let col = &deltas[j * k + i0..j * k + i0 + w.len()];
                for (r, (x, delta)) in w.iter_mut().zip(col).enumerate() {
                    let i = i0 + r;
                    if i != j {
                        *x *= delta / (d[i] - d[j]);
                    }
                }
            }
        };
        match par {
            faer::Par::Seq => z_hat.chunks_mut(ROWS).enumerate().for_each(chunk),
            faer::Par::Rayon(_) => z_hat.par_chunks_mut(ROWS).enumerate().for_each(chunk),
        }
    }
    z_hat.iter_mut().zip(z_sign).for_each(|(w, s)| *w = (-*w).max(0.0).sqrt().copysign(*s));
    let column = |col: &mut [f64]| {
        for (x, z) in col.iter_mut().zip(&z_hat) {
            *x = z / *x;
        }
        let norm = col.iter().map(|x| x * x).sum::<f64>().sqrt();
        col.iter_mut().for_each(|x| *x /= norm);
    };
    match par {
        faer::Par::Seq => deltas.chunks_exact_mut(k.max(1)).for_each(column),
        faer::Par::Rayon(_) => deltas.par_chunks_exact_mut(k.max(1)).with_min_len(16).for_each(column),
    }
}

/// Rows per chunk of the Löwner products.
const ROWS: usize = 512;
