"""PyTorch fixture for hesslab's transformer: nanoGPT's GPT (its model.py, trimmed to what a
forward pass needs: no dropout, no weight tying, float64), 2 layers, at nanoGPT's own
initialization; a batch of token sequences with the answer at the last position (as in
modular arithmetic); torch's loss, gradient and two Hessian-vector products (torch.func: jvp
of grad, forward over reverse).

    .venv-torch/bin/python scripts/gpt_fixtures.py [--check]

Writes tests/fixtures/torch_gpt.json (parameters in parameters() order with their names and
shapes, tokens, targets, loss, gradient, HVPs of v1[i] = sin(i + 1) and v2[i] = cos(3i) / 2);
tests/sequences.rs compares hesslab's numbers to 1e-10 without torch.
"""
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

torch.set_default_dtype(torch.float64)
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "torch_gpt.json"


# ---- nanoGPT's model.py (Karpathy), the classes a forward pass uses ----
class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                             .view(1, 1, config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        # nanoGPT's slow path (the flash path is the same function).
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # (nanoGPT ties lm_head to wte here; hesslab's GPT is untied.)
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))
# ---- end of nanoGPT's classes ----


class Config:
    vocab_size, n_layer, n_embd, n_head, block_size, bias = 11, 2, 8, 2, 6, True


def main():
    torch.manual_seed(0)
    net = GPT(Config())
    # nanoGPT's 0.02 initialization makes every layer nearly linear; scale it up so that
    # the attention and GELU curvature terms are not negligible in the test.
    with torch.no_grad():
        for n, p in net.named_parameters():
            if ".ln_" in n or "ln_f" in n:
                p.add_(0.1 * torch.randn_like(p))  # LayerNorm γ ≈ 1, β ≈ 0, not all equal
            else:
                p.mul_(10.0).add_(0.05 * torch.randn_like(p))
    names = [n for n, _ in net.named_parameters()]
    shapes = [list(p.shape) for p in net.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    tokens = torch.randint(0, Config.vocab_size, (16, 5))
    targets = torch.randint(0, Config.vocab_size, (16,))

    def loss(w):
        ps, o = {}, 0
        for n, s in zip(names, shapes):
            k = math.prod(s)
            ps[n] = w[o:o + k].reshape(s)
            o += k
        logits = torch.func.functional_call(net, ps, (tokens,))
        return F.cross_entropy(logits[:, -1, :], targets)  # the answer at the last position

    P = len(flat)
    i = torch.arange(P, dtype=torch.float64)
    vs = [torch.sin(i + 1), torch.cos(3 * i) / 2]
    g = torch.func.grad(loss)
    out = {
        "torch_version": torch.__version__,
        "config": {k: getattr(Config, k) for k in ["vocab_size", "n_layer", "n_embd", "n_head", "block_size"]},
        "names": names,
        "shapes": shapes,
        "params": flat.tolist(),
        "tokens": tokens.tolist(),
        "targets": targets.tolist(),
        "loss": float(loss(flat)),
        "grad": g(flat).tolist(),
        "hvps": [torch.func.jvp(g, (flat,), (v,))[1].tolist() for v in vs],
    }
    print(f"nanoGPT GPT: P = {P}, loss {out['loss']:.12g}")
    if "--check" in sys.argv:
        old = json.loads(OUT.read_text())
        d = max(abs(a - b) for a, b in zip(old["hvps"][0], out["hvps"][0])) / max(abs(b) for b in out["hvps"][0])
        print(f"committed fixture: HVP within {d:.2g} (relative to its largest entry)")
        sys.exit(0 if d < 1e-10 else 1)
    OUT.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
