"""DuckDB: the registry's SQL over the parquet files, on one connection with ``threads = N``.

Each query is :data:`comparisons.queries.QUERIES`' SQL, rendered by :func:`render`; where
DuckDB's dialect differs is :data:`DIALECT`, each rewrite with its reason.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import duckdb
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

NAME = "duckdb"
_LOADS = itertools.count()  # view names per load: one connection can hold several datasets


@dataclass
class Handle:
    """A connection with the dataset's views; ``trips`` and ``zones`` are their names."""

    session: duckdb.DuckDBPyConnection
    params: Parameters
    trips: str
    zones: str | None


def version() -> str:
    """DuckDB's version."""
    return f"duckdb {duckdb.__version__}"


def start(config: EngineConfig) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the config's ``[session]`` options SET."""
    con = duckdb.connect(":memory:")
    for key, value in config.section("session").items():
        con.execute(f"SET {key} = {_literal(value)}")
    return con


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def load(
    session: duckdb.DuckDBPyConnection, data_dir: str | os.PathLike[str], config: EngineConfig
) -> Handle:
    """Register the trip files and zones as views over the parquet files (tables if configured)."""
    mode = config.get("load", "mode", "view")
    if mode not in ("view", "table"):
        raise ValueError(f"duckdb [load] mode must be 'view' or 'table', got {mode!r}")
    kind = "VIEW" if mode == "view" else "TABLE"
    suffix = next(_LOADS)
    files = ", ".join(_literal(str(f)) for f in trip_files(data_dir))
    columns = ", ".join(TRIP_COLUMNS)
    trips = f"trips_{suffix}"
    session.execute(f"CREATE {kind} {trips} AS SELECT {columns} FROM read_parquet([{files}])")
    zones = None
    if has_zones(data_dir):
        zones = f"zones_{suffix}"
        path = _literal(str(zones_path(data_dir)))
        columns = ", ".join(ZONE_COLUMNS)
        session.execute(f"CREATE {kind} {zones} AS SELECT {columns} FROM read_parquet({path})")
    return Handle(session, parameters(data_dir), trips, zones)


def stop(session: duckdb.DuckDBPyConnection) -> None:
    """Close the connection."""
    session.close()


# Where DuckDB spells the registry's SQL differently. Everything else runs as written:
# positional GROUP BY, NULLS LAST, named windows, date_diff('microsecond', …), and ``/`` on
# integers is true division (``//`` divides whole), as in the spec.
DIALECT = (
    Rewrite(
        r"CAST\((\w+) AS INT\)",
        r"CAST(trunc(\1) AS INT)",
        "DuckDB's CAST(double AS INT) rounds (2.7 -> 3); the spec truncates toward zero",
    ),
    Rewrite(
        r"\bweekday\((\w+)\)",
        r"(isodow(\1) - 1)",
        "DuckDB's weekday() is Sunday = 0; isodow() is Monday = 1, the spec's Monday = 0 plus one",
    ),
)


def render(query: Query, h: Handle) -> str:
    """The registry's SQL for ``query`` in DuckDB's dialect, on this load's tables.

    Parameters become ``$name`` markers (DuckDB's named-parameter style; ``:name`` is not one
    there), bound by :func:`run`: a naive datetime binds as a plain TIMESTAMP, unshifted.
    """
    tables = {"trips": h.trips, "zones": h.zones}
    return render_sql(query, DIALECT, tables=tables, parameter=lambda name: f"${name}")


def run(h: Handle, query: Query) -> pd.DataFrame:
    """Answer one query of the registry."""
    values = {name: getattr(h.params, name) for name in query.parameters}
    return h.session.execute(render(query, h), values).df()


q01, q02, q03, q04, q05, q06, q07, q08, q09, q10, q11, q12 = query_functions(run)
