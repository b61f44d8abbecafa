"""Progress lines reach the terminal's stderr; peers' logs and tracebacks go to a file."""

from __future__ import annotations

import logging
import subprocess
import sys

from taskbench.comparisons.bench.console import peer_logs, plural, progress


def test_peer_logs_take_children_and_dask_loggers_off_the_screen(tmp_path, capfd):
    log = tmp_path / "dask.log"
    say = progress("scheduler")
    with peer_logs(log):
        say("dask-distributed: 200 independent tasks, repeat 1/1")
        child = "import sys; sys.stderr.write('Traceback (most recent call last): CommClosedError')"
        subprocess.run([sys.executable, "-c", child], check=True)
        logging.getLogger("distributed.worker").error("worker lost: CommClosedError")
        print("a stray print to stderr", file=sys.stderr)
    say("done")
    err = capfd.readouterr().err
    assert err.splitlines() == [
        "[scheduler] dask-distributed: 200 independent tasks, repeat 1/1",
        "[scheduler] done",
    ]
    text = log.read_text()
    assert "Traceback" in text and "worker lost: CommClosedError" in text
    assert "a stray print to stderr" in text
    # all is put back: stderr is the screen again, the logger as it was
    print("back on screen", file=sys.stderr)
    assert capfd.readouterr().err == "back on screen\n"
    assert not any(
        getattr(h, "baseFilename", "") == str(log)
        for h in logging.getLogger("distributed").handlers
    )


def test_plurals():
    assert plural(1, "thread") == "1 thread"
    assert plural(2, "thread") == "2 threads"
    assert plural(20_000, "task") == "20,000 tasks"
    assert plural(2, "worker process", "worker processes") == "2 worker processes"


def test_spread_ratio_and_links(tmp_path):
    from taskbench.comparisons.bench.console import link, ratio_text, spread
    from taskbench.comparisons.stats import Ratio

    assert spread([0.5, 0.1, 0.3]) == "0.300 (0.100–0.500)"
    assert spread([2.0], "{:.1f}") == "2.0" and spread([]) == "-"
    assert ratio_text(Ratio(1.84, 1.7, 2.01)) == "1.84 [1.70–2.01]"
    target = tmp_path / "streams" / "skewed-random.jsonl"
    assert link(target, tmp_path / "balance.json") == "streams/skewed-random.jsonl"
    assert link(target, None) == str(target.resolve())
