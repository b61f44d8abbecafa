"""``taskbench cluster up|status|down --spec FILE``: clusters described by a spec.

A bad spec, a taken port or a cluster that will not start is one line per problem on stderr
and exit 1 (2 for a spec that does not validate); ``up`` leaves nothing running then.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path("results/clusters")


def add_parser(subparsers: Any) -> None:
    """Register ``cluster`` under ``subparsers`` (argparse)."""
    parser = subparsers.add_parser(
        "cluster",
        help="local and EC2 clusters: up, status, down",
        description="Start, show or stop the Spark standalone cluster and the engine cluster "
        "a spec describes (infra/clusters/*.yaml). Only the local provider runs here so far.",
    )
    parser.add_argument("action", choices=["up", "status", "down"])
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
    parser.set_defaults(func=run_cluster)


def _print_state(state: dict) -> None:
    spark, engine = state["spark"], state["engine"]
    print(f"spark {spark['url']} ({spark['status']}): {len(spark['workers'])} workers")
    for w in spark["workers"]:
        print(f"  {w['address']}: {w['cores']} cores, {w['memory_mb']:,} MB")
    print(f"engine {engine['address']}: {len(engine['workers'])} workers")
    for w in engine["workers"]:
        rss = "-" if w["rss_mb"] is None else f"{w['rss_mb']:,} MB in use"
        print(f"  {w['address']}: {w['threads']} threads, {rss}")


def run_cluster(args: argparse.Namespace) -> int:
    """The ``cluster`` command."""
    from taskbench.infra.local import ClusterError, LocalCluster
    from taskbench.infra.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as e:
        print(f"taskbench cluster: error: {e}", file=sys.stderr)
        return 2
    if spec.provider == "ec2":
        return run_ec2(spec, args)
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
            _print_state(cluster.state())
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


def run_ec2(spec: Any, args: argparse.Namespace) -> int:
    """EC2 so far: the cost guard, then flintrock's config written; the launch is not built."""
    import datetime as dt

    import yaml
    from taskbench.infra import ec2

    folder = Path(args.dir or DEFAULT_ROOT / spec.name).resolve()
    if args.action != "up":
        print(f"taskbench cluster: error: {args.spec}: EC2 {args.action} is not built yet",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"cost estimate: {ec2.cost_line(spec)}")
    try:
        ec2.check_budget(spec, args.yes, args.budget)
        run_id = f"{spec.name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
        user_data = folder / "user-data.sh"
        config = ec2.flintrock_config(spec, run_id, user_data)
    except ec2.Ec2Error as e:
        print(f"taskbench cluster: error: {e}", file=sys.stderr)
        return 1
    folder.mkdir(parents=True, exist_ok=True)
    user_data.write_text(ec2.lifetime_user_data(spec))
    (folder / "flintrock.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"flintrock config of run {run_id}: {folder / 'flintrock.yaml'}")
    print("taskbench cluster: error: the EC2 launch through flintrock is not built yet",
          file=sys.stderr)  # fmt: skip
    return 1
