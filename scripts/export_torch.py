"""Export a PyTorch network and its data as the files hesslab reads.

    import sys; sys.path.insert(0, "path/to/hesslab/scripts")
    from export_torch import export_model, export_data

    export_model(net, example_input, "out/net")   # writes out/net.safetensors and out/net.json
    export_onnx(net, example_input, "out/net.onnx")  # or an ONNX graph (onnx = "out/net.onnx")
    export_data("out/data.npz", loader)             # a DataLoader, or x=..., y=..., split=...

and in a pipeline:

    [stages.data]
    kind = "tensors"
    path = "out/data.npz"
    [stages.model]
    kind = "import_model"
    weights = "out/net.safetensors"
    architecture = "out/net.json"

`export_model` traces the network with torch.fx (so a class with its own `forward` works, not
only nn.Sequential), maps every call onto hesslab's layers and writes

- `NAME.safetensors`: `net.state_dict()` as it is (float32 stays float32; hesslab widens it to
  float64 exactly and records that), BatchNorm running statistics included;
- `NAME.json`: the architecture, `{"modules": [...], "input_shape": [...], "loss": ...}`, the
  module tree hesslab writes itself; each module entry carries its `path` in `net` ("fc1",
  "layer1.0.conv1"), under which its tensors are in the state_dict. A network that branches
  (residual additions, concatenations) is one `Graph` of named nodes.

Anything hesslab does not compute exactly as PyTorch does is refused here with the call and the
supported set (dilated or grouped convolutions, padded pooling, functional layers with weights
of their own, in-place tricks fx cannot see), rather than exported as a different network.
Needs torch and safetensors (numpy for export_data); not a dependency of hesslab.
"""
import json
import operator
from pathlib import Path

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

F = nn.functional

ACTIVATIONS = {
    nn.ReLU: "ReLU", nn.Tanh: "Tanh", nn.Sigmoid: "Sigmoid", nn.Identity: "Identity", nn.SiLU: "SiLU",
    nn.Flatten: "Flatten",
}
FUNCTIONS = {
    torch.relu: "ReLU", F.relu: "ReLU", torch.tanh: "Tanh", torch.sigmoid: "Sigmoid", F.silu: "SiLU",
    "relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid",
}
SUPPORTED = ("Linear, Conv2d, BatchNorm1d/2d (eval), LayerNorm, ReLU, Tanh, Sigmoid, SiLU, GELU, ELU, LeakyReLU, "
             "Softplus, Identity, Dropout, Flatten, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), +, torch.cat(dim=1), "
             "flatten/view/reshape to (N, -1)")


class Unsupported(ValueError):
    pass


def pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def module_entry(m, path, shape_in):
    """hesslab's entry for the leaf module `m` (at `path` in the network)."""
    def refuse(why):
        raise Unsupported(f"module `{path}` ({type(m).__name__}): {why}; supported: {SUPPORTED}")
    for cls, name in ACTIVATIONS.items():
        if type(m) is cls:
            if cls is nn.Flatten and (m.start_dim, m.end_dim) != (1, -1):
                refuse("only Flatten(start_dim=1, end_dim=-1)")
            return {"module": name}
    if isinstance(m, nn.Embedding):
        if m.padding_idx is not None or m.max_norm is not None:
            refuse("only Embedding without padding_idx and max_norm")
        return {"module": "Embedding", "num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim}
    if isinstance(m, nn.Linear):
        return {"module": "Linear", "in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}
    if isinstance(m, nn.Conv2d):
        if m.groups != 1 or pair(m.dilation) != [1, 1] or m.padding_mode != "zeros" or isinstance(m.padding, str):
            refuse("only groups = 1, dilation = 1, zero padding given as numbers")
        return {"module": "Conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
                "kernel_size": pair(m.kernel_size), "stride": pair(m.stride), "padding": pair(m.padding), "bias": m.bias is not None}
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if m.momentum is None or not m.track_running_stats:
            refuse("only momentum given as a number and track_running_stats = True")
        return {"module": type(m).__name__, "num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine}
    if isinstance(m, nn.LayerNorm):
        return {"module": "LayerNorm", "normalized_shape": list(m.normalized_shape), "eps": m.eps,
                "elementwise_affine": m.elementwise_affine}
    if isinstance(m, nn.GELU):
        return {"module": "GELU", "approximate": m.approximate}
    if isinstance(m, nn.ELU):
        if m.alpha != 1.0:
            refuse("only alpha = 1")
        return {"module": "ELU", "alpha": 1.0}
    if isinstance(m, nn.LeakyReLU):
        return {"module": "LeakyReLU", "negative_slope": m.negative_slope}
    if isinstance(m, nn.Softplus):
        if (m.beta, m.threshold) != (1.0, 20.0):
            refuse("only beta = 1, threshold = 20")
        return {"module": "Softplus", "beta": 1.0, "threshold": 20.0}
    if isinstance(m, nn.Dropout):
        return {"module": "Dropout", "p": m.p}
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        if pair(m.padding) != [0, 0] or m.ceil_mode or getattr(m, "dilation", 1) not in (1, (1, 1)):
            refuse("only padding = 0, dilation = 1, ceil_mode = False")
        return {"module": type(m).__name__, "kernel_size": pair(m.kernel_size),
                "stride": pair(m.stride if m.stride is not None else m.kernel_size)}
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if pair(m.output_size) != [1, 1]:
            refuse("only output_size = 1")
        return global_pool(shape_in)
    refuse("not a layer hesslab has")


def global_pool(shape_in):
    # AdaptiveAvgPool2d(1) on C×H×W is AvgPool2d over the whole H×W window: exactly the same sums.
    h, w = shape_in[-2], shape_in[-1]
    return {"module": "AvgPool2d", "kernel_size": [h, w], "stride": [h, w]}


def function_entry(node, shape_in):
    t, args, kw = node.target, node.args, node.kwargs
    where = f"call `{node.format_node()}`"
    if t in FUNCTIONS or (node.op == "call_method" and t in FUNCTIONS):
        return {"module": FUNCTIONS[t]}, [args[0]]
    if t in (operator.add, torch.add) or (node.op == "call_method" and t == "add"):
        if len(args) != 2 or not all(isinstance(a, torch.fx.Node) for a in args) or "alpha" in kw:
            raise Unsupported(f"{where}: only the sum of two tensors is supported")
        return {"module": "Add"}, list(args)
    if t is torch.cat:
        dim = kw.get("dim", args[1] if len(args) > 1 else 0)
        if dim != 1:
            raise Unsupported(f"{where}: only torch.cat(..., dim=1) is supported")
        return {"module": "Concat", "dim": 1}, list(args[0])
    if t is torch.flatten or (node.op == "call_method" and t == "flatten"):
        start = kw.get("start_dim", args[1] if len(args) > 1 else 0)
        end = kw.get("end_dim", args[2] if len(args) > 2 else -1)
        if (start, end) != (1, -1):
            raise Unsupported(f"{where}: only flatten(x, 1) is supported")
        return {"module": "Flatten"}, [args[0]]
    if node.op == "call_method" and t in ("view", "reshape") or t is torch.reshape:
        out = node.meta["tensor_meta"].shape
        if len(out) != 2:
            raise Unsupported(f"{where}: only a reshape to (N, features) is supported")
        return {"module": "Flatten"}, [args[0]]
    if t is F.gelu:
        return {"module": "GELU", "approximate": kw.get("approximate", "none")}, [args[0]]
    if t in (F.max_pool2d, F.avg_pool2d):
        k = args[1] if len(args) > 1 else kw["kernel_size"]
        s = args[2] if len(args) > 2 else kw.get("stride", None)
        if (args[3] if len(args) > 3 else kw.get("padding", 0)) not in (0, (0, 0), [0, 0]) or kw.get("ceil_mode", False):
            raise Unsupported(f"{where}: only unpadded pooling is supported")
        name = "MaxPool2d" if t is F.max_pool2d else "AvgPool2d"
        return {"module": name, "kernel_size": pair(k), "stride": pair(s if s is not None else k)}, [args[0]]
    if t is F.adaptive_avg_pool2d:
        if pair(args[1] if len(args) > 1 else kw["output_size"]) != [1, 1]:
            raise Unsupported(f"{where}: only adaptive_avg_pool2d(x, 1)")
        return global_pool(shape_in), [args[0]]
    if t is F.dropout:
        return {"module": "Dropout", "p": kw.get("p", args[1] if len(args) > 1 else 0.5)}, [args[0]]
    raise Unsupported(f"{where} is not supported; supported: {SUPPORTED}")


def is_nanogpt(m, cls):
    """Whether `m` is nanoGPT's `cls` ("CausalSelfAttention" or its bias-optional "LayerNorm")."""
    return type(m).__name__ == cls and not isinstance(m, nn.LayerNorm) and hasattr(m, "weight" if cls == "LayerNorm" else "c_attn")


class Tracer(torch.fx.Tracer):
    """torch.fx's tracer with nanoGPT's attention and LayerNorm kept whole (their forward uses
    view/split/masked_fill and F.layer_norm, which hesslab has as one layer each)."""
    def is_leaf_module(self, m, qualname):
        return is_nanogpt(m, "CausalSelfAttention") or is_nanogpt(m, "LayerNorm") or super().is_leaf_module(m, qualname)


def nanogpt_entry(m, path):
    if is_nanogpt(m, "CausalSelfAttention"):
        return {"module": "CausalSelfAttention", "n_embd": m.n_embd, "n_head": m.n_head, "bias": m.c_attn.bias is not None, "path": path}
    if m.bias is None:
        raise Unsupported(f"module `{path}` (nanoGPT LayerNorm with bias=False): a LayerNorm without β is not supported yet")
    return {"module": "LayerNorm", "normalized_shape": list(m.weight.shape), "eps": 1e-5, "elementwise_affine": True, "path": path}


def architecture(net, example_input, loss="cross_entropy"):
    """The architecture JSON of `net` (traced on `example_input`, a batch of one or more)."""
    gm = torch.fx.GraphModule(net, Tracer().trace(net))
    ShapeProp(gm).propagate(example_input)
    nodes, names, output = [], {}, None
    # nanoGPT's `wpe(arange(t))`: position tables, added to the token embeddings below.
    positions, position_ids = {}, set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if names:
                raise Unsupported("the network takes more than one input")
            names[node] = "input"
            continue
        if node.op == "output":
            output = node.args[0]
            continue
        if node.op == "get_attr" and not node.users:
            continue  # a dead attribute read (fx records some around leaf modules)
        if node.op == "get_attr":
            raise Unsupported(f"`{node.target}` is used as a tensor in forward (a functional layer with its own weights); use an nn.Module for it")
        if node.op == "call_method" and node.target == "size" or node.target is operator.getitem and node.args[0].op == "call_method":
            continue  # sizes only feed a view(x.size(0), -1) or an arange(t)
        if node.op == "call_function" and node.target is getattr:
            continue  # idx.device, for arange
        if node.target is torch.arange:
            position_ids.add(node)
            continue
        first = node.args[0] if node.args else None
        shape_in = list(first.meta["tensor_meta"].shape) if isinstance(first, torch.fx.Node) and "tensor_meta" in first.meta else None
        if node.op == "call_module" and first in position_ids:
            positions[node] = gm.get_submodule(node.target), node.target
            continue
        if node.target in (operator.add, torch.add) and len(node.args) == 2 and node.args[1] in positions:
            table, path = positions[node.args[1]]
            entry, inputs = {"module": "PositionEmbedding", "num_embeddings": table.num_embeddings, "embedding_dim": table.embedding_dim, "path": path}, [first]
            nodes.append({"name": node.name, "inputs": [names[first]], "module": entry})
            names[node] = node.name
            continue
        if node.target is operator.getitem and len(node.args[1]) == 3 and node.args[1][1] == -1:
            entry, inputs = {"module": "LastPosition"}, [first]  # x[:, -1, :]
            nodes.append({"name": node.name, "inputs": [names[first]], "module": entry})
            names[node] = node.name
            continue
        if node.op == "call_module" and (is_nanogpt(gm.get_submodule(node.target), "CausalSelfAttention") or is_nanogpt(gm.get_submodule(node.target), "LayerNorm")):
            entry, inputs = nanogpt_entry(gm.get_submodule(node.target), node.target), [first]
        elif node.op == "call_module":
            entry = module_entry(gm.get_submodule(node.target), node.target, shape_in)
            if any(True for _ in gm.get_submodule(node.target).parameters(recurse=False)) or list(gm.get_submodule(node.target).buffers(recurse=False)):
                entry["path"] = node.target
            inputs = [first]
        elif node.op != "call_module":
            entry, inputs = function_entry(node, shape_in)
        for i in inputs:
            if i not in names:
                raise Unsupported(f"`{node.format_node()}` reads `{i}`, which is not a tensor of the network")
        nodes.append({"name": node.name, "inputs": [names[i] for i in inputs], "module": entry})
        names[node] = node.name
    if not nodes or names.get(output) != nodes[-1]["name"]:
        raise Unsupported("the network's output must be its last computed value")
    chain = all(n["inputs"] == [("input" if i == 0 else nodes[i - 1]["name"])] for i, n in enumerate(nodes))
    modules = [n["module"] for n in nodes] if chain else [{"module": "Graph", "nodes": nodes}]
    return {"modules": modules, "input_shape": list(example_input.shape[1:]), "loss": loss}


def export_model(net, example_input, stem, loss="cross_entropy"):
    """Write `stem`.safetensors (the state_dict) and `stem`.json (the architecture)."""
    from safetensors.torch import save_file
    was_training = net.training
    net.eval()
    try:
        arch = architecture(net, example_input, loss)
    finally:
        net.train(was_training)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    # nanoGPT's causal mask (`attn.bias`, a buffer) is not a tensor hesslab reads: it recomputes it.
    masks = {f"{n}.bias" for n, m in net.named_modules() if is_nanogpt(m, "CausalSelfAttention") and "bias" in dict(m.named_buffers(recurse=False))}
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items() if k not in masks}, str(stem.with_suffix(".safetensors")))
    stem.with_suffix(".json").write_text(json.dumps(arch, indent=1) + "\n")
    return arch


def export_onnx(net, example_input, path):
    """Write `net` as an ONNX graph that `import_model`'s `onnx = "..."` reads: the TorchScript
    exporter without constant folding, so that BatchNorm stays its own operator with its own
    parameters (folded into the convolution it would be a different parameterization, with a
    different Hessian), a dynamic batch axis."""
    net.eval()
    torch.onnx.export(net, (example_input,), str(path), dynamo=False, do_constant_folding=False,
                      input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})


def export_data(path, loader=None, *, x=None, y=None, split=None):
    """Write `x`, `y` (and `split`: 0 train, 1 test) to a .npz the `tensors` stage reads; from a
    DataLoader (every batch, in order) or from tensors/arrays."""
    import numpy as np
    if loader is not None:
        xs, ys = zip(*[(b[0], b[1]) for b in loader])
        x, y = torch.cat(xs), torch.cat(ys)
    arrays = {"x": np.asarray(x.detach().cpu() if torch.is_tensor(x) else x),
              "y": np.asarray(y.detach().cpu() if torch.is_tensor(y) else y)}
    if split is not None:
        arrays["split"] = np.asarray(split, dtype=bool)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
