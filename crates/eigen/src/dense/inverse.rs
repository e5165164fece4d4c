//! A few eigenvectors of a symmetric tridiagonal matrix by inverse iteration (the algorithm of
//! LAPACK's `dstein`), for when a stage asks for k ≪ n of them: O(n·k) work and memory, where
//! divide and conquer computes all n (n² values, at 11 274 ~34 s of one thread).
//!
//! Each vector: T − λI = P L U by Gaussian elimination with partial pivoting (pivots below
//! ε‖T‖ raised to it, so the solves stay finite), then ITERATIONS solves from a seeded random
//! start, each followed by Gram–Schmidt against the vectors already found in its cluster
//! (eigenvalues closer than CLUSTER_GAP·‖T‖, whose inverse iterations converge to the same
//! subspace) and a normalization. Vectors of eigenvalues further apart are orthogonal to working
//! accuracy without it.
//!
//! In tight clusters inverse iteration can lose orthogonality, so the result is checked (the
//! residual of every vector and the Gram matrix of all of them) and `None` is returned when it
//! falls short — the caller then takes divide and conquer.

/// Solves per vector (the first lands on the eigenvector up to O(ε‖T‖ / gap) when λ is
/// accurate to O(ε‖T‖); the later ones clean what the reorthogonalization stirred up).
const ITERATIONS: usize = 3;

/// Eigenvalues closer than this times ‖T‖ are one cluster (LAPACK's ORTOL).
const CLUSTER_GAP: f64 = 1e-3;

/// Accepted: ‖T x − λ x‖ ≤ RESIDUAL·‖T‖ and |XᵀX − I| ≤ ORTHOGONALITY entrywise.
const RESIDUAL: f64 = 1e-12;
const ORTHOGONALITY: f64 = 1e-13;

/// Largest cluster handled (Gram–Schmidt costs n · size² per cluster).
const MAX_CLUSTER: usize = 512;

/// Eigenvectors of the tridiagonal matrix (diagonal `d`, off-diagonal `e`) for the eigenvalues
/// `values[i]` (ascending, accurate to O(ε‖T‖)) at the ascending positions `wanted`, as the
/// columns of an n × wanted.len() matrix; None when a cluster is too large or the check fails.
pub(crate) fn tridiagonal_eigenvectors(d: &[f64], e: &[f64], values: &[f64], wanted: &[usize]) -> Option<faer::Mat<f64>> {
    let n = d.len();
    let norm = d.iter().map(|x| x.abs()).fold(0.0, f64::max) + 2.0 * e.iter().map(|x| x.abs()).fold(0.0, f64::max);
    let mut x = faer::Mat::<f64>::zeros(n, wanted.len());
    if n == 0 || wanted.is_empty() {
        return Some(x);
    }
    if norm == 0.0 {
        // T = 0: the unit vectors.
        for (c, &i) in wanted.iter().enumerate() {
            x[(i, c)] = 1.0;
        }
        return Some(x);
    }
    let tiny = f64::EPSILON * norm;
    let mut cluster_start = 0;
    let mut lu = Lu::with_capacity(n);
    let mut y = vec![0.0; n];
    let mut previous = f64::NEG_INFINITY;
    for c in 0..wanted.len() {
        if c > 0 && values[wanted[c]] - values[wanted[c - 1]] > CLUSTER_GAP * norm {
            cluster_start = c;
        }
        if c - cluster_start >= MAX_CLUSTER {
            return None;
        }
        // Equal eigenvalues would give equal factorizations: each shift at least 10 ε‖T‖
        // above the previous one in its cluster (LAPACK's PERTOL).
        let mut lambda = values[wanted[c]];
        if c > cluster_start {
            lambda = lambda.max(previous + 10.0 * tiny);
        }
        previous = lambda;
        lu.factor(d, e, lambda, tiny);
        // A start vector fixed by the eigenvalue's position: the same result on every run.
        let mut rng = hesslab_data::rng::Rng::new(0x5eed ^ wanted[c] as u64);
        y.iter_mut().for_each(|v| *v = rng.uniform() - 0.5);
        for _ in 0..ITERATIONS {
            lu.solve(&mut y);
            for p in cluster_start..c {
                let q = x.col(p).try_as_col_major().expect("column-major X").as_slice();
                let s: f64 = q.iter().zip(&y).map(|(a, b)| a * b).sum();
                y.iter_mut().zip(q).for_each(|(v, a)| *v -= s * a);
            }
            let nrm = y.iter().map(|v| v * v).sum::<f64>().sqrt();
            if !nrm.is_finite() || nrm == 0.0 {
                return None;
            }
            y.iter_mut().for_each(|v| *v /= nrm);
        }
        // Sign: largest entry positive (a convention, so reruns agree).
        let big = y.iter().copied().fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
        let sign = if big < 0.0 { -1.0 } else { 1.0 };
        x.col_mut(c).iter_mut().zip(&y).for_each(|(o, v)| *o = sign * v);
    }
    accepted(d, e, values, wanted, x.as_ref(), norm).then_some(x)
}

/// The check of the module doc.
fn accepted(d: &[f64], e: &[f64], values: &[f64], wanted: &[usize], x: faer::MatRef<'_, f64>, norm: f64) -> bool {
    let n = d.len();
    for (c, &i) in wanted.iter().enumerate() {
        let v = x.col(c).try_as_col_major().expect("column-major X").as_slice();
        let lambda = values[i];
        let mut r2 = 0.0;
        for j in 0..n {
            let mut t = (d[j] - lambda) * v[j];
            if j > 0 {
                t += e[j - 1] * v[j - 1];
            }
            if j + 1 < n {
                t += e[j] * v[j + 1];
            }
            r2 += t * t;
        }
        if r2.sqrt() > RESIDUAL * norm {
            return false;
        }
    }
    let gram = x.transpose() * x;
    (0..x.ncols()).all(|j| (0..x.ncols()).all(|i| (gram[(i, j)] - if i == j { 1.0 } else { 0.0 }).abs() <= ORTHOGONALITY))
}

/// P L U of T − λI with partial pivoting (LAPACK's `dgttrf` on a symmetric tridiagonal):
/// U has the diagonals `u0`, `u1`, `u2`; `l` the multipliers, `swap[i]` whether rows i and
/// i + 1 were exchanged.
struct Lu {
    u0: Vec<f64>,
    u1: Vec<f64>,
    u2: Vec<f64>,
    l: Vec<f64>,
    swap: Vec<bool>,
}

impl Lu {
    fn with_capacity(n: usize) -> Lu {
        Lu { u0: vec![0.0; n], u1: vec![0.0; n], u2: vec![0.0; n], l: vec![0.0; n], swap: vec![false; n] }
    }

    fn factor(&mut self, d: &[f64], e: &[f64], lambda: f64, tiny: f64) {
        let n = d.len();
        for i in 0..n {
            self.u0[i] = d[i] - lambda;
            self.u1[i] = if i + 1 < n { e[i] } else { 0.0 };
            self.u2[i] = 0.0;
            self.swap[i] = false;
        }
        for i in 0..n.saturating_sub(1) {
            let below = e[i];
            if self.u0[i].abs() >= below.abs() {
                let f = if self.u0[i] == 0.0 { 0.0 } else { below / self.u0[i] };
                self.l[i] = f;
                self.u0[i + 1] -= f * self.u1[i];
            } else {
                // Row i + 1 (below, u0[i + 1], u1[i + 1]) becomes the pivot row.
                let f = self.u0[i] / below;
                self.l[i] = f;
                self.swap[i] = true;
                self.u0[i] = below;
                let old_u1 = self.u1[i];
                self.u1[i] = self.u0[i + 1];
                self.u0[i + 1] = old_u1 - f * self.u0[i + 1];
                if i + 2 < n {
                    self.u2[i] = self.u1[i + 1];
                    self.u1[i + 1] *= -f;
                }
            }
        }
        // Pivots below ε‖T‖ (λ is an eigenvalue: one of them is ~0) are raised to it.
        for p in &mut self.u0[..n] {
            if p.abs() < tiny {
                *p = if *p < 0.0 { -tiny } else { tiny };
            }
        }
    }

    /// y ← (T − λI)⁻¹ y.
    fn solve(&self, y: &mut [f64]) {
        let n = y.len();
        for i in 0..n.saturating_sub(1) {
            if self.swap[i] {
                y.swap(i, i + 1);
                y[i + 1] -= self.l[i] * y[i];
            } else {
                y[i + 1] -= self.l[i] * y[i];
            }
        }
        for i in (0..n).rev() {
            let mut s = y[i];
            if i + 1 < n {
                s -= self.u1[i] * y[i + 1];
            }
            if i + 2 < n {
                s -= self.u2[i] * y[i + 2];
            }
            y[i] = s / self.u0[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::tridiagonal::tridiagonal_eigenvalues;
    use hesslab_data::rng::Rng;

    fn values(d: &[f64], e: &[f64]) -> Vec<f64> {
        let (mut d, mut e) = (d.to_vec(), e.to_vec());
        tridiagonal_eigenvalues(&mut d, &mut e).unwrap();
        d.sort_by(f64::total_cmp);
        d
    }

    /// Random, glued and Hessian-like tridiagonals: top, bottom and scattered vectors pass the
    /// module's own check (residual ≤ 1e-12‖T‖, orthogonality 1e-13), or None where a cluster
    /// defeats inverse iteration — never a wrong answer.
    #[test]
    fn inverse_iteration_vectors_pass_their_check() {
        let mut rng = Rng::new(21);
        let n = 300;
        let d: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let e: Vec<f64> = (0..n - 1).map(|_| rng.normal()).collect();
        let lam = values(&d, &e);
        for wanted in [(n - 20..n).collect::<Vec<_>>(), (0..20).collect(), (0..n).step_by(7).collect()] {
            let x = tridiagonal_eigenvectors(&d, &e, &lam, &wanted).expect("well separated: inverse iteration succeeds");
            assert_eq!(x.ncols(), wanted.len());
        }
        // Hessian-like: a few large diagonal entries, the rest ~0 — the bottom is one tight
        // cluster.
        let d: Vec<f64> = (0..n).map(|i| if i % 37 == 0 { 50.0 + i as f64 } else { 1e-9 * rng.normal() }).collect();
        let e: Vec<f64> = (0..n - 1).map(|_| 1e-6 * rng.normal()).collect();
        let lam = values(&d, &e);
        assert!(tridiagonal_eigenvectors(&d, &e, &lam, &(n - 8..n).collect::<Vec<_>>()).is_some(), "outliers");
        let _ = tridiagonal_eigenvectors(&d, &e, &lam, &(0..30).collect::<Vec<_>>());
        // A wrong eigenvalue is caught by the check.
        let mut off = lam.clone();
        off[n - 1] += 1e-6;
        assert!(tridiagonal_eigenvectors(&d, &e, &off, &[n - 1]).is_none());
    }
}
