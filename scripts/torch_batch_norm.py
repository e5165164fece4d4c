"""PyTorch fixture for hesslab's BatchNorm: a small BN convnet (BatchNorm2d in a residual block,
global average pooling, BatchNorm1d on the pooled features), its state_dict (parameters and
running statistics), a few inputs and labels, and torch's float64 loss, gradient and
Hessian-vector product (torch.func.jvp of torch.func.grad) for a fixed vector in both modes:
`eval` (net.eval(): running statistics) and `batch` (train-mode batch statistics, the
derivatives through them); then the state_dict after 20 full-batch momentum-SGD steps in
train mode (running statistics updated by every step's forward pass).

    python scripts/torch_batch_norm.py [--check]

Writes tests/fixtures/torch_batch_norm.json (committed; tests/batch_norm.rs compares hesslab
against it without torch). With --check, compares a fresh run with the committed file.
"""
import argparse
import copy
import json
import sys
from pathlib import Path

import torch

torch.set_default_dtype(torch.float64)
sys.path.insert(0, str(Path(__file__).parent))
from torch_fixtures import seq  # the README's rebuild of the architecture JSON  # noqa: E402

FIXTURE = Path("tests/fixtures/torch_batch_norm.json")
conv = lambda i, o, bias=True: {"module": "Conv2d", "in_channels": i, "out_channels": o, "kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1], "bias": bias}
bn2 = lambda c, eps=1e-5: {"module": "BatchNorm2d", "num_features": c, "eps": eps, "momentum": 0.1, "affine": True}
ARCH = {
    "input_shape": [2, 6, 6],
    "loss": "cross_entropy",
    "modules": [
        conv(2, 3), bn2(3), {"module": "ReLU"},
        {"module": "Residual", "body": [conv(3, 3), bn2(3), {"module": "Tanh"}, conv(3, 3, bias=False), bn2(3, 1e-3)], "shortcut": []},
        {"module": "ReLU"}, {"module": "GlobalAvgPool"},
        {"module": "BatchNorm1d", "num_features": 3, "eps": 1e-5, "momentum": 0.2, "affine": True},
        {"module": "Linear", "in_features": 3, "out_features": 3, "bias": True},
    ],
}
N, LR, MOMENTUM, STEPS = 16, 0.05, 0.9, 20


def setup():
    torch.manual_seed(7)
    net = seq(ARCH["modules"]).double()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.5 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.3 + torch.rand(b.shape, generator=g))
            elif name.endswith("num_batches_tracked"):
                b.fill_(3)
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    x = torch.randn([N] + ARCH["input_shape"], generator=g)
    y = torch.randint(0, 3, (N,), generator=g)
    return net, x, y


def measure(net, x, y, v, train):
    net = copy.deepcopy(net)
    if train:
        # Batch statistics without the in-place running update torch.func cannot trace.
        torch.func.replace_all_batch_norm_modules_(net)
        net.train()
    else:
        net.eval()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(w):
        ps, o = {}, 0
        for n, s in zip(names, shapes):
            k = s.numel()
            ps[n] = w[o : o + k].reshape(s)
            o += k
        return torch.nn.functional.cross_entropy(torch.func.functional_call(net, ps, (x,)), y)

    g = torch.func.grad(loss)
    hv = torch.func.jvp(g, (flat,), (v,))[1]
    return {"loss": float(loss(flat)), "grad": g(flat).tolist(), "hvp": hv.tolist()}


def state(net):
    return [[k, list(t.shape), t.reshape(-1).double().tolist()] for k, t in net.state_dict().items()]


def run():
    net, x, y = setup()
    p = sum(t.numel() for t in net.parameters())
    v = torch.randn(p, generator=torch.Generator().manual_seed(5))
    out = {
        "architecture": ARCH,
        "state_dict": state(net),
        "x": x.reshape(N, -1).tolist(),
        "y": y.tolist(),
        "v": v.tolist(),
        "eval": measure(net, x, y, v, False),
        "batch": measure(net, x, y, v, True),
        "sgd": {"lr": LR, "momentum": MOMENTUM, "steps": STEPS},
        "torch_version": torch.__version__,
    }
    trained = copy.deepcopy(net).train()
    opt = torch.optim.SGD(trained.parameters(), lr=LR, momentum=MOMENTUM)
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(trained(x), y).backward()
        opt.step()
    out["sgd"]["state_dict"] = state(trained)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    m = run()
    if a.check:
        old = json.loads(FIXTURE.read_text())
        d = max(abs(p - q) / max(1.0, abs(q)) for mode in ("eval", "batch") for key in ("grad", "hvp") for p, q in zip(old[mode][key], m[mode][key]))
        print(f"{FIXTURE}: gradients and HVPs within {d:.2g} of this run (torch {torch.__version__})")
        sys.exit(0 if d <= 1e-10 else 1)
    FIXTURE.write_text(json.dumps(m, separators=(",", ":")) + "\n")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes): eval loss {m['eval']['loss']:.15g}, batch loss {m['batch']['loss']:.15g}")


if __name__ == "__main__":
    main()
