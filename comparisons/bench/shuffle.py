"""``taskbench bench shuffle``: one hash shuffle of the same frame on every engine, in one run.

Every engine gets the same taxi-like frame (`frames.taxi_partition`, seeded per partition), made in
memory on its own workers before the clock starts, the same number of worker processes and
cores (2 × 1 thread; Spark ``local[2]``), and the same work: hash-partition the frame on
``--on`` into ``--partitions`` partitions and touch every output row. Timed is the shuffle
plus that action only. The subjects:

- pandas, the baseline: one process hash-partitioning the whole frame in memory into P
  partitions (`partition_by_hash`);
- taskbench: ``shuffle(on, P, method).map_partitions(len)`` on a 2-worker `LocalCluster`, for
  each implementation and each sizeof mode (``sampled``, the default, and ``deep``, the exact
  size whose cost lagged the 2016 workers), with the engine's task stream for inter-task lag;
- dask: ``DataFrame.shuffle(on, npartitions=P, shuffle_method="tasks" | "p2p")`` plus
  ``map_partitions(len)`` on ``distributed.LocalCluster(2 processes × 1 thread)``, with
  ``dataframe.convert-string`` off so it shuffles the same object columns;
- each engine subject (method and sizeof mode) and each dask method has a cluster of its
  own, so that no subject's peak memory counts what another left in the workers' allocators
  (measured: p2p after the ``tasks`` shuffle on the same workers read 1.83× the data, alone
  1.49×);
- Spark: ``repartition(P, col)`` written to the ``noop`` sink (every row and column is
  materialised, nothing is written) on ``local[2]``, from a cached DataFrame.

All subjects are set up first and hold the frame at once; then each of ``--repeats`` rounds
runs every subject once, the order rotated one place per round (`comparisons.bench.interleave`),
so the baseline's noise (it swings by half on this machine) falls on its round, not on a
verdict. Round 1 is cold; the time is the median of the other rounds. The shuffle overhead
(DESIGN.md) is a ratio of medians, subject ÷ baseline: median engine time ÷ median pandas time
over the same hot rounds, with the bootstrap 95 % interval of `comparisons.stats` (the inverse
of `stats.speedup`'s direction: above 1, the engine is slower than pandas in memory). MB/s is
the frame's in-memory size (pandas, deep) ÷ time. Peak memory is the workers' summed peak RSS
during each shuffle (Linux peak counters are reset first; Spark's JVM with its Python
workers); ``mem/data`` is that peak less the workers' RSS before the data was made (after a
warm-up), over the frame's size: input and output both live at the peak, so 2 is the floor
for a shuffle that copies. Every output is checked: the engine's partition sizes equal pandas'
hash partition, and no peer loses a row.

The workers unpickle their tasks (`frames.taxi_item`) by reference to
``taskbench.comparisons.bench.frames``, which they import; it needs numpy and pandas only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psutil
from taskbench.comparisons.argtypes import comma_choices, parse_rows, positive_int
from taskbench.comparisons.bench import (
    NotMeasured,
    Rounds,
    interleave,
    ratio_json,
    ratio_of_medians,
)
from taskbench.comparisons.bench.console import (
    Say,
    add_output_flags,
    emit,
    log_folder,
    peer_logs,
    progress,
    ratio_text,
    spread,
)
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
    fmt,
    format_table,
    run_metadata,
    to_document,
)
from taskbench.engine.options import SIZEOF_MODES

PEERS = ("dask", "spark")
BASELINE = "pandas"
#: Figures a subject's run may report beside its seconds, recorded over the hot rounds.
PER_RUN = ("tasks", "lag_p50_us", "lag_p90_us", "lag_p99_us", "sizeof_seconds",
           "peak_worker_rss_bytes")  # fmt: skip


@dataclass
class Subject:
    """One thing the bench times, once per round.

    ``run`` does one timed shuffle and returns ``{"seconds": …}`` with any `PER_RUN` figures
    and the output's partition sizes (``"lengths"``); it raises `NotMeasured` when the subject
    cannot run. ``constant`` holds figures read once (the workers' idle RSS). ``lengths``,
    where set, reads the output's partition sizes after the rounds (Spark's runs do not).
    """

    label: str  #: its row in the table: ``taskbench-tasks``, ``dask-p2p``, ``pandas``
    engine: str  #: its records' engine: ``taskbench``, ``dask``, ``spark``, ``pandas``
    params: dict[str, Any]
    run: Callable[[], dict[str, Any]]
    constant: dict[str, Any] = field(default_factory=dict)
    lengths: Callable[[], list[int]] | None = None


def _total(values: list[int | None]) -> int | None:
    return None if not values or any(v is None for v in values) else sum(values)


def _unavailable(label: str, engine: str, params: dict[str, Any], reason: str) -> Subject:
    def run() -> dict[str, Any]:
        raise NotMeasured(reason)

    return Subject(label, engine, params, run)


# ---------------------------------------------------------------- baseline


def hash_partition(df: pd.DataFrame, on: str, nparts: int) -> tuple[float, list[int]]:
    """One timed in-memory hash partition of ``df``: (seconds, partition sizes)."""
    from taskbench.engine.dataframe.shuffle import partition_by_hash

    t0 = time.perf_counter()
    shards = partition_by_hash(df, on, nparts)
    seconds = time.perf_counter() - t0
    return seconds, [len(s) for s in shards]


def pandas_baseline(df: pd.DataFrame, on: str, nparts: int, repeats: int) -> dict:
    """One process hash-partitioning the frame in memory, ``repeats`` times in a row.

    ``seconds`` is the fastest run (the asv suite's denominator: pandas at its best). The
    bench does not use it: it interleaves the baseline with its subjects (`pandas_subject`).
    """
    times, lengths = [], []
    for _ in range(max(repeats, 1)):
        seconds, lengths = hash_partition(df, on, nparts)
        times.append(seconds)
    return {"times": times, "seconds": min(times), "lengths": lengths}


def pandas_subject(df: pd.DataFrame, on: str, nparts: int) -> Subject:
    """The baseline as a subject of the rounds: one in-memory hash partition per round."""

    def run() -> dict[str, Any]:
        seconds, lengths = hash_partition(df, on, nparts)
        return {"seconds": seconds, "lengths": lengths}

    return Subject(BASELINE, BASELINE, {"role": "baseline"}, run)


# ---------------------------------------------------------------- taskbench


def engine_label(method: str, sizeof_mode: str) -> str:
    return f"taskbench-{method}" + ("" if sizeof_mode == "sampled" else f"-{sizeof_mode}")


@contextlib.contextmanager
def engine_subjects(
    rows: int,
    nparts: int,
    on: str,
    columns: str,
    methods: list[str],
    sizeof_mode: str,
    workers: int = 2,
    stealing: bool = True,
    options: dict | None = None,
) -> Iterator[list[Subject]]:
    """The engine's shuffles, one subject per method, each on its own LocalCluster holding
    the frame (workers sizing results by ``sizeof_mode``): no method's peak memory counts
    what another left in the workers' allocators."""
    from taskbench.engine.dataframe import from_pandas

    meta = taxi_partition(0, 0, columns)
    subjects = []
    with contextlib.ExitStack() as stack:
        for method in methods:
            params = {"method": method, "sizeof": sizeof_mode}
            try:  # NotImplementedError before any cluster
                from_pandas(meta, 1).shuffle(on, 1, method=method)
            except NotImplementedError as e:
                label = engine_label(method, sizeof_mode)
                subjects.append(_unavailable(label, "taskbench", params, str(e)))
                continue
            subjects.append(stack.enter_context(_engine_subject(
                rows, nparts, on, columns, method, sizeof_mode, workers, stealing, options
            )))  # fmt: skip
        yield subjects


@contextlib.contextmanager
def _engine_subject(
    rows: int, nparts: int, on: str, columns: str, method: str, sizeof_mode: str, workers: int,
    stealing: bool, options: dict | None,
) -> Iterator[Subject]:  # fmt: skip
    from taskbench.engine.client import Client
    from taskbench.engine.cluster import LocalCluster
    from taskbench.engine.dataframe import from_map

    meta = taxi_partition(0, 0, columns)
    cluster = LocalCluster(workers, 1, sizeof=sizeof_mode, stealing=stealing)
    with cluster, Client(cluster) as client:
        # warm up (imports on the workers) before the idle memory is read
        warm = from_map(taxi_item, [(0, 1000), (1, 1000)], meta=meta, column_set=columns)
        warm.shuffle(on, 2, method=method).map_partitions(len).compute()
        pids = [p.pid for p in cluster.worker_processes]
        idle = rss_bytes(*pids)
        frame = from_map(
            taxi_item, list(enumerate(partition_rows(rows, nparts))), meta=meta, column_set=columns
        ).persist()
        total = int(frame.length().compute())
        if total != rows:
            raise RuntimeError(f"the engine made {total} rows, expected {rows}")

        def shuffle_once() -> dict[str, Any]:
            reset_peak_rss(*pids)
            start = client.stream_position()
            t0 = time.perf_counter()
            shuffled = frame.shuffle(on, nparts, method=method, **(options or {}))
            lengths = shuffled.map_partitions(len).compute()
            seconds = time.perf_counter() - t0
            stream = client.task_stream(start)
            lags = stream.lag_percentiles((50, 90, 99))
            return {
                "seconds": seconds,
                "lengths": list(map(int, lengths)),
                "tasks": len(stream),
                **{f"lag_{p}_us": v for p, v in lags.items()},
                "sizeof_seconds": sum(r.sizeof_seconds for r in stream),
                "peak_worker_rss_bytes": peak_rss_bytes(*pids),
            }

        params = {"method": method, "sizeof": sizeof_mode}
        yield Subject(engine_label(method, sizeof_mode), "taskbench", params, shuffle_once,
                      {"idle_worker_rss_bytes": idle})  # fmt: skip


# ---------------------------------------------------------------- dask


def _worker_reset_peak() -> bool:
    return reset_peak_rss()


def _worker_peak() -> int | None:
    return peak_rss_bytes()


def _worker_rss() -> int | None:
    return rss_bytes()


@contextlib.contextmanager
def dask_subjects(
    rows: int, nparts: int, on: str, columns: str, methods: list[str]
) -> Iterator[list[Subject]]:
    """dask's shuffles, one subject per method, each on its own
    ``distributed.LocalCluster(2 × 1 thread)`` holding the frame (as the engine's)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(_dask_subject(rows, nparts, on, columns, m)) for m in methods]


@contextlib.contextmanager
def _dask_subject(rows: int, nparts: int, on: str, columns: str, method: str) -> Iterator[Subject]:
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster, wait

    meta = taxi_partition(0, 0, columns)
    with (
        dask.config.set({"dataframe.convert-string": False}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        warm = dd.from_map(taxi_item, [(0, 1000), (1, 1000)], meta=meta, column_set=columns)
        with contextlib.suppress(Exception):  # a method that fails is reported by its run
            warm.shuffle(on, npartitions=2, shuffle_method=method).map_partitions(len).compute()
        idle = _total(list(client.run(_worker_rss).values()))
        items = list(enumerate(partition_rows(rows, nparts)))
        ddf = dd.from_map(taxi_item, items, meta=meta, column_set=columns).persist()
        wait(ddf)

        def shuffle_once() -> dict[str, Any]:
            try:
                client.run(_worker_reset_peak)
                t0 = time.perf_counter()
                shuffled = ddf.shuffle(on, npartitions=nparts, shuffle_method=method)
                lengths = shuffled.map_partitions(len).compute()
                seconds = time.perf_counter() - t0
                peak = _total(list(client.run(_worker_peak).values()))
            except Exception as e:  # report, do not hide, a peer that fails
                raise NotMeasured(f"{type(e).__name__}: {e}") from e
            return {
                "seconds": seconds,
                "lengths": sorted(map(int, lengths)),
                "peak_worker_rss_bytes": peak,
            }

        yield Subject(f"dask-{method}", "dask", {"method": method}, shuffle_once,
                      {"idle_worker_rss_bytes": idle})  # fmt: skip


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


@contextlib.contextmanager
def spark_subject(
    rows: int, nparts: int, on: str, columns: str, driver_memory: str
) -> Iterator[Subject]:
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

        def shuffle_once() -> dict[str, Any]:
            if pid:
                reset_peak_rss(pid)
            t0 = time.perf_counter()
            df.repartition(nparts, F.col(on)).write.format("noop").mode("overwrite").save()
            seconds = time.perf_counter() - t0
            return {
                "seconds": seconds,
                "peak_worker_rss_bytes": peak_rss_bytes(pid) if pid else None,
            }

        def lengths() -> list[int]:
            counts = (
                df.repartition(nparts, F.col(on))
                .groupBy(F.spark_partition_id().alias("p"))
                .count()
                .collect()
            )
            return sorted(int(r["count"]) for r in counts)

        yield Subject("spark", "spark", {"driver_memory": driver_memory}, shuffle_once,
                      {"idle_worker_rss_bytes": idle}, lengths)  # fmt: skip
        df.unpersist()
    finally:
        spark.stop()


def _spark_jvm_pid(spark: Any) -> int | None:
    with contextlib.suppress(Exception):
        return int(spark.sparkContext._jvm.ProcessHandle.current().pid())
    return None


# ---------------------------------------------------------------- records


def records(
    subjects: list[Subject],
    rounds: Rounds[dict[str, Any]],
    data_bytes: int,
    metadata: dict[str, Any],
    **frame: Any,
) -> tuple[list[BenchResult], list[dict[str, Any]]]:
    """Each measured subject's records over the rounds, and the engines' ratios to the peers.

    Round 1 is cold (``cold_seconds``); ``seconds`` and every other figure are taken over the
    other rounds (all of them when there is one). ``overhead_ratio`` is median subject
    seconds ÷ median baseline seconds over those rounds, its interval in params ``low`` and
    ``high``.
    """
    hot = {label: runs[1:] or runs for label, runs in rounds.results.items()}
    seconds = {label: [r["seconds"] for r in runs] for label, runs in hot.items()}
    out: list[BenchResult | None] = []
    for s in subjects:
        if s.label not in rounds.results:
            continue
        params = {**frame, **s.params}
        runs, secs = hot[s.label], seconds[s.label]

        def rec(
            name: str, values: Any, params: dict[str, Any] = params, engine: str = s.engine
        ) -> BenchResult | None:
            return BenchResult.of(name, engine, values, metadata, **params)

        out += [
            rec("seconds", secs),
            rec("cold_seconds", rounds.results[s.label][0]["seconds"]),
            rec("mb_per_s", [data_bytes / t / 1e6 for t in secs]),
        ]
        if s.label != BASELINE and BASELINE in seconds:
            r = ratio_of_medians(secs, seconds[BASELINE])
            extra = {"baseline": BASELINE, "low": r.low, "high": r.high,
                     "confidence": r.confidence}  # fmt: skip
            out.append(rec("overhead_ratio", r.value, {**params, **extra}))
        for name in PER_RUN:
            out.append(rec(name, [r[name] for r in runs if r.get(name) is not None] or None))
        idle = s.constant.get("idle_worker_rss_bytes")
        out.append(rec("idle_worker_rss_bytes", idle))
        if idle is not None:
            peaks = [r["peak_worker_rss_bytes"] for r in runs if r.get("peak_worker_rss_bytes")]
            out.append(rec("memory_over_data", [(p - idle) / data_bytes for p in peaks] or None))
    ratios = []
    ours = [s.label for s in subjects if s.engine == "taskbench" and s.label in seconds]
    peers = [s.label for s in subjects if s.engine in PEERS and s.label in seconds]
    for mine in ours:
        for peer in peers:  # how many times faster ours is: peer seconds ÷ our seconds
            r = ratio_of_medians(seconds[peer], seconds[mine])
            ratios.append(ratio_json(r, peer, mine, quantity="seconds"))
    return collect(out), ratios


def check_outputs(subjects: list[Subject], rounds: Rounds[dict[str, Any]], rows: int) -> None:
    """The engine's partitions are pandas' hash partitions; no peer lost a row."""
    expected = rounds.results[BASELINE][-1]["lengths"] if BASELINE in rounds.results else None
    for s in subjects:
        if s.label not in rounds.results or s.label == BASELINE:
            continue
        lengths = s.lengths() if s.lengths else rounds.results[s.label][-1].get("lengths")
        if lengths is None:
            continue
        if s.engine == "taskbench" and expected is not None and lengths != expected:
            raise RuntimeError(f"{s.label}: partition sizes differ from pandas' hash partition")
        if sum(lengths) != rows:
            raise RuntimeError(f"{s.label} lost rows: {sum(lengths)} of {rows}")


# ---------------------------------------------------------------- command


def measure(
    args: argparse.Namespace, log: Say, metadata: dict[str, Any] | None = None
) -> tuple[list[BenchResult], dict[str, Any]]:
    """Every requested subject on the same frame, in interleaved rounds: the records, and
    the run's parameters (``not_measured``: label -> why, for a subject that could not run;
    ``order``: the labels run, round by round; ``ratios``: ours against each peer)."""
    meta = metadata if metadata is not None else run_metadata()
    rows, nparts, on, columns = args.rows, args.partitions, args.on, args.columns
    peers = [p for p in (args.vs or "").split(",") if p]
    log(f"building the frame: {rows:,} rows, {columns}")
    df = taxi_frame(rows, nparts, columns)
    if on not in df.columns:
        raise SystemExit(f"taskbench: --on {on!r} is not a column; columns are {list(df.columns)}")
    data_bytes = frame_bytes(df)
    frame = {"rows": rows, "partitions": nparts, "on": on, "columns": columns}
    holders = 1 + len(args.methods) * len(args.sizeof) + 2 * ("dask" in peers) + ("spark" in peers)
    need, available = (holders + 2) * data_bytes, psutil.virtual_memory().available
    if need > 0.8 * available:
        log(f"warning: {holders} subjects hold the {data_bytes / 1e9:.1f} GB frame at once "
            f"(interleaved rounds), about {need / 1e9:.1f} GB at a shuffle's peak, "
            f"{available / 1e9:.1f} GB available")  # fmt: skip
    peer_log = log_folder() / "peers.log" if peers else None
    with contextlib.ExitStack() as stack:
        subjects = [pandas_subject(df, on, nparts)]
        engine_options = {"encode_strings": False} if args.pickle_strings else None
        for mode in args.sizeof:
            log(f"taskbench: making the frame on a 2-worker LocalCluster (sizeof {mode})")
            subjects += stack.enter_context(engine_subjects(
                rows, nparts, on, columns, args.methods, mode,
                stealing=not args.no_stealing, options=engine_options,
            ))  # fmt: skip
        if peer_log is not None:
            log(f"peers' own logs go to {peer_log}")
            stack.enter_context(peer_logs(peer_log))
        if "dask" in peers:
            log("dask: making the frame on distributed.LocalCluster(2 × 1 thread)")
            subjects += stack.enter_context(dask_subjects(rows, nparts, on, columns,
                                                          ["tasks", "p2p"]))  # fmt: skip
        if "spark" in peers:
            log("spark: caching the frame on local[2]")
            subjects.append(stack.enter_context(
                spark_subject(rows, nparts, on, columns, args.spark_memory)
            ))  # fmt: skip
        rounds = interleave({s.label: s.run for s in subjects}, args.repeats, log)
        check_outputs(subjects, rounds, rows)
    results, ratios = records(subjects, rounds, data_bytes, meta, **frame)
    run = {
        **frame,
        "data_bytes": data_bytes,
        "repeats": args.repeats,
        "engine_stealing": not args.no_stealing,
        "engine_string_transit": "pickle" if args.pickle_strings else "arrow",
        "workers": 2,
        "threads_per_worker": 1,
        "not_measured": rounds.not_measured,
        "order": rounds.order,
        "ratios": ratios,
    }
    if peer_log is not None:
        run["peer_log"] = str(peer_log)
    return results, run


COLUMNS = [
    ("cold s", "cold_seconds", "{:.3f}"),
    ("MB/s", "mb_per_s", "{:,.0f}"),
    ("lag p50 µs", "lag_p50_us", "{:,.0f}"),
    ("lag p99 µs", "lag_p99_us", "{:,.0f}"),
    ("sizeof s", "sizeof_seconds", "{:.3f}"),
    ("peak MB", "peak_worker_rss_bytes", "{:,.0f}"),
    ("mem/data", "memory_over_data", "{:.2f}"),
]


def label_of(r: BenchResult) -> str:
    """A record's row in the table: what `Subject.label` named it."""
    if r.engine == "taskbench":
        return engine_label(r.params["method"], r.params.get("sizeof", "sampled"))
    if r.engine == "dask":
        return f"dask-{r.params['method']}"
    return r.engine


def format_results(results: list[BenchResult], run: dict[str, Any], cores: Any = "?") -> str:
    """The table (one row per subject), what was shuffled, and the engines' ratios to peers."""
    rounds = run.get("repeats", 1)
    hot = max(rounds - 1, 1)
    lines = [
        f"{run['rows']:,} taxi-like rows ({run['columns']}), {run['data_bytes'] / 1e6:,.0f} MB "
        f"in memory, hash shuffle on {run['on']!r} {run['partitions']} -> "
        f"{run['partitions']} partitions; 2 worker processes × 1 thread "
        f"(Spark local[2]); {cores} cores",
        f"{rounds} rounds, each running every subject once, the order rotated each round; "
        + (f"round 1 is cold, time = median (min–max) of the other {hot}" if rounds > 1
           else "time = the one round")
        + ("" if run.get("engine_stealing", True) else "; engine work stealing OFF")
        + ("; engine pickles strings" if run.get("engine_string_transit") == "pickle" else ""),
        "overhead = median time ÷ median pandas time over the same rounds [bootstrap 95 % "
        "interval]; 1 is pandas' in-memory speed",
        "",
    ]  # fmt: skip
    by_label: dict[str, dict[str, BenchResult]] = {}
    for r in results:
        by_label.setdefault(label_of(r), {})[r.name] = r
    rows: list[list[str]] = []
    for label, recs in by_label.items():
        secs = recs.get("seconds")
        over = recs.get("overhead_ratio")
        if over is not None:
            from taskbench.comparisons.stats import Ratio

            overhead = ratio_text(Ratio(over.value, over.params["low"], over.params["high"]))
        else:
            overhead = "baseline" if label == BASELINE else "-"
        cells = [spread(secs.values) if secs else "-", overhead]
        for _, name, spec in COLUMNS:
            value = recs[name].value if name in recs else None
            if name == "peak_worker_rss_bytes" and value is not None:
                value /= 1e6
            cells.append(fmt(value, spec))
        rows.append([label, *cells])
    for label, reason in run.get("not_measured", {}).items():
        rows.append([f"{label:<24}  not measured: {reason.split(': it ')[0]}"])
    header = ["subject", "time s (min–max)", "overhead [95 % CI]", *(c[0] for c in COLUMNS)]
    lines.append(format_table(header, rows, min_width=8))
    best = _best_engine(results)
    for r in run.get("ratios", []):
        if r["denominator"] != best:
            continue
        from taskbench.comparisons.stats import Ratio, verdict

        ratio = Ratio(r["value"], r["low"], r["high"], r["confidence"])
        lines.append(
            f"{verdict(ratio, best, r['numerator'])} "
            f"[{r['low']:.2f}–{r['high']:.2f}] (ratio of median times, same rounds)"
        )
    return "\n".join(lines)


def _best_engine(results: list[BenchResult]) -> str | None:
    ours = [
        (r.value, label_of(r))
        for r in results
        if r.name == "seconds" and r.engine == "taskbench" and r.params.get("sizeof") == "sampled"
    ]
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
    metadata = run_metadata()
    results, run = measure(args, progress("shuffle"), metadata)
    doc = to_document("shuffle", results, metadata, **run)
    emit(doc, lambda: format_results(results, run, metadata["machine"]["cores"]), args)
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
    p.add_argument(
        "--repeats", type=positive_int, default=5,
        help="rounds; each runs every subject once (round 1 is cold)",
    )  # fmt: skip
    p.add_argument(
        "--no-stealing", action="store_true", help="engine without work stealing (diagnostic)"
    )
    p.add_argument(
        "--pickle-strings", action="store_true",
        help="engine tasks shuffle pickles object strings one by one (2016 dask; default: Arrow)",
    )  # fmt: skip
    p.add_argument("--vs", default="", help="comma-separated peers: dask,spark")
    p.add_argument("--spark-memory", default="6g", help="spark.driver.memory (default 1g is small)")
    add_output_flags(p)
    p.set_defaults(func=cmd_shuffle)
    return p
