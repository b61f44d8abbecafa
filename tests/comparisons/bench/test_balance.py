"""``taskbench bench balance``: policies as engine options, simulated runs as records."""

from __future__ import annotations

import json

from taskbench.comparisons.bench.balance import POLICIES, run_sim

from taskbench.cli import main


def test_policies_are_engine_options():
    assert {p.placement for p in POLICIES.values()} == {"random", "round-robin", "locality"}
    assert POLICIES["locality+stealing"].stealing and not POLICIES["locality"].stealing


def test_stealing_balances_the_skewed_workload():
    random, _ = run_sim("skewed", "random", 4, 1, 0.2)
    stealing, _ = run_sim("skewed", "locality+stealing", 4, 1, 0.2)
    assert stealing["makespan_ratio"] < random["makespan_ratio"]


def test_sim_command_prints_records(capsys):
    argv = ["bench", "balance", "--sim", "--workers", "4", "--scale", "0.2", "--workloads",
            "skewed,straggler", "--policies", "random,locality+stealing"]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "skewed" in table and "locality+stealing" in table
    assert main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bench"] == "balance" and doc["params"]["mode"] == "sim"
    ratios = [r for r in doc["results"] if r["name"] == "makespan_ratio"]
    assert len(ratios) == 4 and all(r["unit"] == "ratio" and r["value"] >= 1 for r in ratios)
    assert {r["params"]["policy"] for r in ratios} == {"random", "locality+stealing"}


def test_unknown_policy_is_refused(capsys):
    assert main(["bench", "balance", "--sim", "--policies", "greedy"]) == 2
    assert "unknown policy" in capsys.readouterr().err
