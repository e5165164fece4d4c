"""Dense symmetric eigenvalues on the matrices `hesslab bench --only eigen` uses (same hash,
same values): torch.linalg.eigvalsh (MKL), numpy.linalg.eigvalsh and scipy.linalg.eigh with
the evd and evr drivers (OpenBLAS), and, with --vectors, every eigenvector. Thread count from
the environment (OMP/MKL/OPENBLAS_NUM_THREADS); the caller sets them. Not part of CI."""
import sys
import time

import numpy as np
import scipy.linalg
import torch


def matrix(n):
    """hesslab bench's symmetric test matrix: a 64-bit hash of (max(i,j), min(i,j))."""
    i = np.arange(n, dtype=np.uint64)[:, None]
    j = np.arange(n, dtype=np.uint64)[None, :]
    hi, lo = np.maximum(i, j), np.minimum(i, j)
    with np.errstate(over="ignore"):
        h = (hi * np.uint64(0x9E3779B97F4A7C15)) ^ (lo * np.uint64(0xC2B2AE3D27D4EB4F))
        h = h * np.uint64(0x165667B19E3779F9)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) - 0.5


def timed(f):
    t = time.perf_counter()
    r = f()
    return time.perf_counter() - t, r


def main():
    vectors = "--vectors" in sys.argv
    sizes = [int(a) for a in sys.argv[1:] if a.isdigit()]
    threads = torch.get_num_threads()
    for n in sizes:
        a = matrix(n)
        ta = torch.from_numpy(a)
        t_mm, _ = timed(lambda: ta @ ta)
        t_torch, w = timed(lambda: torch.linalg.eigvalsh(ta))
        t_np, _ = timed(lambda: np.linalg.eigvalsh(a))
        t_evr, _ = timed(lambda: scipy.linalg.eigh(a, eigvals_only=True, driver="evr", overwrite_a=False, check_finite=False))
        print(
            f"n={n} threads={threads}: torch/MKL eigvalsh {t_torch:.2f} s (= {t_torch / t_mm:.2f}× MKL's {n}² product, {t_mm:.2f} s); "
            f"numpy/OpenBLAS eigvalsh {t_np:.2f} s; scipy evr {t_evr:.2f} s; λ₁ = {float(w[-1]):.6f}",
            flush=True,
        )
        if vectors:
            t_vec, _ = timed(lambda: torch.linalg.eigh(ta))
            print(f"n={n} threads={threads}: torch/MKL eigh (every eigenvector) {t_vec:.2f} s", flush=True)


if __name__ == "__main__":
    main()
