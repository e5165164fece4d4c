"""The same measurements as `hesslab bench --only hvp --only dense`, done the JAX way
(google/spectral-density and most JAX Hessian code use jvp-of-grad), on the same networks:
W1 = 100→30→30→10 and W2 = 100→64→64→10, tanh or relu (argv[1], as `--activation` of the
bench), softmax cross-entropy, N = 1000, float64.

Timings are wall-clock medians (gradient, HVP) or best-of (dense Hessian) after a compiling
warm-up, like hesslab's bench. Run by scripts/compare_jax.sh; not part of the test suite.
"""
import json
import sys
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)


def init(sizes, key):
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, k1, k2 = jax.random.split(key, 3)
        bound = 1.0 / a**0.5
        params.append((jax.random.uniform(k1, (b, a), minval=-bound, maxval=bound), jax.random.uniform(k2, (b,), minval=-bound, maxval=bound)))
    return params


def flatten(params):
    return jnp.concatenate([jnp.concatenate([w.ravel(), b]) for w, b in params])


def unflatten(flat, sizes):
    out, i = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        w = flat[i : i + a * b].reshape(b, a)
        i += a * b
        out.append((w, flat[i : i + b]))
        i += b
    return out


def make_loss(sizes, x, y, act):
    def loss(flat):
        h = x
        layers = unflatten(flat, sizes)
        for j, (w, b) in enumerate(layers):
            h = h @ w.T + b
            if j < len(layers) - 1:
                h = act(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(logp[jnp.arange(x.shape[0]), y])

    return loss


def median_time(f, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def best_time(f, reps):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    activation = sys.argv[1] if len(sys.argv) > 1 else "tanh"
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[activation]
    results = {"jax": jax.__version__, "devices": str(jax.devices()), "activation": activation}
    for name, sizes in [("W1", [100, 30, 30, 10]), ("W2", [100, 64, 64, 10])]:
        key = jax.random.PRNGKey(3)
        kx, ky, kp = jax.random.split(key, 3)
        x = jax.random.normal(kx, (1000, sizes[0]))
        y = jax.random.randint(ky, (1000,), 0, sizes[-1])
        w = flatten(init(sizes, kp))
        p = w.shape[0]
        loss = make_loss(sizes, x, y, act)
        grad = jax.jit(jax.grad(loss))
        v = jnp.sin(jnp.arange(p, dtype=jnp.float64))
        hvp = jax.jit(lambda w, v: jax.jvp(jax.grad(loss), (w,), (v,))[1])
        jax.block_until_ready(grad(w))
        jax.block_until_ready(hvp(w, v))
        t_grad = median_time(lambda: grad(w), 20)
        t_hvp = median_time(lambda: hvp(w, v), 20)
        # Dense Hessian: jax.hessian (jacfwd of jacrev) needs P·N·width intermediates (41 GB
        # for W1), so columns come from a vmapped HVP over blocks of unit vectors, as hesslab
        # does; the block size that is fastest here is reported.
        dense = {}
        for block in (8, 64):
            cols = jax.jit(jax.vmap(lambda e: jax.jvp(jax.grad(loss), (w,), (e,))[1]))

            def full(block=block, cols=cols):
                out = []
                for s in range(0, p, block):
                    idx = jnp.arange(s, min(s + block, p))
                    out.append(cols(jax.nn.one_hot(idx, p, dtype=jnp.float64)))
                return jnp.concatenate(out)

            jax.block_until_ready(full())  # compile (two shapes: full and last block)
            dense[block] = best_time(full, 2)
        block = min(dense, key=dense.get)
        results[name] = {
            "P": int(p),
            "gradient_ms": t_grad * 1e3,
            "hvp_ms": t_hvp * 1e3,
            "hvp_over_gradient": t_hvp / t_grad,
            "dense_hessian_s": dense[block],
            "dense_hessian_block": block,
            "dense_hessian_s_by_block": dense,
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
