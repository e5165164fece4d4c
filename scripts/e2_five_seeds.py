"""S18 Table 1 over seeds from a (possibly partial) run of pipelines/s18_e2_outliers_vs_classes.toml:
per configuration with all five seeds, each outlier count as mean ± std (min–max) and per seed,
then how often each count lands within k ± 1. Usage: python scripts/e2_five_seeds.py OUT_DIR [OUT_DIR ...]
(runs' --out directories, e.g. partial runs with --set on the sweep; members not finished yet are left out). Needs pyarrow (.venv-interop)."""
import glob, collections, statistics as st, sys
import pyarrow.parquet as pq
# --exclude FILE: leave out configurations that already have a row in FILE (an earlier table,
# e.g. docs/s18_e2_five_seeds.md), so that a partial run's counts can be added to its counts.
args = sys.argv[1:]
known = set()
if '--exclude' in args:
    i = args.index('--exclude')
    for line in open(args[i + 1]):
        cells = [c.strip() for c in line.split('|')[1:5]]
        if len(cells) == 4 and cells[0].isdigit():
            known.add((int(cells[0]), float(cells[1]), cells[2], cells[3]))
    del args[i:i + 2]
OUTS = args or ['out']
rows = collections.defaultdict(list)
# pipelines/s18_bulk_vs_data.toml trains exactly E2's ReLU GD networks (same data, seeds and
# parameters; their eigenvalues compared equal bit for bit), so its members count as those.
files = sorted(f for out in OUTS for name in ('s18_e2_outliers_vs_classes', 's18_bulk_vs_data')
               for f in glob.glob(f'{out}/{name}/*/summary/summary.parquet'))
seen = set()
for f in files:
    key = f.split('/')[-3]
    kv = {'train.activation': 'relu', 'train.batch_size': '0'}
    kv.update(p.split('=') for p in key.split('__'))
    config = (int(kv['data.classes']), float(kv['data.cov_multiplier']), kv['train.activation'], 'GD' if kv['train.batch_size']=='0' else 'SGD')
    if (config, kv['train.seed']) in seen or config in known:
        continue
    seen.add((config, kv['train.seed']))
    t = pq.read_table(open(f, 'rb')).to_pylist()[0]
    rows[config].append((int(kv['train.seed']), t))
def cell(v):
    m = st.mean(v); s = st.stdev(v) if len(v) > 1 else 0.0
    return f"{m:.1f} ± {s:.1f} ({min(v)}–{max(v)})"
print("| k | cov | nonlinearity | algorithm | seeds | gap | ratio | elbow (heuristic) | fixed 0.01 | per seed: elbow | per seed: fixed |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
summary = collections.defaultdict(list)
for key in sorted(rows):
    v = sorted(rows[key]); k = key[0]
    if len(v) < 5: continue
    get = lambda c: [x[1][c] for x in v]
    print(f"| {k} | {key[1]:g} | {key[2]} | {key[3]} | {len(v)} | {cell(get('outliers_gap'))} | {cell(get('outliers_ratio'))} | {cell(get('outliers_heuristic'))} | {cell(get('outliers_fixed'))} | {', '.join(map(str, get('outliers_heuristic')))} | {', '.join(map(str, get('outliers_fixed')))} |")
    for c in ('outliers_gap','outliers_ratio','outliers_heuristic','outliers_fixed'):
        for x in get(c):
            summary[(key[2], key[1], c)].append(abs(x - k) <= 1)
print()
for (act, cov, c), hits in sorted(summary.items()):
    print(f"{act} cov {cov:g} {c}: within k ± 1 in {sum(hits)}/{len(hits)} networks")
