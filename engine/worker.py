"""A worker: threads that run tasks, the results they hold, and fetches from peers.

Policy: worker threads pop a ready heap directly (ordered by the scheduler's priority)
and push the dependents they unblock onto it themselves, so a chain never waits for the
event loop. Completions are appended to an outbox; the first one after a flush asks the
loop to flush, so the scheduler hears at once when the link is idle and in batches under
load. Inputs held elsewhere are fetched straight from the peers that hold them, one
request per peer for every key wanted from it at that moment.

Task code can reach the worker that runs it with `get_worker` (a thread-local: an
in-process cluster runs several workers in one process). The p2p shuffle (``engine.p2p``)
uses it, and adds two ops: ``shuffle-receive`` on the peer server, ``shuffle-plan`` and
``shuffle-drop`` from the scheduler.

Every task leaves a record: key, thread, ready (all inputs local), start, stop, result
size, the time spent sizing it, and each transfer it waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import threading
import time
import traceback
from typing import Any

from taskbench.engine import comm as _comm
from taskbench.engine.graph import execute
from taskbench.engine.sizeof import sizeof

logger = logging.getLogger("taskbench.engine.worker")

_EMPTY: dict = {}
_thread = threading.local()


def get_worker() -> Worker | None:
    """The worker whose thread runs the calling task; None outside a worker's threads."""
    return getattr(_thread, "worker", None)


class _Task:
    __slots__ = (
        "deps",
        "key",
        "kind",
        "missing",
        "priority",
        "ready",
        "report_start",
        "run",
        "state",
        "transfers",
    )

    def __init__(self, key: Any, priority: int, kind: int, run: object, report: bool) -> None:
        self.key = key
        self.priority = priority
        self.kind = kind
        self.run = run
        self.report_start = report
        self.deps: list = []
        self.missing = 0
        self.ready = 0.0
        self.state = "waiting"  # waiting | ready | executing | cancelled
        self.transfers: list | None = None


class Worker:
    """Runs tasks for one scheduler; serves its results to peers and clients."""

    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        token: str | None = None,
        listen: str = "tcp://127.0.0.1:0",
        heartbeat_interval: float = 1.0,
        reconnect_timeout: float = 0.0,
    ) -> None:
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.token = token if token is not None else _comm.get_token()
        self.listen_address = listen
        self.heartbeat_interval = heartbeat_interval
        self.reconnect_timeout = reconnect_timeout
        self.address = ""
        self.data: dict[Any, Any] = {}
        self.tasks: dict[Any, _Task] = {}
        self.waiting_local: dict[Any, list[_Task]] = {}
        self.waiting_fetch: dict[Any, list[_Task]] = {}
        self.fetch_queue: dict[str, set] = {}
        self.fetching: set[str] = set()
        self._fetch_tasks: set[asyncio.Task] = set()
        self.heap: list = []
        self.cond = threading.Condition(threading.Lock())
        self.outbox: list = []
        self.errors: list = []
        self.started: list = []
        self.flush_scheduled = False
        self.closing = False
        self.executed = 0
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _comm.Server | None = None
        self._sched: _comm.Comm | None = None
        self._pool: _comm.ConnectionPool | None = None
        self.shuffle: Any = None  # engine.p2p.ShuffleRuntime, made on first use
        self._done = asyncio.Event()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> str:
        self._loop = asyncio.get_running_loop()
        self._pool = _comm.ConnectionPool(self.token)
        self._server = _comm.Server(self._serve_peer, self.token)
        self.address = await self._server.listen(self.listen_address)
        for i in range(self.nthreads):
            t = threading.Thread(
                target=self._run_thread, args=(i,), name=f"taskbench-worker-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)
        await self._connect()
        self._main = asyncio.ensure_future(self._scheduler_loop())
        return self.address

    async def _connect(self) -> None:
        self._sched = await _comm.connect(self.scheduler_address, self.token)
        await self._sched.write(
            {
                "op": "register-worker",
                "address": self.address,
                "nthreads": self.nthreads,
                "pid": os.getpid(),
            }
        )
        reply, _ = await self._sched.read(timeout=30)
        if reply["op"] != "registered":
            raise ConnectionError(f"scheduler refused registration: {reply}")

    async def finished(self) -> None:
        await self._done.wait()

    async def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        with self.cond:
            self.cond.notify_all()
        if self._sched is not None:
            with contextlib.suppress(_comm.CommClosedError):
                self._sched.send({"op": "goodbye"})
            self._sched.close()
        if self._server is not None:
            self._server.close()
        if self._pool is not None:
            self._pool.close()
        if self.shuffle is not None:
            self.shuffle.reset(_comm.CommClosedError("the worker is closing"))
        main = getattr(self, "_main", None)
        if main is not None and main is not asyncio.current_task():
            main.cancel()
        self._done.set()

    # ------------------------------------------------------------ scheduler stream

    async def _scheduler_loop(self) -> None:
        heartbeat = asyncio.ensure_future(self._heartbeat())
        try:
            while not self.closing:
                try:
                    msg, frames = await self._sched.read()
                except _comm.CommClosedError:
                    if self.closing or not await self._reconnect():
                        break
                    continue
                op = msg["op"]
                if op == "compute":
                    self._compute(msg["tasks"], _comm.loads(frames))
                elif op == "free":
                    self._free(msg["keys"])
                elif op == "steal-request":
                    self._give_up(msg["keys"])
                elif op == "shuffle-plan" or op == "shuffle-drop":
                    from taskbench.engine.p2p import worker_runtime

                    worker_runtime(self).scheduler_message(msg)
                elif op == "close":
                    break
                else:
                    logger.warning("unknown op from scheduler: %s", op)
        finally:
            heartbeat.cancel()
            await self.close()

    async def _reconnect(self) -> bool:
        """Lost the scheduler: drop everything, and register afresh if it comes back in time."""
        self._reset()
        deadline = time.monotonic() + self.reconnect_timeout
        while time.monotonic() < deadline and not self.closing:
            try:
                await self._connect()
                return True
            except OSError:
                await asyncio.sleep(0.5)
        logger.warning("lost the scheduler at %s; closing", self.scheduler_address)
        return False

    def _reset(self) -> None:
        with self.cond:
            for t in self.tasks.values():
                t.state = "cancelled"
            self.tasks.clear()
            self.data.clear()
            self.heap.clear()
            self.waiting_local.clear()
            self.waiting_fetch.clear()
            self.fetch_queue.clear()
            self.outbox.clear()
            self.errors.clear()
            self.started.clear()
        if self.shuffle is not None:
            self.shuffle.reset()

    async def _heartbeat(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.heartbeat_interval)
            sched = self._sched
            if sched is not None and not sched.closed:
                sched.send({"op": "heartbeat", "executing": len(self.tasks)})

    def _compute(self, tasks: tuple, runs: list) -> None:
        """New tasks: ready now, waiting for a task running here, or fetched from peers."""
        now = time.time()
        data = self.data
        local = self.tasks
        fetch_needed = False
        with self.cond:
            heap = self.heap
            for (key, priority, kind, deps, report_start), run in zip(tasks, runs, strict=True):
                old = local.get(key)
                if old is not None:
                    if old.state == "cancelled":
                        old.state = "executing"  # freed then asked again while running
                    continue
                if key in data:
                    self._finish_known(key)
                    continue
                t = _Task(key, priority, kind, run, report_start)
                missing = 0
                for dep_key, _nbytes, holders in deps:
                    t.deps.append(dep_key)
                    if dep_key in data:
                        continue
                    missing += 1
                    if dep_key in local:
                        self.waiting_local.setdefault(dep_key, []).append(t)
                    elif holders:
                        waiters = self.waiting_fetch.get(dep_key)
                        if waiters is None:
                            self.waiting_fetch[dep_key] = [t]
                            self.fetch_queue.setdefault(holders[0], set()).add(dep_key)
                            fetch_needed = True
                        else:
                            waiters.append(t)
                    else:
                        missing = -1
                        self._report_missing(dep_key, "", key)
                        break
                if missing < 0:
                    continue
                local[key] = t
                t.missing = missing
                if missing == 0:
                    t.state = "ready"
                    t.ready = now
                    heapq.heappush(heap, (priority, next(self._seq), t))
            if heap:
                self.cond.notify(min(len(heap), self.nthreads))
        if fetch_needed:
            self._start_fetches()

    def _finish_known(self, key: Any) -> None:
        # asked to compute what we already hold: report it done at no cost
        self.outbox.append((key, -1, 0.0, 0.0, 0.0, sizeof(self.data[key]), 0.0, None))
        self._schedule_flush()

    def _free(self, keys: tuple) -> None:
        with self.cond:
            for key in keys:
                self.data.pop(key, None)
                t = self.tasks.pop(key, None)
                if t is not None:
                    self._cancel(t)

    def _cancel(self, t: _Task) -> None:
        # caller holds self.cond and has removed t from self.tasks
        t.state = "cancelled"
        for dep in t.deps:
            for table in (self.waiting_local, self.waiting_fetch):
                waiters = table.get(dep)
                if waiters and t in waiters:
                    waiters.remove(t)
                    if not waiters:
                        del table[dep]

    def _give_up(self, keys: tuple) -> None:
        """A steal request: hand back each task not started and with nothing waiting on it here."""
        stolen = []
        with self.cond:
            for key in keys:
                t = self.tasks.get(key)
                ok = (
                    t is not None
                    and t.state in ("ready", "waiting")
                    and not self.waiting_local.get(key)
                )
                if ok:
                    del self.tasks[key]
                    self._cancel(t)
                stolen.append(ok)
        with contextlib.suppress(_comm.CommClosedError):
            self._sched.send({"op": "steal-response", "keys": keys, "stolen": stolen})

    def _report_missing(self, dep_key: Any, source: str, task_key: Any) -> None:
        self.errors.append(
            {"op": "missing-data", "key": dep_key, "source": source, "task": task_key}
        )
        self._schedule_flush()

    # ------------------------------------------------------------ threads

    def _run_thread(self, thread_index: int) -> None:
        _thread.worker = self
        cond = self.cond
        heap = self.heap
        data = self.data
        tasks = self.tasks
        waiting_local = self.waiting_local
        outbox = self.outbox
        pop = heapq.heappop
        push = heapq.heappush
        clock = time.time
        seq = self._seq
        call_soon = self._loop.call_soon_threadsafe
        flush = self._flush
        wake_loop = False  # a completion is waiting for the loop to send it
        while True:
            with cond:
                while not heap:
                    if wake_loop:
                        call_soon(flush)
                        wake_loop = False
                    if self.closing:
                        return
                    cond.wait()
                t = pop(heap)[2]
                if t.state != "ready":
                    continue
                t.state = "executing"
                values = {k: data[k] for k in t.deps} if t.deps else _EMPTY
            start = clock()
            if t.report_start:
                with cond:
                    self.started.append((t.key, start))
                    if not self.flush_scheduled:
                        self.flush_scheduled = True
                        wake_loop = True
            if wake_loop:
                # woken only now, so the loop's send does not delay this task's start
                call_soon(flush)
                wake_loop = False
            try:
                result = execute(t.run, t.kind, values)
                failed = None
            except BaseException as e:
                failed = e
                result = None
            stop = clock()
            del values
            nbytes = sizeof(result) if failed is None else 0
            sized = clock()
            with cond:
                self.executed += 1
                if t.state == "cancelled":
                    continue
                key = t.key
                del tasks[key]
                if failed is None:
                    data[key] = result
                    unblocked = waiting_local.pop(key, None)
                    if unblocked:
                        for d in unblocked:
                            d.missing -= 1
                            if d.missing == 0 and d.state == "waiting":
                                d.state = "ready"
                                d.ready = sized
                                push(heap, (d.priority, next(seq), d))
                        if len(heap) > 1:
                            cond.notify(len(heap) - 1)
                    outbox.append(
                        (key, thread_index, t.ready, start, stop, nbytes, sized - stop, t.transfers)
                    )
                else:
                    self.errors.append(self._error_message(t, failed, thread_index, start, stop))
                if not self.flush_scheduled:
                    self.flush_scheduled = True
                    wake_loop = True
            result = None

    def _error_message(self, t: _Task, exc: BaseException, thread: int, start: float, stop: float):
        try:
            blob = _comm.dumps(exc)
            frames = blob if len(blob) == 1 else None
        except _comm.SerializationError:
            frames = None
        tb = "".join(traceback.format_exception(exc))
        return {
            "op": "task-erred",
            "key": t.key,
            "exception": frames[0] if frames else None,
            "text": f"{type(exc).__name__}: {exc}",
            "traceback": tb,
            "record": (t.key, thread, t.ready, start, stop, 0, 0.0, t.transfers),
        }

    def _schedule_flush(self) -> None:
        # caller holds self.cond
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self.cond:
            self.flush_scheduled = False
            # threads hold on to these lists: empty them in place
            done = self.outbox[:]
            self.outbox.clear()
            errors = self.errors[:]
            self.errors.clear()
            started = self.started[:]
            self.started.clear()
        sched = self._sched
        if sched is None or sched.closed:
            return
        if started:
            sched.send({"op": "task-started", "tasks": started})
        if done:
            sched.send({"op": "task-finished", "records": done})
        for msg in errors:
            sched.send(msg)

    # ------------------------------------------------------------ peers

    def _start_fetches(self) -> None:
        for peer in list(self.fetch_queue):
            if peer not in self.fetching:
                self.fetching.add(peer)
                task = asyncio.ensure_future(self._fetch_from(peer))
                self._fetch_tasks.add(task)
                task.add_done_callback(self._fetch_tasks.discard)

    async def _fetch_from(self, peer: str) -> None:
        """Fetch every key queued for ``peer``; keep going while more keys queue up."""
        try:
            while True:
                with self.cond:
                    keys = self.fetch_queue.pop(peer, None)
                if not keys:
                    return
                keys = list(keys)
                start = time.time()
                try:
                    got = await self._get_data(peer, keys)
                except (OSError, _comm.RemoteError, _comm.CommClosedError) as e:
                    logger.info("fetch of %d keys from %s failed: %s", len(keys), peer, e)
                    got = {}
                stop = time.time()
                self._fetched(peer, keys, got, start, stop)
        finally:
            self.fetching.discard(peer)
            if self.fetch_queue.get(peer):
                self._start_fetches()

    async def _get_data(self, peer: str, keys: list) -> dict:
        comm = await self._pool.get(peer)
        try:
            _reply, frames = await comm.request({"op": "get-data", "keys": keys})
        except BaseException:
            comm.abort()
            raise
        self._pool.put(comm)
        values = _comm.loads(frames) if frames else {}
        return values

    def _fetched(self, peer: str, keys: list, got: dict, start: float, stop: float) -> None:
        now = time.time()
        replicas = []
        with self.cond:
            for key in keys:
                waiters = self.waiting_fetch.pop(key, [])
                if key not in got:
                    for t in waiters:
                        if self.tasks.get(t.key) is t:
                            del self.tasks[t.key]
                            t.state = "cancelled"
                        self._report_missing(key, peer, t.key)
                    continue
                value = got[key]
                self.data[key] = value
                nbytes = sizeof(value)
                replicas.append((key, nbytes))
                for t in waiters:
                    if t.state != "waiting":
                        continue
                    if t.transfers is None:
                        t.transfers = []
                    t.transfers.append((_key_name(key), peer, nbytes, start, stop))
                    t.missing -= 1
                    if t.missing == 0:
                        t.state = "ready"
                        t.ready = now
                        heapq.heappush(self.heap, (t.priority, next(self._seq), t))
            if self.heap:
                self.cond.notify(min(len(self.heap), self.nthreads))
        if replicas and self._sched is not None and not self._sched.closed:
            # the scheduler counts these copies for placement, and frees them with the rest
            self._sched.send({"op": "add-replicas", "keys": replicas})

    async def _serve_peer(self, comm: _comm.Comm) -> None:
        """Answer ``get-data`` and ``shuffle-receive`` from peers and clients on one connection."""
        while True:
            msg, frames = await comm.read()
            if msg["op"] == "shuffle-receive":
                from taskbench.engine.p2p import worker_runtime

                comm.send(worker_runtime(self).receive(msg, frames))
                continue
            if msg["op"] != "get-data":
                comm.send({"op": "error", "message": f"unknown op {msg['op']!r}"})
                continue
            with self.cond:
                values = {k: self.data[k] for k in msg["keys"] if k in self.data}
            try:
                frames = _comm.dumps(values)
            except _comm.SerializationError:
                comm.send({"op": "error", "message": _unpicklable(values)})
                continue
            comm.send({"op": "data"}, frames)


def _unpicklable(values: dict) -> str:
    for key, value in values.items():
        try:
            _comm.dumps(value)
        except _comm.SerializationError as e:
            return f"result of {key!r} ({type(value).__name__}) cannot be sent: {e}"
    return "results cannot be pickled"


def _key_name(key: Any) -> str:
    return key if isinstance(key, str) else str(key)


async def run_worker(scheduler_address: str, **kwargs: Any) -> None:
    """Start a worker and serve until the scheduler is gone or it is closed."""
    w = Worker(scheduler_address, **kwargs)
    await w.start()
    with contextlib.suppress(asyncio.CancelledError):
        await w.finished()
