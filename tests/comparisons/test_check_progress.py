"""``taskbench check`` says what it is doing on stderr, also with ``--json``."""

from __future__ import annotations

import json

from taskbench.comparisons import solutions
from taskbench.comparisons.cli import main


def test_json_check_keeps_stdout_clean_and_tells_progress_on_stderr(datasets, monkeypatch, capsys):
    monkeypatch.setenv(solutions.EXTRA_ENV, "fake=tests.comparisons.fake_solution")
    argv = ["check", "--engines", "fake", "--queries", "q06,q07", "--json"]
    main([*argv, "--data", str(datasets["edge"])])
    out, err = capsys.readouterr()
    assert json.loads(out)["queries"] == ["q06", "q07"]
    lines = err.splitlines()
    assert all(line.startswith("[check] ") for line in lines), err
    for name in ("pandas", "fake"):
        assert f"[check] {name}: running 2 queries …" in lines
        assert any(line.startswith(f"[check] {name}: started (") for line in lines), err
        assert any(line.startswith(f"[check] {name}: loaded the data in ") for line in lines)
        assert any(
            f"[check] {name}: q07 answered in " in line and "(2/2)" in line for line in lines
        )
