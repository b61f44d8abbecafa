"""The bench protocol: subjects in rounds, the order rotated each round; ratios of medians."""

from __future__ import annotations

import pytest
from taskbench.comparisons import stats
from taskbench.comparisons.bench import (
    NotMeasured,
    interleave,
    ratio_of_medians,
    round_order,
)


def test_each_round_rotates_the_order_one_place():
    labels = ["pandas", "engine", "dask"]
    assert [round_order(labels, r) for r in range(4)] == [
        ["pandas", "engine", "dask"],
        ["engine", "dask", "pandas"],
        ["dask", "pandas", "engine"],
        ["pandas", "engine", "dask"],
    ]
    assert round_order([], 3) == []


def test_interleave_runs_every_subject_once_per_round_in_rotated_order():
    calls: list[str] = []
    said: list[str] = []

    def subject(label: str):
        def run() -> str:
            calls.append(label)
            return f"{label}#{calls.count(label)}"

        return run

    rounds = interleave({k: subject(k) for k in "abc"}, 3, said.append)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert rounds.order == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert rounds.results == {k: [f"{k}#1", f"{k}#2", f"{k}#3"] for k in "abc"}
    assert said[:4] == ["round 1/3: a", "round 1/3: b", "round 1/3: c", "round 2/3: b"]


def test_a_subject_that_cannot_run_is_dropped_with_its_reason():
    runs = {"ok": lambda: 1.0, "p2p": lambda: (_ for _ in ()).throw(NotMeasured("no p2p here"))}
    rounds = interleave(runs, 2)
    assert rounds.results == {"ok": [1.0, 1.0]}
    assert rounds.not_measured == {"p2p": "no p2p here"}
    assert rounds.order == [["ok"], ["ok"]]


def test_any_other_error_stops_the_bench():
    def broken() -> float:
        raise RuntimeError("lost rows")

    with pytest.raises(RuntimeError, match="lost rows"):
        interleave({"a": lambda: 1.0, "b": broken}, 2)


def test_ratio_of_medians_is_numerator_over_denominator_with_the_stats_interval():
    subject, baseline = [2.0, 2.2, 1.8, 2.1, 1.9], [1.0, 1.1, 0.9, 1.05, 0.95]
    r = ratio_of_medians(subject, baseline)
    assert r.value == pytest.approx(2.0)  # median 2.0 / median 1.0
    assert r.low <= r.value <= r.high and r.high - r.low > 0
    same = stats.speedup(baseline, subject)  # speed-up of the baseline over the subject
    assert (r.value, r.low, r.high) == (same.value, same.low, same.high)
    one = ratio_of_medians([3.0], [1.5])
    assert (one.value, one.low, one.high) == (2.0, 2.0, 2.0)
