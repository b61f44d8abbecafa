"""``taskbench bench shuffle``: one hash shuffle of the same frame on every engine, in one run.

Every engine gets the same taxi-like frame (`taxi_partition`, seeded per partition), made in
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
shuffle (Linux peak counters are reset first); ``mem/data`` is that peak less the workers'
RSS before the data was made (after a warm-up), over the frame's size: input and output both
live at the peak, so 2 is the floor for a shuffle that copies.
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

SEED = 42
ZONES = 265
NUMERIC = "numeric"
STRINGS = "strings"
COLUMN_SETS = (NUMERIC, STRINGS)
_EPOCH = np.datetime64("2015-01-01T00:00:00", "us")
_MONTH_US = 31 * 86_400 * 10**6


def _hex_strings(rng: np.random.Generator, n: int, width: int = 32) -> np.ndarray:
    """``n`` distinct-object random hex strings of ``width`` chars, as an object array."""
    digits = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
    text = digits[rng.integers(0, 16, n * width)].tobytes().decode("ascii")
    out = np.empty(n, dtype=object)
    out[:] = [text[i : i + width] for i in range(0, n * width, width)]
    return out


def taxi_partition(
    index: int, rows: int, columns: str = STRINGS, seed: int = SEED, nparts: int = 0
) -> pd.DataFrame:
    """Partition ``index`` of a taxi-like frame: ``rows`` trips, deterministic for the seed.

    numeric: vendor, pickup/dropoff times, passengers, distance, zones, payment type, fare,
    tip, total and a unique ``trip_id`` (``index * rows + row``); strings adds
    ``store_and_fwd_flag`` (Y/N) and the 2013 files' ``medallion`` and ``hack_license``
    (32-char hex), as object columns with one Python string per row, as pandas reads CSV.
    """
    if columns not in COLUMN_SETS:
        raise ValueError(f"columns must be one of {COLUMN_SETS}, got {columns!r}")
    rng = np.random.default_rng([seed, index])
    pickup = _EPOCH + rng.integers(0, _MONTH_US, rows).astype("timedelta64[us]")
    duration = (rng.gamma(2.0, 400.0, rows) * 1e6).astype("timedelta64[us]")
    distance = np.round(rng.gamma(1.5, 2.0, rows), 2)
    fare = np.round(2.5 + 2.5 * distance + rng.normal(0, 1, rows).clip(-2, 5), 2)
    tip = np.round(fare * rng.choice([0.0, 0.15, 0.2, 0.25], rows), 2)
    data: dict[str, Any] = {
        "VendorID": rng.integers(1, 3, rows, dtype=np.int32),
        "tpep_pickup_datetime": pickup,
        "tpep_dropoff_datetime": pickup + duration,
        "passenger_count": rng.choice(np.array([1, 1, 1, 1, 2, 2, 3, 5, 6], np.int32), rows),
        "trip_distance": distance,
        "PULocationID": rng.integers(1, ZONES + 1, rows, dtype=np.int32),
        "DOLocationID": rng.integers(1, ZONES + 1, rows, dtype=np.int32),
        "payment_type": rng.choice(np.array([1, 1, 2, 3], np.int32), rows),
        "fare_amount": fare,
        "tip_amount": tip,
        "total_amount": np.round(fare + tip + 0.8, 2),
        "trip_id": np.arange(index * rows, (index + 1) * rows, dtype=np.int64),
    }
    if columns == STRINGS:
        flags = np.array(["N", "Y"], dtype=object)
        data["store_and_fwd_flag"] = flags[(rng.random(rows) < 0.01).astype(np.intp)]
        data["medallion"] = _hex_strings(rng, rows)
        data["hack_license"] = _hex_strings(rng, rows)
    df = pd.DataFrame(data)
    for col in ("store_and_fwd_flag", "medallion", "hack_license"):
        if col in df:
            df[col] = df[col].astype(object)
    return df


def partition_rows(rows: int, nparts: int) -> list[int]:
    """Rows of each of ``nparts`` partitions: as equal as possible, summing to ``rows``."""
    return [rows * (i + 1) // nparts - rows * i // nparts for i in range(nparts)]


def taxi_frame(rows: int, nparts: int, columns: str = STRINGS, seed: int = SEED) -> pd.DataFrame:
    """The whole frame the engines shuffle: the concatenation of its partitions."""
    sizes = partition_rows(rows, nparts)
    parts = [taxi_partition(i, n, columns, seed) for i, n in enumerate(sizes)]
    return pd.concat(parts, ignore_index=True)


def parse_rows(text: str) -> int:
    """``1M``, ``10M``, ``500k``, ``1e6`` or ``1000000`` as an int."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(t[-1:], 1)
    if scale != 1:
        t = t[:-1]
    try:
        value = float(t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a row count: {text!r}") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a positive row count: {text!r}")
    return int(value)


# ---------------------------------------------------------------- memory


def reset_peak_rss(pid: int | None = None) -> bool:
    """Reset a process's peak RSS counter (Linux ``clear_refs``); False where unsupported."""
    path = f"/proc/{pid or 'self'}/clear_refs"
    try:
        with open(path, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_bytes(pid: int | None, field: str) -> int | None:
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes(pid: int | None = None) -> int | None:
    """A process's peak RSS since start or the last reset (VmHWM), or None."""
    return _status_bytes(pid, "VmHWM:")


def rss_bytes(pid: int | None = None) -> int | None:
    """A process's resident set now (VmRSS), or None."""
    return _status_bytes(pid, "VmRSS:")


def _total(values: list) -> int | None:
    return None if not values or any(v is None for v in values) else sum(values)


def frame_bytes(df: pd.DataFrame) -> int:
    return int(df.memory_usage(deep=True, index=True).sum())


# ---------------------------------------------------------------- baseline


def time_pandas(df: pd.DataFrame, on: str, nparts: int, repeats: int) -> dict:
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


def _summary(times: list[float], data_bytes: int, baseline: float) -> dict:
    hot = times[1:] or times
    seconds = statistics.median(hot)
    return {
        "seconds": seconds,
        "cold_seconds": times[0],
        "runs": times,
        "mb_per_s": data_bytes / seconds / 1e6,
        "overhead_ratio": seconds / baseline,
    }


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
    """The engine's shuffle on a fresh LocalCluster with ``TASKBENCH_SIZEOF=sizeof_mode``."""
    from taskbench.engine.client import Client
    from taskbench.engine.cluster import LocalCluster
    from taskbench.engine.dataframe import from_map, from_pandas

    sizes = partition_rows(rows, nparts)
    meta = taxi_partition(0, 0, columns)
    from_pandas(meta, 1).shuffle(on, 1, method=method)  # NotImplementedError before any cluster
    env = {"TASKBENCH_SIZEOF": sizeof_mode}
    cluster = LocalCluster(workers, 1, env=env, stealing=stealing)
    with cluster, Client(cluster) as client:
        # warm up (imports on the workers) before the idle memory is read
        warm = from_map(_taxi_item, [(0, 1000), (1, 1000)], meta=meta, column_set=columns)
        warm.shuffle(on, 2, method=method).map_partitions(len).compute()
        pids = [p.pid for p in cluster.worker_processes]
        idle = _total([rss_bytes(pid) for pid in pids])
        frame = from_map(_taxi_item, list(enumerate(sizes)), meta=meta, column_set=columns)
        frame = frame.persist()
        total = int(frame.length().compute())
        if total != rows:
            raise RuntimeError(f"the engine made {total} rows, expected {rows}")
        times, lengths, streams, peaks = [], None, [], []
        for _ in range(max(repeats, 1)):
            for pid in pids:
                reset_peak_rss(pid)
            start = client.stream_position()
            t0 = time.perf_counter()
            shuffled = frame.shuffle(on, nparts, method=method, **(options or {}))
            lengths = shuffled.map_partitions(len).compute()
            times.append(time.perf_counter() - t0)
            streams.append(client.task_stream(start))
            peaks.append(_total([peak_rss_bytes(pid) for pid in pids]))
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


def _taxi_item(item: tuple[int, int], column_set: str) -> pd.DataFrame:
    index, rows = item
    return taxi_partition(index, rows, column_set)


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
        warm = dd.from_map(_taxi_item, [(0, 1000), (1, 1000)], meta=meta, column_set=columns)
        for method in methods:
            with contextlib.suppress(Exception):
                warm.shuffle(on, npartitions=2, shuffle_method=method).map_partitions(len).compute()
        idle = _total(list(client.run(_worker_rss).values()))
        ddf = dd.from_map(_taxi_item, list(enumerate(sizes)), meta=meta, column_set=columns)
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


def measure(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    """Every requested engine on the same frame; one result object keyed by engine."""
    rows, nparts, on, columns = args.rows, args.partitions, args.on, args.columns
    peers = [p for p in (args.vs or "").split(",") if p]
    log(f"building the frame: {rows:,} rows, {columns}")
    df = taxi_frame(rows, nparts, columns)
    if on not in df.columns:
        raise SystemExit(f"taskbench: --on {on!r} is not a column; columns are {list(df.columns)}")
    data_bytes = frame_bytes(df)
    log(f"pandas baseline: hash-partitioning {data_bytes / 1e6:,.0f} MB into {nparts}")
    base = time_pandas(df, on, nparts, args.repeats)
    del df
    baseline = base["seconds"]
    results: dict[str, Any] = {
        "pandas": {
            "seconds": baseline,
            "runs": base["times"],
            "mb_per_s": data_bytes / baseline / 1e6,
            "overhead_ratio": 1.0,
        }
    }
    expected = base["lengths"]
    for method in args.methods.split(","):
        for mode in args.sizeof.split(","):
            label = f"taskbench-{method}" + ("" if mode == "sampled" else f"-{mode}")
            log(f"{label}: shuffling on a 2-worker LocalCluster (sizeof {mode})")
            try:
                r = run_engine(
                    rows, nparts, on, columns, method, mode, args.repeats,
                    stealing=not args.no_stealing,
                    options={"encode_strings": False} if args.pickle_strings else None,
                )  # fmt: skip
            except NotImplementedError as e:
                results[label] = {"available": False, "error": str(e)}
                continue
            if r["lengths"] != expected:
                raise RuntimeError(f"{label}: partition sizes differ from pandas' hash partition")
            results[label] = {**_summary(r.pop("times"), data_bytes, baseline), **r}
            results[label]["sizeof_mode"] = mode
    if "dask" in peers:
        log("dask: shuffling on distributed.LocalCluster(2 × 1 thread)")
        for method, r in run_dask(
            rows, nparts, on, columns, ["tasks", "p2p"], args.repeats
        ).items():
            if "error" in r:
                results[f"dask-{method}"] = r
                continue
            if sum(r["lengths"]) != rows:
                raise RuntimeError(f"dask-{method} lost rows: {sum(r['lengths'])} of {rows}")
            results[f"dask-{method}"] = {**_summary(r.pop("times"), data_bytes, baseline), **r}
    if "spark" in peers:
        log("spark: repartition on local[2]")
        r = run_spark(rows, nparts, on, columns, args.repeats, args.spark_memory)
        if sum(r["lengths"]) != rows:
            raise RuntimeError(f"spark lost rows: {sum(r['lengths'])} of {rows}")
        results["spark"] = {**_summary(r.pop("times"), data_bytes, baseline), **r}
    for r in results.values():
        r.pop("lengths", None)
        peak, idle = r.get("peak_worker_rss_bytes"), r.get("idle_worker_rss_bytes")
        if peak is not None and idle is not None:
            r["memory_over_data"] = (peak - idle) / data_bytes
    results["meta"] = {
        "rows": rows,
        "partitions": nparts,
        "on": on,
        "columns": columns,
        "data_bytes": data_bytes,
        "repeats": args.repeats,
        "engine_stealing": not args.no_stealing,
        "engine_string_transit": "pickle" if args.pickle_strings else "arrow",
        "workers": 2,
        "threads_per_worker": 1,
        "machine": _machine(),
    }
    return results


def _machine() -> dict:
    from taskbench.engine.bench import machine

    return machine()


def _fmt(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def format_table(results: dict) -> str:
    meta = results["meta"]
    lines = [
        f"{meta['rows']:,} taxi-like rows ({meta['columns']}), {meta['data_bytes'] / 1e6:,.0f} MB "
        f"in memory, hash shuffle on {meta['on']!r} {meta['partitions']} -> "
        f"{meta['partitions']} partitions; 2 worker processes × 1 thread "
        f"(Spark local[2]); {machine_cores(meta)} cores",
        "time = median of hot runs (cold = run 1); overhead = time / pandas hash-partition"
        + ("" if meta.get("engine_stealing", True) else "; engine work stealing OFF")
        + ("; engine pickles strings" if meta.get("engine_string_transit") == "pickle" else ""),
        "",
        f"{'engine':<24}{'time s':>9}{'cold s':>9}{'MB/s':>9}{'overhead':>10}"
        f"{'lag p50 µs':>12}{'lag p99 µs':>12}{'sizeof s':>10}{'peak MB':>10}{'mem/data':>10}",
    ]
    for name, r in results.items():
        if name == "meta":
            continue
        if "seconds" not in r:
            reason = r.get("error", "not available").split(": it ")[0]
            lines.append(f"{name:<24}  not measured: {reason}")
            continue
        peak = r.get("peak_worker_rss_bytes")
        lines.append(
            f"{name:<24}{r['seconds']:>9.3f}{_fmt(r.get('cold_seconds'), '{:.3f}'):>9}"
            f"{r['mb_per_s']:>9,.0f}{r['overhead_ratio']:>10.2f}"
            f"{_fmt(r.get('lag_p50_us'), '{:,.0f}'):>12}{_fmt(r.get('lag_p99_us'), '{:,.0f}'):>12}"
            f"{_fmt(r.get('sizeof_seconds'), '{:.3f}'):>10}"
            f"{_fmt(None if peak is None else peak / 1e6, '{:,.0f}'):>10}"
            f"{_fmt(r.get('memory_over_data'), '{:.2f}'):>10}"
        )
    best = _best_engine(results)
    if best:
        for peer in ("dask-p2p", "dask-tasks", "spark"):
            r = results.get(peer)
            if r and "seconds" in r:
                ratio = r["seconds"] / results[best]["seconds"]
                lines.append(f"{best} vs {peer}: ×{ratio:.2f} faster (same frame, same run)")
    return "\n".join(lines)


def machine_cores(meta: dict) -> Any:
    return meta.get("machine", {}).get("cores", "?")


def _best_engine(results: dict) -> str | None:
    ours = [
        (r["seconds"], name)
        for name, r in results.items()
        if name.startswith("taskbench") and "seconds" in r and r.get("sizeof_mode") == "sampled"
    ]
    return min(ours)[1] if ours else None


def cmd_shuffle(args: argparse.Namespace) -> int:
    peers = [p for p in (args.vs or "").split(",") if p]
    unknown = set(peers) - {"dask", "spark"}
    if unknown:
        print(f"taskbench: unknown peer(s) {sorted(unknown)}; known: dask, spark", file=sys.stderr)
        return 2
    for mode in args.sizeof.split(","):
        if mode not in ("sampled", "deep"):
            print(f"taskbench: unknown sizeof mode {mode!r}", file=sys.stderr)
            return 2

    def log(msg: str) -> None:
        print(f"[shuffle] {msg}", file=sys.stderr, flush=True)

    results = measure(args, log)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    return 0


def add_parser(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``shuffle`` to ``taskbench bench``'s subcommands."""
    p = bench_subparsers.add_parser(
        "shuffle", help="hash-shuffle time, MB/s and overhead ratio vs dask and Spark"
    )
    p.add_argument("--rows", type=parse_rows, default=1_000_000, help="e.g. 1M, 10M")
    p.add_argument("--partitions", type=int, default=32, help="input and output partitions")
    p.add_argument("--on", default="trip_id", help="the shuffle key column")
    p.add_argument("--columns", choices=COLUMN_SETS, default=STRINGS)
    p.add_argument("--methods", default="tasks,p2p", help="engine implementations")
    p.add_argument("--sizeof", default="sampled,deep", help="engine sizeof modes to run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--no-stealing", action="store_true", help="engine without work stealing (diagnostic)"
    )
    p.add_argument(
        "--pickle-strings", action="store_true",
        help="engine tasks shuffle pickles object strings one by one (2016 dask; default: Arrow)",
    )  # fmt: skip
    p.add_argument("--vs", default="", help="comma-separated peers: dask,spark")
    p.add_argument("--spark-memory", default="6g", help="spark.driver.memory (default 1g is small)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_shuffle)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m taskbench.engine.bench_shuffle shuffle …``, before the command is wired in."""
    parser = argparse.ArgumentParser(prog="taskbench bench")
    add_parser(parser.add_subparsers(dest="suite", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    from taskbench.engine.bench_shuffle import (
        main as _main,
    )  # tasks must pickle as engine.bench_shuffle.*

    sys.exit(_main())
