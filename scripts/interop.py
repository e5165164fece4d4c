"""Read every Parquet artifact under a directory with pyarrow, Polars and DuckDB and check
that all three see the same rows and columns, and the hesslab metadata."""
import pathlib
import sys

import duckdb
import polars as pl
import pyarrow.parquet as pq

root = pathlib.Path(sys.argv[1])
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
        assert "sizes" in meta["architecture"], f"{f}: `architecture` not visible in the Arrow schema"
    if hasattr(pl, "read_parquet_metadata"):
        pmeta = pl.read_parquet_metadata(f)
        assert pmeta.get("hesslab.kind") == meta["hesslab.kind"], f"{f}: Polars sees no hesslab metadata"
    df = pl.read_parquet(f)
    assert df.height == t.num_rows, f"{f}: polars {df.height} rows vs pyarrow {t.num_rows}"
    assert df.columns == t.column_names, f"{f}: polars columns {df.columns} vs {t.column_names}"
    n = con.execute("select count(*) from read_parquet(?)", [str(f)]).fetchone()[0]
    cols = [d[0] for d in con.execute("select * from read_parquet(?) limit 1", [str(f)]).description]
    assert n == t.num_rows, f"{f}: duckdb {n} rows vs pyarrow {t.num_rows}"
    assert cols == t.column_names, f"{f}: duckdb columns {cols}"
    checked += 1
    print(f"ok  {f.relative_to(root)}: {t.num_rows} rows, columns {t.column_names}")
# A query a user would run: the top eigenvalues.
top = con.execute(
    f"select eigenvalue from read_parquet('{root}/quickstart/main/eigen/eigenvalues.parquet') order by rank limit 3"
).fetchall()
assert top[0][0] >= top[1][0] >= top[2][0] > 0
print(f"interop: {checked} passed, 0 failed")
