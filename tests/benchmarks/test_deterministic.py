"""The deterministic asv suite is deterministic: same figures in another process, any hash seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from taskbench.engine.sizeof import deep_sizeof, sizeof

from benchmarks import deterministic
from benchmarks.sizeof import make_frame

ROOT = Path(__file__).resolve().parents[2]
CASES = [("tree-reduce", "locality+stealing"), ("skewed", "random")]


def _in_another_process(code: str, hash_seed: str) -> object:
    env = {"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return json.loads(out)


@pytest.mark.parametrize(("workload", "policy"), CASES)
def test_simulated_figures_repeat_exactly_under_another_hash_seed(workload, policy):
    here = deterministic.simulate_counted(workload, policy)
    code = (
        "import json; from benchmarks.deterministic import simulate_counted; "
        f"print(json.dumps(simulate_counted({workload!r}, {policy!r})))"
    )
    assert _in_another_process(code, "12345") == here
    assert set(here) == {
        "makespan_ratio",
        "idle_fraction",
        "messages_out_per_task",
        "messages_in_per_task",
        "bytes_per_task",
        "transitions_per_task",
    }


def test_the_counters_see_what_the_workload_implies():
    tree = deterministic.simulate_counted("tree-reduce", "locality")
    independent = deterministic.simulate_counted("heterogeneous", "locality")
    assert tree["bytes_per_task"] > 0  # reductions fetch 1 MB inputs from peers
    assert independent["bytes_per_task"] == 0
    # a wanted task that runs once: released -> waiting -> processing -> memory
    assert independent["transitions_per_task"] == 3
    assert tree["transitions_per_task"] > 3  # intermediate results are released too
    assert independent["makespan_ratio"] >= 1 and 0 <= independent["idle_fraction"] < 1


def test_the_sizeof_estimate_repeats_in_another_process():
    frame = make_frame("skewed", rows=20_000)
    here = [sizeof(frame), deep_sizeof(frame)]
    code = (
        "import json; from benchmarks.sizeof import make_frame; "
        "from taskbench.engine.sizeof import deep_sizeof, sizeof; "
        "f = make_frame('skewed', rows=20_000); print(json.dumps([sizeof(f), deep_sizeof(f)]))"
    )
    assert _in_another_process(code, "777") == here


def test_error_factor_is_lower_is_better_either_side():
    assert deterministic.error_factor(100, 100) == 1
    assert deterministic.error_factor(125, 100) == deterministic.error_factor(100, 125) == 1.25
    with pytest.raises(ValueError, match="positive"):
        deterministic.error_factor(0, 100)
