"""``taskbench report``: the command runs end to end; a bad input is one line, exit 2, no output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskbench.cli import main


def run_report(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_report_writes_the_site(single_site) -> None:
    assert single_site.code == 0, single_site.stderr
    out = single_site.out
    assert {p.name for p in out.iterdir()} >= {"index.html", "summary.md", "results.csv", "figures"}
    assert "report of 2026-12-01-a" in single_site.stdout
    assert str(out / "index.html") in single_site.stdout
    assert "No asv history" in single_site.stdout and single_site.stderr == ""


def test_report_prints_the_headline_of_each_mode(single_site) -> None:
    """A row per query and a score row per mode; the planted timeout shows its status, no time."""
    lines = single_site.stdout.splitlines()
    for mode in ("memory", "scan"):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"hot median, {mode} mode"))
        header, *rows = [re.split(r"\s{2,}", line) for line in lines[at : at + 5]]
        assert header[1:] == ["engine", "pandas*", "duckdb", "dask", "spark"]
        assert [row[0] for row in rows] == ["q01", "q02", "q03", "score"]
        assert rows[0][-1] == "SKIPPED" and rows[3][-1] == "not scored"
        assert (rows[2][header.index("dask")] == "TIMEOUT") == (mode == "scan")
    assert "spark skipped: no Java 17+ on this machine" in single_site.stdout


def damaged(runs, tmp_path: Path, how: str) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(runs[0], folder)
    if how == "no-run-json":
        (folder / "run.json").unlink()
    elif how == "bad-line":
        path = folder / "records.jsonl"
        lines = path.read_text().splitlines()
        lines[6] = lines[6][:40]
        path.write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("missing", ["'{tmp}/nowhere'", "does not exist"]),
        ("no-run-json", ["{tmp}/run", "no run.json"]),
        ("bad-line", ["{tmp}/run/records.jsonl:7:", "not JSON"]),
    ],
)
def test_a_bad_run_folder_is_one_line_and_exit_2_and_nothing_written(
    runs, tmp_path, capsys, how, words
) -> None:
    folder = tmp_path / "nowhere" if how == "missing" else damaged(runs, tmp_path, how)
    out = tmp_path / "site"
    code, stdout, err = run_report(
        [str(runs[1]), str(folder), "--out", str(out), "--no-asv"], capsys
    )
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskbench report: error: "), err
    assert all(w.format(tmp=tmp_path) in lines[0] for w in words), lines[0]
    assert "Traceback" not in err and stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("where", ["a-file", "a-file/site", "/proc/taskbench-site"])
def test_an_unwritable_out_is_one_line_and_exit_2(runs, tmp_path, capsys, where) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    out = where if where.startswith("/") else str(tmp_path / where)
    if where.startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc")
    code, _, err = run_report([str(runs[0]), "--out", out, "--no-asv"], capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskbench report: error: "), err
    assert out in lines[0] or "cannot write" in lines[0]


def test_the_installed_command_reports_a_bad_input_in_one_line(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskbench.cli", "report", "nowhere", "--out", "site"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "TASKBENCH_LOG_DIR": str(tmp_path / "logs")},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "taskbench report: error: run folder 'nowhere' does not exist"
    assert list(tmp_path.iterdir()) == []


def test_the_report_imports_no_engine_no_infra_and_only_two_comparison_modules(runs) -> None:
    """Every report module, and a report analysed, in a fresh interpreter."""
    code = (
        "import importlib, pkgutil, sys, taskbench.reports as r;"
        "[importlib.import_module(f'taskbench.reports.{m.name}') for m in pkgutil.iter_modules("
        "r.__path__)];"
        "from taskbench.reports.loader import load_run;"
        "from taskbench.reports.model import analyse;"
        f"analyse([load_run({str(runs[0])!r}), load_run({str(runs[1])!r})]);"
        "print('\\n'.join(m for m in sys.modules if m.startswith('taskbench')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(done.stdout.split())
    assert {"taskbench.reports.figures", "taskbench.reports.cli"} <= loaded
    assert not {m for m in loaded if m.startswith(("taskbench.engine", "taskbench.infra"))}
    comparisons = {m for m in loaded if m.startswith("taskbench.comparisons")}
    assert comparisons <= {
        "taskbench.comparisons",
        "taskbench.comparisons.stats",
        "taskbench.comparisons.bench",
        "taskbench.comparisons.bench.record",
    }
