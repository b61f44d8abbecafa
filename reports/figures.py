"""The report's figures: matplotlib PNGs (Agg, no pyplot state), each titled with its mode.

- per-query times: one panel per query, a bar per engine at its hot median, error bars from
  the hot runs' min to max; a failed cell gets its status word and no bar;
- speed-up over the reference: the ratio of medians with its bootstrap interval, on a log axis
  with 1 marked; bars whose interval holds 1 are hatched ("no clear difference");
- task streams: one row per worker thread, one bar per task coloured by prefix (the busiest
  prefixes first, the rest grey), each worker's transfers on a thin row of their own;
- lag histograms with p50 and p99 marked; the shuffle overhead, deep beside sampled sizeof.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from taskbench.reports.loader import Stream
from taskbench.reports.model import ModeTable, Report, Story

DPI = 100
_ENGINE_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
]  # fmt: skip
_PREFIX_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5",
]  # fmt: skip
_OTHER = "#b0b0b0"
_FAILED = "#c62828"
_TRANSFER = "#d62728"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def engine_colours(engines: Sequence[str]) -> dict[str, str]:
    return {e: _ENGINE_COLOURS[i % len(_ENGINE_COLOURS)] for i, e in enumerate(engines)}


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)


def _plain_log(axis, subs: tuple[float, ...] = (1.0,)) -> None:
    """A log axis labelled ``0.5, 1, 2, 100`` (no mathtext: it reads worse and draws slowly)."""
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _grid(n: int, ncols: int = 3) -> tuple[int, int]:
    cols = max(1, min(ncols, n))
    return math.ceil(n / cols), cols


# ---------------------------------------------------------------- comparison figures


def times_figure(table: ModeTable, path: Path) -> None:
    """Hot median per engine, one panel per query, error bars min–max of the hot runs."""
    colours = engine_colours(table.engines)
    nrows, ncols = _grid(len(table.queries))
    fig = Figure(figsize=(4.2 * ncols, 2.9 * nrows + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    x = np.arange(len(table.engines))
    for ax, (query, cells) in zip(axes, table.rows(), strict=False):
        top = max((c.summary.high for c in cells if c.summary), default=1.0)
        for i, cell in enumerate(cells):
            s = cell.summary
            if s is not None:
                ax.bar(i, s.median, color=colours[cell.engine], width=0.7)
                ax.errorbar(
                    i, s.median, yerr=[[s.median - s.low], [s.high - s.median]],
                    color="black", capsize=3, linewidth=1,
                )  # fmt: skip
            else:  # a status, never a number
                ax.text(
                    i, top * 0.04, cell.status, rotation=90, ha="center", va="bottom", fontsize=9,
                    color=_FAILED if cell.failed else "0.4",
                    fontweight="bold" if cell.failed else "normal",
                )  # fmt: skip
        ax.set_title(f"{query.id} {query.title}".strip(), fontsize=9)
        ax.set_xticks(x, table.engines, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("seconds (hot)", fontsize=8)
        ax.set_ylim(0, top * 1.15)
        ax.set_xlim(-0.6, len(cells) - 0.4)
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes[len(table.queries) :]:
        ax.set_visible(False)
    fig.suptitle(f"{table.mode} mode: hot median per query, error bars min–max of the hot runs")
    _save(fig, path)


def speedup_figure(table: ModeTable, path: Path) -> None:
    """Each engine's speed-up over the reference per query, with its bootstrap interval."""
    engines = [e for e in table.engines if e != table.reference]
    colours = engine_colours(table.engines)
    wide = 0.55 * len(table.queries) * max(1, len(engines)) ** 0.5 + 2  # a page is ~13 in wide
    fig = Figure(figsize=(min(13.0, max(6.0, wide)), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(engines))
    by_key = {(c.engine, c.query): c for c in table.speedups}
    values: list[float] = []
    labelled: set[str] = set()
    for j, engine in enumerate(engines):
        for i, q in enumerate(table.queries):
            xpos = i - 0.4 + width * (j + 0.5)
            c = by_key.get((engine, q.id))
            if c is None or c.ratio is None:
                ax.text(xpos, 1.0, "×", ha="center", va="center", color=_FAILED, fontsize=9)
                continue
            r = c.ratio
            values += [r.low, r.high]
            ax.bar(  # from 1 up (faster) or down (slower)
                xpos, r.value - 1.0, width=width * 0.9, bottom=1.0, color=colours[engine],
                hatch=None if r.clear else "//", edgecolor="white" if r.clear else "black",
                linewidth=0.4, label=None if engine in labelled else engine,
            )  # fmt: skip
            labelled.add(engine)
            ax.errorbar(
                xpos, r.value, yerr=[[r.value - r.low], [r.high - r.value]], color="black",
                capsize=2, linewidth=0.8,
            )  # fmt: skip
    ax.set_yscale("log")
    _plain_log(ax.yaxis, subs=(1.0, 2.0, 5.0))
    ax.set_xlim(-0.5, len(table.queries) - 0.5)
    lo = min([*values, 0.5])
    hi = max([*values, 2.0])
    ax.set_ylim(lo / 1.5, hi * 1.5)
    ax.axhline(1.0, color="0.3", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(table.queries)), [q.id for q in table.queries])
    ax.set_ylabel(f"times faster than {table.reference}")
    if labelled:
        ax.legend(fontsize=8, loc="best")
    ax.set_title(
        f"{table.mode} mode: speed-up over {table.reference}, the ratio of hot medians\n"
        "(bootstrap 95 % interval; hatched: the interval holds 1; ×: no ratio)",
        fontsize=9,
    )
    _save(fig, path)


# ---------------------------------------------------------------- task streams


def _natural(text: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def prefix_colours(streams: Sequence[Stream]) -> dict[str, str]:
    """Colour per prefix: the busiest prefixes (over all streams) take the palette in turn."""
    busy: dict[str, float] = {}
    for s in streams:
        for t in s.tasks:
            busy[t.prefix] = busy.get(t.prefix, 0.0) + (t.stop - t.start)
    ranked = sorted(busy, key=lambda p: (-busy[p], p))
    return {p: _PREFIX_COLOURS[i] if i < len(_PREFIX_COLOURS) else _OTHER
            for i, p in enumerate(ranked)}  # fmt: skip


def _boxes(x0: np.ndarray, x1: np.ndarray, y: np.ndarray, height: float) -> np.ndarray:
    lo, hi = y - height / 2, y + height / 2
    return np.stack(
        [np.stack([x0, lo], 1), np.stack([x1, lo], 1), np.stack([x1, hi], 1),
         np.stack([x0, hi], 1)], axis=1,
    )  # fmt: skip


def worker_threads(stream: Stream) -> dict[str, set[int]]:
    """{worker: its thread indices}: those the meta lists (``{address: nthreads}``) and those
    that ran a task."""
    listed = stream.meta.get("workers")
    listed = listed if isinstance(listed, dict) else {}
    threads = {str(w): set(range(int(n or 0))) for w, n in listed.items()}
    for t in stream.tasks:
        threads.setdefault(t.worker, set()).add(t.thread)
    return threads


def draw_stream(ax, stream: Stream, colours: dict[str, str], t0: float | None = None) -> float:
    """One stream on ``ax``: a row per worker thread, a thin transfer row under each worker
    that received data; returns the span in seconds. The workers the stream's meta lists
    (``{address: nthreads}``) get rows even when they ran nothing: an idle worker is the
    point of a balance picture."""
    tasks = stream.tasks
    starts = [t.start for t in tasks] + [x.start for t in tasks for x in t.transfers]
    t0 = min(starts, default=0.0) if t0 is None else t0
    threads = worker_threads(stream)
    workers = sorted(threads, key=_natural)
    names = {w: f"w{i}" for i, w in enumerate(workers)}
    rows: dict[tuple[str, int], float] = {}
    transfer_rows: dict[str, float] = {}
    y = 0.0
    for w in workers:
        for thread in sorted(threads[w] or {0}):
            rows[w, thread] = y
            y += 1.0
        if any(t.transfers for t in tasks if t.worker == w):
            transfer_rows[w] = y - 0.25
            y += 0.6
    span = 0.0
    if tasks:
        x0 = np.array([t.start for t in tasks]) - t0
        x1 = np.array([t.stop for t in tasks]) - t0
        ys = np.array([rows[t.worker, t.thread] for t in tasks])
        faces = [colours.get(t.prefix, _OTHER) for t in tasks]
        ax.add_collection(
            PolyCollection(_boxes(x0, x1, ys, 0.8), facecolors=faces, edgecolors="none")
        )
        span = float(x1.max())
    moves = [(x.start - t0, x.stop - t0, transfer_rows[t.worker]) for t in tasks
             for x in t.transfers]  # fmt: skip
    if moves:
        arr = np.asarray(moves)
        ax.add_collection(
            PolyCollection(
                _boxes(arr[:, 0], arr[:, 1], arr[:, 2], 0.35), facecolors=_TRANSFER,
                edgecolors=_TRANSFER, linewidths=0.3, alpha=0.6,
            )
        )  # fmt: skip
        span = max(span, float(arr[:, 1].max()))
    labels = {v: f"{names[w]} t{th}" for (w, th), v in rows.items()}
    labels.update({v: f"{names[w]} transfers" for w, v in transfer_rows.items()})
    if len(labels) <= 40:
        ax.set_yticks(list(labels), list(labels.values()), fontsize=7)
    ax.set_ylim(max([*labels, 0.0]) + 0.6, -0.6)
    ax.set_xlim(0, span * 1.02 or 1.0)
    ax.set_xlabel("seconds from first start", fontsize=8)
    return span


def _legend(fig: Figure, colours: dict[str, str], transfers: bool) -> None:
    from matplotlib.patches import Patch

    shown = [(p, c) for p, c in colours.items() if c != _OTHER][: len(_PREFIX_COLOURS)]
    handles = [Patch(color=c, label=p) for p, c in shown]
    if len(shown) < len(colours):
        handles.append(Patch(color=_OTHER, label="other prefixes"))
    if transfers:
        handles.append(Patch(color=_TRANSFER, alpha=0.6, label="transfer"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)),
                   fontsize=8, frameon=False)  # fmt: skip


def streams_figure(
    panels: Sequence[tuple[str, Stream]], path: Path, title: str, side_by_side: bool = False,
    colours: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """Streams as panels (stacked, or side by side on one time axis), one prefix palette."""
    streams = [s for _, s in panels]
    colours = prefix_colours(streams) if colours is None else colours
    present = {t.prefix for s in streams for t in s.tasks}
    legend = {p: c for p, c in colours.items() if p in present}
    nrows = max(1, len(panels))
    threads = [sum(len(t) or 1 for t in worker_threads(s).values()) or 1 for s in streams]
    if side_by_side:
        fig = Figure(figsize=(5.5 * nrows, 1.2 + 0.45 * max(threads, default=1) + 1.0),
                     layout="constrained")  # fmt: skip
        axes = fig.subplots(1, nrows, squeeze=False, sharex=True).ravel()
    else:
        fig = Figure(figsize=(10, 1.2 + sum(0.45 * n + 0.9 for n in threads)),
                     layout="constrained")  # fmt: skip
        axes = fig.subplots(nrows, 1, squeeze=False).ravel()
    spans = []
    for ax, (panel_title, stream) in zip(axes, panels, strict=True):
        spans.append(draw_stream(ax, stream, colours))
        title_lines = f"{panel_title} ({len(stream.tasks):,} tasks)".splitlines()
        width = 64 if side_by_side else 120  # characters that fit the panel at 9 pt
        ax.set_title("\n".join(textwrap.fill(line, width) for line in title_lines), fontsize=9)
    if side_by_side and spans:
        axes[0].set_xlim(0, max(spans) * 1.02 or 1.0)
    _legend(fig, legend, any(x.transfers for s in streams for x in s.tasks))
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


# ---------------------------------------------------------------- bench figures


def lag_figure(story: Story, path: Path) -> None:
    """Histogram of every inter-task gap per engine (log µs), p50 and p99 marked."""
    series = story.lag
    values = [v for s in series for v in s.values if v > 0]
    lo, hi = (min(values), max(values)) if values else (1.0, 10.0)
    bins = np.geomspace(max(lo, 1e-3), max(hi, lo * 10), 50)
    fig = Figure(figsize=(5 * len(series), 3.4), layout="constrained")
    axes = fig.subplots(1, len(series), squeeze=False, sharex=True).ravel()
    for ax, s in zip(axes, series, strict=True):
        data = [v for v in s.values if v > 0]
        ax.hist(data, bins=bins, color="#1f77b4" if s.engine.startswith("taskbench") else "#ff7f0e")
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
        marks = ((s.p50, "p50", "--", 0.97), (s.p99, "p99", ":", 0.87))
        for value, name, style, height in marks:
            if value > 0:  # a log axis has no 0: a zero percentile is in the title only
                ax.axvline(value, color="black", linestyle=style, linewidth=1.2)
                ax.text(value, height, f" {name} {value:,.0f} µs", fontsize=8, va="top",
                        transform=ax.get_xaxis_transform())  # fmt: skip
        zeros = len(s.values) - len(data)
        title = f"{s.engine}: {len(s.values):,} gaps"
        if zeros:
            title += f", {zeros:,} of 0 µs not drawn" + (" (p50 0 µs)" if s.p50 <= 0 else "")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("inter-task lag (µs, log)", fontsize=8)
        ax.set_ylabel("gaps", fontsize=8)
    fig.suptitle("inter-task lag while work was queued (bench scheduler)", fontsize=10)
    _save(fig, path)


def shuffle_figure(story: Story, path: Path) -> None:
    """Shuffle overhead over pandas per method: deep beside sampled sizeof, intervals drawn."""
    rows = story.shuffle_rows
    sizeofs = story.sizeofs
    fig = Figure(figsize=(max(6.5, 1.6 * len(rows) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(sizeofs))
    colours = {"deep": "#c62828", "sampled": "#2e7d32"}
    for j, sizeof in enumerate(sizeofs):
        for i, row in enumerate(rows):
            cell = row.by_sizeof.get(sizeof)
            if cell is None or cell.overhead is None:
                continue
            xpos = i - 0.4 + width * (j + 0.5)
            ax.bar(xpos, cell.overhead, width=width * 0.9, color=colours.get(sizeof, "#1f77b4"),
                   label=f"sizeof {sizeof}" if i == 0 else None)  # fmt: skip
            if cell.low is not None and cell.high is not None:
                ax.errorbar(
                    xpos, cell.overhead,
                    yerr=[[cell.overhead - cell.low], [cell.high - cell.overhead]],
                    color="black", capsize=3, linewidth=1,
                )  # fmt: skip
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="pandas in memory = 1")
    ax.set_xticks(range(len(rows)), [f"{r.engine} {r.method}\n{r.rows:,} rows" if isinstance(
        r.rows, int) else f"{r.engine} {r.method}" for r in rows], fontsize=8)  # fmt: skip
    ax.set_ylabel("shuffle time / pandas hash-partition time")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("shuffle overhead over pandas (median ratio, 95 % interval):\n"
                 "deep beside sampled sizeof", fontsize=9)  # fmt: skip
    _save(fig, path)


# ---------------------------------------------------------------- all of them


def draw_all(report: Report, folder: Path) -> dict[str, str]:
    """Every figure of ``report`` under ``folder``: {figure name: path relative to the site}."""
    out: dict[str, str] = {}

    def place(name: str, filename: str) -> Path:
        out[name] = f"{folder.name}/{filename}"
        return folder / filename

    for table in (t for t in report.tables if t.queries):
        times_figure(table, place(f"times:{table.mode}", f"times-{slug(table.mode)}.png"))
        if table.speedups:
            speedup_figure(table, place(f"speedup:{table.mode}", f"speedup-{slug(table.mode)}.png"))
    story = report.story
    colours = prefix_colours(story.streams)  # a prefix keeps its colour from engine to peer
    for stream in story.streams:
        name = f"stream-{slug(stream.path.stem)}.png"
        streams_figure([(stream.title, stream)], place(f"stream:{stream.path.name}", name),
                       f"task stream: {stream.path.name}", colours=colours)  # fmt: skip
    if story.lag:
        lag_figure(story, place("lag", "lag.png"))
    if story.balance_panels:
        streams_figure(story.balance_panels, place("balance", "balance.png"),
                       "balance: the same workload under each placement policy",
                       side_by_side=True)  # fmt: skip
    if story.shuffle_rows:
        shuffle_figure(story, place("shuffle", "shuffle.png"))
    return out
