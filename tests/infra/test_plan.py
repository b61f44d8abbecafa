"""``taskbench plan``: the problem set measured on the real engine (20k generated rows), scaled
to a spec's data and simulated on its cluster; bad input named; ``--against`` arithmetic.

Timings are never asserted: only what the model must do with them (more workers never slower
for a parallel query, less bandwidth never faster, the cost is the spec's arithmetic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from taskbench.comparisons.bench.record import BenchResult
from taskbench.comparisons.data import generate
from taskbench.comparisons.queries import QUERY_IDS
from taskbench.infra import plan
from taskbench.infra.spec import load_spec

from taskbench.cli import main

CLUSTERS = Path(__file__).resolve().parents[2] / "infra" / "clusters"
ROWS = 20_000
TARGET_ROWS = "8M"  #: eight of the generator's 1M-row partitions


def spec_file(folder: Path, name: str = "local", **changes: object) -> Path:
    """A shipped spec whose data is ``TARGET_ROWS`` generated rows, with ``changes``."""
    raw = yaml.safe_load((CLUSTERS / f"{name}.yaml").read_text())
    raw["data"] = {"generate": {"rows": TARGET_ROWS, "start": "2015-01", "months": 1}}
    raw.update(changes)
    path = folder / f"{name}-{len(list(folder.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan") / "data"
    generate(out, rows=ROWS, start="2015-01", months=1, seed=0)
    return out


@pytest.fixture(scope="module")
def measured(data: Path) -> tuple[plan.Target, plan.Measurement]:
    """Every query measured once: the most expensive step, shared by the model's tests."""
    target = plan.target_of(load_spec(spec_file(data.parent)), data)
    return target, plan.measure(data, target, QUERY_IDS, repeats=1)


def predicted(
    measured: tuple[plan.Target, plan.Measurement], spec_path: Path, bandwidth: float = 1e9
) -> dict:
    target, m = measured
    return plan.predict(m, target, load_spec(spec_path), bandwidth=bandwidth)


def test_the_target_is_the_generators_layout_and_the_runs_have_their_shapes(measured) -> None:
    target, m = measured
    assert target.partitions == [1_000_000] * 8
    assert plan.target_of(load_spec(CLUSTERS / "ec2-small.yaml"), Path(".")).rows == 10_000_000
    assert len(m.layout.partition_rows) == 8  # the target's graphs, task for task
    assert m.large.partition_rows == [ROWS]  # as large as the 20k rows of the data allow
    assert m.small.partition_rows == [plan.TINY_ROWS]
    assert set(m.layout.graphs) == set(QUERY_IDS)
    q01 = m.layout.graphs["q01"][0]
    chunks = [k for k in q01.keys if isinstance(k, tuple) and "chunk" in k[0]]
    assert len(chunks) == 8 and len(m.large.graphs["q01"][0].keys) < len(q01.keys)


def test_every_query_gets_a_prediction_and_its_ratio_is_against_a_true_bound(
    measured, tmp_path: Path
) -> None:
    queries = predicted(measured, spec_file(tmp_path))
    assert list(queries) == list(QUERY_IDS)
    for q, p in queries.items():
        assert p["seconds"] > 0 and p["makespan"] > 0, q
        assert p["seconds"] == pytest.approx(p["makespan"] + p["client_seconds"])
        assert p["makespan_ratio"] >= 1.0 - 1e-9, q  # the simulated makespan is never below it


def test_more_nodes_are_not_slower_for_a_parallel_query(measured, tmp_path: Path) -> None:
    one = predicted(measured, spec_file(tmp_path, nodes=1))
    four = predicted(measured, spec_file(tmp_path, nodes=4))
    for q in ("q01", "q12"):  # eight partitions' work, spread
        assert four[q]["makespan"] < one[q]["makespan"], q
        assert four[q]["seconds"] <= one[q]["seconds"], q


def test_the_bandwidth_is_used(measured, tmp_path: Path) -> None:
    path = spec_file(tmp_path)
    fast = predicted(measured, path, bandwidth=1e9)["q12"]
    slow = predicted(measured, path, bandwidth=1e6)["q12"]
    assert fast["transfer_bytes"] > 0  # the shuffle moves shards between the two workers
    assert slow["seconds"] > fast["seconds"]


def test_the_cost_of_an_ec2_spec_is_its_arithmetic(measured, data: Path, tmp_path: Path) -> None:
    target, m = measured
    path = spec_file(tmp_path, "ec2-small")
    spec = load_spec(path)
    doc = plan.document(path, spec, data, {"rows": ROWS, "fingerprint": "f"}, target, m,
                        bandwidth=1e9, sample_workers=2, repeats=1)  # fmt: skip
    total = sum(q["seconds"] for q in doc["queries"].values())
    assert doc["total_seconds"] == pytest.approx(total)
    assert doc["cost"]["usd"] == pytest.approx(total / 3600 * 3 * 0.192)
    assert doc["cost"]["lifetime_usd"] == pytest.approx(spec.cost_estimate())
    assert spec.cost_estimate() > 0
    assert "3 instances x 0.192 USD/h" in plan.format_plan(doc)
    local = spec_file(tmp_path)
    doc = plan.document(local, load_spec(local), data, {"rows": ROWS, "fingerprint": "f"},
                        target, m, bandwidth=1e9, sample_workers=2, repeats=1)  # fmt: skip
    assert doc["cost"]["usd"] == 0 and "cost: 0 USD" in plan.format_plan(doc)


def test_the_command_prints_the_table_and_writes_the_same_figures(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "plan.json"
    argv = ["plan", "--spec", str(spec_file(tmp_path)), "--data", str(data), "--queries",
            "q01,q12", "--repeats", "1", "--bandwidth", "5e8", "--json-out", str(out)]  # fmt: skip
    code = main(argv)
    printed = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out.read_text())
    assert list(doc["queries"]) == ["q01", "q12"]
    assert doc["model"]["bandwidth"] == 5e8 and "bandwidth 0.5 GB/s" in printed
    for q, p in doc["queries"].items():
        assert f"{p['seconds']:.3f}" in next(line for line in printed.splitlines()
                                             if line.startswith(q))  # fmt: skip
    assert f"total: {doc['total_seconds']:.3f} s" in printed


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--data", "{tmp}/missing"], "{tmp}/missing"),
        (["--queries", "q01,q99"], "q99"),
        (["--against", "{tmp}"], "{tmp}: not a compare run folder"),
        (["--spec", "{tmp}/bad.yaml"], "{tmp}/bad.yaml: engine.workers_per_node"),
    ],
)
def test_bad_input_is_one_line_naming_it_and_exit_2(
    argv: list[str], named: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = yaml.safe_load((CLUSTERS / "local.yaml").read_text())
    bad["engine"]["workers_per_node"] = 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    given = {"--spec": str(CLUSTERS / "local.yaml"), "--data": str(data)}
    flags = [a.format(tmp=tmp_path) for a in argv]
    given.update(zip(flags[::2], flags[1::2], strict=True))
    code = main(["plan", *[w for pair in given.items() for w in pair]])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert named.format(tmp=tmp_path) in err


# ---------------------------------------------------------------- against a compare run


def record(query: str, seconds: float | None, *, run: int = 2, cold: bool = False,
           engine: str = "engine", mode: str = "memory") -> dict:  # fmt: skip
    values, status = ([seconds], "valid") if seconds is not None else ([], "timeout")
    params = {"mode": mode, "query": query, "run": run, "cold": cold}
    return BenchResult("query_seconds", engine, "s", values, params, status=status).to_json()


def test_against_takes_hot_medians_and_computes_relative_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    records = [
        record("q01", 9.0, run=1, cold=True),  # cold: left out
        record("q01", 1.0), record("q01", 0.9, run=3), record("q01", 1.1, run=4),
        record("q02", 2.0), record("q02", None, run=3),  # a timeout has no time
        record("q02", 0.1, engine="spark"), record("q02", 0.1, mode="scan"),  # not ours
        record("q03", 1.0),  # no prediction
    ]  # fmt: skip
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    doc = {"command": "plan", "queries": {"q01": {"seconds": 1.2}, "q02": {"seconds": 1.0},
                                           "q04": {"seconds": 3.0}}}  # fmt: skip
    rows = {r["query"]: r for r in plan.against(doc, plan.measured_seconds(run))}
    assert rows["q01"]["measured"] == 1.0 and rows["q01"]["runs"] == 3
    assert rows["q01"]["error"] == pytest.approx(0.2)
    assert rows["q02"]["measured"] == 2.0 and rows["q02"]["error"] == pytest.approx(-0.5)
    assert rows["q03"]["predicted"] is None and rows["q03"]["error"] is None
    assert rows["q04"]["measured"] is None and rows["q04"]["runs"] == 0

    stored = tmp_path / "plan.json"
    stored.write_text(json.dumps(doc))
    assert main(["plan", "--plan", str(stored), "--against", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(ln for ln in lines if ln.startswith("q01")).split()[-3:] == ["+20.0", "%", "yes"]
    assert next(ln for ln in lines if ln.startswith("q02")).split()[-3:] == ["-50.0", "%", "NO"]
    assert lines[-1] == "1 of 2 queries within 25%; largest |error| 50.0%"
