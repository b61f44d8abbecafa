"""``taskbench engine scheduler|worker``: the engine's processes, one host or many.

The root ``taskbench`` command (``taskbench.cli``) wires this in; `LocalCluster` runs it as
``python -m taskbench.engine.cli engine …``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskbench.engine.options import EngineOptions


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


def options_from_args(args: argparse.Namespace) -> EngineOptions:
    """The `EngineOptions` that ``engine scheduler``'s flags name."""
    from taskbench.engine.options import EngineOptions

    return EngineOptions(
        placement=args.placement,
        stealing=not args.no_stealing,
        balance_interval=args.balance_interval,
        seed=args.seed,
        validate=args.validate,
        no_worker_timeout=args.no_worker_timeout,
        bandwidth=args.bandwidth,
        default_duration=args.default_duration,
    )


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
        s = Scheduler(token=token, options=options_from_args(args))
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
    try:  # the import reads TASKBENCH_SIZEOF and refuses a value that names no mode
        from taskbench.engine import comm, sizeof
        from taskbench.engine.worker import Worker
    except ValueError as e:
        print(f"taskbench engine worker: {e}", file=sys.stderr)
        return 2
    if args.sizeof:
        sizeof.set_mode(args.sizeof)

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


def add_parser(subparsers: Any) -> None:
    """Register ``engine scheduler|worker`` under ``subparsers``; flag defaults: `EngineOptions`."""
    from taskbench.engine.options import DEFAULTS, SIZEOF_ENV, SIZEOF_MODES
    from taskbench.engine.policies import PLACEMENTS

    engine = subparsers.add_parser("engine", help="run engine processes (multi-host)")
    esub = engine.add_subparsers(dest="role", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback)")
    common.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    common.add_argument("--log-level", default="INFO")

    d = DEFAULTS
    sch = esub.add_parser("scheduler", parents=[common], help="start a scheduler")
    sch.add_argument("--port", type=int, default=8786)
    sch.add_argument("--token-file", help="where to write a new token when none is set")
    sch.add_argument("--address-file", help="write the bound address here once listening")
    sch.add_argument("--validate", action="store_true", help="check invariants after each event")
    sch.add_argument("--no-worker-timeout", type=float, default=d.no_worker_timeout)
    sch.add_argument("--placement", default=d.placement, choices=sorted(PLACEMENTS))
    sch.add_argument("--no-stealing", action="store_true", help="turn work stealing off")
    sch.add_argument(
        "--balance-interval", type=float, default=d.balance_interval, help="seconds between ticks"
    )
    sch.add_argument("--seed", type=int, default=d.seed, help="seed of the random placement")
    sch.add_argument(
        "--bandwidth", type=float, default=d.bandwidth, help="bytes/s assumed for a transfer"
    )
    sch.add_argument(
        "--default-duration", type=float, default=d.default_duration,
        help="seconds assumed for a task prefix never seen",
    )  # fmt: skip
    sch.set_defaults(func=cmd_scheduler)

    wk = esub.add_parser("worker", parents=[common], help="start a worker")
    wk.add_argument("address", help="scheduler address, e.g. tcp://10.0.0.5:8786")
    wk.add_argument("--nthreads", type=int, default=1)
    wk.add_argument("--port", type=int, default=0)
    wk.add_argument(
        "--reconnect-timeout", type=float, default=0.0,
        help="seconds to keep trying when the scheduler goes away (default: exit at once)",
    )  # fmt: skip
    wk.add_argument(
        "--sizeof", choices=SIZEOF_MODES, default=None,
        help=f"result-size estimate (default: {SIZEOF_ENV}, else {d.sizeof})",
    )  # fmt: skip
    wk.set_defaults(func=cmd_worker)


def build_parser() -> argparse.ArgumentParser:
    """``taskbench engine …`` alone, as `LocalCluster` runs it (``python -m``)."""
    parser = argparse.ArgumentParser(prog="taskbench", description=__doc__)
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "WARNING")
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
