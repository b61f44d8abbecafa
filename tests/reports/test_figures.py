"""Task-stream panels: every worker the stream lists gets a row, idle or not."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from taskbench.reports.figures import draw_stream
from taskbench.reports.loader import Stream, Task


def task(worker: str, start: float) -> Task:
    return Task(key=f"root-{start}", prefix="root", worker=worker, thread=0, start=start,
                stop=start + 1.0, nbytes=0, transfers=())  # fmt: skip


def labels(stream: Stream) -> list[str]:
    ax = Figure().subplots()
    draw_stream(ax, stream, {"root": "#1f77b4"})
    return [t.get_text() for t in ax.get_yticklabels()]


def test_an_idle_worker_listed_in_the_meta_gets_its_row() -> None:
    """The balance picture's point: everything ran on the second worker, the first idled."""
    busy, idle = "tcp://127.0.0.1:44867", "tcp://127.0.0.1:39223"
    tasks = [task(busy, 0.0), task(busy, 1.0)]
    listed = Stream(Path("skewed-random.jsonl"), {"workers": {busy: 1, idle: 1}}, tasks)
    assert labels(listed) == ["w0 t0", "w1 t0"]  # natural order: the idle worker is w0
    assert labels(Stream(Path("x.jsonl"), {}, tasks)) == ["w0 t0"]  # no meta: only what ran
