"""``taskbench cluster up|status|down --spec FILE``: clusters described by a spec.

A bad spec, a taken port or a cluster that will not start is one line per problem on stderr
and exit 1 (2 for a spec or command line that does not validate); ``up`` leaves nothing
running then (on EC2, unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from taskbench.infra.spec import DEFAULT_ROOT


def add_parser(subparsers: Any) -> None:
    """Register ``cluster`` under ``subparsers`` (argparse)."""
    parser = subparsers.add_parser(
        "cluster",
        help="local and EC2 clusters: up, status, run, down",
        description="Start, show, use or stop the Spark standalone cluster and the engine "
        "cluster a spec describes (infra/clusters/*.yaml): on 127.0.0.1, or on EC2 through "
        "flintrock. `run --spec SPEC -- compare [options]` runs a comparison against both; "
        "compare's --out names the run folder here.",
    )
    parser.add_argument("action", choices=["up", "status", "run", "down"])
    parser.add_argument(
        "--spec", required=True, help="cluster spec, e.g. infra/clusters/local.yaml"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help=f"the cluster's folder of logs, pids and state (default: {DEFAULT_ROOT}/NAME)",
    )
    parser.add_argument("--yes", action="store_true", help="agree to the EC2 cost estimate")
    parser.add_argument(
        "--budget", type=float, metavar="USD", help="launch only if the estimate is at most this"
    )
    parser.add_argument(
        "--keep", action="store_true", help="EC2: leave what a failed up created, to debug it"
    )
    parser.add_argument("--json", action="store_true", help="status: one JSON object")
    parser.set_defaults(
        func=run_cluster,
        passthrough_help="run: -- compare [options]; its --out names the run folder here",
    )


def _print_state(state: dict) -> None:
    spark, engine = state["spark"], state["engine"]
    print(f"spark {spark['url']} ({spark['status']}): {len(spark['workers'])} workers")
    for w in spark["workers"]:
        print(f"  {w['address']}: {w['cores']} cores, {w['memory_mb']:,} MB")
    print(f"engine {engine['address']}: {len(engine['workers'])} workers")
    for w in engine["workers"]:
        rss = "-" if w["rss_mb"] is None else f"{w['rss_mb']:,} MB in use"
        print(f"  {w['address']}: {w['threads']} threads, {rss}")


def _print_nodes(nodes: list) -> None:
    for node in nodes:
        print(f"{node.role} {node.instance_id} {node.public_host} (private {node.private_ip})")


def _show(state: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(state))
    else:
        _print_state(state)


def _compare_argv(args: argparse.Namespace) -> list[str]:
    """The words after ``--``: ``compare`` and its options."""
    words = args.passthrough
    if words[:1] != ["compare"]:
        raise ValueError("cluster run takes -- compare [options], e.g. -- compare --engines "
                         "engine,spark --out results/runs/NAME")  # fmt: skip
    return words[1:]


def run_cluster(args: argparse.Namespace) -> int:
    """The ``cluster`` command."""
    from taskbench.infra.local import ClusterError, LocalCluster
    from taskbench.infra.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
        compare_argv = _compare_argv(args) if args.action == "run" else []
    except (SpecError, ValueError) as e:
        print(f"taskbench cluster: error: {e}", file=sys.stderr)
        return 2
    if spec.provider == "ec2":
        return run_ec2(spec, args, compare_argv)
    if args.action == "run":
        from taskbench.infra.compare import compare_argv as compare

        return compare([*compare_argv, "--cluster", args.spec,
                        *(["--cluster-dir", str(args.dir)] if args.dir else [])])  # fmt: skip
    cluster = LocalCluster(spec, args.dir or DEFAULT_ROOT / spec.name)
    try:
        if args.action == "up":
            _print_state(cluster.up())
            where = f" --dir {args.dir}" if args.dir else ""
            print(f"up; logs in {cluster.layout.folder}; stop with: taskbench cluster down "
                  f"--spec {args.spec}{where}")  # fmt: skip
        elif args.action == "status":
            if not cluster.live_processes():
                print(f"no cluster is up in {cluster.layout.folder}")
                return 1
            _show(cluster.state(), args.json)
        else:
            stopped = cluster.down()
            print("\n".join(f"stopped {what}" for what in stopped) or "nothing was running")
    except ClusterError as e:
        print(f"taskbench cluster: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("taskbench cluster: interrupted; what had started was stopped", file=sys.stderr)
        return 130
    return 0


def _out_option(argv: list[str]) -> tuple[list[str], Path]:
    """``--out DIR`` taken out of compare's options: where the run folder lands here."""
    for i, word in enumerate(argv):
        if word == "--out" and i + 1 < len(argv):
            return argv[:i] + argv[i + 2 :], Path(argv[i + 1])
        if word.startswith("--out="):
            return argv[:i] + argv[i + 1 :], Path(word.split("=", 1)[1])
    raise ValueError("cluster run -- compare needs --out DIR: the run folder, copied back here")


def run_ec2(spec: Any, args: argparse.Namespace, compare_argv: list[str]) -> int:
    """EC2 through flintrock; on the cluster's own master, ``status`` reads node.json."""
    from taskbench.infra import ec2
    from taskbench.infra.local import ClusterError
    from taskbench.infra.ssh import NodeError

    folder = Path(args.dir or DEFAULT_ROOT / spec.name)
    if (
        args.action == "status"
        and (folder / "node.json").is_file()
        and not (folder / "cluster.json").is_file()
    ):
        try:
            _show(ec2.NodeView(folder).state(), args.json)
        except ClusterError as e:
            print(f"taskbench cluster: error: {e}", file=sys.stderr)
            return 1
        return 0
    cluster = ec2.Ec2Cluster(spec, folder)
    try:
        if args.action == "up":
            print(f"cost estimate: {ec2.cost_line(spec)}")
            state = cluster.up(args.yes, args.budget, keep=args.keep)
            _print_nodes(state["nodes"])
            _print_state(state)
            print(f"up: run {state['run_id']}; logs in {cluster.folder}")
            print(f"stop with: taskbench cluster down --spec {args.spec}"
                  + (f" --dir {args.dir}" if args.dir else ""))  # fmt: skip
        elif args.action == "status":
            nodes = cluster.nodes()
            if not nodes:
                print(f"no EC2 instance of {cluster.read_state()['run_id']} is running")
                return 1
            if not args.json:
                _print_nodes(nodes)
            _show(cluster.remote_status(nodes[0]), args.json)
        elif args.action == "run":
            argv, out = _out_option(compare_argv)
            files = cluster.run(argv, out)
            print(f"copied {files} files of the run to {out}; render it: taskbench report {out}")
        else:
            lines = cluster.down()
            print("\n".join(lines) or f"no EC2 run is recorded in {cluster.folder}")
            return 1 if any(line.startswith("left:") for line in lines) else 0
    except ValueError as e:
        print(f"taskbench cluster: error: {e}", file=sys.stderr)
        return 2
    except (ec2.Ec2Error, NodeError, ClusterError) as e:
        print(f"taskbench cluster: error: {e}", file=sys.stderr)
        if cluster.launched:
            print("taskbench cluster: " + ("kept what was created (--keep)" if args.keep
                  else "what was created is destroyed"), file=sys.stderr)  # fmt: skip
        return 1
    return 0
