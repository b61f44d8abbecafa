"""One engine process of a ``taskbench compare`` run: start, load, then answer on request.

The runner (:mod:`comparisons.compare`) starts ``python -m taskbench.comparisons.session``
in a process group of its own, pinned to the run's cores. The process starts the engine and,
in ``memory`` mode, loads the dataset into it; each is timed apart. Then it reads one JSON
request per line on stdin (``{"query": "q01", "run": 1}``, or ``{"stop": true}``) and
answers each with one JSON line on the protocol pipe: status, seconds, peak RSS of its
process tree during the query, and the path of the normalised answer it pickled. In ``scan``
mode every query loads the files again first, and that load is part of the query's time.

Everything the engine prints goes to stderr (the run's log): the protocol has its own pipe,
so a JVM writing to stdout cannot corrupt it.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from taskbench.comparisons.bench.memory import peak_rss_bytes, reset_peak_rss
from taskbench.comparisons.check import answer, describe
from taskbench.comparisons.solutions import load_config, load_solution


def pin_cores(cores: int) -> list[int]:
    """Restrict this process (and all it starts later) to its first ``cores`` usable CPUs."""
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[:cores]
    os.sched_setaffinity(0, chosen)
    return chosen


class Server:
    """One started engine: answers requests, loading the data first in ``scan`` mode."""

    def __init__(self, args: argparse.Namespace, send: Any) -> None:
        self.args, self.send = args, send
        self.solution = load_solution(args.engine)
        config = load_config(args.engine, cores=args.cores).for_mode(args.mode)
        if args.spark_master and args.engine == "spark":
            config = config.with_value(
                "session", "spark.master", args.spark_master, "given with --spark-master"
            )
        if args.engine_scheduler and args.engine == "engine":
            config = config.with_value(
                "cluster", "address", args.engine_scheduler, "given with --engine-scheduler"
            )
        self.config = config
        self.session: Any = None
        self.handle: Any = None  # the loaded data, in memory mode

    def start(self) -> bool:
        """Start the engine (and load the data in memory mode); False if that failed."""
        steps = [("start", self._start)]
        if self.args.mode == "memory":
            steps.append(("load", self._load))
        for event, step in steps:
            t0 = time.perf_counter()
            try:
                extra = step()
            except Exception as exc:
                traceback.print_exc()
                self.send(event=event, status="error", detail=describe(exc))
                return False
            self.send(event=event, seconds=time.perf_counter() - t0, **extra)
        return True

    def _start(self) -> dict[str, Any]:
        cpus = pin_cores(self.args.cores)
        self.session = self.solution.start(self.config)
        return {"version": self.solution.version(), "cpus": cpus}

    def _load(self) -> dict[str, Any]:
        self.handle = self.solution.load(self.session, self.args.data, self.config)
        return {}

    def query(self, q: str, run: int, stream: str | None = None) -> dict[str, Any]:
        """Answer one request: status, seconds, peak RSS, the pickled answer's path."""
        reset_peak_rss()
        handle, load_seconds = self.handle, 0.0
        if handle is None:  # scan: every query starts from the files
            t0 = time.perf_counter()
            try:
                handle = self.solution.load(self.session, self.args.data, self.config)
            except Exception as exc:
                traceback.print_exc()
                return {"status": "error", "detail": "load: " + describe(exc)}
            load_seconds = time.perf_counter() - t0
        recording = stream is not None and hasattr(self.solution, "stream_position")
        mark = self.solution.stream_position(handle) if recording else None
        try:
            got = answer(self.solution, handle, q)
        finally:
            if handle is not self.handle and hasattr(self.solution, "unload"):
                self.solution.unload(handle)
        result: dict[str, Any] = {"status": got.status, "detail": got.detail}
        if got.seconds is not None:
            result["seconds"] = got.seconds + load_seconds
            result["load_seconds"] = load_seconds
        result["peak_rss_bytes"] = peak_rss_bytes()
        if got.frame is not None:
            path = Path(self.args.answers) / f"{self.args.engine}-{self.args.mode}-{q}-{run}.pkl"
            with open(path, "wb") as f:
                pickle.dump(got.frame, f)
            result["answer"] = str(path)
        if recording and got.status == "answer":
            title = f"{self.args.engine} {q} ({self.args.mode} mode), run {run}"
            self.solution.write_task_stream(handle, mark, stream, title)
            result["stream"] = stream
        return result

    def stop(self) -> None:
        if self.session is not None:
            self.solution.stop(self.session)


def serve(args: argparse.Namespace, reply: Any) -> int:
    """Start, load, then answer requests until ``stop`` or the end of stdin."""

    def send(**fields: Any) -> None:
        reply.write(json.dumps(fields) + "\n")
        reply.flush()

    try:
        server = Server(args, send)
    except Exception as exc:
        traceback.print_exc()
        send(event="start", status="error", detail=describe(exc))
        return 1
    try:
        if not server.start():
            return 1
        for line in sys.stdin:
            request = json.loads(line)
            if request.get("stop"):
                break
            result = server.query(request["query"], request["run"], request.get("stream"))
            send(event="query", **result)
        return 0
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """The engine process's entry point; the protocol goes to fd ``--reply-fd``."""
    parser = argparse.ArgumentParser(prog="python -m taskbench.comparisons.session")
    parser.add_argument("--engine", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--cores", type=int, required=True)
    parser.add_argument("--answers", required=True)
    parser.add_argument("--reply-fd", type=int, required=True)
    parser.add_argument("--spark-master")
    parser.add_argument("--engine-scheduler")
    args = parser.parse_args(argv)
    reply = os.fdopen(args.reply_fd, "w")
    os.dup2(2, 1)  # whatever the engine prints (a JVM too) goes to the log, not the protocol
    sys.stdout = sys.stderr
    with reply:
        return serve(args, reply)


if __name__ == "__main__":
    sys.exit(main())
