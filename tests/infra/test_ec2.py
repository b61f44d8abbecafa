"""EC2 end to end against moto on 127.0.0.1: flintrock's own CLI (its SSH step replaced),
our tags, installs, token, engine start, run and destroy; the cost guard; no secret written;
and a failed launch cleaned to zero. No connection leaves loopback: the guard refuses it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer
from taskbench.infra import ec2
from taskbench.infra.spec import load_spec

from taskbench.cli import main

from ..reports.conftest import write_run
from . import loopback_guard
from .conftest import CLUSTERS

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY0123"  # planted; must never be written
REGION = "us-east-1"
LIVE = ["pending", "running", "shutting-down", "stopping", "stopped"]

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's own server on a free loopback port, for this module."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint, tmp_path, monkeypatch):
    """A fresh emulated account: the guard on, planted credentials, a key pair, an AMI that
    moto can launch (its own lack ``Ebs.Encrypted``), and flintrock through the loopback
    wrapper. Returns the boto3 client."""
    loopback_guard.install()
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10
    ).close()
    pem = tmp_path / "key.pem"
    pem.write_text("not a real key\n")
    wrapper = tmp_path / "flintrock"
    wrapper.write_text(f'#!/bin/sh\nexec {ROOT}/.venv-flintrock/bin/python '
                       f'{HERE}/flintrock_loopback.py "$@"\n')  # fmt: skip
    wrapper.chmod(0o755)
    env = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE0000",
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        ec2.KEY_NAME_ENV: "taskbench-test",
        ec2.IDENTITY_FILE_ENV: str(pem),
        ec2.ACCESS_FROM_ENV: "127.0.0.1/32",
        ec2.FLINTROCK_ENV: str(wrapper),
        "FAKE_SSH_LOG": str(tmp_path / "flintrock-ssh.jsonl"),
        "TASKBENCH_LOG_DIR": str(tmp_path / "logs"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("ec2", region_name=REGION)
    client.create_key_pair(KeyName="taskbench-test")
    client.ami = client.register_image(
        Name="amazon-linux-2-test", RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {
            "VolumeSize": 8, "VolumeType": "gp2", "Encrypted": False}}],
    )["ImageId"]  # fmt: skip
    return client


class RecordingShell:
    """Our SSH steps on moto's invented hosts, recorded instead of run. The master answers
    ``cluster status --json`` with every worker joined, and "has" a run folder to fetch."""

    def __init__(self, spec, fetched_run: Path) -> None:
        self.spec, self.fetched_run = spec, fetched_run
        self.commands: list[tuple[str, str]] = []
        self.puts: list[tuple[str, str, int, bytes]] = []

    def run(self, host: str, command: str, timeout: float = 600.0, echo: bool = False) -> str:
        self.commands.append((host, command))
        if " cluster status " in command:
            spark = [{"address": f"w{i}", "cores": self.spec.cores_per_node, "memory_mb": 1}
                     for i in range(self.spec.nodes)]  # fmt: skip
            workers = self.spec.nodes * self.spec.engine.workers_per_node
            engine = [{"address": f"e{i}", "threads": 1, "rss_mb": None} for i in range(workers)]
            return json.dumps({
                "spark": {"url": "spark://m:7077", "status": "ALIVE", "workers": spark},
                "engine": {"address": "tcp://m:8786", "workers": engine},
            })  # fmt: skip
        return ""

    def put(self, host: str, local: Path, remote: str, mode: int = 0o600) -> None:
        self.puts.append((host, remote, mode, Path(local).read_bytes()))

    def fetch_tree(self, host: str, remote: str, local: Path) -> int:
        self.commands.append((host, f"fetch {remote}"))
        write_run(local, "on-the-master", bench=False)
        return sum(1 for p in local.rglob("*") if p.is_file())


def spec_for(aws, tmp_path: Path, name: str = "ec2-small.yaml") -> Path:
    raw = yaml.safe_load((CLUSTERS / name).read_text())
    raw["ec2"]["ami"] = aws.ami
    raw["spark"]["download_source"] = "s3://taskbench-test-spark/spark/{v}/"  # no mirror check
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


PRINTED: list[str] = []  #: everything the commands printed, for the secret check


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    PRINTED.extend([out.getvalue(), err.getvalue()])
    return code, out.getvalue(), err.getvalue()


def live_instances(aws, **tags: str) -> list[dict]:
    filters = [{"Name": "instance-state-name", "Values": LIVE}]
    filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    pages = aws.describe_instances(Filters=filters)["Reservations"]
    return [i for r in pages for i in r["Instances"]]


def security_groups(aws) -> list[str]:
    groups = aws.describe_security_groups()["SecurityGroups"]
    return sorted(g["GroupName"] for g in groups if g["GroupName"] != "default")


def ssh_log(tmp_path: Path) -> list[dict]:
    path = tmp_path / "flintrock-ssh.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_guard_refuses_any_address_beyond_loopback(aws, moto_endpoint) -> None:
    with socket.socket() as s, pytest.raises(PermissionError, match=loopback_guard.REFUSED):
        s.connect(("198.51.100.7", 22))  # TEST-NET-2: refused before any packet
    with socket.socket() as s:
        s.settimeout(5)
        s.connect(("127.0.0.1", int(moto_endpoint.rsplit(":", 1)[1])))  # loopback still works
    probe = "import socket; socket.create_connection(('203.0.113.9', 22), timeout=5)"
    done = subprocess.run(  # the guard holds in flintrock's own interpreter too
        [str(ROOT / ".venv-flintrock/bin/python"), "-c",
         f"import sys; sys.path.insert(0, {str(HERE)!r}); import loopback_guard; "
         f"loopback_guard.install(); {probe}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and loopback_guard.REFUSED in done.stderr


def test_launch_describe_run_and_destroy_through_flintrock(aws, tmp_path, monkeypatch) -> None:
    spec_path = spec_for(aws, tmp_path)
    spec = load_spec(spec_path)
    shell = RecordingShell(spec, tmp_path / "remote-run")
    monkeypatch.setattr(ec2.Ec2Cluster, "_paramiko_shell", lambda self: shell)
    where = ["--spec", str(spec_path), "--dir", str(tmp_path / "c")]

    code, out, err = cli("cluster", "up", *where, "--yes")
    assert code == 0, err
    assert out.startswith("cost estimate: 3 instances x 0.192 USD/h x 2 h = 1.15 USD")
    run_id = json.loads((tmp_path / "c" / "cluster.json").read_text())["run_id"]
    assert f"up: run {run_id}" in out and "engine tcp://m:8786: 8 workers" in out

    # every instance and security group carries the run id; the lifetime is on the nodes
    instances = live_instances(aws, **{ec2.RUN_TAG: run_id})
    assert len(instances) == 3
    roles = sorted({t["Key"]: t["Value"] for t in i["Tags"]}["flintrock-role"] for i in instances)
    assert roles == ["master", "slave", "slave"]
    tagged = aws.describe_security_groups(
        Filters=[{"Name": f"tag:{ec2.RUN_TAG}", "Values": [run_id]}])["SecurityGroups"]  # fmt: skip
    assert [g["GroupName"] for g in tagged] == [f"flintrock-{run_id}"]  # not the shared one
    first = instances[0]["InstanceId"]
    behaviour = aws.describe_instance_attribute(
        InstanceId=first, Attribute="instanceInitiatedShutdownBehavior")  # fmt: skip
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    user_data = aws.describe_instance_attribute(InstanceId=first, Attribute="userData")
    assert "shutdown -h +120" in base64.b64decode(user_data["UserData"]["Value"]).decode()

    # flintrock provisioned, copied the wheel and installed taskbench and the data on all 3
    hosts = {i["PublicIpAddress"] for i in instances}
    steps = ssh_log(tmp_path)
    for step in ("provision", "copy-file"):
        assert {s["host"] for s in steps if s["step"] == step} == hosts, step
    commands = [s["command"] for s in steps if s["step"] == "run-command"]
    assert sum("uv pip install" in c and "[spark,duckdb,dask]" in c for c in commands) == 3
    assert sum("data generate --rows 10000000" in c for c in commands) == 3

    # our own steps: the token to every node at 0600, never in a command; the engine started
    master = next(i for i in instances if "master" in str(i["Tags"]))
    token = (tmp_path / "c" / "engine" / "token").read_bytes()
    assert {(h, m) for h, r, m, b in shell.puts if r.endswith("/token") and b == token} == {
        (h, 0o600) for h in hosts
    }
    assert oct((tmp_path / "c" / "engine" / "token").stat().st_mode & 0o777) == "0o600"
    assert not any(token.decode() in c for _, c in shell.commands)
    scheduler = [c for h, c in shell.commands if "engine scheduler" in c]
    assert len(scheduler) == 1 and f"--host {master['PrivateIpAddress']}" in scheduler[0]
    workers = [(h, c) for h, c in shell.commands if "engine worker" in c]
    assert len(workers) == 8 and {h for h, _ in workers} == hosts - {master["PublicIpAddress"]}
    assert all(f"tcp://{master['PrivateIpAddress']}:8786" in c for _, c in workers)

    # flintrock itself sees the cluster; so does our status
    described = subprocess.run(
        [os.environ[ec2.FLINTROCK_ENV], "--config", str(tmp_path / "c" / "flintrock.yaml"),
         "describe", run_id], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert described.returncode == 0 and run_id in described.stdout
    assert "running" in described.stdout
    code, out, _ = cli("cluster", "status", *where)
    assert code == 0 and out.count("slave i-") == 2

    # a comparison on the master, its folder copied back and rendered here
    local_run = tmp_path / "runs" / "on-ec2"
    code, out, err = cli("cluster", "run", *where, "--", "compare", "--engines",
                         "engine,spark", "--queries", "q01", "--out", str(local_run))  # fmt: skip
    assert code == 0, err
    compare = [c for h, c in shell.commands if " compare " in c]
    assert len(compare) == 1 and "--cluster taskbench-cluster/spec.yaml" in compare[0]
    assert "--out taskbench-runs/on-ec2" in compare[0] and "--data taskbench-data" in compare[0]
    assert (local_run / "records.jsonl").is_file()
    code, out, err = cli("report", str(local_run), "--out", str(tmp_path / "site"), "--no-asv")
    assert code == 0, err
    assert (tmp_path / "site" / "index.html").is_file()

    code, out, err = cli("cluster", "down", *where)
    assert code == 0, err
    assert f"nothing of {run_id} is left" in out and "will go: instance" in out
    assert live_instances(aws) == [] and security_groups(aws) == []

    # no file the run wrote, no log, no output holds the planted secret key
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "flintrock.log" for p in written)
    assert [p for p in written if FAKE_SECRET in p.read_text(errors="replace")] == []
    assert PRINTED and not any(FAKE_SECRET in text for text in PRINTED)


def test_a_launch_failing_halfway_leaves_zero_instances_and_groups(
    aws, tmp_path, capsys, monkeypatch
):
    """flintrock's real SSH step runs and the guard stops it, after the instances exist."""
    monkeypatch.delenv("FAKE_SSH_LOG")
    spec_path = spec_for(aws, tmp_path)
    code, _, err = cli("cluster", "up", "--spec", str(spec_path), "--dir",
                       str(tmp_path / "c"), "--yes")  # fmt: skip
    assert code == 1
    assert loopback_guard.REFUSED in err and "what was created is destroyed" in err
    log = (tmp_path / "c" / "flintrock.log").read_text()
    assert "Launching 1 master and 2 slaves" in log and "Terminating instances" in log
    assert live_instances(aws) == [] and security_groups(aws) == []
    terminated = [i for r in aws.describe_instances()["Reservations"] for i in r["Instances"]]
    assert len(terminated) == 3  # they existed, and are gone
    with capsys.disabled():  # the log a closing note shows
        print(
            f"\n--- failed launch, cleaned to zero ---\n{err.strip()}\n"
            f"instances not terminated: {len(live_instances(aws))}; "
            f"security groups besides default: {security_groups(aws)}"
        )


def test_keep_leaves_the_groups_and_down_sweeps_them(aws, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FAKE_SSH_LOG")
    spec_path = spec_for(aws, tmp_path)
    where = ["--spec", str(spec_path), "--dir", str(tmp_path / "c")]
    code, _, err = cli("cluster", "up", *where, "--yes", "--keep")
    assert code == 1 and "kept what was created (--keep)" in err
    run_id = json.loads((tmp_path / "c" / "cluster.json").read_text())["run_id"]
    assert security_groups(aws) == ["flintrock", f"flintrock-{run_id}"]  # flintrock's leftovers
    code, _, err = cli("cluster", "up", *where, "--yes")
    assert code == 1 and f"run {run_id}" in err and "is not down" in err
    code, out, _ = cli("cluster", "down", *where)
    assert code == 0 and "will go: security group" in out and security_groups(aws) == []
    code, _, _ = cli("cluster", "up", *where, "--budget", "0.5")
    assert code == 1  # the previous run is down: the guard is what stops this one


def test_the_cost_guard_refuses_before_anything_exists(aws, tmp_path) -> None:
    spec_path = spec_for(aws, tmp_path)
    where = ["--spec", str(spec_path), "--dir", str(tmp_path / "c")]
    code, out, err = cli("cluster", "up", *where)
    assert code == 1
    assert out.startswith("cost estimate: 3 instances x 0.192 USD/h x 2 h = 1.15 USD")
    assert "may cost 1.15 USD and nothing agreed to it; pass --yes" in err
    code, _, err = cli("cluster", "up", *where, "--budget", "1")
    assert code == 1 and "--budget 1 USD does not cover it" in err
    assert "destroyed" not in err and not (tmp_path / "c").exists()
    assert live_instances(aws) == [] and security_groups(aws) == []


def test_a_missing_key_pair_is_named(aws, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(ec2.KEY_NAME_ENV)
    code, _, err = cli("cluster", "up", "--spec", str(spec_for(aws, tmp_path)), "--dir",
                       str(tmp_path / "c"), "--yes")  # fmt: skip
    assert code == 1 and f"set {ec2.KEY_NAME_ENV}: the EC2 key pair's name" in err
    assert not (tmp_path / "c").exists() and live_instances(aws) == []


def test_the_config_is_flintrocks_own_and_holds_no_secret(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ec2.KEY_NAME_ENV, "taskbench-test")
    monkeypatch.setenv(ec2.IDENTITY_FILE_ENV, str(tmp_path / "key.pem"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    spec = load_spec(CLUSTERS / "ec2-10.yaml")
    config = ec2.flintrock_config(spec, "ec2-10-test", tmp_path / "user-data.sh")
    assert config["launch"]["num-slaves"] == 10
    assert config["services"]["spark"]["version"] == "4.3.0"
    assert config["providers"]["ec2"]["tags"] == ["taskbench-run,ec2-10-test"]
    assert config["providers"]["ec2"]["instance-initiated-shutdown-behavior"] == "terminate"
    assert ec2.lifetime_user_data(spec).splitlines()[-1] == "shutdown -h +180"
    path = tmp_path / "flintrock.yaml"
    path.write_text(yaml.safe_dump(config))
    check = (  # flintrock's own mapping of config keys onto its own launch command's options
        "import json, sys, yaml; from flintrock.flintrock import launch, config_to_click, "
        "normalize_keys; keys = config_to_click(normalize_keys(yaml.safe_load(open(sys.argv[1]))))"
        "['launch']; names = {p.name for p in launch.params}; "
        "print(json.dumps({'unknown': sorted(set(keys) - names), 'known': sorted(keys)}))"
    )
    done = subprocess.run([str(ROOT / ".venv-flintrock/bin/python"), "-c", check, str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    mapped = json.loads(done.stdout)
    assert mapped["unknown"] == []
    assert {"ec2_key_name", "ec2_tags", "ec2_user_data", "num_slaves", "spark_version"} <= set(
        mapped["known"]
    )
    assert FAKE_SECRET not in path.read_text()
