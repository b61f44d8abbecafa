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

from taskbench.engine import argtypes as at

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

    given = comm.TOKEN_ENV in os.environ or comm.TOKEN_FILE_ENV in os.environ
    token = comm.get_token() if given else comm.new_token()
    # nothing is written until the port is bound: a scheduler that cannot start leaves no file
    token_file = None if given else Path(args.token_file or ".taskbench-token")

    async def start():
        s = Scheduler(token=token, options=options_from_args(args))
        address = await s.start(f"tcp://{args.host}:{args.port}")
        try:
            if token_file is not None:
                _write_private(token_file, token)
                print(f"shared secret written to {token_file}; "
                      f"give workers TASKBENCH_TOKEN_FILE={token_file}", flush=True)  # fmt: skip
            if args.address_file:
                tmp = args.address_file.with_name(args.address_file.name + ".tmp")
                tmp.write_text(address)
                tmp.replace(args.address_file)
        except BaseException:
            s.close()
            raise
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


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)  # an existing file keeps its old mode through O_CREAT


def cmd_worker(args: argparse.Namespace) -> int:
    try:  # the import reads TASKBENCH_SIZEOF and refuses a value that names no mode
        from taskbench.engine import comm, sizeof
        from taskbench.engine.worker import Worker, keep_freed_memory
    except ValueError as e:
        print(f"taskbench engine worker: {e}", file=sys.stderr)
        return 2
    if args.sizeof:
        sizeof.set_mode(args.sizeof)
    keep_freed_memory(args.malloc_keep)

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
    """Register ``engine scheduler|worker`` under ``subparsers``; flag defaults: `EngineOptions`.

    Every value is checked here, by the rules of `engine.argtypes`: a bad one is an argparse
    error (exit 2) before anything starts or any file is written.
    """
    from taskbench.engine.options import DEFAULTS, SIZEOF_ENV, SIZEOF_MODES
    from taskbench.engine.policies import PLACEMENTS

    engine = subparsers.add_parser("engine", help="run engine processes (multi-host)")
    esub = engine.add_subparsers(dest="role", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1", help="interface to bind")
    common.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    common.add_argument("--log-level", type=at.log_level, default="INFO", help="logging level")

    d = DEFAULTS
    sch = esub.add_parser("scheduler", parents=[common], help="start a scheduler")
    sch.add_argument("--port", type=at.port, default=8786, help="port to listen on (0: any)")
    sch.add_argument(
        "--token-file", type=at.output_file,
        help="where to write a new token when none is set (default: .taskbench-token)",
    )  # fmt: skip
    sch.add_argument(
        "--address-file", type=at.output_file, help="write the bound address here once listening"
    )
    sch.add_argument("--validate", action="store_true", help="check invariants after each event")
    sch.add_argument(
        "--no-worker-timeout", type=at.positive_number, default=d.no_worker_timeout,
        help="seconds a task waits for a worker before it fails",
    )  # fmt: skip
    sch.add_argument(
        "--placement", default=d.placement, choices=sorted(PLACEMENTS), help="placement policy"
    )
    sch.add_argument("--no-stealing", action="store_true", help="turn work stealing off")
    sch.add_argument(
        "--balance-interval", type=at.positive_number, default=d.balance_interval,
        help="seconds between ticks",
    )  # fmt: skip
    sch.add_argument("--seed", type=int, default=d.seed, help="seed of the random placement")
    sch.add_argument(
        "--bandwidth", type=at.positive_number, default=d.bandwidth,
        help="bytes/s assumed for a transfer",
    )  # fmt: skip
    sch.add_argument(
        "--default-duration", type=at.non_negative_number, default=d.default_duration,
        help="seconds assumed for a task prefix never seen",
    )  # fmt: skip
    sch.set_defaults(func=cmd_scheduler)

    wk = esub.add_parser("worker", parents=[common], help="start a worker")
    wk.add_argument("address", type=at.address, help="scheduler address, e.g. tcp://10.0.0.5:8786")
    wk.add_argument("--nthreads", type=at.positive_int, default=1, help="threads that run tasks")
    wk.add_argument("--port", type=at.port, default=0, help="port to listen on (0: any)")
    wk.add_argument(
        "--reconnect-timeout", type=at.non_negative_number, default=0.0,
        help="seconds to keep trying when the scheduler goes away (default: exit at once)",
    )  # fmt: skip
    wk.add_argument(
        "--malloc-keep", type=at.non_negative_int, default=d.malloc_keep, metavar="BYTES",
        help="freed memory the process keeps to reuse, glibc only (0: the C library's policy; "
        f"default {d.malloc_keep})",
    )  # fmt: skip
    wk.add_argument(
        "--sizeof", choices=SIZEOF_MODES, default=None,
        help=f"result-size estimate (default: {SIZEOF_ENV}, else {d.sizeof})",
    )  # fmt: skip
    wk.set_defaults(func=cmd_worker)


def build_parser() -> argparse.ArgumentParser:
    """``taskbench engine …`` alone, as `LocalCluster` runs it (``python -m``)."""
    parser = at.ArgumentParser(prog="taskbench", description=__doc__)
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
