"""``taskbench data generate|import`` through argparse, as engine/cli.py will call it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from taskbench.comparisons.data import read_manifest, trip_files
from taskbench.comparisons.data.cli import add_parser, main, parse_rows

REPO = Path(__file__).parents[3]
MODERN = (
    "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,"
    "RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,"
    "mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount"
)
ROW = "2,2023-01-01 00:32:10,2023-01-01 00:40:36,1,0.97,1,N,161,141,2,9.3,1,0.5,0,0,1,14.3"


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("1M", 1_000_000),
        ("10M", 10_000_000),
        ("1e6", 1_000_000),
        ("2.5m", 2_500_000),
        ("500k", 500_000),
        ("1_000_000", 1_000_000),
        ("1,000", 1_000),
        ("1G", 1_000_000_000),
    ],
)
def test_parse_rows(text: str, rows: int) -> None:
    assert parse_rows(text) == rows


@pytest.mark.parametrize("text", ["abc", "1.5", "-3", "0", "1e-1", "M", "inf"])
def test_parse_rows_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rows(text)


def test_generate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "--rows", "20k", "--months", "2", "--seed", "3"]
    assert main([*argv, "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["command"] == "data generate"
    assert result["rows"] == 20_000 and result["months"] == ["2015-01", "2015-02"]
    assert result["rows_per_s"] > 0 and result["seed"] == 3
    assert result["fingerprint"] == read_manifest(tmp_path).fingerprint
    assert main([*argv, "--out", str(tmp_path)]) == 1  # a dataset is already there
    assert "already holds a dataset" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path), "--overwrite", "--quiet"]) == 0
    assert "wrote 20,000 rows in 2 monthly files" in capsys.readouterr().out


def test_generate_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    for argv in (["--rows", "lots"], ["--start", "2015-13"], ["--months", "0"]):
        with pytest.raises(SystemExit) as caught:
            main(["generate", *argv, "--out", str(tmp_path)])
        assert caught.value.code == 2
    assert "month must look like 2015-01" in capsys.readouterr().err


def test_add_parser_registers_data_under_a_top_level_parser(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="taskbench")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "generate", "--rows", "1e3", "--out", str(tmp_path)])
    assert (args.command, args.data_command, args.rows) == ("data", "generate", 1000)
    assert args.func(args) == 0
    assert read_manifest(tmp_path).rows == 1000


def test_import_reports_each_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.csv"
    good.write_text(f"{MODERN}\n{ROW}\n{ROW.replace('9.3', 'x')}\n")
    assert main(["import", str(good), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "good.csv: 2 rows in, 1 written, 1 rejected (fare_amount: not a number: 1)" in out
    assert len(trip_files(tmp_path / "out")) == 1
    argv = ["import", str(good), "--out", str(tmp_path / "strict"), "--strict", "--json"]
    assert main(argv) == 1
    assert "good.csv: 1 rows cannot be parsed" in capsys.readouterr().err
    assert main(["import", str(good), "--out", str(tmp_path / "j"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"][0]["rows_rejected"] == 1
    assert report["manifest"]["kind"] == "imported"


def test_import_names_the_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "weird.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    assert main(["import", str(bad), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "weird.csv" in err and "missing required columns" in err and "a, b, c" in err


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "comparisons.data.cli", "generate", "--rows", "1k"]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["rows"] == 1000
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
