"""EC2 through flintrock: its config made from a spec, and the cost guard before any launch.

flintrock pins old boto3 and PyYAML, so it lives in its own virtual environment
(``make flintrock`` makes ``.venv-flintrock``) and is called as its CLI. The config names no
secret: the key pair's name and identity file come from ``$TASKBENCH_EC2_KEY_NAME`` and
``$TASKBENCH_EC2_IDENTITY_FILE``. Every instance is tagged with the run id, and its user data
schedules a shutdown at the spec's maximum lifetime, with shutdown behaviour ``terminate``, so
a cluster nobody takes down ends on its own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from taskbench.infra.spec import ClusterSpec
from taskbench.infra.ssh import NodeError, NodeShell

KEY_NAME_ENV = "TASKBENCH_EC2_KEY_NAME"
IDENTITY_FILE_ENV = "TASKBENCH_EC2_IDENTITY_FILE"
#: CIDRs or security groups allowed to reach the cluster (default: flintrock asks
#: checkip.amazonaws.com for this machine's public address)
ACCESS_FROM_ENV = "TASKBENCH_EC2_ACCESS_FROM"
FLINTROCK_ENV = "TASKBENCH_FLINTROCK"  #: the flintrock executable, if not .venv-flintrock's
RUN_TAG = "taskbench-run"


class Ec2Error(RuntimeError):
    """An EC2 step that cannot go on; the message says what is missing."""


class BudgetError(Ec2Error):
    """A launch the user has not agreed to pay for."""


def cost_line(spec: ClusterSpec) -> str:
    """``3 instances x 0.192 USD/h x 2.0 h = 1.15 USD at most (m5.xlarge on-demand, …)``."""
    ec2 = spec.ec2
    assert ec2 is not None, "an ec2 spec"
    hours = spec.max_lifetime_minutes / 60
    return (
        f"{spec.instances} instances x {ec2.price_per_instance_hour:g} USD/h x {hours:g} h = "
        f"{spec.cost_estimate():.2f} USD at most ({ec2.instance_type} {ec2.market}, "
        f"{ec2.region}; price of {ec2.price_date}: {ec2.price_source})"
    )


def check_budget(spec: ClusterSpec, yes: bool, budget: float | None) -> None:
    """Raise BudgetError unless ``yes`` or a ``budget`` that covers the estimate."""
    cost = spec.cost_estimate()
    if yes or (budget is not None and budget >= cost):
        return
    why = (
        f"--budget {budget:g} USD does not cover it"
        if budget is not None
        else "nothing agreed to it"
    )
    raise BudgetError(
        f"launching {spec.name} may cost {cost:.2f} USD and {why}; pass --yes, or --budget "
        f"{cost:.2f} or more"
    )


def spark_release(version: str) -> str:
    """flintrock downloads a release by its full number: ``4.3`` is ``4.3.0``."""
    return version if version.count(".") == 2 else f"{version}.0"


def lifetime_user_data(spec: ClusterSpec) -> str:
    """The instances' user data: power off (which terminates them) at the maximum lifetime."""
    return f"#!/bin/bash\nshutdown -h +{spec.max_lifetime_minutes}\n"


def flintrock_config(spec: ClusterSpec, run_id: str, user_data: Path) -> dict[str, Any]:
    """flintrock's config for ``spec`` (the fields of its config.yaml.template)."""
    ec2 = spec.ec2
    if ec2 is None:
        raise ValueError(f"spec {spec.name!r} has no ec2 section")
    missing = [name for name in (KEY_NAME_ENV, IDENTITY_FILE_ENV) if not os.environ.get(name)]
    if missing:
        raise Ec2Error(f"set {' and '.join(missing)}: the EC2 key pair's name and its .pem")
    spark: dict[str, Any] = {"version": spark_release(spec.spark.version)}
    if spec.spark.download_source:
        spark["download-source"] = spec.spark.download_source
    provider: dict[str, Any] = {
        "key-name": os.environ[KEY_NAME_ENV],
        "identity-file": os.environ[IDENTITY_FILE_ENV],
        "instance-type": ec2.instance_type,
        "region": ec2.region,
        "ami": ec2.ami,
        "user": ec2.user,
        "tags": [f"{RUN_TAG},{run_id}"],
        "tenancy": "default",
        "ebs-optimized": False,
        "instance-initiated-shutdown-behavior": "terminate",
        "user-data": str(user_data),
    }
    access_from = [a.strip() for a in os.environ.get(ACCESS_FROM_ENV, "").split(",") if a.strip()]
    if access_from:
        provider["authorize-access-from"] = access_from
    if ec2.market == "spot":
        provider["spot-price"] = ec2.price_per_instance_hour
    return {
        "services": {"spark": spark},
        "provider": "ec2",
        "providers": {"ec2": provider},
        "launch": {
            "num-slaves": spec.nodes,
            "install-hdfs": False,
            "install-spark": True,
            "java-version": 17,
        },
        "debug": False,
    }


def flintrock_executable(root: Path) -> Path:
    """flintrock's CLI: ``$TASKBENCH_FLINTROCK``, else ``ROOT/.venv-flintrock/bin/flintrock``."""
    given = os.environ.get(FLINTROCK_ENV)
    path = Path(given) if given else root / ".venv-flintrock" / "bin" / "flintrock"
    if not path.is_file() and not shutil.which(str(path)):
        raise Ec2Error(f"flintrock is not installed at {path}: run make flintrock")
    return path


# ---------------------------------------------------------------- the cluster

#: On every node, relative to the login user's home.
NODE_VENV = "taskbench-venv"
NODE_DIR = "taskbench-cluster"  #: spec.yaml, node.json, engine/{token,*.log,*.pid}
NODE_DATA = "taskbench-data"
NODE_RUNS = "taskbench-runs"
ENGINE_PORT = 8786
SPARK_PORT, SPARK_WEBUI_PORT = 7077, 8080  #: flintrock's Spark master
START_TIMEOUT = 300.0  #: seconds for every Spark and engine worker to join
FLINTROCK_TIMEOUT = 3600.0  #: seconds any one flintrock command may take


@dataclass(frozen=True)
class Node:
    role: str  #: master or slave
    instance_id: str
    public_host: str  #: what SSH reaches: the public IP, the private one in a private VPC
    private_ip: str  #: what the nodes use among themselves
    private_dns: str  #: the Spark master's name for itself (flintrock's SPARK_MASTER_HOST)


def remote_command(*argv: str, env: dict[str, str] | None = None) -> str:
    """A shell line run from the home folder, every word quoted."""
    words = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return "cd ~ && " + " ".join([*words, shlex.join(argv)])


def detached(name: str, *argv: str) -> str:
    """A node command that outlives the SSH session: its own session, log and pid file."""
    log, pid = f"{NODE_DIR}/engine/{name}.log", f"{NODE_DIR}/engine/{name}.pid"
    line = remote_command("nohup", "setsid", *argv,
                          env={"TASKBENCH_TOKEN_FILE": f"{NODE_DIR}/engine/token"})  # fmt: skip
    return f"{line} > {log} 2>&1 < /dev/null & echo $! > {pid}"


def install_command(wheel: str) -> str:
    """Python 3.12 through uv (Amazon Linux 2's python3 is too old), then taskbench's wheel."""
    uv = "~/.local/bin/uv"
    return " && ".join([
        "set -e", "cd ~",
        "(command -v python3 >/dev/null || sudo yum install -y -q python3)",
        "python3 -m pip install -q --user 'uv>=0.5'",
        f"{uv} venv -q --allow-existing --python 3.12 {NODE_VENV}",
        f"{uv} pip install -q --python {NODE_VENV}/bin/python '{wheel}[spark,duckdb,dask]'",
    ])  # fmt: skip


def stage_command(spec: ClusterSpec) -> str:
    """Every node makes the same data folder: generated (deterministic, so the same bytes on
    every node and no bulk download) or copied from s3 with pyarrow."""
    data = spec.data
    if data.generate is not None:
        g = data.generate
        return remote_command(f"{NODE_VENV}/bin/taskbench", "data", "generate", "--rows",
                              str(g.rows), "--start", g.start, "--months", str(g.months),
                              "--seed", str(g.seed), "--out", NODE_DATA, "--overwrite",
                              "--quiet")  # fmt: skip
    assert data.s3 is not None, "ec2 specs read generated or s3 data"
    target = f"os.path.abspath({NODE_DATA!r})"
    copy = f"import os, pyarrow.fs as fs; fs.copy_files({data.s3!r}, {target})"
    return remote_command(f"{NODE_VENV}/bin/python", "-c", copy)


class Ec2Cluster:
    """A cluster on EC2: flintrock launches Spark, we add tags, taskbench, data and the engine.

    The run's state (run id, flintrock's cluster name, region) is written before the launch,
    so ``down`` finds what a crashed ``up`` left. Failures in ``up`` take everything down
    unless ``keep``.
    """

    def __init__(self, spec: ClusterSpec, folder: Path, shell_factory=None,
                 root: Path | None = None) -> None:  # fmt: skip
        if spec.ec2 is None:
            raise Ec2Error(f"spec {spec.name!r} is for provider {spec.provider}, not ec2")
        self.spec, self.ec2 = spec, spec.ec2
        self.folder = Path(folder).resolve()
        self.root = root or Path(__file__).resolve().parents[1]
        self._shell_factory = shell_factory or self._paramiko_shell
        self._shell: NodeShell | None = None
        self.launched = False  #: ``up`` got as far as flintrock's launch

    # ------------------------------------------------------------ files and tools

    @property
    def state_file(self) -> Path:
        return self.folder / "cluster.json"

    def read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def _write_state(self, **state: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=1) + "\n")

    def _paramiko_shell(self) -> NodeShell:
        from taskbench.infra.ssh import ParamikoShell

        return ParamikoShell(self.ec2.user, os.environ.get(IDENTITY_FILE_ENV, ""))

    @property
    def shell(self) -> NodeShell:
        if self._shell is None:
            self._shell = self._shell_factory()
        return self._shell

    def flintrock(self, *args: str) -> str:
        """Run flintrock's CLI with the run's config; its output goes to flintrock.log."""
        exe = flintrock_executable(self.root)
        command = [str(exe), "--config", str(self.folder / "flintrock.yaml"), *args]
        with open(self.folder / "flintrock.log", "a") as log:
            log.write(f"$ flintrock {' '.join(args)}\n")
            log.flush()
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=FLINTROCK_TIMEOUT,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
            log.write(done.stdout + done.stderr)
        if done.returncode:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise Ec2Error(f"flintrock {args[0]} failed ({done.returncode}): "
                           + " | ".join(tail))  # fmt: skip
        return done.stdout

    def _boto(self):
        import boto3

        return boto3.client("ec2", region_name=self.ec2.region)

    # ------------------------------------------------------------ up

    def up(self, yes: bool, budget: float | None, keep: bool = False) -> dict[str, Any]:
        """Cost guard, launch, tags, taskbench, token, data and engine on every node; the
        nodes and both clusters' state once every worker has joined."""
        state = self.read_state()
        if state and state.get("phase") != "down":
            raise Ec2Error(f"run {state['run_id']} in {self.folder} is not down: taskbench "
                           f"cluster down --spec … --dir {self.folder}")  # fmt: skip
        check_budget(self.spec, yes, budget)
        run_id = f"{self.spec.name}-{dt.datetime.now(dt.UTC):%Y%m%dt%H%M%Sz}"
        user_data = self.folder / "user-data.sh"
        config = flintrock_config(self.spec, run_id, user_data)
        self._write_state(run_id=run_id, cluster=run_id, region=self.ec2.region,
                          phase="launching")  # fmt: skip
        user_data.write_text(lifetime_user_data(self.spec))
        (self.folder / "flintrock.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.launched = True
        try:
            self.flintrock("launch", run_id, "--assume-yes")
            self.tag(run_id)
            nodes = self.nodes()
            joined = self._provision(run_id, nodes)
        except BaseException:
            if not keep:
                self.down()
            raise
        self._write_state(run_id=run_id, cluster=run_id, region=self.ec2.region, phase="up",
                          nodes=[asdict(n) for n in nodes])  # fmt: skip
        return {"run_id": run_id, "nodes": nodes, **joined}

    def tag(self, run_id: str) -> None:
        """Tag every instance and the security group of the run with ``taskbench-run=RUN_ID``
        (flintrock's shared ``flintrock`` group belongs to no one run)."""
        ids = [n.instance_id for n in self.nodes(run_id)]
        ids += [g["GroupId"] for g in self._groups(run_id)]
        self._boto().create_tags(Resources=ids, Tags=[{"Key": RUN_TAG, "Value": run_id}])

    def nodes(self, run_id: str | None = None) -> list[Node]:
        """The run's live instances, master first (by flintrock's group and role tag)."""
        run_id = run_id or self._run_id()
        pages = self._boto().get_paginator("describe_instances").paginate(Filters=[
            {"Name": "instance.group-name", "Values": [f"flintrock-{run_id}"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ])  # fmt: skip
        nodes = [
            Node(role={t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("flintrock-role", "?"),
                 instance_id=i["InstanceId"],
                 public_host=i.get("PublicIpAddress") or i.get("PrivateIpAddress", ""),
                 private_ip=i.get("PrivateIpAddress", ""),
                 private_dns=i.get("PrivateDnsName") or i.get("PrivateIpAddress", ""))
            for page in pages for r in page["Reservations"] for i in r["Instances"]
        ]  # fmt: skip
        return sorted(nodes, key=lambda n: (n.role != "master", n.instance_id))

    def _run_id(self) -> str:
        state = self.read_state()
        if not state:
            raise Ec2Error(f"no EC2 run recorded in {self.folder}")
        return state["run_id"]

    def _provision(self, run_id: str, nodes: list[Node]) -> dict[str, Any]:
        master = next((n for n in nodes if n.role == "master"), None)
        slaves = [n for n in nodes if n.role == "slave"]
        if master is None or len(slaves) != self.spec.nodes:
            raise Ec2Error(
                f"flintrock left {len(slaves)} slaves and "
                f"{'a' if master else 'no'} master; expected {self.spec.nodes}"
            )
        wheel = self._build_wheel()
        self.flintrock("copy-file", run_id, str(wheel), wheel.name, "--assume-yes")
        self.flintrock("run-command", run_id, install_command(wheel.name))
        self._share_files(master, nodes)
        self.flintrock("run-command", run_id, stage_command(self.spec))
        self._start_engine(master, slaves)
        return self.wait_until_joined(master)

    def _build_wheel(self) -> Path:
        dist = self.folder / "dist"
        shutil.rmtree(dist, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(dist), str(self.root)],
                       check=True, capture_output=True)  # fmt: skip
        (wheel,) = dist.glob("taskbench-*.whl")
        return wheel

    def node_view(self, master: Node) -> dict[str, str]:
        """What a node needs to find both clusters (``node.json``)."""
        return {
            "spark_url": f"spark://{master.private_dns}:{SPARK_PORT}",
            "webui": f"http://{master.private_dns}:{SPARK_WEBUI_PORT}",
            "engine_address": f"tcp://{master.private_ip}:{ENGINE_PORT}",
        }

    def _share_files(self, master: Node, nodes: list[Node]) -> None:
        """The token (new, mode 0600, never printed), the spec and node.json, to every node."""
        engine = self.folder / "engine"
        engine.mkdir(exist_ok=True)
        token = engine / "token"
        token.unlink(missing_ok=True)
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))
        view = self.folder / "node.json"
        view.write_text(json.dumps(self.node_view(master), indent=1) + "\n")
        spec_copy = self.folder / "spec.yaml"
        spec_copy.write_text(yaml.safe_dump(self.spec.model_dump(mode="json"), sort_keys=False))
        for node in nodes:
            self.shell.run(node.public_host, f"mkdir -p {NODE_DIR}/engine {NODE_RUNS}")
            self.shell.put(node.public_host, token, f"{NODE_DIR}/engine/token", 0o600)
            self.shell.put(node.public_host, view, f"{NODE_DIR}/node.json", 0o644)
            self.shell.put(node.public_host, spec_copy, f"{NODE_DIR}/spec.yaml", 0o644)

    def _start_engine(self, master: Node, slaves: list[Node]) -> None:
        taskbench = f"{NODE_VENV}/bin/taskbench"
        self.shell.run(master.public_host, detached(
            "scheduler", taskbench, "engine", "scheduler", "--host", master.private_ip,
            "--port", str(ENGINE_PORT), "--token-file", f"{NODE_DIR}/engine/token"))  # fmt: skip
        address = self.node_view(master)["engine_address"]
        threads = str(self.spec.engine.threads_per_worker)
        for slave in slaves:
            for i in range(1, self.spec.engine.workers_per_node + 1):
                self.shell.run(slave.public_host, detached(
                    f"worker-{i}", taskbench, "engine", "worker", address, "--host",
                    slave.private_ip, "--nthreads", threads))  # fmt: skip

    def remote_status(self, master: Node) -> dict[str, Any]:
        """Both clusters as the master sees them (``taskbench cluster status --json`` there)."""
        out = self.shell.run(master.public_host, remote_command(
            f"{NODE_VENV}/bin/taskbench", "cluster", "status", "--spec", f"{NODE_DIR}/spec.yaml",
            "--dir", NODE_DIR, "--json"))  # fmt: skip
        return json.loads(out)

    def wait_until_joined(self, master: Node) -> dict[str, Any]:
        spark_want = self.spec.nodes
        engine_want = self.spec.nodes * self.spec.engine.workers_per_node
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                state = self.remote_status(master)
                joined = len(state["spark"]["workers"]), len(state["engine"]["workers"])
                if joined >= (spark_want, engine_want) and min(joined) > 0:
                    return state
            except (NodeError, ValueError, KeyError) as e:
                joined, state = (0, 0), {"error": str(e)}
            if time.monotonic() > deadline:
                raise Ec2Error(f"waited {START_TIMEOUT:.0f} s for {spark_want} Spark and "
                               f"{engine_want} engine workers; {joined} joined "
                               f"({state.get('error', 'no error')})")  # fmt: skip
            time.sleep(5)

    # ------------------------------------------------------------ run

    def run(self, compare_args: list[str], out: Path) -> int:
        """``taskbench compare`` on the master against both clusters; the run folder back."""
        master = self.nodes()[0]
        remote_out = f"{NODE_RUNS}/{out.name}"
        argv = [
            f"{NODE_VENV}/bin/taskbench",
            "compare",
            *compare_args,
            "--cluster",
            f"{NODE_DIR}/spec.yaml",
            "--cluster-dir",
            NODE_DIR,
            "--out",
            remote_out,
        ]
        if "--data" not in compare_args:
            argv += ["--data", NODE_DATA]
        self.shell.run(master.public_host, remote_command(*argv), timeout=24 * 3600, echo=True)
        return self.shell.fetch_tree(master.public_host, remote_out, out)

    # ------------------------------------------------------------ down

    def _groups(self, run_id: str) -> list[dict[str, Any]]:
        """The run's security groups: tagged with it, or named after its flintrock cluster."""
        boto = self._boto()
        found = {}
        for filters in (
            [{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}],
            [{"Name": "group-name", "Values": [f"flintrock-{run_id}"]}],
        ):
            for group in boto.describe_security_groups(Filters=filters)["SecurityGroups"]:
                found[group["GroupId"]] = group
        return list(found.values())

    def leftovers(self, run_id: str) -> list[str]:
        """What of the run still exists: instances not terminated, its security groups."""
        pages = self._boto().get_paginator("describe_instances").paginate(Filters=[
            {"Name": f"tag:{RUN_TAG}", "Values": [run_id]},
            {"Name": "instance-state-name",
             "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]},
        ])  # fmt: skip
        instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        left = [f"instance {i['InstanceId']} ({i['State']['Name']})" for i in instances]
        left += [f"security group {g['GroupId']} ({g['GroupName']})" for g in self._groups(run_id)]
        return left

    def down(self) -> list[str]:
        """flintrock destroy, then the run's leftovers (instances, security groups, and the
        shared ``flintrock`` group once no live instance uses it); what went and what is left."""
        state = self.read_state()
        if not state:
            return []
        run_id = state["run_id"]
        lines = [f"will go: {what}" for what in self.leftovers(run_id)]
        if self.nodes(run_id):
            try:
                self.flintrock("destroy", run_id, "--assume-yes")
            except Ec2Error as e:
                lines.append(f"flintrock destroy: {e}; sweeping by tag")
        boto = self._boto()
        stray = [n.instance_id for n in self.nodes(run_id)]
        if stray:
            boto.terminate_instances(InstanceIds=stray)
            boto.get_waiter("instance_terminated").wait(
                InstanceIds=stray, WaiterConfig={"Delay": 5, "MaxAttempts": 60}
            )
        for group in self._groups(run_id):
            self._delete_group(group["GroupId"])
        self._delete_shared_group()
        left = self.leftovers(run_id)
        lines += [f"left: {what}" for what in left] or [f"nothing of {run_id} is left"]
        if not left:
            self._write_state(**{**state, "phase": "down"})
        return lines

    def _delete_group(self, group_id: str) -> None:
        import botocore.exceptions

        for attempt in range(12):  # a group stays in use a little while after termination
            try:
                self._boto().delete_security_group(GroupId=group_id)
                return
            except botocore.exceptions.ClientError as e:
                code = e.response["Error"]["Code"]
                if code == "InvalidGroup.NotFound":
                    return
                if code != "DependencyViolation" or attempt == 11:
                    raise Ec2Error(f"security group {group_id} cannot be deleted: {e}") from None
                time.sleep(5)

    def _delete_shared_group(self) -> None:
        """flintrock's base group ``flintrock`` is shared by its clusters: deleted when no
        live instance is in it."""
        boto = self._boto()
        groups = boto.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": ["flintrock"]}]
        )["SecurityGroups"]
        for group in groups:
            users = boto.describe_instances(Filters=[
                {"Name": "instance.group-id", "Values": [group["GroupId"]]},
                {"Name": "instance-state-name",
                 "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]},
            ])["Reservations"]  # fmt: skip
            if not users:
                self._delete_group(group["GroupId"])


class NodeView:
    """Both clusters as a node of an EC2 run sees them, from the ``node.json`` ``up`` put
    there; what ``taskbench compare --cluster`` and ``cluster status`` use on the master."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        try:
            view = json.loads((self.folder / "node.json").read_text())
        except (OSError, ValueError):
            raise Ec2Error(
                f"{self.folder / 'node.json'} is missing: an EC2 cluster is read on its master; "
                "from here use taskbench cluster status|run --spec SPEC"
            ) from None
        self.master_url, self.webui = view["spark_url"], view["webui"]
        self.engine_address = view["engine_address"]
        self.token = self.folder / "engine" / "token"

    def state(self) -> dict[str, Any]:
        from taskbench.infra.local import engine_status, spark_status

        return {
            "folder": str(self.folder),
            "spark": spark_status(self.webui),
            "engine": engine_status(self.engine_address, self.token, local_pids=False),
        }
