"""PyTorch fixtures for hesslab's tests: rebuild hesslab-trained graph networks in torch (the
README's container modules), and record torch's loss, gradient and full Hessian spectrum at the
trained parameters, float64.

    python scripts/torch_fixtures.py OUT_DIR NAME [--check]

OUT_DIR is where `hesslab run tests/fixtures/NAME.toml` wrote; tests/fixtures/torch_NAME.json
is written (committed, compared by tests/network_graphs.rs). With --check, compares instead.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

torch.set_default_dtype(torch.float64)


# ---- the README's rebuild of the `architecture` JSON (keep in step with README.md) ----
class Residual(torch.nn.Module):
    def __init__(self, body, shortcut):
        super().__init__(); self.body, self.shortcut = seq(body), seq(shortcut)
    def forward(self, x): return self.shortcut(x) + self.body(x)
class Graph(torch.nn.Module):
    def __init__(self, nodes):
        super().__init__(); self.nodes = nodes; self.m = torch.nn.ModuleList(module(n["module"]) for n in nodes)
    def forward(self, x):
        v = {"input": x}
        for n, m in zip(self.nodes, self.m): v[n["name"]] = m(*[v[i] for i in n["inputs"]])
        return v[self.nodes[-1]["name"]]
class Add(torch.nn.Module):
    def forward(self, *xs): return sum(xs[1:], xs[0])
class Concat(torch.nn.Module):
    def __init__(self, dim): super().__init__(); self.dim = dim
    def forward(self, *xs): return torch.cat(xs, dim=self.dim)
def module(m):
    m = dict(m); kind = m.pop("module")
    if kind == "Residual": return Residual(m["body"], m["shortcut"])
    if kind == "Graph": return Graph(m["nodes"])
    return {"Add": Add, "Concat": Concat, "GlobalAvgPool": GlobalAvgPool}.get(kind, getattr(torch.nn, kind, None))(**m)
def seq(ms): return torch.nn.Sequential(*map(module, ms))
def GlobalAvgPool(): return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
# ---- end of the README's code ----


def load(member: Path):
    t = pq.read_table(member / "train/model.parquet")
    meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
    arch = json.loads(meta["architecture"])
    net = seq(arch["modules"]).double()
    rows = list(zip(t.column("tensor").to_pylist(), t.column("values").to_pylist(), t.column("shape").to_pylist()))
    params = list(net.parameters())
    assert len(params) == len(rows), f"torch has {len(params)} tensors, the model {len(rows)}"
    for p, (name, v, s) in zip(params, rows):
        assert list(p.shape) == s, f"{name}: torch shape {list(p.shape)}, hesslab {s}"
        p.data = torch.tensor(v).reshape(s)
    d = pq.read_table(member / "data/dataset.parquet")
    train = np.array(d.column("split").to_pylist()) == "train"
    x = torch.tensor(np.array(d.column("x").to_pylist())[train]).reshape([-1] + arch["input_shape"])
    y = torch.tensor(np.array(d.column("y").to_pylist())[train])
    assert arch["loss"] == "cross_entropy"
    return net, x, y, float(meta["final_train_loss"]), [r[0] for r in rows]


def measure(net, x, y):
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(w):
        ps, o = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            ps[n] = w[o : o + k].reshape(s)
            o += k
        return torch.nn.functional.cross_entropy(torch.func.functional_call(net, ps, (x,)), y)

    value = float(loss(flat))
    grad = torch.func.grad(loss)(flat)
    # Columns of H by forward-over-reverse HVPs (torch.func.jvp of torch.func.grad), vmapped
    # over blocks of 64 directions: the whole torch.func.hessian at once needs P copies of
    # every activation.
    g = torch.func.grad(loss)
    hvp = torch.func.vmap(lambda v: torch.func.jvp(g, (flat,), (v,))[1])
    eye = torch.eye(len(flat))
    hess = torch.cat([hvp(eye[i : i + 64]) for i in range(0, len(flat), 64)]).T
    asym = float((hess - hess.T).abs().max() / hess.abs().max())
    ev = torch.linalg.eigvalsh((hess + hess.T) / 2).flip(0)
    return {"loss": value, "grad": grad.tolist(), "eigenvalues": ev.tolist(), "torch_symmetry_error": asym}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("name")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    a.fixture = f"tests/fixtures/torch_{a.name}.json"
    member = Path(a.out) / a.name / "main"
    net, x, y, recorded, tensor_names = load(member)
    m = measure(net, x, y)
    assert abs(m["loss"] - recorded) <= 1e-12 * abs(recorded), f"torch loss {m['loss']} vs hesslab's recorded {recorded}"
    ev = pq.read_table(member / "eigen/eigenvalues.parquet").column("eigenvalue").to_numpy()
    diff = float(np.abs(ev - np.array(m["eigenvalues"])).max() / abs(ev[0]))
    print(f"{a.name}: torch {torch.__version__}: loss {m['loss']:.15g} (hesslab {recorded:.15g}); P = {len(m['grad'])}; "
          f"every Hessian eigenvalue within {diff:.2g} × λ₁ of hesslab's (λ₁ = {ev[0]:.12g})")
    assert diff <= 1e-10, diff
    m["tensors"] = tensor_names
    m["torch_version"] = torch.__version__
    if a.check:
        old = json.loads(Path(a.fixture).read_text())
        d = max(abs(p - q) for p, q in zip(old["eigenvalues"], m["eigenvalues"])) / abs(m["eigenvalues"][0])
        print(f"fixture {a.fixture}: eigenvalues within {d:.2g} × λ₁ of this run")
        sys.exit(0 if d <= 1e-10 else 1)
    Path(a.fixture).write_text(json.dumps(m, separators=(",", ":")) + "\n")
    print(f"wrote {a.fixture} ({Path(a.fixture).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
