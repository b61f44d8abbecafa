"""The loader: run folders, bench documents and streams in; a one-line error for a bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from taskbench.reports.loader import ReportError, load_run, read_stream

from .conftest import ENGINES, MODES, QUERIES, SKIPPED_NOTE


def test_a_run_folder_reads_into_its_fields(runs: tuple[Path, Path]) -> None:
    run = load_run(runs[1])
    assert run.run_id == "2026-12-04-b"
    assert run.engines == ENGINES
    assert [q.id for q in run.queries] == [q for q, _ in QUERIES]
    assert run.modes == MODES
    assert run.reference == "pandas" and run.single_threaded == ["pandas"]
    assert run.notes == [SKIPPED_NOTE]
    assert run.command.startswith("taskbench compare")
    assert run.commands == [run.command, f"{run.command} --resume"]
    assert run.configs["spark"]["settings"]["session"]["spark.driver.memory"]["value"] == "8g"
    assert {r.name for r in run.records} == {"query_seconds", "start_seconds", "load_seconds"}
    assert all(r.values == [] for r in run.records if r.status != "valid")
    assert set(run.benches) == {"scheduler", "balance", "shuffle"}
    assert run.benches["scheduler"].results[0].metadata["run_id"] == "2026-12-04-b"
    assert [p.name for p in run.stream_paths] == sorted(
        [
            "balance-locality-stream.jsonl",
            "balance-random-stream.jsonl",
            "scheduler-stream-dask.jsonl",
            "scheduler-stream.jsonl",
        ]
    )


def test_a_run_without_bench_folder_has_no_bench_inputs(runs: tuple[Path, Path]) -> None:
    run = load_run(runs[0])
    assert run.benches == {} and run.stream_paths == []


def test_a_stream_reads_meta_tasks_and_transfers(runs: tuple[Path, Path]) -> None:
    stream = read_stream(runs[1] / "bench" / "scheduler-stream.jsonl")
    assert stream.title == "taskbench: 300 tasks"
    assert len(stream.tasks) == 300
    moved = [t for t in stream.tasks if t.transfers]
    assert moved and moved[0].transfers[0].nbytes == 8000
    assert all(t.stop >= t.start for t in stream.tasks)


def copy_run(runs: tuple[Path, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(runs[0], folder)
    return folder


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda f: shutil.rmtree(f), ["does not exist"]),
        (lambda f: (f / "run.json").unlink(), ["no run.json"]),
        (lambda f: (f / "run.json").write_text("{oops"), ["run.json:1", "not JSON"]),
        (lambda f: (f / "run.json").write_text("[1, 2]"), ["run.json", "JSON object"]),
        (lambda f: (f / "records.jsonl").unlink(), ["no records.jsonl"]),
    ],
    ids=["missing", "no-run-json", "run-json-garbage", "run-json-list", "no-records"],
)
def test_a_bad_run_folder_is_one_error_naming_it(runs, tmp_path, damage, words) -> None:
    folder = copy_run(runs, tmp_path)
    damage(folder)
    with pytest.raises(ReportError) as error:
        load_run(folder)
    message = str(error.value)
    assert all(w in message for w in words), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"name": "query_seconds", "engine": "x"', ["not JSON"]),
        ('{"engine": "x", "unit": "s", "values": []}', ["not a record", "'name'"]),
        ("[1, 2, 3]", ["not a record"]),
        (
            '{"name": "query_seconds", "engine": "x", "unit": "s", "values": [1.0], '
            '"status": "wrong"}',
            ["not a record", "carries no values"],
        ),
        (
            '{"name": "query_seconds", "engine": "x", "unit": "s", "values": [], "status": "meh"}',
            ["not a record", "unknown status"],
        ),
    ],
    ids=["truncated", "no-name", "not-an-object", "wrong-with-values", "unknown-status"],
)
def test_a_malformed_records_line_is_named_by_file_and_line(runs, tmp_path, line, words) -> None:
    folder = copy_run(runs, tmp_path)
    path = folder / "records.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(4, line)  # becomes line 5
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReportError) as error:
        load_run(folder)
    message = str(error.value)
    assert f"{path}:5:" in message
    assert all(w in message for w in words), message


def test_blank_lines_in_records_are_skipped(runs, tmp_path) -> None:
    folder = copy_run(runs, tmp_path)
    path = folder / "records.jsonl"
    path.write_text("\n" + path.read_text().replace("\n", "\n\n"))
    assert len(load_run(folder).records) == len(load_run(runs[0]).records)


def test_a_malformed_bench_document_or_stream_is_named(runs, tmp_path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(runs[1], folder)
    stream = folder / "bench" / "scheduler-stream.jsonl"
    stream.write_text(stream.read_text() + '{"key": "x", "worker": "w"}\n')
    with pytest.raises(ReportError, match=r"scheduler-stream.jsonl:302: not a task \(no 'start'\)"):
        read_stream(stream)
    (folder / "bench" / "shuffle.json").write_text(json.dumps({"bench": "shuffle"}))
    with pytest.raises(ReportError, match=r"shuffle\.json: not a bench document"):
        load_run(folder)
