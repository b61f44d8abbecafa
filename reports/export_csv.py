"""results.csv: one row per query record of every run, as recorded; no number for a non-valid one.

A row a later line of a resumed run replaced is kept, marked ``superseded``, so that the file
is the records, not a summary of them.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from taskbench.reports.loader import Run

COLUMNS = (
    "run_id", "engine", "mode", "query", "run", "cold", "status", "seconds", "load_seconds",
    "rows_out", "checksum", "peak_rss_bytes", "process", "engine_version", "config_sha256",
    "data_fingerprint", "timestamp", "superseded", "detail",
)  # fmt: skip


def rows(runs: Sequence[Run]) -> list[dict[str, object]]:
    out = []
    for run in runs:
        records = run.query_records()
        last = {}
        for i, r in enumerate(records):
            key = (r.engine, r.params.get("mode"), r.params.get("query"), r.params.get("run"))
            last[key] = i
        for i, r in enumerate(records):
            p, m = r.params, r.metadata
            data = m.get("data") if isinstance(m.get("data"), dict) else run.data
            config = m.get("config") if isinstance(m.get("config"), dict) else {}
            key = (r.engine, p.get("mode"), p.get("query"), p.get("run"))
            out.append(
                {
                    "run_id": run.run_id,
                    "engine": r.engine,
                    "mode": p.get("mode", ""),
                    "query": p.get("query", ""),
                    "run": p.get("run", ""),
                    "cold": bool(p.get("cold", False)),
                    "status": r.status,
                    "seconds": repr(r.values[0]) if r.status == "valid" and r.values else "",
                    "load_seconds": p.get("load_seconds", ""),  # scan mode: each query loads
                    "rows_out": p.get("rows_out", ""),
                    "checksum": p.get("checksum", ""),
                    "peak_rss_bytes": p.get("peak_rss_bytes", ""),
                    "process": p.get("process", ""),
                    "engine_version": m.get("engine_version", ""),
                    "config_sha256": config.get("sha256", ""),
                    "data_fingerprint": data.get("fingerprint", ""),
                    "timestamp": m.get("timestamp", ""),
                    "superseded": last[key] != i,
                    "detail": p.get("detail") or "",
                }
            )
    return out


def write_csv(runs: Sequence[Run], path: Path) -> None:
    """Write results.csv for ``runs``."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows(runs))
