"""``taskbench compare --cluster SPEC``: the comparison, with Spark and the engine on a cluster.

The runner (``comparisons.compare``) takes a Spark master URL and an engine scheduler address;
this layer adds ``--cluster``, which resolves both from a cluster that is up (``taskbench
cluster up --spec SPEC``), hands the engine's token over through ``$TASKBENCH_TOKEN_FILE``, and
puts the spec and the cluster's workers into the run's manifest and every record. The other
engines run on this machine as before.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from taskbench.comparisons import compare


def add_parser(subparsers: Any) -> None:
    """Register ``compare`` (the runner's own parser) with ``--cluster`` added."""
    compare.add_parser(subparsers)
    parser = subparsers.choices["compare"]
    parser.add_argument(
        "--cluster",
        metavar="SPEC",
        help="run Spark and the engine on the cluster this spec describes (it must be up: "
        "taskbench cluster up --spec SPEC)",
    )
    parser.add_argument(
        "--cluster-dir", type=Path, help="the cluster's folder, if not the default of its spec"
    )
    parser.set_defaults(func=run_compare)


def compare_argv(argv: list[str]) -> int:
    """``taskbench compare ARGV``, called from another command (``cluster run``)."""
    from taskbench.engine.argtypes import ArgumentParser

    parser = ArgumentParser(prog="taskbench")
    add_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["compare", *argv])
    except SystemExit as e:  # argparse has reported it
        return e.code if isinstance(e.code, int) else 2
    return run_compare(args)


def cluster_record(spec: Any, state: dict[str, Any]) -> dict[str, Any]:
    """What every record of a run on a cluster says about it."""
    return {
        "spec": spec.model_dump(mode="json"),
        "spark": {"url": state["spark"]["url"], "workers": state["spark"]["workers"]},
        "engine": {"address": state["engine"]["address"], "workers": state["engine"]["workers"]},
    }


def run_compare(args: argparse.Namespace) -> int:
    """``compare``; with ``--cluster``, against that cluster's Spark master and scheduler."""
    if not args.cluster:
        return compare.run_compare(args)
    from taskbench.infra.ec2 import Ec2Error, NodeView
    from taskbench.infra.local import ClusterError, LocalCluster
    from taskbench.infra.spec import DEFAULT_ROOT, SpecError, load_spec

    def fail(message: str) -> int:
        print(f"taskbench compare: error: {message}", file=sys.stderr)
        return 2

    if args.spark_master or args.engine_scheduler:
        return fail("--cluster sets the Spark master and the engine scheduler; give neither")
    try:
        spec = load_spec(args.cluster)
    except SpecError as e:
        return fail(str(e))
    if spec.provider == "local":
        cluster = LocalCluster(spec, args.cluster_dir or DEFAULT_ROOT / spec.name)
        if not cluster.live_processes():
            return fail(f"no cluster is up in {cluster.layout.folder}: taskbench cluster up "
                        f"--spec {args.cluster}")  # fmt: skip
        token = cluster.layout.token
    else:
        try:
            cluster = NodeView(args.cluster_dir or Path(args.cluster).parent)
        except Ec2Error as e:
            return fail(f"{e} (compare there: taskbench cluster run --spec {args.cluster} -- "
                        "compare …)")  # fmt: skip
        token = cluster.token
    try:
        state = cluster.state()
    except ClusterError as e:
        return fail(f"the cluster of {args.cluster} does not answer: {e}")
    args.spark_master = cluster.master_url
    args.engine_scheduler = cluster.engine_address
    args.cluster_record = cluster_record(spec, state)
    args.cluster_argv = ["--cluster", args.cluster]
    args.cluster_argv += ["--cluster-dir", str(args.cluster_dir)] if args.cluster_dir else []
    os.environ["TASKBENCH_TOKEN_FILE"] = str(token)  # the engine's processes
    os.environ.pop("TASKBENCH_TOKEN", None)
    return compare.run_compare(args)
