"""Task-stream pictures and lag histograms (matplotlib, Agg; imported only when plotting).

Colours: each prefix prefers the palette slot its CRC-32 picks, so a prefix keeps its
colour across figures and runs; within one figure the busiest prefixes claim free slots
in turn (so no two legend entries share a colour); prefixes beyond the legend are grey.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from taskbench.engine.stream import TaskStream

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: tab20 less greys (kept for "other") and reds (kept for transfers), dark hues first, so
#: that neighbouring slots, where a colliding prefix probes next, differ in hue.
_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
]  # fmt: skip
_OTHER = "#b0b0b0"
_TRANSFER = "#d62728"
_LEGEND_PREFIXES = 12
_THREAD_HEIGHT = 0.8
_TRANSFER_HEIGHT = 0.35


def prefix_colours(streams: Sequence[TaskStream]) -> dict[str, str]:
    """Colour per prefix over all `streams` (policy in the module docstring)."""
    busy: dict[str, float] = {}
    for stream in streams:
        for r in stream.records:
            busy[r.prefix] = busy.get(r.prefix, 0.0) + (r.stop - r.start)
    ranked = sorted(busy, key=lambda p: (-busy[p], p))
    free = list(range(len(_PALETTE)))
    colours = dict.fromkeys(ranked[_LEGEND_PREFIXES:], _OTHER)
    for prefix in ranked[:_LEGEND_PREFIXES]:
        want = zlib.crc32(prefix.encode()) % len(_PALETTE)
        slot = min(free, key=lambda s: (s - want) % len(_PALETTE))
        free.remove(slot)
        colours[prefix] = _PALETTE[slot]
    return colours


def _short(worker: str) -> str:
    return worker.split("://", 1)[-1]


def _worker_order(worker: str) -> tuple[Any, ...]:
    """Natural order: ``host:9`` before ``host:10``, ``worker-2`` before ``worker-10``."""
    name = _short(worker)
    stem = name.rstrip("0123456789")
    digits = name[len(stem) :]
    return (stem, int(digits) if digits else -1, name)


def worker_names(stream: TaskStream) -> dict[str, str]:
    """``{address: "w0", …}`` in natural address order: rows read ``w0 t0``, not ports."""
    workers = set(stream.meta.get("workers", {})) | {r.worker for r in stream.records}
    return {w: f"w{i}" for i, w in enumerate(sorted(workers, key=_worker_order))}


def _rows(stream: TaskStream) -> tuple[dict[tuple[str, int], float], dict[str, float], list]:
    """Y positions: each worker's threads top to bottom, then its thin transfer row.

    Workers listed in ``stream.meta["workers"]`` ({address: nthreads}) get rows even when
    they ran nothing: an idle worker is the point of a balance picture.
    """
    threads: dict[str, set[int]] = {
        w: set(range(n)) for w, n in stream.meta.get("workers", {}).items()
    }
    has_transfers: set[str] = set()
    for r in stream.records:
        threads.setdefault(r.worker, set()).add(r.thread)
        if r.transfers:
            has_transfers.add(r.worker)
    thread_y: dict[tuple[str, int], float] = {}
    transfer_y: dict[str, float] = {}
    separators: list[float] = []
    y = 0.0
    for worker in sorted(threads, key=_worker_order):
        for t in sorted(threads[worker]):
            thread_y[(worker, t)] = y
            y += 1.0
        if worker in has_transfers:
            transfer_y[worker] = y - 0.5 + _TRANSFER_HEIGHT / 2 + 0.05
            y += _TRANSFER_HEIGHT + 0.1
        separators.append(y - 0.5)
    return thread_y, transfer_y, separators[:-1]


def _boxes(x0: np.ndarray, x1: np.ndarray, y: np.ndarray, height: float) -> np.ndarray:
    """(n, 4, 2) rectangle vertices, for one PolyCollection instead of n artists."""
    lo, hi = y - height / 2, y + height / 2
    return np.stack(
        [
            np.stack([x0, lo], 1),
            np.stack([x1, lo], 1),
            np.stack([x1, hi], 1),
            np.stack([x0, hi], 1),
        ],
        axis=1,
    )


def _runs(
    start: np.ndarray, stop: np.ndarray, ys: np.ndarray, colour: np.ndarray, gap: float
) -> tuple[np.ndarray, ...]:
    """Back-to-back bars of one colour on one row, closer than ``gap``, joined into one bar:
    adjacent bars would show seams that are not there, and a gap under half a pixel cannot
    be drawn anyway; wider gaps stay. Returns (start, stop, y, colour) of the joined bars."""
    order = np.lexsort((start, ys))
    start, stop, ys, colour = start[order], stop[order], ys[order], colour[order]
    new = np.ones(len(start), dtype=bool)
    new[1:] = (ys[1:] != ys[:-1]) | (colour[1:] != colour[:-1]) | (start[1:] - stop[:-1] >= gap)
    first = np.flatnonzero(new)
    return start[first], np.maximum.reduceat(stop, first), ys[first], colour[first]


def _draw_stream(ax: Axes, stream: TaskStream, colours: dict[str, str], gap: float = 0.0) -> float:
    """Draw one stream on `ax`; returns its span in seconds from its first start.

    Bars of one colour closer than ``gap`` (half a pixel) are drawn as one (`_runs`).
    """
    from matplotlib.collections import PolyCollection

    t0 = stream.origin()
    thread_y, transfer_y, separators = _rows(stream)
    recs = stream.records
    n = len(recs)
    start = np.fromiter((r.start for r in recs), dtype=np.float64, count=n) - t0
    stop = np.fromiter((r.stop for r in recs), dtype=np.float64, count=n) - t0
    ys = np.fromiter((thread_y[(r.worker, r.thread)] for r in recs), dtype=np.float64, count=n)
    palette = sorted(set(colours.values()) | {_OTHER})
    code = {c: i for i, c in enumerate(palette)}
    face = np.fromiter((code[colours.get(r.prefix, _OTHER)] for r in recs), dtype=np.int64, count=n)
    if n:
        # no outlines: they would paint over the idle gaps between short tasks
        x0, x1, y, c = _runs(start, stop, ys, face, gap)
        ax.add_collection(
            PolyCollection(
                _boxes(x0, x1, y, _THREAD_HEIGHT),
                facecolors=[palette[i] for i in c],
                edgecolors="none",
                linewidths=0,
            )
        )
    erred = [i for i, r in enumerate(recs) if r.status == "erred"]
    if erred:
        ax.add_collection(
            PolyCollection(
                _boxes(start[erred], stop[erred], ys[erred], _THREAD_HEIGHT),
                facecolors="none",
                edgecolors="black",
                linewidths=1.2,
                hatch="xx",
            )
        )
    tx = [(t.start - t0, t.stop - t0, transfer_y[r.worker]) for r in recs for t in r.transfers]
    if tx:
        arr = np.asarray(tx, dtype=np.float64)
        ax.add_collection(
            PolyCollection(
                _boxes(arr[:, 0], arr[:, 1], arr[:, 2], _TRANSFER_HEIGHT),
                facecolors=_TRANSFER,
                edgecolors=_TRANSFER,
                linewidths=0.3,
                alpha=0.6,
            )
        )
    for y in separators:
        ax.axhline(y, color="0.6", linewidth=0.6)

    names = worker_names(stream)
    if len(thread_y) <= 40:
        labels = {y: f"{names[w]} t{t}" for (w, t), y in thread_y.items()}
        labels.update({y: f"{names[w]} transfers" for w, y in transfer_y.items()})
    else:  # too many rows to label each: name each worker at its first thread
        labels, seen = {}, set()
        for (w, _), y in thread_y.items():
            if w not in seen:
                seen.add(w)
                labels[y] = names[w]
    ax.set_yticks(list(labels), list(labels.values()), fontsize=7)
    bottom = max([*thread_y.values(), *transfer_y.values()], default=0.0)
    ax.set_ylim(bottom + 0.6, -0.6)
    ax.set_xlabel("seconds from first start")
    return float(max(stop.max(initial=0.0), arr[:, 1].max() if tx else 0.0))


def _us(value: float) -> str:
    """Microseconds, readably: ``20.1 µs``, ``3,254 µs``."""
    return f"{value:,.0f} µs" if value >= 100 else f"{value:.3g} µs"


def panel_facts(stream: TaskStream) -> list[str]:
    """What a panel's title says under its name: tasks, makespan, lag; what placed the work."""
    if not stream.records:
        return ["no tasks"]
    n = len(stream)
    facts = f"{n:,} {'task' if n == 1 else 'tasks'}, makespan {stream.makespan():.3g} s"
    if stream.makespan() > 0:
        idle = stream.idle_fraction(len(_rows(stream)[0]))
        facts += f", idle {100 * idle:.0f}%"
    lags = stream.lag_percentiles((50, 99))
    if lags["p50"] is not None:
        facts += f", lag p50 {_us(lags['p50'])}, p99 {_us(lags['p99'])}"
    lines = [facts]
    counts = stream.placement_counts()
    if counts:
        lines.append("placed by: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    return lines


def plot_task_stream(
    stream: TaskStream | list[TaskStream],
    path: str | os.PathLike[str],
    title: str | None = None,
    titles: Sequence[str] | None = None,
) -> None:
    """Write a PNG: one row per worker thread, one bar per task coloured by prefix, and a
    thin red transfer row under each worker's threads. A list gives side-by-side panels
    sharing the time scale and colours (e.g. random placement beside work stealing)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    streams = stream if isinstance(stream, list) else [stream]
    if not streams:
        raise ValueError("no task stream to plot")
    if titles is not None and len(titles) != len(streams):
        raise ValueError(f"{len(titles)} titles for {len(streams)} streams")
    colours = prefix_colours(streams)
    rows = max(len(_rows(s)[0]) for s in streams)
    heads = []  # each panel's title lines: its name, then its facts
    for i, s in enumerate(streams):
        name = titles[i] if titles else s.meta.get("title")
        heads.append([*(name.splitlines() if name else []), *panel_facts(s)])
    height = min(max(4.0, 2.0 + 0.3 * rows + 0.2 * max(map(len, heads))), 24.0)
    width = 12.0 if len(streams) == 1 else 6.5 * len(streams)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, len(streams), squeeze=False, sharex=True)
    longest = max((max(r.stop for r in s.records) - s.origin() for s in streams if s.records),
                  default=0.0)  # fmt: skip
    pixel = (longest or 1.0) / (width * 110 / len(streams))
    span = 0.0
    for i, (ax, s) in enumerate(zip(axes[0], streams, strict=True)):
        span = max(span, _draw_stream(ax, s, colours, pixel / 2))
        ax.set_title("\n".join(heads[i]), fontsize=9)
    axes[0][0].set_xlim(0.0, span * 1.01 if span > 0 else 1.0)

    # the legend names only what can be seen: at least about a pixel of bars in all
    busy: dict[str, float] = {}
    for s in streams:
        for r in s.records:
            busy[r.prefix] = busy.get(r.prefix, 0.0) + (r.stop - r.start)
    top = sorted(busy, key=lambda p: (-busy[p], p))[:_LEGEND_PREFIXES]
    rest = sum(busy[p] for p in busy if p not in top)
    handles = [Patch(color=colours[p], label=p) for p in top if busy[p] >= pixel]
    if len(busy) > len(top) and rest >= pixel:
        handles.append(Patch(color=_OTHER, label=f"other ({len(busy) - len(top)} prefixes)"))
    if any(r.transfers for s in streams for r in s.records):
        handles.append(Patch(color=_TRANSFER, alpha=0.6, label="transfer"))
    if any(r.status == "erred" for s in streams for r in s.records):
        handles.append(Patch(facecolor="none", edgecolor="black", hatch="xx", label="erred"))
    if handles:
        fig.legend(
            handles=handles,
            loc="outside right upper",
            fontsize=8,
            frameon=False,
        )
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)


def plot_lag_histogram(streams: dict[str, TaskStream], path: str | os.PathLike[str]) -> None:
    """Write a PNG of inter-task lag distributions, one step curve per stream, on log-spaced
    µs bins; each curve shows the fraction of its lags (so runs of different sizes compare)
    and p50/p99 are marked. Zero lags are drawn in the first bin."""
    from matplotlib.figure import Figure

    lags = {name: s.inter_task_lags() for name, s in streams.items()}
    positive = [x[x > 0] for x in lags.values() if x.size]
    lo = min((float(x.min()) for x in positive if x.size), default=1.0)
    hi = max((float(x.max()) for x in positive if x.size), default=10.0)
    lo, hi = max(lo, 0.01), max(hi, lo * 10)
    bins = np.geomspace(lo, hi * 1.0001, 60)

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, (name, x) in enumerate(lags.items()):
        colour = f"C{i % 10}"
        if x.size == 0:
            ax.plot([], [], color=colour, label=f"{name}: no lags")
            continue
        p50, p99 = np.percentile(x, [50, 99])
        ax.hist(
            np.clip(x, lo, None),
            bins=bins,
            weights=np.full(x.size, 1.0 / x.size),
            histtype="step",
            linewidth=1.5,
            color=colour,
            label=f"{name}: n={x.size}, p50 {p50:.3g} µs, p99 {p99:.3g} µs",
        )
        ax.axvline(max(p50, lo), color=colour, linestyle="--", linewidth=0.9)
        ax.axvline(max(p99, lo), color=colour, linestyle=":", linewidth=0.9)
    ax.set_xscale("log")
    ax.set_xlabel("inter-task lag (µs; dashed p50, dotted p99)")
    ax.set_ylabel("fraction of lags")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- command


def add_parser(subparsers: Any) -> None:
    """Register ``stream plot`` under ``subparsers`` (argparse)."""
    from taskbench.engine import argtypes as at

    stream = subparsers.add_parser("stream", help="task streams of recorded runs")
    ssub = stream.add_subparsers(dest="action", required=True)
    plot = ssub.add_parser("plot", help="task-stream picture (PNG) of a recorded run")
    plot.add_argument(
        "runs", nargs="+", type=at.existing_file,
        help="JSONL stream files; several draw side by side",
    )  # fmt: skip
    plot.add_argument("-o", "--output", type=at.output_file, required=True, help="the PNG")
    plot.add_argument("--title", help="the figure's title")
    plot.set_defaults(func=cmd_stream_plot)


class StreamFileError(ValueError):
    """A stream file that holds no task records, or a line that is not one."""


_NUMBER = (int, float)
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,), "prefix": (str,), "worker": (str,), "status": (str,), "thread": (int,),
    "ready": (*_NUMBER, type(None)), "start": _NUMBER, "stop": _NUMBER, "nbytes": _NUMBER,
    "sizeof_seconds": _NUMBER,
}  # fmt: skip
_TRANSFER_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,), "source": (str,), "nbytes": _NUMBER, "start": _NUMBER, "stop": _NUMBER,
}  # fmt: skip


def _fields_problem(obj: Any, types: dict[str, tuple[type, ...]], what: str) -> str | None:
    if not isinstance(obj, dict):
        return f"not {what} (a JSON object)"
    missing = [k for k in types if k not in obj]
    extra = [k for k in obj if k not in types and k not in ("transfers", "placed_by")]
    if missing or extra:
        return f"not {what}: " + "; ".join(
            [f"missing {', '.join(missing)}"] * bool(missing)
            + [f"unknown {', '.join(extra)}"] * bool(extra)
        )
    wrong = [k for k, t in types.items() if not isinstance(obj[k], t) or isinstance(obj[k], bool)]
    return f"not {what}: wrong type of {', '.join(wrong)}" if wrong else None


def _line_problem(obj: Any, seen_records: bool) -> str | None:
    """Why one parsed JSONL line is not what `TaskStream.from_jsonl` reads, or None."""
    if isinstance(obj, dict) and set(obj) == {"meta"}:
        if seen_records:
            return "meta line after task records"
        return None if isinstance(obj["meta"], dict) else "meta is not a JSON object"
    problem = _fields_problem(obj, _RECORD_TYPES, "a task record")
    if problem is None:
        if not isinstance(obj.get("placed_by"), str | None):
            return "not a task record: placed_by is not a string"
        transfers = obj.get("transfers", [])
        if not isinstance(transfers, list):
            return "not a task record: transfers is not a list"
        for t in transfers:
            problem = problem or _fields_problem(t, _TRANSFER_TYPES, "a transfer")
    return problem


def read_stream(path: str | os.PathLike[str]) -> TaskStream:
    """`TaskStream.from_jsonl` for a user's file: a bad line is named ``FILE:LINE: why``, and
    a file without task records is an error too."""
    import json

    records = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise StreamFileError(f"{path}:{lineno}: not JSON ({e.msg})") from None
            problem = _line_problem(obj, records > 0)
            if problem:
                raise StreamFileError(f"{path}:{lineno}: {problem}")
            records += set(obj) != {"meta"}
    if not records:
        raise StreamFileError(f"no task records in {path}")
    return TaskStream.from_jsonl(path)


def cmd_stream_plot(args: Any) -> int:
    """``taskbench stream plot RUN… -o PNG``: 1 when a stream file holds no task records or a
    line that is not one (argparse has refused a missing file or output folder, with 2)."""
    try:
        streams = [read_stream(path) for path in args.runs]
    except (OSError, StreamFileError) as e:
        print(f"taskbench stream plot: error: {e}", file=sys.stderr)
        return 1
    titles = [s.meta.get("title") or Path(p).stem for s, p in zip(streams, args.runs, strict=True)]
    plot_task_stream(streams if len(streams) > 1 else streams[0], args.output, title=args.title,
                     titles=titles if len(streams) > 1 else None)  # fmt: skip
    print(f"wrote {args.output}")
    return 0
