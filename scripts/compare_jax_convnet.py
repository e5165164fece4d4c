"""The convnet measurements of `hesslab bench --only conv`, done the JAX way, on the same
network: S18 E4's 2×(conv 5×5, ReLU, max-pool 2) + 50 + 10 on 1×28×28 inputs (21 840
parameters), N = 1000 uniform random images, softmax cross-entropy, float64, CPU.
Gradient and jvp-of-grad HVP, wall-clock medians after a compiling warm-up.
Run by scripts/compare_jax.sh; not part of the test suite.
"""
import json

import jax
import jax.numpy as jnp
from jax import lax

from compare_jax import median_time  # same timing as the MLP comparison

jax.config.update("jax_enable_x64", True)

SHAPES = [(10, 1, 5, 5), (10,), (20, 10, 5, 5), (20,), (50, 320), (50,), (10, 50), (10,)]


def unflatten(w):
    out, o = [], 0
    for s in SHAPES:
        n = 1
        for d in s:
            n *= d
        out.append(w[o : o + n].reshape(s))
        o += n
    return out


def pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def logits(w, x):
    c1, b1, c2, b2, l1, lb1, l2, lb2 = unflatten(w)
    dn = ("NCHW", "OIHW", "NCHW")
    h = pool(jax.nn.relu(lax.conv_general_dilated(x, c1, (1, 1), "VALID", dimension_numbers=dn) + b1[None, :, None, None]))
    h = pool(jax.nn.relu(lax.conv_general_dilated(h, c2, (1, 1), "VALID", dimension_numbers=dn) + b2[None, :, None, None]))
    h = h.reshape(h.shape[0], -1)
    h = jax.nn.relu(h @ l1.T + lb1)
    return h @ l2.T + lb2


def main():
    kx, ky, kp = jax.random.split(jax.random.PRNGKey(3), 3)
    x = jax.random.uniform(kx, (1000, 1, 28, 28), dtype=jnp.float64)
    y = jax.random.randint(ky, (1000,), 0, 10)
    p = sum(int(jnp.prod(jnp.array(s))) for s in SHAPES)
    w = 0.1 * jax.random.normal(kp, (p,), dtype=jnp.float64)

    def loss(w):
        z = logits(w, x)
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - z[jnp.arange(1000), y])

    grad = jax.jit(jax.grad(loss))
    v = jnp.sin(jnp.arange(p, dtype=jnp.float64))
    hvp = jax.jit(lambda w, v: jax.jvp(jax.grad(loss), (w,), (v,))[1])
    jax.block_until_ready(grad(w))
    jax.block_until_ready(hvp(w, v))
    t_grad = median_time(lambda: grad(w), 10)
    t_hvp = median_time(lambda: hvp(w, v), 10)
    print(json.dumps({"jax": jax.__version__, "P": p, "gradient_ms": t_grad * 1e3, "hvp_ms": t_hvp * 1e3, "hvp_over_gradient": t_hvp / t_grad}, indent=2))


if __name__ == "__main__":
    main()
