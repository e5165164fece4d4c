"""Read every Parquet artifact under a directory with pyarrow, Polars and DuckDB and check
that all three see the same rows and columns, and the hesslab metadata; rebuild every
cross-entropy model from its `architecture` JSON in NumPy and match its recorded loss.

    python scripts/interop.py OUT            # any hesslab output directory
    python scripts/interop.py OUT --own      # scripts/interop.sh's runs: their queries must hold
"""
import pathlib
import sys

import duckdb
import polars as pl
import pyarrow.parquet as pq

root = pathlib.Path(sys.argv[1])
# With --own the directory holds scripts/interop.sh's runs, whose pipeline-specific queries
# below must all run; without it those run where their files are.
own = "--own" in sys.argv[2:]


def present(path):
    """`path` if it exists; a missing file is an error only for --own."""
    assert path.exists() or not own, f"{path} is missing"
    return path if path.exists() else None


files = sorted(root.rglob("*.parquet"))
assert files, f"no Parquet files under {root}"
con = duckdb.connect()
checked = 0
for f in files:
    t = pq.read_table(f)
    meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
    kv = pq.ParquetFile(f).metadata.metadata or {}
    keys = {k.decode() for k in kv}
    assert "hesslab.kind" in keys and "hesslab.cache_key" in keys, f"{f}: hesslab metadata missing"
    # The same metadata is in the Arrow schema, where Arrow readers look for it.
    assert meta.get("hesslab.kind") == kv[b"hesslab.kind"].decode(), f"{f}: Arrow schema metadata missing"
    assert all(meta.get(k.decode()) == v.decode() for k, v in kv.items() if k != b"ARROW:schema"), f"{f}: schema metadata differs"
    if f.name in ("matrix.parquet", "eigenvalues.parquet"):
        assert int(meta["dim"]) > 0, f"{f}: `dim` not visible in the Arrow schema"
    if f.name == "model.parquet":
        assert "modules" in meta["architecture"], f"{f}: `architecture` not visible in the Arrow schema"
    if hasattr(pl, "read_parquet_metadata"):
        pmeta = pl.read_parquet_metadata(f)
        assert pmeta.get("hesslab.kind") == meta["hesslab.kind"], f"{f}: Polars sees no hesslab metadata"
    df = pl.read_parquet(f)
    assert df.height == t.num_rows, f"{f}: polars {df.height} rows vs pyarrow {t.num_rows}"
    assert df.columns == t.column_names, f"{f}: polars columns {df.columns} vs {t.column_names}"
    # Member directories are named key=value: not Hive partitions.
    n = con.execute("select count(*) from read_parquet(?, hive_partitioning = false)", [str(f)]).fetchone()[0]
    cols = [d[0] for d in con.execute("select * from read_parquet(?, hive_partitioning = false) limit 1", [str(f)]).description]
    assert n == t.num_rows, f"{f}: duckdb {n} rows vs pyarrow {t.num_rows}"
    assert cols == t.column_names, f"{f}: duckdb columns {cols}"
    checked += 1
    print(f"ok  {f.relative_to(root)}: {t.num_rows} rows, columns {t.column_names}")
# Spectra along training: the top eigenvalue per snapshot by DuckDB equals pyarrow's, and the
# log's tracked sharpness (null between measurements) is seen as such by all three readers.
along = present(root / "s18_e1_spectrum_during_training/main/spectra/training_spectrum.parquet")
if along:
    by_duckdb = con.execute(f"select step, max(eigenvalue) from read_parquet('{along}', hive_partitioning = false) group by step order by step").fetchall()
    rows = pq.read_table(along).to_pylist()
    by_arrow = sorted({(r["step"], max(x["eigenvalue"] for x in rows if x["step"] == r["step"])) for r in rows})
    assert by_duckdb == by_arrow and len(by_duckdb) == 4, f"{by_duckdb} vs {by_arrow}"
    log = root / "s18_e1_spectrum_during_training/main/train/log.parquet"
    measured = con.execute(f"select count(sharpness) from read_parquet('{log}')").fetchone()[0]
    assert measured == 7 == pl.read_parquet(log)["sharpness"].drop_nulls().len(), f"{measured} sharpness measurements"
    print(f"ok  spectra along training: top eigenvalue at steps {[s for s, _ in by_duckdb]}, {measured} sharpness measurements")
# A query a user would run: the top eigenvalues.
for ev in [present(root / "quickstart/main/eigen/eigenvalues.parquet")] if own else sorted(root.rglob("eigenvalues.parquet"))[:3]:
    if not ev:
        continue
    which = (pq.read_schema(ev).metadata or {}).get(b"which", b"").decode()
    top = con.execute(f"select eigenvalue from read_parquet('{ev}', hive_partitioning = false) order by rank limit 3").fetchall()
    # Rank 0 is the largest (the smallest for which = "smallest").
    ordered = [a[0] >= b[0] for a, b in zip(top, top[1:])] if which != "smallest" else [a[0] <= b[0] for a, b in zip(top, top[1:])]
    assert all(ordered), f"{ev}: ranks out of order"
    print(f"ok  {ev.relative_to(root)}: top eigenvalues by DuckDB {[round(x[0], 6) for x in top]}")
# Seeds as replicates: per group, the spread of the top eigenvalue is the sample statistics of
# the members' `max` in the per-member table (DuckDB's stddev_samp is n − 1, as documented).
seeds = present(root / "seeds/all/table/spread.parquet")
rows = [] if not seeds else con.execute(
    f"""select s."data.classes", s.mean, s.std, t.m, t.sd, s.replicates from read_parquet('{root}/seeds/all/table/spread.parquet') s
        join (select "data.classes" as k, avg(max) as m, stddev_samp(max) as sd from read_parquet('{root}/seeds/all/table/table.parquet') group by 1) t
        on s."data.classes" = t.k where s.quantity = 'max'"""
).fetchall()
assert not seeds or len(rows) == 2 and all(abs(r[1] - r[3]) <= 1e-12 * abs(r[3]) and abs(r[2] - r[4]) <= 1e-9 * r[4] and r[5] == 3 for r in rows), rows
if seeds:
    fixed = con.execute(f"select count(*) from read_parquet('{root}/seeds/all/table/table.parquet') where outliers_fixed is not null").fetchone()[0]
    assert fixed == 6, fixed
ens_file = present(root / "s16_p4_init_sphere/main/ensemble/ensemble.parquet")
if ens_file:
    assert pl.read_parquet(ens_file).filter(pl.col("rank") == 0).height == 50

# The model contract: the `architecture` JSON (torch.nn module names with their constructor
# arguments) and the rows (tensors in `parameters()` order, PyTorch shapes) rebuild the network
# outside hesslab. A NumPy re-implementation of the PyTorch modules (NCHW, cross-correlation,
# floor-mode pooling) must give the training loss the model records.
import json
import math

import numpy as np


def conv2d(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh, ow = (x.shape[2] - kh) // stride[0] + 1, (x.shape[3] - kw) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride[0] * oh : stride[0], j : j + stride[1] * ow : stride[1]]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + (b[None, :, None, None] if b is not None else 0)


def pool(x, k, s, op):
    n, c, h, w = x.shape
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    views = [x[:, :, i : i + s[0] * oh : s[0], j : j + s[1] * ow : s[1]] for i in range(k[0]) for j in range(k[1])]
    return op(np.stack(views), axis=0)


def pair(v):
    return v if isinstance(v, list) else [v, v]


ACTIVATIONS = {
    "ReLU": lambda z: np.maximum(z, 0),
    "Tanh": np.tanh,
    "Sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "Identity": lambda z: z,
    "SiLU": lambda z: z / (1 + np.exp(-z)),
    "ELU": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "Softplus": lambda z: np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20)))),
}


def module(m, params, xs):
    """One module entry on its inputs `xs`; `params` yields tensors in `parameters()` order."""
    kind = m["module"]
    x = xs[0]
    if kind == "Linear":
        w = next(params)
        return x @ w.T + (next(params) if m.get("bias", True) else 0)
    if kind == "Conv2d":
        w = next(params)
        b = next(params) if m.get("bias", True) else None
        return conv2d(x, w, b, pair(m.get("stride", 1)), pair(m.get("padding", 0)))
    if kind in ("MaxPool2d", "AvgPool2d"):
        k = pair(m["kernel_size"])
        return pool(x, k, pair(m.get("stride") or k), np.max if kind == "MaxPool2d" else np.mean)
    if kind == "Flatten":
        return x.reshape(x.shape[0], -1)
    if kind == "LayerNorm":
        axes = tuple(range(1, x.ndim))
        z = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + m.get("eps", 1e-5))
        return z * next(params) + next(params) if m.get("elementwise_affine", True) else z
    if kind == "GlobalAvgPool":
        return x.mean(axis=(2, 3))
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        # Eval mode: the running statistics, the buffer rows after the module's parameters
        # (state_dict order).
        affine = m.get("affine", True)
        w, b = (next(params), next(params)) if affine else (None, None)
        mean, var, _count = next(params), next(params), next(params)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        z = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + m["eps"])
        return z * w.reshape(shape) + b.reshape(shape) if affine else z
    if kind == "Dropout":
        return x
    if kind == "LeakyReLU":
        return np.where(x > 0, x, m["negative_slope"] * x)
    if kind == "GELU":
        if m.get("approximate") == "tanh":
            return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))
    if kind == "Add":
        return sum(xs[1:], xs[0])
    if kind == "Concat":
        return np.concatenate(xs, axis=1)
    if kind == "Residual":
        # shortcut(x) + body(x); the body's tensors come first in parameters().
        body = sequential(m["body"], params, x)
        return sequential(m["shortcut"], params, x) + body
    if kind == "Graph":
        values = {"input": x}
        for n in m["nodes"]:
            values[n["name"]] = module(n["module"], params, [values[i] for i in n["inputs"]])
        return values[m["nodes"][-1]["name"]]
    return ACTIVATIONS[kind](x)


def sequential(modules, params, x):
    for m in modules:
        x = module(m, params, [x])
    return x


def forward(arch, params, x):
    return sequential(arch["modules"], params, x.reshape([x.shape[0]] + arch["input_shape"]))


rebuilt = 0
for f in files:
    if f.name != "model.parquet":
        continue
    t = pq.read_table(f)
    meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
    arch = json.loads(meta["architecture"])
    # Optimizer-state rows (`optimizer` true: Adam's moments, momentum) are not the network's.
    state = t.column("optimizer").to_pylist() if "optimizer" in t.column_names else [False] * t.num_rows
    rows = zip(t.column("values").to_pylist(), t.column("shape").to_pylist(), state)
    params = iter(np.array(v).reshape(s) for v, s, o in rows if not o)
    if arch["loss"] != "cross_entropy":
        print(f"skip {f.relative_to(root)}: loss {arch['loss']} (the rebuild knows cross-entropy)")
        continue
    # The dataset it was trained on lies in its member directory (the first for --own; any
    # that reproduces the loss otherwise, a member may hold several).
    datasets = sorted(f.parents[1].glob("*/dataset.parquet"))
    assert datasets or not own, f"{f}: no dataset beside it"
    want = float(meta["final_train_loss"])
    params = list(params)
    found = None
    for ds in datasets[:1] if own else datasets:
        data = pq.read_table(ds)
        train = np.array(data.column("split").to_pylist()) == "train"
        x = np.array(data.column("x").to_pylist())[train]
        y = np.array(data.column("y").to_pylist())[train]
        try:
            logits = forward(arch, iter(params), x)
        except (KeyError, ValueError) as e:
            assert not own, f"{f}: {e!r}"
            continue
        z = logits - logits.max(axis=1, keepdims=True)
        loss = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y])
        if own or abs(loss - want) <= 1e-10 * max(1.0, abs(want)):
            found = loss
            break
    if found is None:
        print(f"skip {f.relative_to(root)}: no dataset in its member directory reproduces its loss (or a module the rebuild lacks)")
        continue
    loss = found
    assert abs(loss - want) <= 1e-10 * max(1.0, abs(want)), f"{f}: NumPy rebuild gives loss {loss}, hesslab recorded {want}"
    rebuilt += 1
    print(f"ok  {f.relative_to(root)}: rebuilt from `architecture` in NumPy, loss {loss:.12g} = {want:.12g}")
assert rebuilt >= 4 or not own, f"only {rebuilt} models rebuilt"
print(f"interop: {checked} passed, 0 failed")
