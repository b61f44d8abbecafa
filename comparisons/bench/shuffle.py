"""``taskbench bench shuffle``: one hash shuffle of the same frame on every engine, in one run.

Every engine gets the same taxi-like frame (`frames.taxi_partition`, seeded per partition), made in
memory on its own workers before the clock starts, the same number of worker processes and
cores (2 × 1 thread; Spark ``local[2]``), and the same work: hash-partition the frame on
``--on`` into ``--partitions`` partitions and touch every output row. Timed is the shuffle
plus that action only:

- taskbench: ``shuffle(on, P, method).map_partitions(len)`` on a 2-worker `LocalCluster`, for
  each implementation and each sizeof mode (``sampled``, the default, and ``deep``, the exact
  size whose cost lagged the 2016 workers), with the engine's task stream for inter-task lag;
- dask: ``DataFrame.shuffle(on, npartitions=P, shuffle_method="tasks" | "p2p")`` plus
  ``map_partitions(len)`` on ``distributed.LocalCluster(2 processes × 1 thread)``, with
  ``dataframe.convert-string`` off so it shuffles the same object columns;
- Spark: ``repartition(P, col)`` written to the ``noop`` sink (every row and column is
  materialised, nothing is written) on ``local[2]``, from a cached DataFrame.

The shuffle overhead ratio (DESIGN.md) is each time ÷ the time one pandas process takes to
hash-partition the whole frame in memory into P partitions (`partition_by_hash`, the fastest
of the repeats), measured in this run. MB/s is the frame's in-memory size (pandas, deep) ÷
time. Each engine runs the shuffle ``--repeats`` times; the first run is reported as cold,
the median of the rest as the time. Peak memory is the workers' summed peak RSS during the
shuffle (Linux peak counters are reset first; Spark's JVM with its Python workers); ``mem/data``
is that peak less the workers' RSS before the data was made (after a warm-up), over the frame's
size: input and output both live at the peak, so 2 is the floor for a shuffle that copies.

The workers unpickle their tasks (`frames.taxi_item`) by reference to
``taskbench.comparisons.bench.frames``, which they import; it needs numpy and pandas only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from taskbench.comparisons.argtypes import comma_choices, parse_rows, positive_int
from taskbench.comparisons.bench.frames import (
    COLUMN_SETS,
    STRINGS,
    frame_bytes,
    partition_rows,
    taxi_frame,
    taxi_item,
    taxi_partition,
)
from taskbench.comparisons.bench.memory import peak_rss_bytes, reset_peak_rss, rss_bytes
from taskbench.comparisons.bench.record import (
    BenchResult,
    collect,
    find,
    fmt,
    format_table,
    run_metadata,
    to_document,
)
from taskbench.engine.options import SIZEOF_MODES

PEERS = ("dask", "spark")


def _total(values: list[int | None]) -> int | None:
    return None if not values or any(v is None for v in values) else sum(values)


# ---------------------------------------------------------------- baseline


def pandas_baseline(df: pd.DataFrame, on: str, nparts: int, repeats: int) -> dict:
    """One process hash-partitioning the frame in memory (the overhead ratio's denominator).

    The fastest of ``repeats`` runs: the denominator is pandas at its best, so noise on a shared
    machine can only raise the engines' ratios, never flatter them.
    """
    from taskbench.engine.dataframe.shuffle import partition_by_hash

    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        shards = partition_by_hash(df, on, nparts)
        times.append(time.perf_counter() - t0)
        lengths = [len(s) for s in shards]
        del shards
    return {"times": times, "seconds": min(times), "lengths": lengths}


# ---------------------------------------------------------------- taskbench


def run_engine(
    rows: int,
    nparts: int,
    on: str,
    columns: str,
    method: str,
    sizeof_mode: str,
    repeats: int,
    workers: int = 2,
    stealing: bool = True,
    options: dict | None = None,
) -> dict:
    """The engine's shuffle on a fresh LocalCluster; its workers size results by ``sizeof_mode``."""
    from taskbench.engine.client import Client
    from taskbench.engine.cluster import LocalCluster
    from taskbench.engine.dataframe import from_map, from_pandas

    sizes = partition_rows(rows, nparts)
    meta = taxi_partition(0, 0, columns)
    from_pandas(meta, 1).shuffle(on, 1, method=method)  # NotImplementedError before any cluster
    cluster = LocalCluster(workers, 1, sizeof=sizeof_mode, stealing=stealing)
    with cluster, Client(cluster) as client:
        # warm up (imports on the workers) before the idle memory is read
        warm = from_map(taxi_item, [(0, 1000), (1, 1000)], meta=meta, column_set=columns)
        warm.shuffle(on, 2, method=method).map_partitions(len).compute()
        pids = [p.pid for p in cluster.worker_processes]
        idle = rss_bytes(*pids)
        frame = from_map(taxi_item, list(enumerate(sizes)), meta=meta, column_set=columns)
        frame = frame.persist()
        total = int(frame.length().compute())
        if total != rows:
            raise RuntimeError(f"the engine made {total} rows, expected {rows}")
        times, lengths, streams, peaks = [], None, [], []
        for _ in range(max(repeats, 1)):
            reset_peak_rss(*pids)
            start = client.stream_position()
            t0 = time.perf_counter()
            shuffled = frame.shuffle(on, nparts, method=method, **(options or {}))
            lengths = shuffled.map_partitions(len).compute()
            times.append(time.perf_counter() - t0)
            streams.append(client.task_stream(start))
            peaks.append(peak_rss_bytes(*pids))
    stream = streams[-1]
    lags = stream.lag_percentiles((50, 90, 99))
    return {
        "times": times,
        "lengths": list(map(int, lengths)),
        "tasks": len(stream),
        "lag_p50_us": lags["p50"],
        "lag_p90_us": lags["p90"],
        "lag_p99_us": lags["p99"],
        "sizeof_seconds": sum(r.sizeof_seconds for r in stream),
        "peak_worker_rss_bytes": peaks[-1],
        "idle_worker_rss_bytes": idle,
    }


# ---------------------------------------------------------------- dask


def _worker_reset_peak() -> bool:
    return reset_peak_rss()


def _worker_peak() -> int | None:
    return peak_rss_bytes()


def _worker_rss() -> int | None:
    return rss_bytes()


def run_dask(
    rows: int, nparts: int, on: str, columns: str, methods: list[str], repeats: int
) -> dict[str, dict]:
    """dask's shuffle (each method) on ``distributed.LocalCluster(2 × 1 thread)``."""
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster, wait

    sizes = partition_rows(rows, nparts)
    meta = taxi_partition(0, 0, columns)
    out: dict[str, dict] = {}
    with (
        dask.config.set({"dataframe.convert-string": False}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        warm = dd.from_map(taxi_item, [(0, 1000), (1, 1000)], meta=meta, column_set=columns)
        for method in methods:
            with contextlib.suppress(Exception):
                warm.shuffle(on, npartitions=2, shuffle_method=method).map_partitions(len).compute()
        idle = _total(list(client.run(_worker_rss).values()))
        ddf = dd.from_map(taxi_item, list(enumerate(sizes)), meta=meta, column_set=columns)
        ddf = ddf.persist()
        wait(ddf)
        for method in methods:
            times, lengths, peaks = [], None, []
            try:
                for _ in range(max(repeats, 1)):
                    client.run(_worker_reset_peak)
                    t0 = time.perf_counter()
                    shuffled = ddf.shuffle(on, npartitions=nparts, shuffle_method=method)
                    lengths = shuffled.map_partitions(len).compute()
                    times.append(time.perf_counter() - t0)
                    peaks.append(_total(list(client.run(_worker_peak).values())))
            except Exception as e:  # report, do not hide, a peer that fails
                out[method] = {"error": f"{type(e).__name__}: {e}"}
                continue
            out[method] = {
                "times": times,
                "lengths": sorted(map(int, lengths)),
                "peak_worker_rss_bytes": peaks[-1],
                "idle_worker_rss_bytes": idle,
            }
    return out


# ---------------------------------------------------------------- spark


def _spark_generate(batches: Any, sizes: list[int], columns: str) -> Any:
    for batch in batches:
        for i in batch["id"].tolist():
            yield taxi_partition(int(i), sizes[int(i)], columns)


def spark_schema(meta: pd.DataFrame) -> Any:
    from pyspark.sql import types as T

    fields = []
    for col, dtype in meta.dtypes.items():
        if dtype == np.int32:
            t = T.IntegerType()
        elif dtype == np.int64:
            t = T.LongType()
        elif dtype == np.float64:
            t = T.DoubleType()
        elif dtype.kind == "M":
            t = T.TimestampType()
        else:
            t = T.StringType()
        fields.append(T.StructField(str(col), t))
    return T.StructType(fields)


def run_spark(
    rows: int, nparts: int, on: str, columns: str, repeats: int, driver_memory: str
) -> dict:
    """Spark ``repartition(P, col)`` to the noop sink on ``local[2]``, from a cached frame."""
    import functools

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # pyspark's Python workers warn about pandas 3 on every partition; keep stderr readable
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    sizes = partition_rows(rows, nparts)
    meta = taxi_partition(0, 0, columns)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("taskbench-shuffle")
        # 1 GB default is too small for the cached frame; the bench says what it set
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", str(nparts))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        pid = _spark_jvm_pid(spark)
        idle = rss_bytes(pid) if pid else None
        generate = functools.partial(_spark_generate, sizes=sizes, columns=columns)
        df = spark.range(nparts, numPartitions=nparts).mapInPandas(generate, spark_schema(meta))
        df = df.cache()
        total = df.count()
        if total != rows:
            raise RuntimeError(f"Spark made {total} rows, expected {rows}")
        times, peaks = [], []
        for _ in range(max(repeats, 1)):
            if pid:
                reset_peak_rss(pid)
            t0 = time.perf_counter()
            df.repartition(nparts, F.col(on)).write.format("noop").mode("overwrite").save()
            times.append(time.perf_counter() - t0)
            peaks.append(peak_rss_bytes(pid) if pid else None)
        lengths = (
            df.repartition(nparts, F.col(on))
            .groupBy(F.spark_partition_id().alias("p"))
            .count()
            .collect()
        )
        df.unpersist()
    finally:
        spark.stop()
    return {
        "times": times,
        "lengths": sorted(int(r["count"]) for r in lengths),
        "peak_worker_rss_bytes": peaks[-1],
        "idle_worker_rss_bytes": idle,
        "driver_memory": driver_memory,
    }


def _spark_jvm_pid(spark: Any) -> int | None:
    with contextlib.suppress(Exception):
        return int(spark.sparkContext._jvm.ProcessHandle.current().pid())
    return None


# ---------------------------------------------------------------- command


def _timings(
    label: str, times: list[float], data_bytes: int, baseline: float, meta: dict, **params: Any
) -> list[BenchResult | None]:
    """Hot runs (run 1 is cold; the median of the rest is the time), MB/s and overhead."""
    hot = times[1:] or times
    seconds = statistics.median(hot)
    return [
        BenchResult.of("seconds", label, hot, meta, **params),
        BenchResult.of("cold_seconds", label, times[0], meta, **params),
        BenchResult.of("mb_per_s", label, data_bytes / seconds / 1e6, meta, **params),
        BenchResult.of("overhead_ratio", label, seconds / baseline, meta, **params),
    ]


def _memory(
    label: str, r: dict, data_bytes: int, meta: dict, **params: Any
) -> list[BenchResult | None]:
    peak, idle = r.get("peak_worker_rss_bytes"), r.get("idle_worker_rss_bytes")
    over = None if peak is None or idle is None else (peak - idle) / data_bytes
    return [
        BenchResult.of("peak_worker_rss_bytes", label, peak, meta, **params),
        BenchResult.of("idle_worker_rss_bytes", label, idle, meta, **params),
        BenchResult.of("memory_over_data", label, over, meta, **params),
    ]


def measure(
    args: argparse.Namespace, log: Callable[[str], None], metadata: dict[str, Any] | None = None
) -> tuple[list[BenchResult], dict[str, Any]]:
    """Every requested engine on the same frame: the records, and the run's parameters
    (with ``not_measured``: engine -> why, for an engine that could not run)."""
    meta = metadata if metadata is not None else run_metadata()
    rows, nparts, on, columns = args.rows, args.partitions, args.on, args.columns
    peers = [p for p in (args.vs or "").split(",") if p]
    log(f"building the frame: {rows:,} rows, {columns}")
    df = taxi_frame(rows, nparts, columns)
    if on not in df.columns:
        raise SystemExit(f"taskbench: --on {on!r} is not a column; columns are {list(df.columns)}")
    data_bytes = frame_bytes(df)
    frame = {"rows": rows, "partitions": nparts, "on": on, "columns": columns}
    log(f"pandas baseline: hash-partitioning {data_bytes / 1e6:,.0f} MB into {nparts}")
    base = pandas_baseline(df, on, nparts, args.repeats)
    del df
    baseline = base["seconds"]
    out: list[BenchResult | None] = [
        BenchResult.of("seconds", "pandas", base["times"], meta, "min", **frame),
        BenchResult.of("mb_per_s", "pandas", data_bytes / baseline / 1e6, meta, **frame),
        BenchResult.of("overhead_ratio", "pandas", 1.0, meta, **frame),
    ]
    not_measured: dict[str, str] = {}
    expected = base["lengths"]
    for method in args.methods:
        for mode in args.sizeof:
            label = f"taskbench-{method}" + ("" if mode == "sampled" else f"-{mode}")
            log(f"{label}: shuffling on a 2-worker LocalCluster (sizeof {mode})")
            try:
                r = run_engine(
                    rows, nparts, on, columns, method, mode, args.repeats,
                    stealing=not args.no_stealing,
                    options={"encode_strings": False} if args.pickle_strings else None,
                )  # fmt: skip
            except NotImplementedError as e:
                not_measured[label] = str(e)
                continue
            if r["lengths"] != expected:
                raise RuntimeError(f"{label}: partition sizes differ from pandas' hash partition")
            params = {**frame, "method": method, "sizeof": mode}
            out += _timings(label, r["times"], data_bytes, baseline, meta, **params)
            out += [
                BenchResult.of(name, label, r[name], meta, **params)
                for name in ("tasks", "lag_p50_us", "lag_p90_us", "lag_p99_us", "sizeof_seconds")
            ]
            out += _memory(label, r, data_bytes, meta, **params)
    if "dask" in peers:
        log("dask: shuffling on distributed.LocalCluster(2 × 1 thread)")
        for method, r in run_dask(
            rows, nparts, on, columns, ["tasks", "p2p"], args.repeats
        ).items():
            label = f"dask-{method}"
            if "error" in r:
                not_measured[label] = r["error"]
                continue
            if sum(r["lengths"]) != rows:
                raise RuntimeError(f"{label} lost rows: {sum(r['lengths'])} of {rows}")
            params = {**frame, "method": method}
            out += _timings(label, r["times"], data_bytes, baseline, meta, **params)
            out += _memory(label, r, data_bytes, meta, **params)
    if "spark" in peers:
        log("spark: repartition on local[2]")
        r = run_spark(rows, nparts, on, columns, args.repeats, args.spark_memory)
        if sum(r["lengths"]) != rows:
            raise RuntimeError(f"spark lost rows: {sum(r['lengths'])} of {rows}")
        params = {**frame, "driver_memory": r["driver_memory"]}
        out += _timings("spark", r["times"], data_bytes, baseline, meta, **params)
        out += _memory("spark", r, data_bytes, meta, **params)
    run = {
        **frame,
        "data_bytes": data_bytes,
        "repeats": args.repeats,
        "engine_stealing": not args.no_stealing,
        "engine_string_transit": "pickle" if args.pickle_strings else "arrow",
        "workers": 2,
        "threads_per_worker": 1,
        "not_measured": not_measured,
    }
    return collect(out), run


COLUMNS = [
    ("time s", "seconds", "{:.3f}"),
    ("cold s", "cold_seconds", "{:.3f}"),
    ("MB/s", "mb_per_s", "{:,.0f}"),
    ("overhead", "overhead_ratio", "{:.2f}"),
    ("lag p50 µs", "lag_p50_us", "{:,.0f}"),
    ("lag p99 µs", "lag_p99_us", "{:,.0f}"),
    ("sizeof s", "sizeof_seconds", "{:.3f}"),
    ("peak MB", "peak_worker_rss_bytes", "{:,.0f}"),
    ("mem/data", "memory_over_data", "{:.2f}"),
]


def format_results(results: list[BenchResult], run: dict[str, Any], cores: Any = "?") -> str:
    """The table (one row per engine), what was shuffled, and the best engine's ratios."""
    lines = [
        f"{run['rows']:,} taxi-like rows ({run['columns']}), {run['data_bytes'] / 1e6:,.0f} MB "
        f"in memory, hash shuffle on {run['on']!r} {run['partitions']} -> "
        f"{run['partitions']} partitions; 2 worker processes × 1 thread "
        f"(Spark local[2]); {cores} cores",
        "time = median of hot runs (cold = run 1); overhead = time / pandas hash-partition"
        + ("" if run.get("engine_stealing", True) else "; engine work stealing OFF")
        + ("; engine pickles strings" if run.get("engine_string_transit") == "pickle" else ""),
        "",
    ]
    engines = list(dict.fromkeys(r.engine for r in results))
    rows: list[list[str]] = []
    for e in engines:
        cells = []
        for _, name, spec in COLUMNS:
            value = find(results, name, e)
            if name == "peak_worker_rss_bytes" and value is not None:
                value /= 1e6
            cells.append(fmt(value, spec))
        rows.append([e, *cells])
    for e, reason in run.get("not_measured", {}).items():
        rows.append([f"{e:<24}  not measured: {reason.split(': it ')[0]}"])
    lines.append(format_table(["engine", *(c[0] for c in COLUMNS)], rows, min_width=8))
    best = _best_engine(results)
    if best:
        for peer in ("dask-p2p", "dask-tasks", "spark"):
            theirs = find(results, "seconds", peer)
            if theirs is not None:
                ratio = theirs / find(results, "seconds", best)
                lines.append(f"{best} vs {peer}: ×{ratio:.2f} faster (same frame, same run)")
    return "\n".join(lines)


def _best_engine(results: list[BenchResult]) -> str | None:
    ours = [
        (r.value, r.engine)
        for r in results
        if r.name == "seconds" and r.engine.startswith("taskbench")
        and r.params.get("sizeof") == "sampled"
    ]  # fmt: skip
    return min(ours)[1] if ours else None


def cmd_shuffle(args: argparse.Namespace) -> int:
    peers = [p for p in (args.vs or "").split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        known = ", ".join(PEERS)
        print(
            f"taskbench bench shuffle: error: argument --vs: unknown peer(s) "
            f"{', '.join(sorted(unknown))}; known: {known}",
            file=sys.stderr,
        )
        return 2
    columns = list(taxi_partition(0, 1, args.columns).columns)
    if args.on not in columns:  # checked before the frame is built
        print(
            f"taskbench bench shuffle: error: argument --on: {args.on!r} is not a column; "
            f"columns are {', '.join(columns)}",
            file=sys.stderr,
        )
        return 2

    def log(msg: str) -> None:
        print(f"[shuffle] {msg}", file=sys.stderr, flush=True)

    metadata = run_metadata()
    results, run = measure(args, log, metadata)
    if args.json:
        print(json.dumps(to_document("shuffle", results, metadata, **run), indent=2))
    else:
        print(format_results(results, run, metadata["machine"]["cores"]))
    return 0


def add_parser(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``shuffle`` to ``taskbench bench``'s subcommands."""
    from taskbench.engine.dataframe import SHUFFLE_METHODS

    p = bench_subparsers.add_parser(
        "shuffle", help="hash-shuffle time, MB/s and overhead ratio vs dask and Spark"
    )
    p.add_argument("--rows", type=parse_rows, default=1_000_000, help="e.g. 200k, 1M, 10M")
    p.add_argument(
        "--partitions", type=positive_int, default=32, help="input and output partitions"
    )
    p.add_argument("--on", default="trip_id", help="the shuffle key column (checked at start)")
    p.add_argument("--columns", choices=COLUMN_SETS, default=STRINGS, help="column set")
    p.add_argument(
        "--methods", type=comma_choices(SHUFFLE_METHODS, "method"), default=list(SHUFFLE_METHODS),
        help=f"engine implementations, comma-separated (default: {','.join(SHUFFLE_METHODS)})",
    )  # fmt: skip
    p.add_argument(
        "--sizeof", type=comma_choices(SIZEOF_MODES, "sizeof mode"), default=list(SIZEOF_MODES),
        help=f"engine sizeof modes to run, comma-separated (default: {','.join(SIZEOF_MODES)})",
    )  # fmt: skip
    p.add_argument("--repeats", type=positive_int, default=3, help="runs of each engine")
    p.add_argument(
        "--no-stealing", action="store_true", help="engine without work stealing (diagnostic)"
    )
    p.add_argument(
        "--pickle-strings", action="store_true",
        help="engine tasks shuffle pickles object strings one by one (2016 dask; default: Arrow)",
    )  # fmt: skip
    p.add_argument("--vs", default="", help="comma-separated peers: dask,spark")
    p.add_argument("--spark-memory", default="6g", help="spark.driver.memory (default 1g is small)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_shuffle)
    return p
