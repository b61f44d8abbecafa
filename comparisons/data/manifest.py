"""``manifest.json``: what a dataset directory holds, and a fingerprint of its content.

The fingerprint is ``sha256`` over the dataset's parquet files in name order (each file's name
and the sha256 of its bytes), so it changes whenever any byte of the data does. The manifest
has no timestamp: the same command writes a byte-identical directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from taskbench.comparisons.data.schema import (
    MANIFEST_FILE,
    TRIPS_DIR,
    ZONES_FILE,
    ZONES_SCHEMA,
    DataError,
    trip_files,
)

# Bump when the same command would write different bytes (model, schema or encoding changes).
GENERATOR_VERSION = "1.0"
FORMAT = "taskbench-nyc-taxi"


@dataclass(frozen=True)
class Manifest:
    """The manifest of one dataset directory."""

    kind: str  # "generated" or "imported"
    rows: int
    months: list[str]
    seed: int | None
    fingerprint: str
    generator_version: str
    created_by: str
    files: list[dict[str, Any]]  # {"name", "rows", "bytes", "sha256"} per trip file
    zones: dict[str, Any]  # {"name", "rows", "source"}
    sources: list[dict[str, Any]] = field(default_factory=list)  # per-file import reports
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Parse a manifest written by :meth:`to_dict`."""
        return cls(**data)


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read ``manifest.json`` from a dataset directory."""
    path = Path(directory) / MANIFEST_FILE
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a readable dataset manifest: {exc}") from exc


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def dataset_fingerprint(directory: str | os.PathLike[str]) -> str:
    """Recompute the content fingerprint of the parquet files now in ``directory``."""
    directory = Path(directory)
    files = _dataset_files(directory)
    return _fingerprint({p.relative_to(directory).as_posix(): file_sha256(p) for p in files})


def _fingerprint(digests: dict[str, str]) -> str:
    combined = hashlib.sha256()
    for name in sorted(digests):
        combined.update(f"{name}\0{digests[name]}\n".encode())
    return "sha256:" + combined.hexdigest()


def _dataset_files(directory: Path) -> list[Path]:
    files = trip_files(directory)
    if (directory / ZONES_FILE).exists():
        files.append(directory / ZONES_FILE)
    return files


def _month_of(file_name: str) -> str:
    return file_name.rsplit("yellow_tripdata_", 1)[-1].removesuffix(".parquet")


def prepare_out_dir(out: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Create ``out``; refuse (or, with ``overwrite``, remove) a dataset already there."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: output path exists and is not a directory")
    (out / TRIPS_DIR).mkdir(parents=True, exist_ok=True)
    existing = _dataset_files(out) + [p for p in [out / MANIFEST_FILE] if p.exists()]
    if existing and not overwrite:
        raise DataError(
            f"{out}: already holds a dataset ({existing[0].name}, …); "
            "choose an empty directory or pass --overwrite"
        )
    for path in existing:
        path.unlink()
    return out


def write_dataset(
    out: Path,
    *,
    kind: str,
    zones: pa.Table | None,
    zones_source: str | None,
    file_rows: dict[str, int],
    seed: int | None,
    created_by: str,
    generator_version: str = GENERATOR_VERSION,
    sources: list[dict[str, Any]] | None = None,
) -> Manifest:
    """Write the zones table and ``manifest.json`` next to the trip files already in ``out``."""
    if zones is not None:
        pq.write_table(zones.cast(ZONES_SCHEMA), out / ZONES_FILE, compression="snappy")
    files = []
    digests = {}
    for name in sorted(file_rows):
        digests[name] = file_sha256(out / name)
        size = (out / name).stat().st_size
        files.append(
            {"name": name, "rows": file_rows[name], "bytes": size, "sha256": digests[name]}
        )
    zones_entry: dict[str, Any] = {"name": None, "rows": 0, "source": zones_source}
    if zones is not None:
        digests[ZONES_FILE] = file_sha256(out / ZONES_FILE)
        zones_entry = {"name": ZONES_FILE, "rows": zones.num_rows, "source": zones_source}
    manifest = Manifest(
        kind=kind,
        rows=sum(file_rows.values()),
        months=[_month_of(name) for name in sorted(file_rows)],
        seed=seed,
        fingerprint=_fingerprint(digests),
        generator_version=generator_version,
        created_by=created_by,
        files=files,
        zones=zones_entry,
        sources=sources or [],
    )
    (out / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return manifest
