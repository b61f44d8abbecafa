"""summary.md: the same headline tables as the page, with the speed-ups and comparisons."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from taskbench.reports import text
from taskbench.reports.model import AsvLink, Cell, Change, ModeTable, Report


def _escape(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return lines


def cell_text(cell: Cell) -> str:
    """``1.23 s (1.20–1.31 s), cold 2.10 s``; a non-valid cell is its status only, in capitals."""
    if not cell.valid:
        return f"**{cell.status.upper()}**"
    parts = [text.spread(cell.summary)] if cell.summary else ["no hot run"]
    if cell.cold is not None:
        parts.append(f"cold {text.seconds(cell.cold)}")
    return ", ".join(parts)


def headline(t: ModeTable, single_threaded: list[str]) -> list[str]:
    header = [f"query ({t.mode})"] + [
        e + (" (1 thread)" if e in single_threaded else "") for e in t.engines
    ]
    rows = [[f"{q.id} {q.title}".strip()] + [cell_text(c) for c in cells] for q, cells in t.rows()]
    rows.append([f"**score ({t.mode})**"] + [text.score(t.scores.get(e)) for e in t.engines])
    return table(header, rows)


def changes(items: list[Change], mode: str, what: str) -> list[str]:
    return table(
        ["query", "engine", f"{what} [95 % interval]", f"verdict ({mode})"],
        [[c.query, c.engine, text.ratio(c.ratio) if c.ratio else "-", c.words] for c in items],
    )


def render_markdown(report: Report, figures: Mapping[str, str], asv: AsvLink) -> str:
    run = report.run
    out = [f"# taskbench report: run {run.run_id}", ""]
    notes = list(run.notes)
    if report.superseded:
        notes.append(f"{report.superseded} record(s) recorded again by a resumed run; "
                     "the later one is used.")  # fmt: skip
    if notes:
        out += ["> **Notes on this run**", ">", *(f"> - {note}" for note in notes), ""]
    sha = run.git.get("sha") or "unknown"
    out += [
        *(f"- command: `{c}`" for c in run.commands + run.bench_commands or ["(not recorded)"]),
        f"- started: {run.started or '-'}; git `{sha}`"
        + (" (uncommitted changes)" if run.git.get("dirty") else ""),
        f"- data: `{run.data.get('path', '-')}`, {text.count(run.data.get('rows'))} rows, "
        f"fingerprint `{run.data.get('fingerprint', '-')}`",
        f"- machine: {run.machine.get('cpu', '-')}, {run.cores or '?'} cores per engine, "
        f"{run.machine.get('ram_gb', '?')} GB RAM",
        f"- {run.repeat or '?'} runs per query: run 1 cold, the median of the rest hot",
    ]
    if run.single_threaded:
        out.append(f"- single-threaded by nature: {', '.join(run.single_threaded)}")
    out.append("")
    out += ["## Headline: hot median (min–max of the hot runs), cold run beside", ""]
    out.append("A wrong answer, an error or a timeout shows its status and no time. "
               "Score: ClickBench's geometric mean of (t + 10 ms) / (best + 10 ms); "
               "lower is better.")  # fmt: skip
    for t in report.tables:
        out += ["", f"### {t.mode} mode", ""]
        out += headline(t, run.single_threaded)
        without_time = t.without_time()
        if without_time:
            out += ["", f"No time in {len(without_time)} cell(s) of the {t.mode} table:"]
            out += [
                f"- {c.engine} {c.query}: {c.status}" + (f": {c.detail}" if c.detail else "")
                for c in without_time
            ]
        if f"times:{t.mode}" in figures:
            out += ["", f"![{t.mode} mode: hot median per query]({figures[f'times:{t.mode}']})"]
        if t.speedups:
            out += ["", f"Speed-up over {t.reference} ({t.mode} mode):", ""]
            out += changes(t.speedups, t.mode, f"speed-up over {t.reference}")
        if t.versus:
            out += ["", f"The engine against each peer ({t.mode} mode):", ""]
            out += table(
                ["query", "peer", "peer time / engine time [95 % interval]", "verdict"],
                [[c.query, c.against, text.ratio(c.ratio) if c.ratio else "-", c.words]
                 for c in t.versus],
            )  # fmt: skip
    out += ["", "## The engine's own story", ""]
    story = report.story
    if story.lag:
        out += table(
            ["engine", "gaps", "lag p50", "lag p99"],
            [[s.engine, text.count(len(s.values)), text.micros(s.p50), text.micros(s.p99)]
             for s in story.lag],
        )  # fmt: skip
    else:
        out.append(f"- lag: {story.missing['lag']}")
    out.append("")
    if story.balance_rows:
        out += table(
            ["workload", "policy", "engine", "makespan / lower bound", "idle fraction"],
            [[b.workload, b.policy, b.engine, text.times(b.makespan_ratio),
              text.fraction(b.idle_fraction)] for b in story.balance_rows],
        )  # fmt: skip
    else:
        out.append(f"- balance: {story.missing.get('balance', 'no makespan_ratio records')}")
    out.append("")
    if story.shuffle_rows:
        header = ["engine", "method", "rows"]
        header += [f"overhead, sizeof {s}" for s in story.sizeofs] + ["sampled against deep"]
        rows = []
        for row in story.shuffle_rows:
            cells = [row.engine, row.method, text.count(row.rows)]
            for s in story.sizeofs:
                c = row.by_sizeof.get(s)
                cells.append(text.interval(c.overhead, c.low, c.high) if c else "-")
            cells.append(row.sampled_vs_deep.words if row.sampled_vs_deep else "-")
            rows.append(cells)
        out += table(header, rows)
    elif "shuffle" in story.missing:
        out.append(f"- shuffle: {story.missing['shuffle']}")
    if not story.streams:
        out.append(f"- task stream: {story.missing['stream']}")
    out += ["", "## asv history", ""]
    out.append(f"[asv history]({asv.href})" if asv.href else asv.note)
    for comparison in report.comparisons:
        base, new = comparison.base.run_id, comparison.new.run_id
        out += ["", f"## {new} against {base}", ""]
        out.append(f"Ratio of hot medians {base} / {new}: above 1, {new} is faster.")
        for mode, items in comparison.changes.items():
            out += ["", f"### {mode} mode", ""]
            out += changes(items, mode, "ratio")
    return "\n".join(out).rstrip() + "\n"


def write_markdown(report: Report, figures: Mapping[str, str], asv: AsvLink, path: Path) -> None:
    path.write_text(render_markdown(report, figures, asv), encoding="utf-8")
