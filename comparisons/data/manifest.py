"""``manifest.json``: what a dataset directory holds, and a fingerprint of its content.

The fingerprint is ``sha256`` over the dataset's parquet files in name order (each file's name
and the sha256 of its bytes), so it changes whenever any byte of the data does. The manifest
has no timestamp: the same command writes a byte-identical directory.

A dataset is written whole, or not at all (:func:`staged_dataset`):

- It is written into a working folder beside the target, ``.NAME.tmp-PID-RANDOM``, and every
  file is fsynced, the manifest last. Without a manifest a folder is not a dataset, and a
  working folder is never one, whatever it holds (:func:`read_manifest` says so).
- Only a finished write is swapped in: a new target is one rename; an existing one is renamed
  aside to ``.NAME.old-PID-RANDOM``, the new one renamed into place, then the old one deleted.
  If the second rename fails, the old one is put back. SIGINT and SIGTERM are ignored during
  the swap and during the clean-up after a failure: by then the write has finished, or failed.
- Any failure before the swap (an error, a full disk, KeyboardInterrupt) leaves the target
  exactly as it was and removes the working folder. A process killed outright can leave a
  working folder behind; the next write to the same target removes it once its process is
  gone, and puts back an old dataset that was set aside but never replaced.
- A target that holds anything besides a dataset's files is refused, never replaced.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from taskbench.comparisons.data.schema import (
    MANIFEST_FILE,
    TRIP_FILE_PATTERN,
    TRIPS_DIR,
    ZONES_FILE,
    ZONES_SCHEMA,
    DataError,
    trip_files,
)

# Bump when the same command would write different bytes (model, schema or encoding changes).
GENERATOR_VERSION = "1.0"
FORMAT = "taskbench-nyc-taxi"
# A working folder of a write to NAME: ".NAME.tmp-PID-RANDOM" (being written) or
# ".NAME.old-PID-RANDOM" (the previous dataset, set aside during the swap).
_WORKING_FOLDER = re.compile(r"^\.(?P<name>.+)\.(?P<role>tmp|old)-(?P<pid>\d+)-[0-9a-f]+$")
_LAYOUT = (TRIPS_DIR, ZONES_FILE, MANIFEST_FILE)


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
    """Read ``manifest.json`` from a dataset directory; :class:`DataError` if it is no dataset."""
    directory = Path(directory)
    if _WORKING_FOLDER.match(directory.name):
        raise DataError(f"{directory}: the working folder of an unfinished write, not a dataset")
    if not directory.is_dir():
        raise DataError(f"{directory}: no such dataset directory")
    path = directory / MANIFEST_FILE
    if not path.exists():
        raise DataError(
            f"{directory}: not a dataset: no {MANIFEST_FILE} (a dataset is complete only "
            "once its manifest is written; write it again with taskbench data … --overwrite)"
        )
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


@contextlib.contextmanager
def staged_dataset(out: str | os.PathLike[str], *, overwrite: bool) -> Iterator[Path]:
    """A new working folder beside ``out`` to write a dataset into (with an empty ``trips/``).

    When the block finishes, the folder, which must hold a manifest by then, replaces ``out``;
    when it raises, the folder is removed and ``out`` is left as it was (see the module policy).
    """
    target = Path(out).resolve()
    created = _make_parents(target.parent)
    staging = None
    committed = False
    try:
        _recover(target)
        _check_target(target, overwrite=overwrite)
        staging = _working_folder(target, "tmp")
        staging.mkdir()
        (staging / TRIPS_DIR).mkdir()
        yield staging
        if not (staging / MANIFEST_FILE).exists():
            raise DataError(f"{target}: the write finished without a manifest; nothing written")
        with _uninterruptible():
            aside = _swap_in(staging, target)
            committed = True
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)
            with contextlib.suppress(OSError):  # the dataset is in place; this is durability
                _fsync(target.parent)
    finally:
        if not committed:
            with _uninterruptible():
                if staging is not None:
                    shutil.rmtree(staging, ignore_errors=True)
                for folder in reversed(created):
                    with contextlib.suppress(OSError):
                        folder.rmdir()


def _make_parents(parent: Path) -> list[Path]:
    """Create ``parent`` and its missing ancestors; return the folders created, outermost first."""
    missing = []
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    created = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        created.append(folder)
    return created


def _working_folder(target: Path, role: str) -> Path:
    return target.parent / f".{target.name}.{role}-{os.getpid()}-{secrets.token_hex(4)}"


def _recover(target: Path) -> None:
    """Tidy after writes to ``target`` whose process died: remove their working folders, and
    put back an old dataset that was set aside but never replaced."""
    for entry in sorted(target.parent.iterdir()):
        match = _WORKING_FOLDER.match(entry.name)
        if not match or match["name"] != target.name or _is_running(int(match["pid"])):
            continue
        if match["role"] == "tmp":
            shutil.rmtree(entry, ignore_errors=True)
        elif not target.exists():
            os.rename(entry, target)  # the swap died between its two renames
        elif (target / MANIFEST_FILE).exists():
            shutil.rmtree(entry, ignore_errors=True)  # the swap finished; this is what it replaced


def _is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another write in this process, on another thread
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_target(target: Path, *, overwrite: bool) -> None:
    """Refuse a target that is not a directory, that holds other files, or (without
    ``overwrite``) that holds a dataset or part of one."""
    if not target.exists():
        return
    if not target.is_dir():
        raise DataError(f"{target}: output path exists and is not a directory")
    if Path.cwd().resolve().is_relative_to(target):
        raise DataError(f"{target}: is the current directory (or holds it); name another")
    foreign = sorted(p.name for p in target.iterdir() if p.name not in _LAYOUT)
    trips = target / TRIPS_DIR
    if trips.is_dir():
        trip_name = TRIP_FILE_PATTERN.removeprefix(f"{TRIPS_DIR}/")
        foreign += sorted(
            f"{TRIPS_DIR}/{p.name}"
            for p in trips.iterdir()
            if not (p.is_file() and fnmatch.fnmatch(p.name, trip_name))
        )
    elif trips.exists():
        foreign.append(TRIPS_DIR)
    if foreign:
        more = ", …" if len(foreign) > 3 else ""
        raise DataError(
            f"{target}: holds files that are not part of a dataset ({', '.join(foreign[:3])}"
            f"{more}); choose an empty or new directory"
        )
    existing = _dataset_files(target)
    if (target / MANIFEST_FILE).exists() and not overwrite:
        raise DataError(
            f"{target}: already holds a dataset ({MANIFEST_FILE}, …); "
            "choose an empty directory or pass --overwrite"
        )
    if existing and not overwrite:
        raise DataError(
            f"{target}: holds an unfinished dataset ({existing[0].name}, …, no {MANIFEST_FILE}); "
            "choose an empty directory or pass --overwrite"
        )


def _swap_in(staging: Path, target: Path) -> Path | None:
    """Put the finished ``staging`` folder in place of ``target``; return where the old
    ``target`` was set aside (to delete), if there was one. See the module policy."""
    if not target.exists():
        os.rename(staging, target)
        return None
    os.chmod(staging, stat.S_IMODE(target.stat().st_mode))
    aside = _working_folder(target, "old")
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(aside, target)
        raise
    return aside


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM in the block, so that it runs to its end (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: None)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') bytes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    """Write the zones table and ``manifest.json`` next to the trip files already in ``out``.

    Every file is fsynced before the manifest is written, and the manifest last.
    """
    if zones is not None:
        pq.write_table(zones.cast(ZONES_SCHEMA), out / ZONES_FILE, compression="snappy")
    files = []
    digests = {}
    for name in sorted(file_rows):
        _fsync(out / name)
        digests[name] = file_sha256(out / name)
        size = (out / name).stat().st_size
        files.append(
            {"name": name, "rows": file_rows[name], "bytes": size, "sha256": digests[name]}
        )
    zones_entry: dict[str, Any] = {"name": None, "rows": 0, "source": zones_source}
    if zones is not None:
        _fsync(out / ZONES_FILE)
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
    if (out / TRIPS_DIR).is_dir():
        _fsync(out / TRIPS_DIR)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    _fsync(out / MANIFEST_FILE)
    _fsync(out)
    return manifest
