#!/usr/bin/env python3
"""Where `sgaudit usage` spends its time, and what the alternative readers and engines would cost.

    .venv/bin/python bench/variants.py --records 10000000

Measures, on a data set that `run.py` already generated (``bench/data/<records>/``), each of these in a
fresh process (so that one cannot warm or starve another), every one on all files and both cores:

========================  ================================================================================
``floor-pigz``            ``pigz -dc`` over the files, two at a time: the floor of `run.py`
``floor-isal``            ISA-L (``isal``) gzip decompression, two processes: a faster decompressor
``duckdb-scan``           DuckDB: the typed scan sgaudit runs (`records.scan_sql`), counted
``duckdb-5tuple``         the same scan + a bare (interface, 5-tuple) ``count(*)`` group-by: the issue's
                          reference query
``duckdb-reduce``         the same scan + sgaudit's reduction (`reduction.reduce_sql`), 1 GB memory limit
``duckdb-reduce-4GB``     the same with 4 GB: what spilling costs
``polars-scan``           polars' lazy CSV reader, the same 14 columns typed, counted
``polars-5tuple``         polars: scan + the bare group-by
``polars-reduce``         polars alone: scan + a conversation group-by with the reduction's aggregates
``polars-partitioned-``   the same, memory-flat: records hash-partitioned by peer into Arrow IPC files on
``reduce``                disk, then each partition reduced on its own
``polars-duckdb-reduce``  polars' reader streaming Arrow batches into sgaudit's reduction in DuckDB
``arrow-duckdb-reduce``   a pyarrow CSV dataset scanned by DuckDB into sgaudit's reduction
``after-reduction``       `sgaudit.analyze` with every statement timed: what follows the reduction
========================  ================================================================================

Variants whose library is missing (``polars``, ``isal``: not dependencies of sgaudit; ``pip install
polars isal`` into the venv) are reported as skipped. Each line gives wall seconds, the ratio to the
pigz floor of the same run (records/s over floor records/s, as in `run.py`) and the peak RSS of the
process. Results are appended to ``bench/results/variants.jsonl`` and printed as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402

# Each variant is a small program run by the venv's Python with the data folder as argv[1]; it prints one
# JSON line {"s": wall seconds of the measured work, "rows": a check value}. Start-up and imports are not
# in "s": the point is the cost of the work, comparable with the floor.
PRELUDE = r"""
import glob, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
DATA = Path(sys.argv[1])
GZ = sorted(str(p) for p in (DATA / "flow-logs").rglob("*.log.gz"))
COLS = ["interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes", "start",
        "end", "action", "log-status", "tcp-flags", "flow-direction"]

def done(t0, rows):
    print(json.dumps({"s": round(time.perf_counter() - t0, 3), "rows": rows}))

def duckdb_scan():
    import duckdb
    from sgaudit import records, sources
    group = records.group_files([sources.sniff(Path(p), None) for p in GZ])[0]
    return records.scan_sql(group, Path("/tmp"))

def polars_scan(paths):
    import polars as pl
    types = {"srcport": pl.UInt16, "dstport": pl.UInt16, "protocol": pl.UInt8, "tcp-flags": pl.Int16,
             "packets": pl.Int64, "bytes": pl.Int64, "start": pl.Int64, "end": pl.Int64}
    return (pl.scan_csv(paths, separator=" ", has_header=True, null_values="-", quote_char=None,
                        schema_overrides=types)
            .select(COLS).rename(lambda c: c.replace("-", "_")))

def polars_oriented(lf):
    # Records with the interface's side told apart (flow-direction), as the reduction orients them.
    import polars as pl
    c = pl.col
    ing, ported = c("flow_direction") == "ingress", c("protocol").is_in([6, 17])
    return lf.with_columns(
        peer=pl.when(ing).then(c("srcaddr")).otherwise(c("dstaddr")),
        peer_port=pl.when(~ported).then(None).when(ing).then(c("srcport")).otherwise(c("dstport")),
        local_port=pl.when(~ported).then(None).when(ing).then(c("dstport")).otherwise(c("srcport")),
        flags=c("tcp_flags").cast(pl.Int32) * pl.when(ing).then(16).otherwise(1), rej=c("action") == "REJECT")

def polars_reduced(lf):
    # Oriented records summed per conversation, with the reduction's aggregates.
    import polars as pl
    c = pl.col
    return (lf.group_by(["interface_id", "protocol", "local_port", "peer", "peer_port"])
        .agg(records=pl.len(), rejected=c("rej").sum(), flag_bits=c("flags").bitwise_or(),
             packets=pl.when(~c("rej")).then(c("packets")).sum(), bytes=pl.when(~c("rej")).then(c("bytes")).sum(),
             first=pl.when(~c("rej")).then(c("start")).min(), last=pl.when(~c("rej")).then(c("end")).max()))

def reduce_into(con, table_sql):
    from sgaudit import reduction
    con.execute("CREATE TABLE reduced AS " + reduction.reduce_sql(table_sql, -2**62, 2**62))
    return con.sql("SELECT count(*) FROM reduced").fetchall()[0][0]
"""

VARIANTS: dict[str, str] = {
    "floor-isal": r"""
from concurrent.futures import ProcessPoolExecutor
from isal import isal_zlib
def dec(path):
    d, n = isal_zlib.decompressobj(31), 0
    with open(path, "rb") as fh:
        while (b := fh.read(1 << 20)):
            n += len(d.decompress(b))
    return n
t0 = time.perf_counter()
with ProcessPoolExecutor(2) as ex:
    n = sum(ex.map(dec, GZ))
done(t0, n)
""",
    "duckdb-scan": r"""
import duckdb
scan = duckdb_scan(); con = duckdb.connect()
t0 = time.perf_counter()
done(t0, con.sql(f"SELECT count(*), sum(bytes) FROM {scan}").fetchall()[0][0])
""",
    "duckdb-5tuple": r"""
import duckdb
scan = duckdb_scan(); con = duckdb.connect(); con.execute("SET memory_limit = '1GB'")
t0 = time.perf_counter()
done(t0, con.sql(f"SELECT count(*) FROM (SELECT interface_id, srcaddr, dstaddr, srcport, dstport, protocol, "
                 f"count(*) FROM {scan} GROUP BY ALL)").fetchall()[0][0])
""",
    "duckdb-reduce": r"""
import duckdb
scan = duckdb_scan(); con = duckdb.connect()
con.execute("SET memory_limit = '1GB'; SET preserve_insertion_order = false")
t0 = time.perf_counter()
done(t0, reduce_into(con, scan))
""",
    "duckdb-reduce-4GB": r"""
import duckdb
scan = duckdb_scan(); con = duckdb.connect()
con.execute("SET memory_limit = '4GB'; SET preserve_insertion_order = false")
t0 = time.perf_counter()
done(t0, reduce_into(con, scan))
""",
    "polars-scan": r"""
import polars as pl
t0 = time.perf_counter()
done(t0, polars_scan(GZ).select(pl.len()).collect().item())
""",
    "polars-5tuple": r"""
import polars as pl
t0 = time.perf_counter()
done(t0, polars_scan(GZ).group_by(["interface_id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol"])
     .len().select(pl.len()).collect().item())
""",
    "polars-reduce": r"""
t0 = time.perf_counter()
done(t0, polars_reduced(polars_oriented(polars_scan(GZ))).collect(engine="streaming").height)
""",
    "polars-partitioned-reduce": r"""
# Memory-flat polars: every record goes to one of K partitions by a hash of its conversation's peer (all of a
# conversation's records, whatever file they are in, land in one partition), written as Arrow IPC files; then
# each partition is reduced on its own, so at most 1/K of the conversations are in memory at once.
import shutil, tempfile
import polars as pl
c = pl.col
K = max(4, len(GZ) // 5)  # ~1.25M records per partition
tmp = Path(tempfile.mkdtemp(prefix="sgaudit-part-", dir="/tmp"))
t0 = time.perf_counter()
(polars_oriented(polars_scan(GZ))
    .select("interface_id", "protocol", "local_port", "peer", "peer_port", "flags", "rej", "packets", "bytes",
            "start", "end", part=(c("peer").hash() % K))
    .sink_ipc(pl.PartitionBy(tmp, key="part", include_key=False), compression="lz4", mkdir=True))
split = time.perf_counter() - t0
rows = 0
for d in sorted(p for p in tmp.rglob("*") if p.is_dir() and not any(q.is_dir() for q in p.iterdir())):
    rows += polars_reduced(pl.scan_ipc(sorted(d.glob("*")))).collect().height
shutil.rmtree(tmp)
print(json.dumps({"s": round(time.perf_counter() - t0, 3), "rows": rows, "split_s": round(split, 3), "partitions": K}))
""",
    "polars-duckdb-reduce": r"""
import duckdb, pyarrow as pa
con = duckdb.connect(); con.execute("SET memory_limit = '1GB'; SET preserve_insertion_order = false")
t0 = time.perf_counter()
schema = polars_scan(GZ[:1]).head(1).collect().to_arrow().schema
batches = polars_scan(GZ).collect_batches(chunk_size=1 << 19)
stream = pa.RecordBatchReader.from_batches(schema, (rb for b in batches for rb in b.to_arrow().to_batches()))
con.register("records", stream)
done(t0, reduce_into(con, "(SELECT *, NULL::VARCHAR AS source_file FROM records)"))
""",
    "arrow-duckdb-reduce": r"""
import duckdb, pyarrow as pa, pyarrow.csv as pcsv, pyarrow.dataset as ds
import gzip
names = gzip.open(GZ[0], "rt").readline().split()
types = {"srcport": pa.uint16(), "dstport": pa.uint16(), "protocol": pa.uint8(), "tcp-flags": pa.int16(),
         "packets": pa.int64(), "bytes": pa.int64(), "start": pa.int64(), "end": pa.int64()}
fmt = ds.CsvFileFormat(parse_options=pcsv.ParseOptions(delimiter=" ", quote_char=False),
                       read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
                       convert_options=pcsv.ConvertOptions(column_types=types, null_values=["-"],
                                                           strings_can_be_null=True))
con = duckdb.connect(); con.execute("SET memory_limit = '1GB'; SET preserve_insertion_order = false")
con.register("records", ds.dataset(GZ, format=fmt))
cols = ", ".join(f'"{n}" AS {n.replace("-", "_")}' for n in COLS)
t0 = time.perf_counter()
done(t0, reduce_into(con, f"(SELECT {cols}, NULL::VARCHAR AS source_file FROM records)"))
""",
    "after-reduction": r"""
# analyze() with every statement it runs timed; the result tables sgaudit usage writes, timed too.
import sgaudit.analysis as A
class Timed:
    def __init__(self, con):
        self.con, self.steps = con, []
    def execute(self, sql, *a):
        t = time.perf_counter(); r = self.con.execute(sql, *a)
        self.steps.append((" ".join(sql.split())[:60], time.perf_counter() - t))
        return r
    def __getattr__(self, name):
        return getattr(self.con, name)
run, timed = A._run, []
def wrapped(result, *a):
    real = result.con; result.con = Timed(real)
    try:
        run(result, *a)
    finally:
        timed.extend(result.con.steps); result.con = real
A._run = wrapped
t0 = time.perf_counter()
res = A.analyze(DATA / "flow-logs", DATA / "inventory")
steps = {}
for sql, s in timed:
    key = next((k for k in ("reduced", "candidates", "classified", "buckets") if f"TABLE {k} " in sql), "other")
    steps[key] = steps.get(key, 0) + s
for name in ("usage", "rejected", "unexplained", "coverage", "quality"):
    t = time.perf_counter(); getattr(res, name); steps["table " + name] = time.perf_counter() - t
print(json.dumps({"s": round(time.perf_counter() - t0, 3), "rows": int(res.usage.shape[0]),
                  "steps": {k: round(v, 2) for k, v in steps.items()}}))
""",
}

OPTIONAL = {"floor-isal": "isal", "polars-scan": "polars", "polars-5tuple": "polars", "polars-reduce": "polars",
            "polars-partitioned-reduce": "polars", "polars-duckdb-reduce": "polars"}


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def has_module(name: str) -> bool:
    return subprocess.run([python(), "-c", f"import {name}"], capture_output=True).returncode == 0


def measure(name: str, data: Path) -> dict:
    """Run one variant in a fresh process; its own timing, and the peak RSS of that process."""
    if name in OPTIONAL and not has_module(OPTIONAL[name]):
        return {"variant": name, "status": f"skipped ({OPTIONAL[name]} not installed)"}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(PRELUDE + VARIANTS[name])
    rss_file = f.name + ".rss"
    cmd = [python(), f.name, str(data), str(ROOT / "toolkit")]
    if Path(run.GNU_TIME).exists():
        cmd = [run.GNU_TIME, "-f", "%M", "-o", rss_file] + cmd
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
        peak = int(Path(rss_file).read_text().split()[-1]) // 1024 if Path(rss_file).exists() else None
    finally:
        for leftover in (f.name, rss_file):
            if os.path.exists(leftover):
                os.unlink(leftover)
    if p.returncode != 0:
        return {"variant": name, "status": "failed", "stderr": p.stderr[-800:]}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out.update(variant=name, status="ok", peak_rss_mib=peak)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, required=True, help="which data set (bench/data/<records>)")
    ap.add_argument("--only", nargs="*", choices=["floor-pigz", *VARIANTS], help="run only these variants")
    ap.add_argument("--data-root", type=Path, default=HERE / "data")
    ap.add_argument("--results", type=Path, default=HERE / "results" / "variants.jsonl")
    ap.add_argument("--no-record", action="store_true", help="do not append to the results file")
    args = ap.parse_args(argv)

    data = args.data_root / str(args.records)
    manifest = data / "manifest.json"
    if not manifest.exists():
        raise SystemExit(f"{data}: no data set; generate it first: python bench/run.py --records "
                         f"{args.records} --floor-only --keep")
    m = json.loads(manifest.read_text())
    files = run.data_files(data, m)
    run.warm_cache(files)
    floor = run.floor_pigz(files, 2)
    rows = [{"variant": "floor-pigz", "status": "ok", "s": round(floor, 3), "rows": len(files)}]
    run.log(f"floor-pigz: {floor:.2f} s")
    for name in args.only or VARIANTS:
        if name == "floor-pigz":
            continue
        r = measure(name, data)
        rows.append(r)
        run.log(f"{name}: " + (f"{r['s']:.2f} s" if r["status"] == "ok" else r["status"]))
        if r["status"] == "failed":
            run.log(r["stderr"])

    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"\n{args.records:,} records, {len(files)} files, {stamp}, commit {(run.git_head() or '?')[:12]}\n")
    print("| variant | s | ratio to the pigz floor | peak RSS MiB |\n|---|---:|---:|---:|")
    for r in rows:
        if r["status"] != "ok":
            print(f"| {r['variant']} | {r['status']} | | |")
            continue
        ratio = floor / r["s"] if r["s"] else None
        rss = r.get("peak_rss_mib")
        print(f"| {r['variant']} | {r['s']:.2f} | {ratio:.2f} | {rss if rss is not None else ''} |")
        if "steps" in r:
            print("|  ↳ " + ", ".join(f"{k} {v:.2f}" for k, v in r["steps"].items()) + " | | | |")
    if not args.no_record:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as f:
            f.write(json.dumps({"date": stamp, "commit": run.git_head(), "records": args.records,
                                "files": len(files), "cpu": run.cpu_model(), "variants": rows}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
