"""The statistics of every published figure, stated once.

- A time is summarised by its median, with the min–max and the interquartile range
  (:func:`summarize`).
- A speed-up of A over B is the ratio of their medians, B / A, with a bootstrap 95 % interval
  (:func:`speedup`): the two samples are resampled apart, with a fixed seed, so a report
  built twice from the same records says the same thing. The words follow the interval
  (:func:`verdict`): "faster" or "slower" only when it excludes 1, otherwise "no clear
  difference".
- An engine's summary score is ClickBench's (:func:`scores`): per query, the ratio
  (t + 10 ms) / (t_best + 10 ms); the score is the geometric mean of the ratios. A query the
  engine got wrong, failed or timed out on counts as twice the slowest valid time of that
  query. A query no engine answered is left out of every score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 20160214  #: fixed, so the same records always give the same intervals
SCORE_OFFSET_S = 0.010  #: ClickBench's 10 ms, so sub-millisecond queries do not dominate
FAILURE_FACTOR = 2.0


@dataclass(frozen=True)
class Summary:
    """Median, min–max and interquartile range of repeated measurements."""

    n: int
    median: float
    low: float
    high: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def summarize(values: Sequence[float]) -> Summary:
    """The :class:`Summary` of ``values``; a ValueError for an empty sample."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("no values to summarise")
    q1, median, q3 = (float(v) for v in np.percentile(data, [25, 50, 75]))
    return Summary(int(data.size), median, float(data.min()), float(data.max()), q1, q3)


@dataclass(frozen=True)
class Ratio:
    """``value`` = median(baseline) / median(subject), with its bootstrap interval."""

    value: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    @property
    def clear(self) -> bool:
        """Whether the interval excludes 1."""
        return self.low > 1.0 or self.high < 1.0


def speedup(subject: Sequence[float], baseline: Sequence[float]) -> Ratio:
    """How many times faster ``subject`` is than ``baseline``: the ratio of medians.

    Its interval is a percentile bootstrap over both samples, resampled apart (a side with one
    value is held constant); with no spread on either side it collapses onto the ratio.
    """
    a = np.asarray(subject, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("a speed-up needs at least one value on each side")
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("times must be positive")
    value = float(np.median(b) / np.median(a))
    if (a.size == 1 and b.size == 1) or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return Ratio(value, value, value)
    if a.size == 1:  # a constant subject: only the baseline varies
        samples, statistic = (b,), lambda bb, axis=-1: np.median(bb, axis=axis) / a[0]
    elif b.size == 1:
        samples, statistic = (a,), lambda aa, axis=-1: b[0] / np.median(aa, axis=axis)
    else:
        samples = (b, a)

        def statistic(bb, aa, axis=-1):
            return np.median(bb, axis=axis) / np.median(aa, axis=axis)

    result = _scipy_stats.bootstrap(
        samples,
        statistic,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        paired=False,
        vectorized=True,
        rng=np.random.default_rng(SEED),
    )
    low, high = result.confidence_interval
    return Ratio(value, min(float(low), value), max(float(high), value))


def verdict(ratio: Ratio, subject: str = "A", baseline: str = "B") -> str:
    """The words the interval allows: ``"A is 2.1× faster than B"`` or "no clear difference"."""
    if not ratio.clear:
        return f"no clear difference between {subject} and {baseline}"
    if ratio.value >= 1:
        return f"{subject} is {ratio.value:.2f}× faster than {baseline}"
    return f"{subject} is {1 / ratio.value:.2f}× slower than {baseline}"


def scores(times: Mapping[str, Mapping[str, float | None]]) -> dict[str, float | None]:
    """ClickBench's score per engine from ``{engine: {query: hot median or None}}``.

    None marks a wrong answer, an error or a timeout: it scores as
    :data:`FAILURE_FACTOR` × the slowest valid time of that query. An engine with no query
    in the score (every query it ran was one nobody answered) scores None.
    """
    queries = sorted({q for per_query in times.values() for q in per_query})
    logs: dict[str, list[float]] = {engine: [] for engine in times}
    for q in queries:
        valid = [t[q] for t in times.values() if t.get(q) is not None]
        if not valid:
            continue
        best, worst = min(valid), max(valid)
        for engine, per_query in times.items():
            if q not in per_query:
                continue
            t = per_query[q]
            t = FAILURE_FACTOR * worst if t is None else t
            logs[engine].append(math.log((t + SCORE_OFFSET_S) / (best + SCORE_OFFSET_S)))
    return {e: math.exp(sum(v) / len(v)) if v else None for e, v in logs.items()}
