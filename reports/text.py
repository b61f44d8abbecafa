"""How numbers read, the same in every exporter: seconds, microseconds, ratios."""

from __future__ import annotations

from taskbench.comparisons import stats


def _unit(seconds: float) -> tuple[float, str]:
    magnitude = abs(seconds)
    if magnitude >= 1 or magnitude == 0:
        return 1.0, "s"
    if magnitude >= 1e-3:
        return 1e3, "ms"
    return 1e6, "µs"


def _digits(value: float) -> str:
    """Three significant digits, no exponent: ``1.23``, ``45.6``, ``312``."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def seconds(value: float | None) -> str:
    """``1.23 s``, ``45.6 ms``, ``850 µs``; ``-`` for none."""
    if value is None:
        return "-"
    scale, unit = _unit(value)
    return f"{_digits(value * scale)} {unit}"


def seconds_range(low: float, high: float) -> str:
    """``1.20–1.31 s``: both ends in the unit of the higher one."""
    scale, unit = _unit(high)
    return f"{_digits(low * scale)}–{_digits(high * scale)} {unit}"


def spread(summary: stats.Summary) -> str:
    """A median and its min–max: ``1.23 s (1.20–1.31 s)``; a single value alone."""
    if summary.n == 1:
        return seconds(summary.median)
    return f"{seconds(summary.median)} ({seconds_range(summary.low, summary.high)})"


def micros(value: float | None) -> str:
    """``20.1 µs``, ``3,254 µs``."""
    return "-" if value is None else f"{_digits(value)} µs"


def _factor(value: float) -> str:
    """A ratio's number: ``2.10``, ``12.3``; two significant digits below 1 (``0.0081``)."""
    return _digits(value) if abs(value) >= 1 else f"{value:.2g}" if value else "0"


def times(value: float | None) -> str:
    """A ratio: ``2.10×``."""
    return "-" if value is None else f"{_factor(value)}×"


def ratio(r: stats.Ratio) -> str:
    """A ratio with its interval: ``2.10× [1.80–2.40]``."""
    return interval(r.value, r.low, r.high)


def interval(value: float | None, low: float | None, high: float | None) -> str:
    """``2.10× [1.80–2.40]``, or ``2.10×`` when there is no interval."""
    if value is None:
        return "-"
    if low is None or high is None:
        return times(value)
    return f"{_factor(value)}× [{_factor(low)}–{_factor(high)}]"


def score(value: float | None) -> str:
    return "not scored" if value is None else f"{value:.2f}"


def fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def count(value: object) -> str:
    """``10,000,000`` for a number, the text itself otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    return "-" if value is None else str(value)
