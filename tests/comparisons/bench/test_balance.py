"""``taskbench bench balance``: policies as engine options, simulated runs as records."""

from __future__ import annotations

import json

import pytest
from taskbench.comparisons import stats
from taskbench.comparisons.bench import balance as bb
from taskbench.comparisons.bench.balance import POLICIES, run_sim
from taskbench.engine.stream import TaskStream

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


def test_real_runs_are_interleaved_rounds_and_compared_with_dask_by_median_makespans():
    makespans = {
        ("skewed", "random"): iter([4.0, 5.0, 6.0]),
        ("skewed", "locality+stealing"): iter([2.0, 2.2, 1.8]),
        ("skewed", "dask"): iter([3.0, 3.3, 2.7]),
    }
    calls = []

    def run_one(workload: str, subject: str):
        calls.append(subject)
        makespan = next(makespans[workload, subject])
        stream = TaskStream(meta={"round": calls.count(subject)})
        return {"makespan_s": makespan, "makespan_ratio": makespan / 1.5, "tasks": 9}, stream

    results, streams, rounds, ratios = bb.measure_real(
        ["skewed"], ["random", "locality+stealing", "dask"], run_one, 3, {}
    )
    assert calls == ["random", "locality+stealing", "dask", "locality+stealing", "dask",
                     "random", "dask", "random", "locality+stealing"]  # fmt: skip
    assert rounds.order[1] == ["skewed, locality+stealing", "skewed, dask", "skewed, random"]
    ratio = next(
        r for r in results if r.name == "makespan_ratio" and r.params["policy"] == "random"
    )
    assert ratio.engine == "taskbench" and ratio.values == pytest.approx([4 / 1.5, 5 / 1.5, 4.0])
    assert ratio.params == {"workload": "skewed", "policy": "random", "mode": "real"}
    peer = next(r for r in results if r.name == "makespan_s" and r.engine == "dask")
    assert peer.values == [3.0, 3.3, 2.7] and peer.params["policy"] == "dask"
    stealing = next(r for r in ratios if r["denominator"] == "locality+stealing")
    expected = stats.speedup([2.0, 2.2, 1.8], [3.0, 3.3, 2.7])  # dask ÷ policy, medians
    assert stealing["numerator"] == "dask" and stealing["value"] == pytest.approx(1.5)
    assert (stealing["value"], stealing["low"], stealing["high"]) == (
        expected.value,
        expected.low,
        expected.high,
    )
    random = next(r for r in ratios if r["denominator"] == "random")
    assert random["value"] == pytest.approx(3.0 / 5.0) and random["high"] < 1  # dask first
    stream, middle = bb.median_run(streams["skewed", "random"], ratio.values)
    assert stream.meta == {"round": 2} and middle == pytest.approx(5 / 1.5)
    text = bb.format_results(results, ["skewed"], ["random", "locality+stealing", "dask"], ratios)
    assert "3.33 2.67–4.00" in text and "against dask.distributed" in text
    assert f"1.50 [{expected.low:.2f}–{expected.high:.2f}]" in text


def test_stream_out_writes_the_skewed_panels_and_the_document_names_them(tmp_path, capsys):
    folder, doc_file = tmp_path / "streams", tmp_path / "balance.json"
    argv = ["bench", "balance", "--sim", "--workers", "4", "--scale", "0.2", "--workloads",
            "skewed", "--policies", "random,locality+stealing", "--stream-out", str(folder),
            "--json-out", str(doc_file)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("simulated: ") and f"JSON document written to {doc_file}" in out
    doc = json.loads(doc_file.read_text())
    streams = doc["params"]["streams"]
    assert sorted(streams.values()) == [
        "streams/skewed-locality+stealing.jsonl", "streams/skewed-random.jsonl"
    ]  # fmt: skip
    for title, path in streams.items():
        first = json.loads((tmp_path / path).read_text().splitlines()[0])
        assert first["meta"]["title"] == title and first["meta"]["workload"] == "skewed"
        stream = TaskStream.from_jsonl(tmp_path / path)
        assert len(stream) == 161 and title.startswith(f"policy {stream.meta['policy']}: ")


def test_real_run_against_dask_keeps_peers_logs_off_the_screen(tmp_path):
    import subprocess
    import sys

    argv = ["bench", "balance", "--workers", "2", "--scale", "0.1", "--workloads", "skewed",
            "--policies", "random,locality+stealing", "--vs", "dask", "--repeats", "2", "--json",
            "--plot", str(tmp_path / "balance.png"), "--stream-out", str(tmp_path / "streams"),
            "--json-out", str(tmp_path / "balance.json")]  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "taskbench.cli", *argv], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc == json.loads((tmp_path / "balance.json").read_text())
    assert {r["engine"] for r in doc["results"]} == {"taskbench", "dask"}
    assert "Traceback" not in out.stderr and "CommClosedError" not in out.stderr, out.stderr
    assert all(line.startswith("[balance] ") for line in out.stderr.splitlines()), out.stderr
    assert doc["peer_log"].endswith("dask.log")
    assert (tmp_path / "balance.png").read_bytes()[:4] == b"\x89PNG"
    ratios = [r for r in doc["results"] if r["name"] == "makespan_ratio"]
    assert len(ratios) == 3 and all(len(r["values"]) == 2 for r in ratios)
    assert all(v >= 0.9 for r in ratios for v in r["values"])  # about the lower bound or above
    compared = doc["params"]["ratios"]
    assert {r["denominator"] for r in compared} == {"random", "locality+stealing"}
    assert all(r["low"] <= r["value"] <= r["high"] and r["value"] > 0 for r in compared)
    assert sorted(doc["params"]["streams"].values()) == [
        "streams/skewed-dask.jsonl", "streams/skewed-locality+stealing.jsonl",
        "streams/skewed-random.jsonl",
    ]  # fmt: skip
    assert [len(r) for r in doc["params"]["order"]] == [3, 3]
