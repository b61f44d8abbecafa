import json
import struct
import time
from dataclasses import replace
from types import SimpleNamespace
from zlib import crc32

import numpy as np
import pytest
from taskbench.engine.plot import _PALETTE, plot_lag_histogram, plot_task_stream, prefix_colours
from taskbench.engine.stream import TaskRecord, TaskStream, Transfer

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PREFIXES = [
    "read-parquet",
    "getitem",
    "assign",
    "shuffle-split",
    "shuffle-merge",
    "sum-chunk",
    "sum-agg",
    "len",
    "apply",
    "concat",
    "sort",
    "merge",
    "head",
    "tail",
]


def synthetic(n: int, workers: int = 4, threads: int = 4, seed: int = 0) -> TaskStream:
    """Back-to-back tasks on every thread with exponential durations and lags, some transfers."""
    rng = np.random.default_rng(seed)
    rows = workers * threads
    slot = rng.integers(0, rows, n)
    dur = rng.exponential(1e-3, n)
    lag = rng.exponential(50e-6, n)
    prefix = np.minimum(rng.exponential(2.5, n).astype(int), len(PREFIXES) - 1)
    fetch = rng.random(n) < 0.1
    clocks = np.full(rows, 1.7e9)
    records = []
    for i in range(n):
        k = slot[i]
        start = clocks[k] + lag[i]
        stop = start + dur[i]
        clocks[k] = stop
        worker = f"tcp://127.0.0.1:{40000 + k // threads}"
        transfers = (
            [Transfer(f"dep-{i}", "tcp://127.0.0.1:39999", 4096, start - 3e-4, start - 1e-4)]
            if fetch[i]
            else []
        )
        p = PREFIXES[prefix[i]]
        records.append(
            TaskRecord(
                f"{p}-{i}",
                p,
                worker,
                int(k % threads),
                float(start - lag[i] / 2),
                float(start),
                float(stop),
                1000,
                1e-6,
                "erred" if i == n // 2 else "memory",
                transfers,
            )
        )
    return TaskStream(records)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def test_small_stream(tmp_path):
    path = tmp_path / "small.png"
    plot_task_stream(synthetic(300, workers=2, threads=3), path, title="small")
    width, height = png_size(path)
    assert 600 < width < 3000 and 200 < height < 3000
    assert 10_000 < path.stat().st_size < 2_000_000


def test_large_stream_is_fast(tmp_path):
    stream = synthetic(100_000)
    path = tmp_path / "large.png"
    t = time.perf_counter()
    plot_task_stream(stream, path)
    elapsed = time.perf_counter() - t
    png_size(path)
    assert 10_000 < path.stat().st_size < 5_000_000
    assert elapsed < 20, f"100k records took {elapsed:.1f} s"


def test_side_by_side(tmp_path):
    path = tmp_path / "side.png"
    streams = [synthetic(400, seed=1), synthetic(200, workers=2, seed=2)]
    plot_task_stream(streams, path, title="balance", titles=["random", "stealing"])
    width, height = png_size(path)
    assert width > height
    with pytest.raises(ValueError, match="titles"):
        plot_task_stream(streams, tmp_path / "bad.png", titles=["only one"])


def test_degenerate_streams(tmp_path):
    plot_task_stream(TaskStream(), tmp_path / "empty.png")
    one = TaskStream(synthetic(1).records)
    plot_task_stream(one, tmp_path / "one.png")
    many = synthetic(2000, workers=16, threads=4)  # 64 rows: labelled per worker
    plot_task_stream(many, tmp_path / "many.png")
    for name in ("empty", "one", "many"):
        png_size(tmp_path / f"{name}.png")


def test_lag_histogram(tmp_path):
    path = tmp_path / "lags.png"
    plot_lag_histogram(
        {"taskbench": synthetic(5000), "peer": synthetic(500, seed=3), "none": TaskStream()},
        path,
    )
    png_size(path)
    assert path.stat().st_size > 10_000


def test_prefix_colours_are_stable_and_distinct():
    stream = synthetic(2000, seed=4)
    a = prefix_colours([stream])
    b = prefix_colours([synthetic(2000, seed=4)])
    assert a == b
    coloured = [c for c in a.values() if c != "#b0b0b0"]
    assert len(coloured) == len(set(coloured)) == 12

    # A prefix's preferred slot comes from its CRC-32, so it is the same in every figure;
    # the busiest prefix always gets it, others probe on only when their slot is taken.
    def preferred(prefix: str) -> str:
        return _PALETTE[crc32(prefix.encode()) % len(_PALETTE)]

    busiest = max(a, key=lambda p: sum(r.stop - r.start for r in stream.records if r.prefix == p))
    assert a[busiest] == preferred(busiest)
    for prefix in PREFIXES:
        alone = TaskStream([replace(stream.records[0], prefix=prefix)])
        assert prefix_colours([alone]) == {prefix: preferred(prefix)}


def _plot_command(runs, output):
    from taskbench.engine.plot import cmd_stream_plot

    return cmd_stream_plot(SimpleNamespace(runs=runs, output=output, title=None))


def test_stream_plot_refuses_a_stream_file_without_records(tmp_path, capsys):
    for text in ("", "\n\n", '{"meta": {"title": "x"}}\n'):
        empty = tmp_path / "empty.jsonl"
        empty.write_text(text)
        assert _plot_command([empty], tmp_path / "x.png") == 1
        assert capsys.readouterr().err.strip() == (
            f"taskbench stream plot: error: no task records in {empty}"
        )
        assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a task record (a JSON object)"),
        ('{"key": "k"}', "missing prefix"),
        ("START", "not JSON"),
        ("STOP_IS_TEXT", "wrong type of stop"),
        ("EXTRA", "unknown colour"),
        ("TRANSFER", "not a transfer"),
        ('{"meta": {}}', "meta line after task records"),
    ],
)
def test_stream_plot_names_the_file_and_line_of_a_bad_record(tmp_path, capsys, line, why):
    path = tmp_path / "run.jsonl"
    stream = synthetic(3)
    stream.to_jsonl(path)
    good = path.read_text().splitlines()
    record = json.loads(good[-1])
    bad = {
        "START": good[-1][:-5],
        "STOP_IS_TEXT": json.dumps({**record, "stop": "late"}),
        "EXTRA": json.dumps({**record, "colour": "red"}),
        "TRANSFER": json.dumps({**record, "transfers": [{"key": "d"}]}),
    }.get(line, line)
    path.write_text("\n".join([*good, bad, good[-1]]) + "\n")
    assert _plot_command([path], tmp_path / "x.png") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:{len(good) + 1}: " in err[0] and why in err[0]
    assert not (tmp_path / "x.png").exists()


def test_read_stream_reads_what_to_jsonl_wrote(tmp_path):
    from taskbench.engine.plot import read_stream

    stream = synthetic(50)
    stream.meta = {"title": "t"}
    stream.to_jsonl(tmp_path / "s.jsonl")
    back = read_stream(tmp_path / "s.jsonl")
    assert back.records == stream.records and back.meta == stream.meta


def drawn(monkeypatch) -> dict:
    """What the next saved figure shows: first panel's row labels and title, the legend."""
    from matplotlib.figure import Figure

    seen: dict = {}
    savefig = Figure.savefig

    def keep(fig, path, **kw):
        ax = fig.axes[0]
        seen["labels"] = [t.get_text() for t in ax.get_yticklabels()]
        seen["title"] = ax.get_title()
        seen["legend"] = [t.get_text() for t in fig.legends[0].get_texts()]
        return savefig(fig, path, **kw)

    monkeypatch.setattr(Figure, "savefig", keep)
    return seen


def test_rows_are_named_by_worker_and_thread_and_the_title_says_what(tmp_path, monkeypatch):
    """Rows read ``w0 t0`` (not ports); the panel says tasks, makespan, lag and placement."""
    stream = synthetic(200, workers=2, threads=2)
    stream.records[0].placed_by = "policy"
    for r in stream.records[1:]:
        r.placed_by = "eager"
    stream.meta = {"title": "taskbench: 200 tasks"}
    seen = drawn(monkeypatch)
    plot_task_stream(stream, tmp_path / "s.png")
    assert seen["labels"][:2] == ["w0 t0", "w0 t1"] and "w0 transfers" in seen["labels"]
    assert not any("127.0.0.1" in label for label in seen["labels"])
    title = seen["title"]
    assert title.startswith("taskbench: 200 tasks\n200 tasks, makespan ")
    assert "lag p50" in title and "placed by: eager 199, policy 1" in title
    assert "transfer" in seen["legend"]


def test_legend_leaves_out_what_is_too_small_to_see(tmp_path, monkeypatch):
    stream = TaskStream([
        TaskRecord("load", "load", "w", 0, None, 0.0, 0.001, 8, 0.0, "memory"),
        TaskRecord("root-0", "root", "w", 0, None, 0.001, 10.0, 8, 0.0, "memory"),
    ])  # fmt: skip
    seen = drawn(monkeypatch)
    plot_task_stream(stream, tmp_path / "s.png")
    assert seen["legend"] == ["root"]


def test_read_stream_accepts_records_with_and_without_placed_by(tmp_path):
    from taskbench.engine.plot import read_stream

    stream = synthetic(20)
    stream.records[0].placed_by = "steal"
    stream.to_jsonl(tmp_path / "s.jsonl")
    assert read_stream(tmp_path / "s.jsonl").records == stream.records
