"""The statistics stated once: summaries, speed-ups with intervals, verdict words, scores."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from taskbench.comparisons.stats import (
    FAILURE_FACTOR,
    SCORE_OFFSET_S,
    Ratio,
    scores,
    speedup,
    summarize,
    verdict,
)

times = st.lists(st.floats(0.001, 100.0), min_size=1, max_size=8)


def test_summary_is_median_range_and_quartiles():
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert (s.n, s.median, s.low, s.high, s.q1, s.q3) == (4, 2.5, 1.0, 4.0, 1.75, 3.25)
    assert s.iqr == 1.5
    with pytest.raises(ValueError, match="no values"):
        summarize([])


def test_speedup_is_the_ratio_of_medians_with_an_interval_around_it():
    r = speedup([1.0, 1.1, 0.9], [2.0, 2.2, 1.9])
    assert r.value == pytest.approx(2.0)
    assert 1.0 < r.low <= r.value <= r.high
    assert r.clear
    assert verdict(r, "engine", "pandas") == "engine is 2.00× faster than pandas"
    slower = speedup([2.0, 2.2, 1.9], [1.0, 1.1, 0.9])
    assert verdict(slower, "engine", "pandas") == "engine is 2.00× slower than pandas"


def test_overlapping_samples_are_no_clear_difference():
    r = speedup([1.0, 1.2, 0.9], [1.05, 0.95, 1.15])
    assert r.low < 1.0 < r.high and not r.clear
    assert verdict(r, "A", "B") == "no clear difference between A and B"


def test_the_interval_is_reproducible_and_degenerate_without_spread():
    a, b = [0.5, 0.7, 0.6, 0.55], [1.0, 1.3, 0.9, 1.1]
    assert speedup(a, b) == speedup(a, b)
    assert speedup([1.0], [3.0]) == Ratio(3.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="positive"):
        speedup([0.0], [1.0])
    with pytest.raises(ValueError, match="at least one value"):
        speedup([], [1.0])


@settings(max_examples=40, deadline=None)
@given(times, times)
def test_the_interval_always_holds_the_ratio(a, b):
    r = speedup(a, b)
    assert r.low <= r.value <= r.high
    assert min(b) / max(a) - 1e-9 <= r.low and r.high <= max(b) / min(a) + 1e-9


def test_scores_follow_clickbench():
    t = {"fast": {"q1": 0.1, "q2": 1.0}, "slow": {"q1": 0.2, "q2": 2.0}}
    got = scores(t)
    assert got["fast"] == pytest.approx(1.0)
    expected = math.sqrt((0.2 + SCORE_OFFSET_S) / 0.11 * (2.0 + SCORE_OFFSET_S) / 1.01)
    assert got["slow"] == pytest.approx(expected)


def test_a_failure_scores_as_twice_the_slowest_and_unanswered_queries_drop_out():
    t = {"a": {"q1": 0.1, "q2": None, "q3": None}, "b": {"q1": 0.3, "q2": 1.0, "q3": None}}
    got = scores(t)
    ratio_q2 = (FAILURE_FACTOR * 1.0 + SCORE_OFFSET_S) / (1.0 + SCORE_OFFSET_S)
    assert got["a"] == pytest.approx(math.sqrt(1.0 * ratio_q2))  # q3: nobody answered it
    assert got["b"] == pytest.approx(math.sqrt((0.3 + 0.01) / 0.11 * 1.0))
    assert scores({"a": {"q1": None}}) == {"a": None}
