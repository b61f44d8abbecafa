"""A worker: the shell of threads, sockets and clock around ``WorkerTasks``.

The task rules live in ``engine.worker_state``; this module runs them. Worker threads
pop the ready heap directly and unblock dependents themselves, so a chain never waits
for the event loop; a thread finishes a task and takes the next in one hold of the lock.
The first completion after a flush asks the loop to flush, so the scheduler hears at once
when the link is idle and in batches under load. Inputs held elsewhere are fetched
straight from the peers that hold them, one request per peer for every key wanted from
it at that moment.

Task code can reach the worker that runs it with `get_worker` (a thread-local: an
in-process cluster runs several workers in one process). The p2p shuffle (``engine.dataframe.p2p``)
uses it, and adds two ops: ``shuffle-receive`` on the peer server, ``shuffle-plan`` and
``shuffle-drop`` from the scheduler.

Every task leaves a ``WorkerRecord``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import threading
import time
import traceback
from typing import Any

from taskbench.engine import comm as _comm
from taskbench.engine.graph import execute
from taskbench.engine.shuffle_runtime import worker_runtime
from taskbench.engine.sizeof import sizeof
from taskbench.engine.worker_state import WorkerTasks

logger = logging.getLogger("taskbench.engine.worker")


class RegistrationRefused(ConnectionError):
    """The scheduler refused this worker; the message says why."""


_EMPTY: dict = {}
_thread = threading.local()


def get_worker() -> Worker | None:
    """The worker whose thread runs the calling task; None outside a worker's threads."""
    return getattr(_thread, "worker", None)


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
        self.state = WorkerTasks(sizeof)  # guarded by self.cond
        self.data = self.state.data  # the results held here
        self.fetching: set[str] = set()  # peers a fetch loop runs for
        self._fetch_tasks: set[asyncio.Task] = set()
        self.cond = threading.Condition(threading.Lock())
        self.flush_scheduled = False
        self.closing = False
        self.executed = 0
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _comm.Server | None = None
        self._sched: _comm.Comm | None = None
        self._pool: _comm.ConnectionPool | None = None
        self.shuffle: Any = None  # engine.shuffle_runtime.ShuffleRuntime, made on first use
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
        try:
            await self._connect()
        except BaseException:
            await self.close()
            raise
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
                "protocol": _comm.PROTOCOL,
            }
        )
        reply, _ = await self._sched.read(timeout=30)
        if reply["op"] != "registered":
            why = reply.get("message", reply["op"])
            raise RegistrationRefused(f"the scheduler refused this worker: {why}")

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
            except RegistrationRefused as e:
                logger.warning("%s; closing", e)
                return False
            except OSError:
                await asyncio.sleep(0.5)
        logger.warning("lost the scheduler at %s; closing", self.scheduler_address)
        return False

    def _reset(self) -> None:
        with self.cond:
            self.state.reset()
        if self.shuffle is not None:
            self.shuffle.reset()

    async def _heartbeat(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.heartbeat_interval)
            sched = self._sched
            if sched is not None and not sched.closed:
                sched.send({"op": "heartbeat", "executing": len(self.state.tasks)})

    def _compute(self, tasks: tuple, runs: list) -> None:
        now = time.time()
        state = self.state
        with self.cond:
            fetch_needed = state.compute(tasks, runs, now)
            if state.heap:
                self.cond.notify(min(len(state.heap), self.nthreads))
            if state.records or state.messages:
                self._schedule_flush()
        if fetch_needed:
            self._start_fetches()

    def _free(self, keys: tuple) -> None:
        with self.cond:
            self.state.free(keys)

    def _give_up(self, keys: tuple) -> None:
        with self.cond:
            msg = self.state.give_up(keys)
        with contextlib.suppress(_comm.CommClosedError):
            self._sched.send(msg)

    # ------------------------------------------------------------ threads

    def _run_thread(self, thread_index: int) -> None:
        _thread.worker = self
        cond = self.cond
        state = self.state
        heap = state.heap
        data = state.data
        next_ready = state.next_ready
        finished = state.task_finished
        clock = time.time
        call_soon = self._loop.call_soon_threadsafe
        flush = self._flush
        wake_loop = False  # a completion is waiting for the loop to send it
        t = None  # the next task, when taken in the same hold of the lock as a finish
        while True:
            if t is None:
                with cond:
                    t = next_ready()
                    while t is None:
                        if wake_loop:
                            call_soon(flush)
                            wake_loop = False
                        if self.closing:
                            return
                        cond.wait()
                        t = next_ready()
                    values = {k: data[k] for k in t.deps} if t.deps else _EMPTY
            start = clock()
            if t.report_start:
                with cond:
                    state.task_started(t, start)
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
            if failed is None:
                nbytes = sizeof(result)
                sized = clock()
                with cond:
                    self.executed += 1
                    unblocked = finished(t, thread_index, start, stop, result, nbytes, sized)
                    if not self.flush_scheduled:
                        self.flush_scheduled = True
                        wake_loop = True
                    # one lock hold per task: take the next one now
                    t = next_ready()
                    if t is not None:
                        if unblocked and heap:
                            cond.notify(len(heap))  # other threads, for the rest
                        values = {k: data[k] for k in t.deps} if t.deps else _EMPTY
            else:
                error = _error_fields(failed)
                with cond:
                    self.executed += 1
                    state.task_erred(t, thread_index, start, stop, error)
                    if not self.flush_scheduled:
                        self.flush_scheduled = True
                        wake_loop = True
                t = None
            result = failed = None

    def _schedule_flush(self) -> None:
        # caller holds self.cond
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self.cond:
            self.flush_scheduled = False
            started, done, errors = self.state.drain()
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
        for peer in list(self.state.fetch_queue):
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
                    keys = self.state.take_fetches(peer)
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
            if self.state.fetch_queue.get(peer):
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
        sized = {key: (value, sizeof(value)) for key, value in got.items()}
        now = time.time()
        state = self.state
        with self.cond:
            replicas = state.fetched(peer, keys, sized, start, stop, now)
            if state.heap:
                self.cond.notify(min(len(state.heap), self.nthreads))
            if state.messages:
                self._schedule_flush()
        if replicas and self._sched is not None and not self._sched.closed:
            # the scheduler counts these copies for placement, and frees them with the rest
            self._sched.send(replicas)

    async def _serve_peer(self, comm: _comm.Comm) -> None:
        """Answer ``get-data`` and ``shuffle-receive`` from peers and clients on one connection."""
        while True:
            msg, frames = await comm.read()
            if msg["op"] == "shuffle-receive":
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


def _error_fields(exc: BaseException) -> dict[str, Any]:
    """A task's exception as the fields of ``task-erred`` (pickled if it can be)."""
    try:
        blob = _comm.dumps(exc)
        frames = blob if len(blob) == 1 else None
    except _comm.SerializationError:
        frames = None
    return {
        "exception": frames[0] if frames else None,
        "text": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


#: blocks this large or larger are mapped apart (glibc's own ceiling for the setting)
MMAP_THRESHOLD = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def keep_freed_memory(nbytes: int) -> bool:
    """Have the process's malloc (glibc) serve blocks under `MMAP_THRESHOLD` from its heaps and
    keep up to ``nbytes`` of freed memory there.

    A task's column-sized temporaries then reuse pages the last task touched. By default
    glibc maps blocks of some MiB afresh and returns them when freed, and every first touch
    of a page is a fault: measured here at ~2.5 µs a page, 0.6 ms a MB, a third of some
    tasks. The cost is resident memory held after a peak, up to ``nbytes`` a heap. False
    (nothing changed) when ``nbytes`` is 0 or the C library has no ``mallopt``.
    """
    if nbytes <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError):
        return False
    keep = min(nbytes, (1 << 31) - 1)  # mallopt takes a C int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, min(MMAP_THRESHOLD, keep)) and mallopt(_M_TRIM_THRESHOLD, keep)
    )


async def run_worker(scheduler_address: str, **kwargs: Any) -> None:
    """Start a worker and serve until the scheduler is gone or it is closed."""
    w = Worker(scheduler_address, **kwargs)
    await w.start()
    with contextlib.suppress(asyncio.CancelledError):
        await w.finished()
