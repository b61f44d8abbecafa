"""Cluster specs: the shipped ones load; each bad field is named with what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from taskbench.infra.spec import SpecError, load_spec

CLUSTERS = Path(__file__).resolve().parents[2] / "infra" / "clusters"


def test_the_shipped_specs_load_with_their_costs() -> None:
    specs = {p.stem: load_spec(p) for p in CLUSTERS.glob("*.yaml")}
    assert set(specs) == {"local", "ec2-small", "ec2-10"}
    assert specs["local"].provider == "local" and specs["local"].cost_estimate() == 0.0
    assert specs["local"].nodes == 2 and specs["local"].instances == 3  # 1 master + 2 workers
    ten = specs["ec2-10"]
    assert ten.nodes == 10 and ten.ec2 is not None and ten.ec2.price_date.year == 2026
    hours = ten.max_lifetime_minutes / 60
    assert ten.cost_estimate() == pytest.approx(11 * ten.ec2.price_per_instance_hour * hours)


def write(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((CLUSTERS / "local.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"nodes": 0}, "nodes: Input should be greater than 0 (got 0)"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
        ({"spark": None}, "spark: Field required"),
        ({"spark": {"version": "four"}}, "spark.version: String should match pattern"),
        ({"data": {"generate": {"rows": "lots"}}}, "data.generate.rows: Value error, a row count"),
        ({"data": {"local": "x", "s3": "s3://bucket/taxi"}}, "exactly one of local, generate, s3"),
        ({"provider": "gcp"}, "provider: Input should be 'local' or 'ec2'"),
        ({"provider": "ec2"}, "provider ec2 needs an ec2 section"),
        ({"engine": {"workers_per_node": 2, "threads_per_worker": 1}}, "need 2 cores per node"),
    ],
)
def test_a_bad_field_is_named_with_the_file(tmp_path: Path, changes: dict, words: str) -> None:
    path = write(tmp_path, **changes)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert any(words in line for line in lines), lines


def test_unreadable_and_non_yaml_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nowhere\.yaml: cannot read"):
        load_spec(tmp_path / "nowhere.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad.yaml:\d+: not YAML"):
        load_spec(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SpecError, match="expected a mapping of fields, got list"):
        load_spec(bad)
