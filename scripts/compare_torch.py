"""hesslab vs PyTorch on the ResNet of pipelines/resnet_fashion.toml: the same network (from the
`architecture` JSON hesslab prints), N uniform random 1×28×28 images, softmax cross-entropy,
float64, CPU, the same number of threads. PyTorch's Hessian-vector product two ways — double
backward (torch.autograd.grad with create_graph) and torch.func (jvp of grad) — in both
BatchNorm modes: eval (running statistics) and batch (train-mode batch statistics, through
torch.func.replace_all_batch_norm_modules_ for torch.func). A torch HVP does its forward and
backward passes each time, so it is compared with hesslab's one-off product (passes and
product); hesslab's operator product (cached passes, what a Lanczos step costs) is listed too.
Best of 5 after a warm-up, like `hesslab bench`.

    hesslab bench --only resnet | python scripts/compare_torch.py

Run by scripts/compare_torch.sh (which installs torch into .venv-torch); not part of CI.
"""
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from torch_fixtures import seq  # noqa: E402  the README's rebuild of the architecture JSON

torch.set_default_dtype(torch.float64)


def best(f, reps=5):
    f()
    out = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out = min(out, time.perf_counter() - t0)
    return out


def main():
    line = next(l for l in sys.stdin if l.startswith('{"resnet"'))
    h = json.loads(line)["resnet"]
    torch.set_num_threads(h["threads"])
    arch, n = h["architecture"], h["samples"]
    torch.manual_seed(0)
    net = seq(arch["modules"])
    x = torch.rand([n] + arch["input_shape"])
    y = torch.randint(0, 10, (n,))
    params = list(net.parameters())
    p = sum(t.numel() for t in params)
    assert p == h["params"], (p, h["params"])
    v = torch.sin(torch.arange(p, dtype=torch.float64))
    vs = list(torch.split(v, [t.numel() for t in params]))
    vs = [a.reshape(t.shape) for a, t in zip(vs, params)]
    ce = torch.nn.functional.cross_entropy

    def double_backward(model):
        ps = list(model.parameters())
        g = torch.autograd.grad(ce(model(x), y), ps, create_graph=True)
        return torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, vs)), ps)

    def gradient(model):
        return torch.autograd.grad(ce(model(x), y), list(model.parameters()))

    def func_hvp(model):
        names = [k for k, _ in model.named_parameters()]
        shapes = [t.shape for t in model.parameters()]
        flat = torch.cat([t.detach().reshape(-1) for t in model.parameters()])

        def loss(w):
            ps, o = {}, 0
            for k, s in zip(names, shapes):
                ps[k] = w[o : o + s.numel()].reshape(s)
                o += s.numel()
            return ce(torch.func.functional_call(model, ps, (x,)), y)

        return lambda: torch.func.jvp(torch.func.grad(loss), (flat,), (v,))[1]

    eval_net = copy.deepcopy(net).eval()
    batch_net = copy.deepcopy(net)
    torch.func.replace_all_batch_norm_modules_(batch_net)
    batch_net.train()
    rows = [
        ("gradient (eval)", best(lambda: gradient(eval_net)), h["gradient_s"]),
        ("HVP eval, double backward", best(lambda: double_backward(eval_net)), h["hvp_once_eval_s"]),
        ("HVP eval, torch.func", best(func_hvp(eval_net)), h["hvp_once_eval_s"]),
        ("HVP batch, double backward", best(lambda: double_backward(batch_net)), h["hvp_once_batch_s"]),
        ("HVP batch, torch.func", best(func_hvp(batch_net)), h["hvp_once_batch_s"]),
    ]
    print(f"ResNet P = {p}, N = {n}, {h['threads']} threads, float64; torch {torch.__version__}")
    print(f"{'':30} {'torch ms':>10} {'hesslab ms':>11} {'torch/hesslab':>14}")
    for name, t, ours in rows:
        print(f"{name:30} {t * 1e3:10.1f} {ours * 1e3:11.1f} {t / ours:14.2f}")
    print(f"hesslab operator HVP (cached passes): eval {h['hvp_eval_s'] * 1e3:.1f} ms, batch {h['hvp_batch_s'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
