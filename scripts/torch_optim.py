"""PyTorch fixture for hesslab's optimizers: a small convnet (conv 3×3 → tanh → linear 8 → tanh →
linear 3, P = 449) on 24 random 1×6×6 images, trained from the same initial parameters for 50
full-batch steps by torch.optim's SGD (dampening, Nesterov, weight decay), Adam (and AMSGrad),
AdamW, RMSprop (plain; centered with momentum), Muon (+ AdamW for the vectors) and SGD under
each learning-rate schedule (LambdaLR with hesslab's formulas) and with gradient clipping;
float64. Muon's Newton–Schulz iteration runs in float64 here (torch.optim.Muon casts it to
bfloat16; the formula is the same).

    python scripts/torch_optim.py [--check]

Writes tests/fixtures/torch_optim.json (committed; tests/optimizers.rs compares hesslab's
parameters after 50 steps with it, no torch needed). --check compares a fresh run instead.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim import _muon

torch.set_default_dtype(torch.float64)
FIXTURE = Path("tests/fixtures/torch_optim.json")
STEPS, N = 50, 24
LAYERS = [{"conv2d": {"out_channels": 3, "kernel_size": 3}}, "tanh", "flatten", {"linear": 8}, "tanh", {"linear": 3}]


def newton_schulz_f64(grad, ns_coefficients, ns_steps, eps):
    # torch.optim._muon._zeropower_via_newtonschulz without the bfloat16 cast.
    a, b, c = ns_coefficients
    x = grad.clone()
    if grad.size(0) > grad.size(1):
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, update, x, beta=a)
    if grad.size(0) > grad.size(1):
        x = x.T
    return x


_muon._zeropower_via_newtonschulz = newton_schulz_f64


class Net(torch.nn.Module):
    """hesslab's layers above; the conv kernel is a [3, 9] matrix (Muon takes matrices only),
    viewed as [3, 1, 3, 3]: the same numbers in the same order."""

    def __init__(self):
        super().__init__()
        conv = torch.nn.Conv2d(1, 3, 3)
        self.conv_w = torch.nn.Parameter(conv.weight.detach().reshape(3, 9).clone())
        self.conv_b = torch.nn.Parameter(conv.bias.detach().clone())
        self.l1 = torch.nn.Linear(48, 8)
        self.l2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        h = torch.tanh(F.conv2d(x, self.conv_w.view(3, 1, 3, 3), self.conv_b)).flatten(1)
        return self.l2(torch.tanh(self.l1(h)))


def cosine(m, p):
    return m + (1 - m) * (1 + math.cos(math.pi * p)) / 2


def schedule_fn(s):
    """hesslab's schedule formulas (crates/model/src/optim/schedule.rs) as LambdaLR lambdas."""
    if s == "constant":
        return lambda t: 1.0
    (kind, a), = s.items()
    total = a.get("t_max", 0) or STEPS
    if kind == "step":
        return lambda t: a.get("gamma", 0.1) ** (t // a["step_size"])
    if kind == "cosine":
        return lambda t: cosine(a.get("min_factor", 0.0), min(t, total) / total)
    w, m = a["warmup"], a.get("min_factor", 0.0)

    def warm(t):
        if t < w:
            return (t + 1) / w
        p = min(1.0, (t - w) / max(1.0, total - w))
        return cosine(m, p) if kind == "warmup_cosine" else 1 - (1 - m) * p

    return warm


def torch_optimizer(net, name, args, lr):
    ps = list(net.parameters())
    if name == "sgd":
        return [torch.optim.SGD(ps, lr=lr, **args)]
    if name == "adam":
        return [torch.optim.Adam(ps, lr=lr, **args)]
    if name == "adamw":
        return [torch.optim.AdamW(ps, lr=lr, **args)]
    if name == "rmsprop":
        return [torch.optim.RMSprop(ps, lr=lr, **args)]
    if name == "muon":
        args = dict(args)
        aw = dict(args.pop("adamw", {}))  # a copy: the case is written to the fixture as given
        mats = [p for p in ps if p.ndim >= 2]
        rest = [p for p in ps if p.ndim < 2]
        return [torch.optim.Muon(mats, lr=lr, **args), torch.optim.AdamW(rest, lr=aw.pop("lr", lr) or lr, **aw)]
    raise ValueError(name)


CASES = [
    ("sgd_dampening_wd", {"lr": 0.1, "optimizer": {"sgd": {"momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3}}}),
    ("sgd_nesterov", {"lr": 0.1, "optimizer": {"sgd": {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}}}),
    ("adam", {"lr": 0.01, "optimizer": "adam"}),
    ("adam_amsgrad_wd", {"lr": 0.01, "optimizer": {"adam": {"betas": [0.8, 0.99], "weight_decay": 1e-3, "amsgrad": True}}}),
    ("adamw", {"lr": 0.01, "optimizer": {"adamw": {"weight_decay": 0.05}}}),
    ("rmsprop", {"lr": 0.01, "optimizer": "rmsprop"}),
    ("rmsprop_centered_momentum", {"lr": 0.005, "optimizer": {"rmsprop": {"centered": True, "momentum": 0.5, "weight_decay": 1e-3}}}),
    ("muon", {"lr": 0.02, "optimizer": "muon"}),
    ("muon_plain_momentum", {"lr": 0.02, "optimizer": {"muon": {"nesterov": False, "adjust_lr_fn": "match_rms_adamw", "adamw": {"lr": 0.005}}}}),
    ("schedule_step", {"lr": 0.1, "momentum": 0.9, "schedule": {"step": {"step_size": 10, "gamma": 0.5}}}),
    ("schedule_cosine", {"lr": 0.1, "momentum": 0.9, "schedule": {"cosine": {}}}),
    ("schedule_warmup_cosine", {"lr": 0.1, "momentum": 0.9, "schedule": {"warmup_cosine": {"warmup": 10, "min_factor": 0.05}}}),
    ("schedule_warmup_linear", {"lr": 0.01, "optimizer": "adam", "schedule": {"warmup_linear": {"warmup": 5, "t_max": 40, "min_factor": 0.1}}}),
    ("grad_clip_adam", {"lr": 0.05, "optimizer": "adam", "grad_clip": 0.5}),
]


def run_case(init, x, y, cfg):
    net = Net()
    net.load_state_dict(init)
    opt = cfg.get("optimizer", "sgd")
    name, args = (opt, {}) if isinstance(opt, str) else next(iter(opt.items()))
    if name == "sgd" and cfg.get("momentum"):
        args = {**args, "momentum": cfg["momentum"]}
    opts = torch_optimizer(net, name, args, cfg["lr"])
    f = schedule_fn(cfg.get("schedule", "constant"))
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, f) for o in opts]
    losses = []
    for _ in range(STEPS):
        for o in opts:
            o.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        losses.append(float(loss))
        if cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["grad_clip"])
        for o in opts:
            o.step()
        for s in scheds:
            s.step()
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    return flat.tolist(), losses


def run():
    torch.manual_seed(3)
    net = Net()
    init = {k: v.clone() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(4)
    x = torch.randn(N, 1, 6, 6, generator=g)
    y = torch.randint(0, 3, (N,), generator=g)
    out = {
        "layers": LAYERS,
        "input_shape": [1, 6, 6],
        "steps": STEPS,
        "initial": torch.cat([p.detach().reshape(-1) for p in net.parameters()]).tolist(),
        "x": x.reshape(N, -1).tolist(),
        "y": y.tolist(),
        "cases": [],
        "torch_version": torch.__version__,
    }
    for name, cfg in CASES:
        params, losses = run_case(init, x, y, cfg)
        out["cases"].append({"name": name, "train": cfg, "params": params, "losses": losses})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    m = run()
    if a.check:
        old = json.loads(FIXTURE.read_text())
        d = max(abs(p - q) / max(1.0, abs(q)) for c, o in zip(m["cases"], old["cases"]) for p, q in zip(c["params"], o["params"]))
        print(f"{FIXTURE}: parameters within {d:.2g} of this run (torch {torch.__version__})")
        sys.exit(0 if d <= 1e-10 else 1)
    FIXTURE.write_text(json.dumps(m, separators=(",", ":")) + "\n")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes): {len(m['cases'])} cases of {STEPS} steps")
    for c in m["cases"]:
        print(f"  {c['name']:28} loss {c['losses'][0]:.4f} → {c['losses'][-1]:.4f}")


if __name__ == "__main__":
    main()
