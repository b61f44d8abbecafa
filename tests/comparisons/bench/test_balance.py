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


def test_sim_json_is_clean_and_progress_goes_to_stderr(capsys):
    argv = ["bench", "balance", "--sim", "--workers", "4", "--scale", "0.2", "--workloads",
            "skewed", "--policies", "random,locality+stealing", "--json"]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert err.splitlines() == [
        "[balance] 1/2 skewed, random: simulating",
        "[balance] 2/2 skewed, locality+stealing: simulating",
    ]
    placed = {(r["name"], r["params"]["policy"]): r["value"] for r in doc["results"]
              if r["name"].startswith("placed_by_")}  # fmt: skip
    tasks = next(r["value"] for r in doc["results"] if r["name"] == "tasks")
    assert placed["placed_by_eager", "random"] == tasks - 1  # all but the loader
    assert placed["placed_by_steal", "locality+stealing"] > 0


def test_table_defines_its_terms_and_counts_what_placed_the_tasks(capsys):
    argv = ["bench", "balance", "--sim", "--workers", "4", "--threads", "1", "--scale", "0.2",
            "--workloads", "skewed", "--policies", "random"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "simulated: 4 workers × 1 thread, scale 0.2"
    assert any(line.startswith("makespan ratio: makespan ÷ its lower bound") for line in lines)
    assert any(line.startswith("idle fraction: ") for line in lines)
    header = lines.index("tasks placed by each rule: policy / eager / steal")
    assert lines[header + 1].split() == ["workload", "random"]
    assert lines[header + 2].split() == ["skewed", "1", "/", "80", "/", "0"]
    assert any(line.startswith("eager: handed at once") for line in lines)


def test_pictures_say_what_really_placed_the_work():
    from taskbench.comparisons.bench.balance import what_happened

    _, pinned = run_sim("skewed", "random", 4, 1, 0.2)
    _, stolen = run_sim("skewed", "locality+stealing", 4, 1, 0.2)
    _, spread = run_sim("straggler", "round-robin", 4, 1, 0.2)
    assert what_happened(pinned).startswith("no stealing: eager hand-over kept 80 of 81 tasks on w")
    assert what_happened(stolen).startswith("stealing moved ")
    assert what_happened(spread) == (
        "no stealing: the placement policy chose the worker of 80 of 80 tasks"
    )


def test_real_run_against_dask_keeps_peers_logs_off_the_screen(tmp_path):
    import subprocess
    import sys

    argv = ["bench", "balance", "--workers", "2", "--scale", "0.1", "--workloads", "skewed",
            "--policies", "random,locality+stealing", "--vs", "dask", "--json",
            "--plot", str(tmp_path / "balance.png")]  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "taskbench.cli", *argv], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert {r["engine"] for r in doc["results"]} == {"taskbench", "dask"}
    assert "Traceback" not in out.stderr and "CommClosedError" not in out.stderr, out.stderr
    assert all(line.startswith("[balance] ") for line in out.stderr.splitlines()), out.stderr
    assert doc["peer_log"].endswith("dask.log")
    assert (tmp_path / "balance.png").read_bytes()[:4] == b"\x89PNG"
