"""Apache Spark: Spark SQL on a SparkSession (``local[N]`` by default, or any master URL).

Each query is :data:`comparisons.queries.QUERIES`' SQL, rendered by :func:`render`; where
Spark's dialect differs is :data:`DIALECT` (and the parameters, inlined), each with its reason.
Notes for Spark reviewers: parquet ``timestamp[us]`` is read as ``timestamp_ntz``, and the
session zone is UTC, so nothing is shifted. Answers come back with ``toPandas()`` (through
Arrow). ``pyspark.pandas`` is not used: it does not import under pandas 3.
Temporary views carry a per-load suffix, so one session can hold several datasets (tests).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from taskbench.comparisons.data import trip_files, zones_path
from taskbench.comparisons.queries import (
    TRIP_COLUMNS,
    ZONE_COLUMNS,
    Parameters,
    Query,
    Rewrite,
    has_zones,
    parameters,
    query_functions,
    render_sql,
)
from taskbench.comparisons.solutions import EngineConfig

NAME = "spark"
_LOADS = itertools.count()


@dataclass
class Handle:
    """A session with the dataset's views: ``trips`` and ``zones`` name them in this session."""

    session: Any  # pyspark.sql.SparkSession
    params: Parameters
    trips: str
    zones: str | None
    cached: list[Any]


def version() -> str:
    """pyspark's version."""
    import pyspark

    return f"pyspark {pyspark.__version__}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide pyspark's own pandas-3 warnings: "does not yet fully support pandas >= 3.0.0" and
    the deprecated ``copy=`` it passes to ``astype``. The paths used here (SQL, toPandas
    through Arrow) are checked by the answer checks instead. Under ``-W error`` these
    warnings would abort toPandas() midway."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not yet fully support pandas")
        warnings.filterwarnings(
            "ignore", message="The copy keyword is deprecated", module="pyspark"
        )
        yield


def start(config: EngineConfig) -> Any:
    """A SparkSession with the config's ``[session]`` settings."""
    for key, value in config.section("env").items():
        os.environ.setdefault(key, str(value))
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("taskbench-comparisons")
    for key, value in config.section("session").items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else value)
    with _quiet():
        session = builder.getOrCreate()
    level = config.get("driver", "log_level")
    if level:
        session.sparkContext.setLogLevel(str(level))
    return session


def load(session: Any, data_dir: str | os.PathLike[str], config: EngineConfig) -> Handle:
    """Read the trip files (and zones) with ``spark.read.parquet``; cache them if configured."""
    suffix = next(_LOADS)
    trips = session.read.parquet(*[str(f) for f in trip_files(data_dir)]).select(*TRIP_COLUMNS)
    frames = [trips]
    zones_view = None
    if has_zones(data_dir):
        zones = session.read.parquet(str(zones_path(data_dir))).select(*ZONE_COLUMNS)
        zones_view = f"zones_{suffix}"
        zones.createOrReplaceTempView(zones_view)
        frames.append(zones)
    cached = []
    if config.get("load", "cache", False):
        for frame in frames:
            frame.cache().count()  # materialise now: loading is timed apart from the queries
            cached.append(frame)
    trips.createOrReplaceTempView(f"trips_{suffix}")
    return Handle(session, parameters(data_dir), f"trips_{suffix}", zones_view, cached)


def unload(h: Handle) -> None:
    """Drop a dataset's views and cached data, keeping the session."""
    for frame in h.cached:
        frame.unpersist()
    h.session.catalog.dropTempView(h.trips)
    if h.zones:
        h.session.catalog.dropTempView(h.zones)


def stop(session: Any) -> None:
    """Stop the session and its JVM-side context."""
    session.stop()


# Where Spark spells the registry's SQL differently. Everything else runs as written:
# weekday() is Monday = 0, CAST(double AS INT) truncates, ``/`` is true division and 1e6 a
# DOUBLE literal, as in the spec.
DIALECT = (
    Rewrite(
        r"date_diff\('(\w+)'",
        r"date_diff(\1",
        "Spark's date_diff takes its unit as a bare keyword; a quoted unit is a parse error",
    ),
)


def _ntz(value: dt.datetime) -> str:
    # A literal, not a bound parameter: pyspark binds a naive datetime as a session-zoned
    # TIMESTAMP via the Python process's local zone, which could shift it.
    return f"TIMESTAMP_NTZ '{value.isoformat(sep=' ')}'"


def render(query: Query, h: Handle) -> str:
    """The registry's SQL for ``query`` in Spark's dialect, on this load's views; parameters
    are inlined as ``TIMESTAMP_NTZ`` literals (see :func:`_ntz`)."""
    tables = {"trips": h.trips, "zones": h.zones}
    return render_sql(
        query, DIALECT, tables=tables, parameter=lambda name: _ntz(getattr(h.params, name))
    )


def run(h: Handle, query: Query) -> pd.DataFrame:
    """Answer one query of the registry."""
    frame = h.session.sql(render(query, h))
    with _quiet():
        return frame.toPandas()


q01, q02, q03, q04, q05, q06, q07, q08, q09, q10, q11, q12 = query_functions(run)
