"""Write the `tensors` loader's fixtures the way PyTorch and NumPy users write their data.

    .venv-torch/bin/python scripts/tensors_fixtures.py      (needs numpy, safetensors, torch)

tests/fixtures/tensors/: images.npz (numpy.savez: float32 N×1×8×8, int64 labels, a bool split),
table.npz (numpy.savez_compressed: float64 N×5, int32 labels), torch.safetensors
(safetensors.torch.save_file: float32 N×6, int64 labels), and expected.json with what a reader
must find (shapes, dtypes, exact sums in float64, label counts). Small (a few KB) and
committed; the tests read them without Python.
"""
import json
import math
import pathlib

import numpy as np

out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tensors"
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(7)
expected = {}


def record(name, x, y, split=None):
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    expected[name] = {
        "samples": int(len(x)),
        "shape": list(x.shape[1:]) or [1],
        "x_dtype": str(x.dtype),
        "x_sum": math.fsum(flat.ravel().tolist()),
        "x_sq_sum": math.fsum((flat.ravel() ** 2).tolist()),
        "first_row": flat[0].tolist(),
        "label_counts": np.bincount(np.asarray(y).ravel()).tolist(),
        "test_samples": None if split is None else int(np.sum(split)),
    }


x = rng.standard_normal((60, 1, 8, 8)).astype(np.float32)
y = (np.arange(60) % 3).astype(np.int64)
split = np.zeros(60, dtype=bool)
split[::5] = True
np.savez(out / "images.npz", x=x, y=y, split=split)
record("images.npz", x, y, split)

x = rng.standard_normal((30, 5))
y = (np.arange(30) % 2).astype(np.int32)
np.savez_compressed(out / "table.npz", x=x, y=y)
record("table.npz", x, y)

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

xt = torch.from_numpy(rng.standard_normal((40, 6)).astype(np.float32))
yt = torch.arange(40) % 4
save_file({"x": xt, "y": yt}, str(out / "torch.safetensors"))
record("torch.safetensors", xt.numpy(), yt.numpy())

(out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print("wrote", sorted(p.name for p in out.iterdir()))
