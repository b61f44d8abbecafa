"""EC2 before any launch: the cost guard, and flintrock's config checked by flintrock itself
(its own key mapping against its own launch options), with no secret in any written file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from taskbench.infra import ec2
from taskbench.infra.spec import load_spec

from .conftest import CLUSTERS

ROOT = Path(__file__).resolve().parents[2]
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY0123"  # planted; must never be written


@pytest.fixture
def ec2_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    pem = tmp_path / "key.pem"
    pem.write_text("not a real key\n")
    env = {
        ec2.KEY_NAME_ENV: "taskbench-test",
        ec2.IDENTITY_FILE_ENV: str(pem),
        "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE0000",
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, **env, "TASKBENCH_LOG_DIR": str(tmp_path / "logs")}


def cluster(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskbench.cli", "cluster", *argv],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip


def test_the_cost_guard_refuses_without_yes_or_a_covering_budget(tmp_path, ec2_env) -> None:
    spec = CLUSTERS / "ec2-small.yaml"
    where = ["--spec", str(spec), "--dir", str(tmp_path / "c")]
    done = cluster("up", *where, env=ec2_env)
    assert done.returncode == 1
    assert done.stdout.startswith("cost estimate: 3 instances x 0.192 USD/h x 2 h = 1.15 USD")
    assert "may cost 1.15 USD and nothing agreed to it; pass --yes" in done.stderr
    assert not (tmp_path / "c").exists()  # nothing written, nothing launched
    done = cluster("up", *where, "--budget", "1", env=ec2_env)
    assert done.returncode == 1 and "--budget 1 USD does not cover it" in done.stderr
    done = cluster("up", *where, "--budget", "1.20", env=ec2_env)
    assert "the EC2 launch through flintrock is not built yet" in done.stderr
    assert (tmp_path / "c" / "flintrock.yaml").is_file()


def test_the_config_is_flintrocks_own_and_holds_no_secret(tmp_path, ec2_env) -> None:
    spec = load_spec(CLUSTERS / "ec2-10.yaml")
    user_data = tmp_path / "user-data.sh"
    config = ec2.flintrock_config(spec, "ec2-10-test", user_data, "s3://bucket/spark/{v}/")
    assert (
        config["launch"]["num-slaves"] == 10 and config["services"]["spark"]["version"] == "4.3.0"
    )
    assert config["providers"]["ec2"]["tags"] == ["taskbench-run,ec2-10-test"]
    assert config["providers"]["ec2"]["instance-initiated-shutdown-behavior"] == "terminate"
    assert ec2.lifetime_user_data(spec).splitlines()[-1] == "shutdown -h +180"
    path = tmp_path / "flintrock.yaml"
    path.write_text(yaml.safe_dump(config))
    flintrock = ec2.flintrock_executable(ROOT)
    check = (  # flintrock's own mapping of config keys onto its own launch command's options
        "import json, sys, yaml; from flintrock.flintrock import launch, config_to_click, "
        "normalize_keys; keys = config_to_click(normalize_keys(yaml.safe_load(open(sys.argv[1]))))"
        "['launch']; names = {p.name for p in launch.params}; "
        "print(json.dumps({'unknown': sorted(set(keys) - names), 'known': sorted(keys)}))"
    )
    done = subprocess.run([str(flintrock.parent / "python"), "-c", check, str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    mapped = json.loads(done.stdout)
    assert mapped["unknown"] == []
    assert {"ec2_key_name", "ec2_tags", "ec2_user_data", "num_slaves", "spark_version"} <= set(
        mapped["known"]
    )
    for written in [path, *tmp_path.rglob("*")]:
        if written.is_file():
            assert FAKE_SECRET not in written.read_text(errors="replace"), written


def test_no_written_file_or_log_of_the_command_holds_the_planted_secret(tmp_path, ec2_env) -> None:
    cluster("up", "--spec", str(CLUSTERS / "ec2-small.yaml"), "--dir", str(tmp_path / "c"),
            "--yes", env=ec2_env)  # fmt: skip
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "flintrock.yaml" for p in written)
    assert [p for p in written if FAKE_SECRET in p.read_text(errors="replace")] == []


def test_a_missing_key_pair_is_named(tmp_path, ec2_env, monkeypatch) -> None:
    env = {k: v for k, v in ec2_env.items() if k != ec2.KEY_NAME_ENV}
    done = cluster("up", "--spec", str(CLUSTERS / "ec2-small.yaml"), "--dir",
                   str(tmp_path / "c"), "--yes", env=env)  # fmt: skip
    assert done.returncode == 1
    assert f"set {ec2.KEY_NAME_ENV}: the EC2 key pair's name" in done.stderr
    assert not (tmp_path / "c").exists()
