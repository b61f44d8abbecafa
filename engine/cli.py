"""The ``taskbench`` command line: one entry point for every layer."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path


def _serve_until_stopped(start, parent_pid: int | None = None) -> None:
    """Run ``start()`` (returns ``(stop, finished)``) until SIGTERM/SIGINT or the parent dies.

    The parent is watched by polling: the kernel's parent-death signal follows the thread
    that spawned us, and LocalCluster may spawn workers from short-lived threads.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signalled.set)
        stop, finished = await start()
        waiters = [asyncio.ensure_future(signalled.wait())]
        if finished is not None:
            waiters.append(asyncio.ensure_future(finished))
        if parent_pid:
            waiters.append(asyncio.ensure_future(_parent_gone(parent_pid)))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        await stop()
        for w in waiters:
            w.cancel()

    asyncio.run(main())


async def _parent_gone(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(0.5)


def cmd_scheduler(args: argparse.Namespace) -> int:
    from taskbench.engine import comm
    from taskbench.engine.scheduler import Scheduler

    token = (
        comm.get_token()
        if (comm.TOKEN_ENV in os.environ or comm.TOKEN_FILE_ENV in os.environ)
        else None
    )
    if token is None:
        token = comm.new_token()
        path = Path(args.token_file or ".taskbench-token")
        path.write_text(token)
        path.chmod(0o600)
        print(f"shared secret written to {path}; give workers TASKBENCH_TOKEN_FILE={path}")

    async def start():
        s = Scheduler(
            token=token,
            validate=args.validate,
            no_worker_timeout=args.no_worker_timeout,
            placement=args.placement,
            stealing=not args.no_stealing,
            balance_interval=args.balance_interval,
            seed=args.seed,
        )
        address = await s.start(f"tcp://{args.host}:{args.port}")
        if args.address_file:
            tmp = Path(args.address_file + ".tmp")
            tmp.write_text(address)
            tmp.replace(args.address_file)
        logging.getLogger("taskbench.engine.scheduler").info("scheduler at %s", address)
        if not args.address_file:
            print(f"scheduler at {address}", flush=True)

        async def stop() -> None:
            s.close()
            await asyncio.sleep(0.05)  # let the close messages go out

        return stop, None

    try:
        _serve_until_stopped(start, args.parent_pid)
    except OSError as e:
        print(
            f"taskbench: cannot start a scheduler on {args.host}:{args.port}: {e}", file=sys.stderr
        )
        return 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from taskbench.engine import comm
    from taskbench.engine.worker import Worker

    async def start():
        w = Worker(
            args.address,
            nthreads=args.nthreads,
            listen=f"tcp://{args.host}:{args.port}",
            reconnect_timeout=args.reconnect_timeout,
        )
        await w.start()
        logging.getLogger("taskbench.engine.worker").info("worker at %s", w.address)

        async def stop() -> None:
            await w.close()
            await asyncio.sleep(0.05)  # let the goodbye go out

        return stop, w.finished()

    try:
        _serve_until_stopped(start, args.parent_pid)
    except (OSError, comm.HandshakeError) as e:
        print(f"taskbench: the worker cannot join {args.address}: {e}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    from taskbench.engine.policies import PLACEMENTS

    parser = argparse.ArgumentParser(prog="taskbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    engine = sub.add_parser("engine", help="run engine processes (multi-host)")
    esub = engine.add_subparsers(dest="role", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback)")
    common.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    common.add_argument("--log-level", default="INFO")

    sch = esub.add_parser("scheduler", parents=[common], help="start a scheduler")
    sch.add_argument("--port", type=int, default=8786)
    sch.add_argument("--token-file", help="where to write a new token when none is set")
    sch.add_argument("--address-file", help="write the bound address here once listening")
    sch.add_argument("--validate", action="store_true", help="check invariants after each event")
    sch.add_argument("--no-worker-timeout", type=float, default=30.0)
    sch.add_argument("--placement", default="locality", choices=sorted(PLACEMENTS))
    sch.add_argument("--no-stealing", action="store_true", help="turn work stealing off")
    sch.add_argument("--balance-interval", type=float, default=0.1, help="seconds between ticks")
    sch.add_argument("--seed", type=int, default=0, help="seed of the random placement")
    sch.set_defaults(func=cmd_scheduler)

    wk = esub.add_parser("worker", parents=[common], help="start a worker")
    wk.add_argument("address", help="scheduler address, e.g. tcp://10.0.0.5:8786")
    wk.add_argument("--nthreads", type=int, default=1)
    wk.add_argument("--port", type=int, default=0)
    wk.add_argument(
        "--reconnect-timeout", type=float, default=0.0,
        help="seconds to keep trying when the scheduler goes away (default: exit at once)",
    )  # fmt: skip
    wk.set_defaults(func=cmd_worker)

    from taskbench.engine import bench

    bench.add_parser(sub)

    stream = sub.add_parser("stream", help="task streams of recorded runs")
    ssub = stream.add_subparsers(dest="action", required=True)
    plot = ssub.add_parser("plot", help="task-stream picture (PNG) of a recorded run")
    plot.add_argument("runs", nargs="+", help="JSONL stream files; several draw side by side")
    plot.add_argument("-o", "--output", required=True)
    plot.add_argument("--title")
    plot.set_defaults(func=cmd_stream_plot)

    from taskbench.comparisons import cli as comparisons_cli
    from taskbench.comparisons.data import cli as data_cli

    data_cli.add_parser(sub)
    comparisons_cli.add_parser(sub)
    return parser


def cmd_stream_plot(args: argparse.Namespace) -> int:
    from taskbench.engine.plot import plot_task_stream
    from taskbench.engine.stream import TaskStream

    streams = []
    for path in args.runs:
        if not Path(path).exists():
            print(f"taskbench: no such stream file: {path}", file=sys.stderr)
            return 2
        streams.append(TaskStream.from_jsonl(path))
    titles = [s.meta.get("title") or Path(p).stem for s, p in zip(streams, args.runs, strict=True)]
    plot_task_stream(streams if len(streams) > 1 else streams[0], args.output, title=args.title,
                     titles=titles if len(streams) > 1 else None)  # fmt: skip
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "WARNING")
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
