"""A dataset is written whole or not at all (issue 9): a failed, interrupted or killed write
leaves the previous dataset exactly as it was, and a folder without a manifest is no dataset."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from taskbench.comparisons.cli import main as taskbench_check
from taskbench.comparisons.data import (
    DataError,
    dataset_fingerprint,
    generate,
    import_files,
    read_manifest,
    synthetic_zones,
)
from taskbench.comparisons.data import manifest as manifest_module
from taskbench.comparisons.data.cli import main

from tests.comparisons.data.test_data_import import MODERN, MODERN_ROWS, _parquet_month, write_csv

DEADLINE_S = 60.0  # every wait below gives up (and fails) after this long


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder``: relative name -> sha256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def working_folders(target: Path) -> list[Path]:
    """The working folders of writes to ``target`` (``.NAME.tmp-…``, ``.NAME.old-…``)."""
    return sorted(target.parent.glob(f".{target.name}.*-*"))


def assert_as_it_was(target: Path, before: dict[str, str], fingerprint: str) -> None:
    assert snapshot(target) == before
    assert read_manifest(target).fingerprint == fingerprint == dataset_fingerprint(target)


def dead_pid() -> int:
    """The id of a process that has exited (and been waited for)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


@pytest.fixture
def existing(tmp_path: Path) -> Path:
    """A good dataset that every write below tries to replace."""
    out = tmp_path / "data"
    generate(out, rows=3_000, months=2, seed=1)
    return out


# ---- the rows of the table, each failing on the old code ------------------------------


def test_a_failed_strict_overwrite_keeps_the_dataset(existing: Path, tmp_path: Path, capsys):
    before, fingerprint = snapshot(existing), read_manifest(existing).fingerprint
    rows = [MODERN_ROWS[0], MODERN_ROWS[1].replace(",7.9,", ",seven,")]
    dirty = write_csv(tmp_path / "dirty.csv", MODERN, rows)
    argv = ["import", str(dirty), "--out", str(existing), "--strict", "--overwrite"]
    assert main(argv) == 1
    assert "dirty.csv: 1 rows cannot be parsed" in capsys.readouterr().err
    assert_as_it_was(existing, before, fingerprint)
    assert working_folders(existing) == []


def test_an_import_that_keeps_no_rows_fails_and_writes_nothing(existing: Path, tmp_path, capsys):
    before, fingerprint = snapshot(existing), read_manifest(existing).fingerprint
    bad_dates = [row.replace(",2023-01-", ",2023-13-") for row in MODERN_ROWS[:2]]
    dates = write_csv(tmp_path / "dates.csv", MODERN, bad_dates)
    fares = write_csv(tmp_path / "fares.csv", MODERN, [MODERN_ROWS[0].replace(",9.3,", ",x,")])
    argv = ["import", str(dates), str(fares), "--out", str(existing), "--overwrite"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "wrote" not in captured.out
    assert captured.err.splitlines() == [
        f"taskbench data import: error: no rows kept, so nothing was written to {existing}:",
        f"  {dates}: 2 rows in, 2 rejected (tpep_dropoff_datetime: not a timestamp: 2; "
        "tpep_pickup_datetime: not a timestamp: 2)",
        f"  {fares}: 1 rows in, 1 rejected (fare_amount: not a number: 1)",
    ]
    assert_as_it_was(existing, before, fingerprint)
    assert working_folders(existing) == []


def test_a_strict_import_that_fails_leaves_no_new_folder(tmp_path: Path, capsys):
    rows = [MODERN_ROWS[0], MODERN_ROWS[1].replace(",7.9,", ",seven,")]
    dirty = write_csv(tmp_path / "dirty.csv", MODERN, rows)
    out = tmp_path / "new"
    assert main(["import", str(dirty), "--out", str(out), "--strict"]) == 1
    assert "1 rows cannot be parsed" in capsys.readouterr().err
    assert not out.exists()
    assert working_folders(out) == []
    deep = tmp_path / "a" / "b" / "new"  # folders made for the write go too
    with pytest.raises(DataError, match="cannot be parsed"):
        import_files([dirty], deep, strict=True)
    assert not (tmp_path / "a").exists()


def test_a_parquet_with_a_bad_value_in_every_row_fails(tmp_path: Path, capsys):
    table = pq.read_table(_parquet_month(tmp_path / "m.parquet", 3, drift=False))
    index = table.schema.get_field_index("fare_amount")
    typed = tmp_path / "typed.parquet"
    pq.write_table(table.set_column(index, "fare_amount", pa.array(["n/a"] * 3)), typed)
    out = tmp_path / "out"
    assert main(["import", str(typed), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "wrote 0 rows" not in captured.out
    assert f"{typed}: 3 rows in, 3 rejected (fare_amount: not a number: 3)" in captured.err
    assert not out.exists() and working_folders(out) == []


# ---- a reader never takes an unfinished write for a dataset -----------------------------------


def test_check_says_a_folder_without_a_manifest_is_not_a_dataset(existing: Path, capsys):
    (existing / "manifest.json").unlink()
    assert taskbench_check(["check", "--engines", "pandas", "--data", str(existing)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"taskbench check: error: {existing.resolve()}: not a dataset: no ")
    with pytest.raises(DataError, match=r"not a dataset: no manifest\.json"):
        read_manifest(existing)


def test_a_working_folder_is_never_a_dataset(existing: Path, tmp_path: Path) -> None:
    stale = tmp_path / f".data.tmp-{dead_pid()}-00ff"
    shutil.copytree(existing, stale)  # even one that holds a whole dataset and its manifest
    with pytest.raises(DataError, match="the working folder of an unfinished write"):
        read_manifest(stale)


# ---- errors, a full disk and a failed swap -----------------------------------------------------


def test_a_full_disk_leaves_the_dataset_as_it_was(existing: Path, monkeypatch, capsys) -> None:
    before, fingerprint = snapshot(existing), read_manifest(existing).fingerprint

    def full_disk(path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(manifest_module, "_fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        generate(existing, rows=2_000, seed=9, overwrite=True)
    argv = ["generate", "--rows", "2000", "--seed", "9", "--out", str(existing), "--overwrite"]
    assert main(argv) == 1
    assert "left as it was" in capsys.readouterr().err
    monkeypatch.undo()
    assert_as_it_was(existing, before, fingerprint)
    assert working_folders(existing) == []


def test_a_failed_swap_puts_the_old_dataset_back(existing: Path, monkeypatch) -> None:
    before, fingerprint = snapshot(existing), read_manifest(existing).fingerprint
    rename = os.rename

    def failing_rename(src: str | Path, dst: str | Path) -> None:
        if ".tmp-" in Path(src).name:
            raise OSError(errno.EIO, "injected", str(src))
        rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="injected"):
        generate(existing, rows=2_000, seed=9, overwrite=True)
    monkeypatch.undo()
    assert_as_it_was(existing, before, fingerprint)
    assert working_folders(existing) == []


def test_a_folder_with_other_files_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"notes\.txt\); choose an empty or new directory"):
        generate(out, rows=100, overwrite=True)
    assert snapshot(out) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}


def test_the_next_write_tidies_after_a_killed_one(existing: Path, tmp_path: Path) -> None:
    pid = dead_pid()
    stale = tmp_path / f".data.tmp-{pid}-00ff"
    (stale / "trips").mkdir(parents=True)
    running = tmp_path / f".data.tmp-{os.getppid()}-00aa"  # its process is alive: left alone
    running.mkdir()
    other = tmp_path / f".other.tmp-{pid}-00ff"  # another target's: left alone
    other.mkdir()
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    manifest = generate(existing, rows=1_000, seed=2, overwrite=True)
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
    assert not stale.exists() and running.exists() and other.exists()
    assert read_manifest(existing).fingerprint == manifest.fingerprint


def test_a_dataset_set_aside_by_a_killed_swap_is_put_back(existing: Path, tmp_path: Path) -> None:
    before, fingerprint = snapshot(existing), read_manifest(existing).fingerprint
    aside = tmp_path / f".data.old-{dead_pid()}-00ff"
    existing.rename(aside)
    with pytest.raises(DataError, match="already holds a dataset"):
        generate(existing, rows=1_000)
    assert not aside.exists()
    assert_as_it_was(existing, before, fingerprint)


# ---- killed mid-write, as a process ------------------------------------------------------------


def _point(value: object) -> str:
    return value.name if isinstance(value, signal.Signals) else str(value)


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # so Python's Ctrl-C handler is installed


def _start(*argv: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "taskbench.cli", "data", *argv, "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_restore_sigint)  # fmt: skip


def _stop_when_written(process: subprocess.Popen[str], target: Path, name: str) -> None:
    """Poll until the write's working folder holds ``name``, then freeze the process there.

    (A write that touches the dataset in place, as the old code did, is frozen as soon as the
    dataset's manifest is gone.)
    """
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        written = any((folder / name).exists() for folder in working_folders(target))
        if written or not (target / "manifest.json").exists():
            os.kill(process.pid, signal.SIGSTOP)
            return
        if process.poll() is not None:
            pytest.fail(f"the write ended before {name} was written: {process.communicate()}")
        time.sleep(0.002)
    process.kill()
    pytest.fail(f"{name} was not written within {DEADLINE_S} s")


def _kill_and_check(
    process: subprocess.Popen[str], signum: int, target: Path, command: str, before, fingerprint
) -> None:
    os.kill(process.pid, signum)
    os.kill(process.pid, signal.SIGCONT)
    _, err = process.communicate(timeout=DEADLINE_S)
    assert_as_it_was(target, before, fingerprint)
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
        for folder in working_folders(target):  # may remain, but is no dataset
            with pytest.raises(DataError):
                read_manifest(folder)
        manifest = generate(target, rows=1_000, seed=3, overwrite=True)  # the next write tidies
        assert working_folders(target) == []
        assert read_manifest(target).fingerprint == manifest.fingerprint
    else:
        assert process.returncode == 128 + signum
        line = f"taskbench data {command}: interrupted; {target} left as it was"
        assert err.splitlines() == [line]  # and no traceback
        assert working_folders(target) == []


@pytest.mark.parametrize(
    ("signum", "name"),
    [
        (signal.SIGINT, "trips/yellow_tripdata_2015-01.parquet"),
        (signal.SIGINT, "trips/yellow_tripdata_2015-04.parquet"),
        (signal.SIGINT, "zones.parquet"),
        (signal.SIGTERM, "trips/yellow_tripdata_2015-03.parquet"),
        (signal.SIGKILL, "trips/yellow_tripdata_2015-01.parquet"),
        (signal.SIGKILL, "trips/yellow_tripdata_2015-04.parquet"),
        (signal.SIGKILL, "zones.parquet"),
    ],
    ids=_point,
)
def test_killed_generate_overwrite(existing: Path, signum: int, name: str) -> None:
    before, fingerprint = snapshot(existing), read_manifest(existing).fingerprint
    process = _start("generate", "--rows", "600k", "--months", "6", "--out", str(existing),
                     "--overwrite", "--workers", "1")  # fmt: skip
    _stop_when_written(process, existing, name)
    _kill_and_check(process, signum, existing, "generate", before, fingerprint)


@pytest.fixture(scope="module")
def import_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six months of trips (100k rows each) to import, and a zone lookup CSV."""
    root = tmp_path_factory.mktemp("inputs")
    generate(root / "source", rows=600_000, months=6, seed=4)
    lookup = root / "taxi_zone_lookup.csv"
    synthetic_zones().to_pandas().to_csv(lookup, index=False)
    return root / "source" / "trips", lookup


@pytest.mark.parametrize(
    ("signum", "name"),
    [
        (signal.SIGINT, "trips"),  # reading the inputs, nothing written yet
        (signal.SIGINT, "trips/yellow_tripdata_2015-02.parquet"),
        (signal.SIGINT, "zones.parquet"),
        (signal.SIGKILL, "trips"),
        (signal.SIGKILL, "trips/yellow_tripdata_2015-02.parquet"),
        (signal.SIGKILL, "zones.parquet"),
    ],
    ids=_point,
)
def test_killed_import_overwrite(existing: Path, import_inputs, signum: int, name: str) -> None:
    before, fingerprint = snapshot(existing), read_manifest(existing).fingerprint
    trips, lookup = import_inputs
    process = _start("import", str(trips), "--zones", str(lookup), "--out", str(existing),
                     "--overwrite")  # fmt: skip
    _stop_when_written(process, existing, name)
    _kill_and_check(process, signum, existing, "import", before, fingerprint)
