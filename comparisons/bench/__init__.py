"""``taskbench bench scheduler|balance|shuffle``: the engine beside dask and Spark, in one run.

Every bench records `record.BenchResult`s (one type, with the run's metadata), prints them
with the one table formatter, and prints them as one JSON object with ``--json`` (or writes
it to a file with ``--json-out FILE``, the table still printed). The root command
(``taskbench.cli``) calls :func:`add_parser`.

Every bench measures its subjects by the comparison protocol (DESIGN.md): in rounds. Each
round runs every subject once, the order rotated one place per round (:func:`round_order`),
so that a slow spell of the machine lands on all of them, and over as many rounds as there
are subjects each takes every place in the round once (first, after a quiet spell, included).
A rotation keeps who follows whom, so it does not balance carry-over from a neighbour. A
ratio between two subjects is a ratio of their medians with the bootstrap 95 % interval of
`comparisons.stats` (:func:`ratio_of_medians`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from taskbench.comparisons.stats import Ratio

T = TypeVar("T")


class NotMeasured(Exception):
    """A subject that cannot be measured (not implemented here, or a peer that failed).

    Raised by a subject's run, it takes the subject out of the remaining rounds; its reason is
    reported and none of its values are kept.
    """


def round_order(labels: Sequence[str], index: int) -> list[str]:
    """The order of round ``index`` (from 0): ``labels`` rotated left by ``index`` places."""
    if not labels:
        return []
    k = index % len(labels)
    return [*labels[k:], *labels[:k]]


@dataclass
class Rounds(Generic[T]):
    """What :func:`interleave` ran: each subject's results in round order, and the orders."""

    results: dict[str, list[T]]
    order: list[list[str]] = field(default_factory=list)  #: the labels run, round by round
    not_measured: dict[str, str] = field(default_factory=dict)  #: label -> why


def interleave(
    runs: Mapping[str, Callable[[], T]],
    rounds: int,
    say: Callable[[str], None] | None = None,
) -> Rounds[T]:
    """Run every subject once per round, ``rounds`` times, in :func:`round_order`.

    ``runs`` maps a label to one run of that subject. A run that raises `NotMeasured` drops
    its subject (and what it ran in earlier rounds) from the result; any other error stops
    the bench.
    """
    labels = list(runs)
    out = Rounds[T]({label: [] for label in labels})
    for r in range(rounds):
        ran = []
        for label in round_order(labels, r):
            if label in out.not_measured:
                continue
            if say is not None:
                say(f"round {r + 1}/{rounds}: {label}")
            try:
                result = runs[label]()
            except NotMeasured as e:
                out.not_measured[label] = str(e) or type(e).__name__
                del out.results[label]
                continue
            out.results[label].append(result)
            ran.append(label)
        out.order.append(ran)
    return out


def ratio_of_medians(numerator: Sequence[float], denominator: Sequence[float]) -> Ratio:
    """median(numerator) ÷ median(denominator), with its bootstrap 95 % interval.

    This is `stats.speedup` with its sides named for the quotient: ``speedup(a, b)`` is
    median(b) ÷ median(a), so this is ``speedup(denominator, numerator)``. An overhead is
    ``ratio_of_medians(subject_seconds, baseline_seconds)``; a throughput ratio is
    ``ratio_of_medians(ours_per_s, theirs_per_s)``.
    """
    from taskbench.comparisons.stats import speedup  # scipy: only when a ratio is asked for

    return speedup(denominator, numerator)


def ratio_json(ratio: Ratio, numerator: str, denominator: str, **what: Any) -> dict[str, Any]:
    """A ratio as the ``--json`` documents list it in ``params["ratios"]``."""
    return {
        **what,
        "numerator": numerator,
        "denominator": denominator,
        "value": ratio.value,
        "low": ratio.low,
        "high": ratio.high,
        "confidence": ratio.confidence,
    }


def add_parser(subparsers: Any) -> None:
    """Register ``bench`` and its three suites under ``subparsers`` (argparse)."""
    from taskbench.comparisons.bench import balance, scheduler, shuffle

    bench = subparsers.add_parser("bench", help="side-by-side measurements in one run")
    bsub = bench.add_subparsers(dest="suite", required=True)
    scheduler.add_parser(bsub)
    balance.add_parser(bsub)
    shuffle.add_parser(bsub)
