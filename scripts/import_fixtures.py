"""Fixtures for `import_model`: networks trained in PyTorch, exported with export_torch.py, and
PyTorch's own loss, gradient and top-10 Hessian eigenvalues of them, float64.

    .venv-torch/bin/python scripts/import_fixtures.py [--check] [--roundtrip OUT_DIR]

Writes tests/fixtures/import/: digits.npz (300 vendored 8×8 digits, float32, a split), for each
of mlp, lenet, resnet_bn the exported NAME.safetensors + NAME.json, and expected.json. The
networks train in float32 (the MLP in float64) with Adam in torch; the expected values are
computed in float64 from the saved weights (widened, as hesslab widens them), BatchNorm in eval
mode, on the training split: the loss, the gradient by tensor name, the top-10 eigenvalues by
scipy's eigsh on torch.func HVPs (forward over reverse), and for the MLP every eigenvalue of the
dense torch.autograd.functional.hessian. tests/import_model.rs compares without torch.

--onnx: write NAME.onnx of each network from its committed NAME.safetensors (export_onnx: the
TorchScript exporter, BatchNorm not folded); the expected values are the same weights'.

--gpt: nanoGPT's GPT (scripts/gpt_fixtures.py's classes, 2 layers) read at the last position,
trained in torch on modular addition mod 7 (tokens.npz), exported and measured like the others
(the `gpt` entry of expected.json).

--roundtrip OUT_DIR: OUT_DIR holds `hesslab run tests/fixtures/resnet_digits.toml`'s outputs;
its trained model is loaded into torch with the README's rebuild, saved with
safetensors.torch.save_file, and committed with its hesslab model.parquet (roundtrip_*).
"""
import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_torch import export_data, export_model, export_onnx  # noqa: E402

F = nn.functional
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "import"


def digits():
    rows = np.loadtxt(gzip.open(ROOT / "data/optdigits/digits.csv.gz", "rt"), delimiter=",")[:300]
    x = (rows[:, :64] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = rows[:, 64].astype(np.int64)
    split = np.zeros(len(y), dtype=bool)
    split[::5] = True
    return x, y, split


class LeNet(nn.Module):
    """A class with a functional forward: fx traces it, export_torch records each module's path."""
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 12, 3, padding=1)
        self.fc1 = nn.Linear(48, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """A small ResNet (BatchNorm, identity and projection shortcuts, global average pooling)."""
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 12, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1))


def networks():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
    return {"mlp": (mlp, torch.float64, 300), "lenet": (LeNet(), torch.float32, 300), "resnet_bn": (ResNet(), torch.float32, 150)}


def train(net, dtype, steps, x, y):
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    net.train()
    xb, yb = torch.tensor(x, dtype=dtype), torch.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
    net.eval()
    return float(loss)


def measure(net, stem, x, y, tokens=False):
    """PyTorch's numbers at the saved weights, widened to float64, eval mode."""
    from safetensors.torch import load_file
    state = {k: (v.double() if v.is_floating_point() else v) for k, v in load_file(str(stem) + ".safetensors").items()}
    net = net.double().eval()
    missing, unexpected = net.load_state_dict(state, strict=False)
    # Only nanoGPT's causal masks are left out of the exported state_dict (recomputed).
    assert not unexpected and all(k.endswith("attn.bias") for k in missing), (missing, unexpected)
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    buffers = dict(net.named_buffers())
    flat = torch.cat([state[n].reshape(-1) for n in names])
    xb, yb = (torch.tensor(x) if tokens else torch.tensor(x, dtype=torch.float64)), torch.tensor(y)

    def loss(w):
        ps, o = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            ps[n] = w[o:o + k].reshape(s)
            o += k
        return F.cross_entropy(torch.func.functional_call(net, {**ps, **buffers}, (xb,)), yb)

    value = float(loss(flat))
    grad = torch.func.grad(loss)(flat)
    g = torch.func.grad(loss)
    hvp = lambda v: torch.func.jvp(g, (flat,), (torch.as_tensor(v, dtype=torch.float64).reshape(-1),))[1].numpy()
    P = len(flat)
    op = sla.LinearOperator((P, P), matvec=hvp, dtype=np.float64)
    top = np.sort(sla.eigsh(op, k=10, which="LA", tol=1e-14, ncv=60)[0])[::-1]
    out = {"loss": value, "params": P, "top10": top.tolist(), "grad": {}}
    o = 0
    for n, s in zip(names, shapes):
        k = int(np.prod(s))
        out["grad"][n] = grad[o:o + k].tolist()
        o += k
    v = torch.linspace(-1, 1, P, dtype=torch.float64)
    out["hvp_linspace_norm"] = float(np.linalg.norm(hvp(v)))
    if P <= 3000:
        H = torch.autograd.functional.hessian(loss, flat)
        out["dense_eigenvalues_top10"] = torch.linalg.eigvalsh((H + H.T) / 2).flip(0)[:10].tolist()
        d = max(abs(a - b) for a, b in zip(out["dense_eigenvalues_top10"], top)) / abs(top[0])
        assert d < 1e-10, f"eigsh vs dense: {d}"
    return out


def gpt(out):
    """nanoGPT's GPT trained in torch on modular addition mod 7, read at the last position."""
    import gpt_fixtures as g
    torch.set_default_dtype(torch.float32)  # gpt_fixtures works in float64; train as users do

    class Config:
        vocab_size, n_layer, n_embd, n_head, block_size, bias = 9, 2, 16, 2, 4, True

    class LastToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.gpt = g.GPT(Config())

        def forward(self, idx):
            return self.gpt(idx)[:, -1, :]

    p = 7
    x = np.array([[a, p, b, p + 1] for a in range(p) for b in range(p)], dtype=np.int64)
    y = np.array([(a + b) % p for a in range(p) for b in range(p)], dtype=np.int64)
    split = np.zeros(len(y), dtype=bool)
    split[::3] = True
    export_data(out / "tokens.npz", x=x, y=y, split=split)
    torch.manual_seed(0)
    net = LastToken()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.1)
    xb, yb = torch.tensor(x[~split]), torch.tensor(y[~split])
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(xb), yb).backward()
        opt.step()
    net.eval()
    arch = export_model(net, xb[:2], out / "gpt")
    m = measure(net, out / "gpt", x[~split], y[~split], tokens=True)
    m["dtype"] = "float32"
    m["graph"] = arch["modules"][0]["module"] == "Graph"
    path = out / "expected.json"
    expected = json.loads(path.read_text())
    expected["gpt"] = m
    path.write_text(json.dumps(expected, separators=(",", ":")) + "\n")
    print(f"gpt: P = {m['params']}, loss {m['loss']:.6g}, λ1..3 = {m['top10'][:3]}")


def roundtrip(out_dir):
    """A hesslab-trained model through torch and back: the README's rebuild, save_file."""
    from safetensors.torch import save_file
    sys.path.insert(0, str(ROOT / "scripts"))
    from torch_fixtures import load  # the README's rebuild of the architecture JSON
    member = Path(out_dir) / "resnet_digits" / "main"
    net, *_ = load(member)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(OUT / "roundtrip_resnet_digits.safetensors"))
    import pyarrow.parquet as pq
    meta = pq.read_table(member / "train/model.parquet").schema.metadata
    (OUT / "roundtrip_resnet_digits.json").write_text(meta[b"architecture"].decode() + "\n")
    shutil.copy(member / "train/model.parquet", OUT / "roundtrip_resnet_digits.model.parquet")
    print("round trip: wrote", ", ".join(sorted(p.name for p in OUT.glob("roundtrip_*"))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="compare with the committed expected.json instead of writing")
    ap.add_argument("--roundtrip", metavar="OUT_DIR")
    ap.add_argument("--onnx", action="store_true")
    ap.add_argument("--gpt", action="store_true")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if a.roundtrip:
        roundtrip(a.roundtrip)
        return
    if a.gpt:
        gpt(OUT)
        return
    if a.onnx:
        from safetensors.torch import load_file
        x, _, _ = digits()
        for name, (net, dtype, _) in networks().items():
            net = net.to(dtype)
            net.load_state_dict(load_file(str(OUT / f"{name}.safetensors")))
            export_onnx(net, torch.tensor(x[:2], dtype=dtype), OUT / f"{name}.onnx")
            print(f"wrote {name}.onnx ({(OUT / f'{name}.onnx').stat().st_size} bytes)")
        return
    torch.set_num_threads(2)
    # --check trains and exports again into a scratch directory, never over the committed files.
    import tempfile
    out = Path(tempfile.mkdtemp()) if a.check else OUT
    x, y, split = digits()
    export_data(out / "digits.npz", x=x, y=y, split=split)
    train_x, train_y = x[~split], y[~split]
    expected = {"torch_version": torch.__version__}
    for name, (net, dtype, steps) in networks().items():
        net = net.to(dtype)
        final = train(net, dtype, steps, train_x, train_y)
        arch = export_model(net, torch.tensor(x[:2], dtype=dtype), out / name)
        export_onnx(net, torch.tensor(x[:2], dtype=dtype), out / f"{name}.onnx")
        m = measure(net, out / name, train_x, train_y)
        m["train_loss_in_torch"] = final
        m["dtype"] = str(dtype).removeprefix("torch.")
        m["graph"] = arch["modules"][0]["module"] == "Graph"
        expected[name] = m
        print(f"{name}: P = {m['params']}, {m['dtype']}, loss {m['loss']:.6g}, λ1..3 = {m['top10'][:3]}")
    path = OUT / "expected.json"
    if a.check:
        old = json.loads(path.read_text())
        worst = max(abs(p - q) / abs(old[n]["top10"][0]) for n in ("mlp", "lenet", "resnet_bn")
                    for p, q in zip(old[n]["top10"], expected[n]["top10"]))
        print(f"top-10 within {worst:.2g} × λ1 of the committed fixture")
        sys.exit(0 if worst <= 1e-9 else 1)
    path.write_text(json.dumps(expected, separators=(",", ":")) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes in all)")


if __name__ == "__main__":
    main()
