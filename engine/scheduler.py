"""The scheduler: a thin I/O shell that feeds ``SchedulerState`` and sends what it says.

It owns the sockets and the clock: worker streams, client streams, heartbeats, the wait
for a worker when none is left, and the task stream (one record per task, as workers
report them).

Nothing a peer sends may take the scheduler down. A registration is checked before it
reaches the state (`registration_problem`) and refused with a reason the worker prints. A
message that fails while it is handled is logged, and closes that peer's connection only;
the periodic loops log a failed tick and go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any

from taskbench.engine import comm as _comm
from taskbench.engine.graph import decode_graph, key_prefix, paused_gc
from taskbench.engine.options import DEFAULTS, EngineOptions
from taskbench.engine.state import Msgs, SchedulerState
from taskbench.engine.stream import RecordBuffer
from taskbench.engine.worker_state import WorkerRecord

logger = logging.getLogger("taskbench.engine.scheduler")


def registration_problem(msg: dict, scheme: str, registered: Collection[str]) -> str | None:
    """Why a ``register-worker`` message is refused (None if it is fine).

    ``scheme`` is the scheduler's own ("tcp" or "inproc"): a worker must be reachable the
    same way. ``registered`` holds the addresses of the workers already here.
    """
    protocol = msg.get("protocol")
    if protocol != _comm.PROTOCOL or type(protocol) is not int:
        if protocol is None:
            return (
                f"the worker sent no protocol version (this scheduler speaks protocol "
                f"{_comm.PROTOCOL}); is its taskbench older than the scheduler's?"
            )
        return (
            f"the worker speaks protocol {protocol!r}, this scheduler protocol "
            f"{_comm.PROTOCOL}: run the same taskbench version on both"
        )
    address = msg.get("address")
    if type(address) is not str:
        return f"the worker address {address!r} is not a string"
    try:
        their_scheme, host, port = _comm.parse_address(address)
    except ValueError:
        their_scheme, host, port = "", "", 0
    if their_scheme != scheme or not host or (scheme == "tcp" and not 1 <= port <= 65535):
        form = "tcp://host:port with a port 1-65535" if scheme == "tcp" else f"{scheme}://name"
        return f"the worker address {address!r:.100} is not {form}"
    nthreads = msg.get("nthreads")
    if type(nthreads) is not int or nthreads < 1:
        return f"nthreads must be an integer >= 1, not {nthreads!r:.40}"
    memory = msg.get("memory_limit")
    if memory is not None and (type(memory) not in (int, float) or not memory >= 0):
        return f"memory_limit must be a number of bytes >= 0, not {memory!r:.40}"
    pid = msg.get("pid", 0)
    if type(pid) is not int or pid < 0:
        return f"pid must be an integer >= 0, not {pid!r:.40}"
    if address in registered:
        return f"a worker at {address} is already registered"
    return None


class Scheduler:
    """Serves workers and clients on one address."""

    def __init__(
        self,
        *,
        token: str | None = None,
        options: EngineOptions = DEFAULTS,
        heartbeat_timeout: float = 60.0,
        stream_length: int = 1_000_000,
    ) -> None:
        self.token = token if token is not None else _comm.get_token()
        self.state = SchedulerState(options)
        self.balance_interval = options.balance_interval
        self.no_worker_timeout = options.no_worker_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.workers: dict[str, _comm.Comm] = {}
        self.worker_pids: dict[str, int] = {}
        self.graph_updates: deque[tuple[int, float]] = deque(maxlen=100)
        self.clients: dict[str, _comm.Comm] = {}
        self.last_seen: dict[str, float] = {}
        self.stream = RecordBuffer(stream_length)
        self.address = ""
        self._server = _comm.Server(self._handle, self.token)
        self._stimulus = itertools.count()
        self._no_worker_timer: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.Task | None = None
        self._workers_changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    async def start(self, address: str = "tcp://127.0.0.1:0") -> str:
        self.address = await self._server.listen(address)
        self._watchdog = asyncio.ensure_future(self._watch_heartbeats())
        self._balancer = asyncio.ensure_future(self._balance_loop())
        return self.address

    def close(self) -> None:
        for comm in self.workers.values():
            with contextlib.suppress(_comm.CommClosedError):
                comm.send({"op": "close"})
        self._server.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._balancer.cancel()

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a background task failed", exc_info=task.exception())

    def _sid(self, what: str) -> str:
        return f"{what}-{next(self._stimulus)}"

    # ------------------------------------------------------------ routing

    async def _handle(self, comm: _comm.Comm) -> None:
        """Route a connection by its first message; `_comm.Server` logs what escapes."""
        msg, _ = await comm.read()
        op = msg["op"]
        if op == "register-worker":
            await self._worker_stream(comm, msg)
        elif op == "register-client":
            client = msg.get("client")
            if type(client) is not str or not client or client in self.clients:
                await self._refuse(comm, "client", f"client id {client!r:.80} is invalid or taken")
                return
            await self._client_stream(comm, client)
        elif op == "identity":
            comm.send({"op": "identity", **self.identity()})
            await comm.drain()
        else:
            logger.warning("first message from %s has unknown op %r", comm.peer, op)

    async def _refuse(self, comm: _comm.Comm, who: str, reason: str) -> None:
        """Tell the peer why it is refused (the caller then closes the connection)."""
        logger.warning("refused %s registration from %s: %s", who, comm.peer, reason)
        with contextlib.suppress(_comm.CommClosedError):
            await comm.write({"op": "refused", "message": reason})

    def identity(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "workers": {a: ws.nthreads for a, ws in self.state.workers.items()},
            "pids": dict(self.worker_pids),
            "tasks": len(self.state.tasks),
            # (tasks in the graph, seconds from its message to the compute messages)
            "graph_updates": list(self.graph_updates),
        }

    def _send(self, msgs: tuple[Msgs, Msgs]) -> None:
        worker_msgs, client_msgs = msgs
        for addr, batch in worker_msgs.items():
            comm = self.workers.get(addr)
            if comm is None or comm.closed:
                continue
            for msg in batch:
                runs = msg.pop("runs", None)
                try:
                    if runs is None:
                        comm.send(msg)
                    else:
                        comm.send(msg, _comm.dumps_code(runs))
                except _comm.CommClosedError:
                    break
        for client, batch in client_msgs.items():
            comm = self.clients.get(client)
            if comm is None or comm.closed:
                continue
            for msg in batch:
                comm.send(msg)
        self._check_unrunnable()

    # ------------------------------------------------------------ workers

    async def _worker_stream(self, comm: _comm.Comm, msg: dict) -> None:
        state = self.state
        scheme = self.address.partition("://")[0]
        problem = registration_problem(msg, scheme, self.workers.keys() | state.workers.keys())
        if problem is not None:
            await self._refuse(comm, "worker", problem)
            return
        address = msg["address"]
        self.workers[address] = comm
        self.worker_pids[address] = msg.get("pid", 0)
        self.last_seen[address] = time.monotonic()
        comm.send({"op": "registered"})
        self._send(state.add_worker(address, msg["nthreads"], stimulus_id=self._sid("add-worker")))
        self._workers_changed.set()
        logger.info("worker %s joined with %d threads", address, msg["nthreads"])
        op = ""
        try:
            while True:
                msg, _frames = await comm.read()
                self.last_seen[address] = time.monotonic()
                op = msg["op"]
                if op == "task-finished":
                    done = self._record(address, msg["records"], "memory")
                    self._send(
                        state.tasks_finished(address, done, stimulus_id=self._sid("finished"))
                    )
                elif op == "task-erred":
                    self._record(address, [msg.pop("record")], "erred")
                    key = msg.pop("key")
                    msg.pop("op")
                    self._send(state.task_erred(address, key, msg, stimulus_id=self._sid("erred")))
                elif op == "missing-data":
                    self._send(
                        state.missing_data(
                            address,
                            msg["key"],
                            msg["source"],
                            msg["task"],
                            stimulus_id=self._sid("missing-data"),
                        )
                    )
                elif op == "task-started":
                    self._send(
                        state.task_started(address, msg["tasks"], stimulus_id=self._sid("started"))
                    )
                elif op == "steal-response":
                    for key, stolen in zip(msg["keys"], msg["stolen"], strict=True):
                        self._send(
                            state.steal_response(
                                address, key, stolen, stimulus_id=self._sid("steal-response")
                            )
                        )
                elif op == "shuffle-request":
                    self._send(
                        state.shuffle_request(address, msg, stimulus_id=self._sid("shuffle"))
                    )
                elif op == "add-replicas":
                    self._send(
                        state.add_replicas(address, msg["keys"], stimulus_id=self._sid("replicas"))
                    )
                elif op == "heartbeat":
                    pass
                elif op == "goodbye":
                    self._remove_worker(address, "it closed", expected=True)
                    return
                elif op == "register-worker":
                    why = f"this connection already registered the worker at {address}"
                    await self._refuse(comm, "worker", why)
                    self._remove_worker(address, "it registered twice")
                    return
                else:
                    logger.warning("unknown op %r from worker %s", op, address)
        except _comm.CommClosedError:
            pass
        except Exception:
            logger.exception("%r from worker %s failed; dropping the worker", op, address)
        finally:
            self._remove_worker(address, "connection closed")

    def _remove_worker(self, address: str, why: str, expected: bool = False) -> None:
        comm = self.workers.pop(address, None)
        if comm is None:
            return
        comm.abort()
        self.worker_pids.pop(address, None)
        self.last_seen.pop(address, None)
        level = logging.INFO if expected else logging.WARNING
        logger.log(level, "worker %s left: %s", address, why)
        self._send(self.state.remove_worker(address, stimulus_id=self._sid("remove-worker")))
        self._workers_changed.set()

    def _record(self, address: str, records: Sequence[WorkerRecord], status: str) -> list:
        """Keep the records of tasks that ran; returns (key, nbytes, duration) of each.

        Records come off the wire as plain tuples in ``WorkerRecord``'s field order.
        """
        tasks = self.state.tasks
        done, ran, prefixes, placed = [], [], [], []
        for r in records:
            key, thread, _ready, start, stop, nbytes, _sizeof, _transfers = r
            done.append((key, nbytes, stop - start))
            if thread >= 0:  # -1: the result was held here, nothing ran
                ran.append(r)
                ts = tasks.get(key)
                prefixes.append(ts.prefix if ts is not None else key_prefix(key))
                placed.append(ts.placed_by if ts is not None else None)
        self.stream.append(address, status, prefixes, ran, placed)
        return done

    async def _balance_loop(self) -> None:
        """Every ``balance_interval`` seconds, while there is work, a ``balance`` tick."""
        while True:
            await asyncio.sleep(self.balance_interval)
            try:
                if any(ws.processing for ws in self.state.worker_list):
                    self._send(self.state.balance(time.time(), stimulus_id=self._sid("balance")))
            except Exception:
                logger.exception("a balance tick failed")

    async def _watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.heartbeat_timeout / 4))
            now = time.monotonic()
            for address, seen in list(self.last_seen.items()):
                if now - seen > self.heartbeat_timeout:
                    try:
                        self._remove_worker(address, f"silent for {now - seen:.0f} s")
                    except Exception:
                        logger.exception("removing the silent worker %s failed", address)

    def _check_unrunnable(self) -> None:
        """Tasks with no worker to run on fail after ``no_worker_timeout`` unless one joins."""
        waiting = bool(self.state.unrunnable) and not self.state.workers
        if waiting and self._no_worker_timer is None:
            self._no_worker_timer = asyncio.get_running_loop().call_later(
                self.no_worker_timeout, self._fail_unrunnable
            )
        elif not waiting and self._no_worker_timer is not None:
            self._no_worker_timer.cancel()
            self._no_worker_timer = None

    def _fail_unrunnable(self) -> None:
        self._no_worker_timer = None
        if self.state.workers:
            return
        n = len(self.state.unrunnable)
        reason = (
            f"no worker was available for {self.no_worker_timeout:g} s; "
            f"{n} task(s) could not run (all workers died or none joined)"
        )
        self._send(self.state.fail_unrunnable(reason, stimulus_id=self._sid("no-worker-timeout")))

    # ------------------------------------------------------------ clients

    async def _client_stream(self, comm: _comm.Comm, client: str) -> None:
        state = self.state
        self.clients[client] = comm
        state.add_client(client)
        comm.send({"op": "registered", "workers": len(state.workers)})
        op = ""
        try:
            while True:
                msg, frames = await comm.read()
                op = msg["op"]
                if op == "update-graph":
                    self._update_graph(comm, client, msg, frames)
                elif op == "release-keys":
                    self._send(
                        state.release_keys(client, msg["keys"], stimulus_id=self._sid("release"))
                    )
                elif op == "gather-failed":
                    for key in msg["keys"]:
                        self._send(
                            state.missing_data(
                                "", key, msg["worker"], None, stimulus_id=self._sid("gather-failed")
                            )
                        )
                    comm.send(
                        {"op": "who-has", "who_has": list(state.who_has(msg["keys"]).items())}
                    )
                elif op == "task-stream":
                    comm.send({"op": "task-stream", **self._stream_since(msg["start"])})
                elif op == "identity":
                    comm.send({"op": "identity", **self.identity()})
                elif op == "wait-for-workers":
                    self._background(self._wait_for_workers(comm, msg["n"], msg["timeout"]))
                elif op == "close-client":
                    break
                else:
                    comm.send({"op": "error", "message": f"unknown op {op!r}"})
        except _comm.CommClosedError:
            pass
        except Exception as e:
            logger.exception("%r from client %s failed; closing its connection", op, client)
            if op == "update-graph":
                why = f"the scheduler failed on this graph ({type(e).__name__}: {e}); see its log"
                keys = msg.get("keys")
                with contextlib.suppress(_comm.CommClosedError):
                    if isinstance(keys, list | tuple):
                        await comm.write({"op": "graph-refused", "message": why, "keys": keys})
        finally:
            self.clients.pop(client, None)
            self._send(state.remove_client(client, stimulus_id=self._sid("remove-client")))

    def _stream_since(self, start: int) -> dict[str, Any]:
        """Records from index ``start`` on (none for a negative start: just the end index)."""
        rows = self.stream.rows(start) if start >= 0 else []
        return {"rows": rows, "end": self.stream.count, "first": self.stream.first}

    def _update_graph(self, comm: _comm.Comm, client: str, msg: dict, frames: list) -> None:
        start = time.perf_counter()
        with paused_gc():
            n = self._apply_graph(comm, client, msg, frames)
        if n:
            self.graph_updates.append((n, time.perf_counter() - start))

    def _apply_graph(self, comm: _comm.Comm, client: str, msg: dict, frames: list) -> int:
        """Decode and apply one graph; the number of its tasks (0 if refused)."""
        try:
            payload = _comm.loads(frames)
            if type(frames) is list:
                frames.clear()  # the buffers are not needed once unpickled
            tasks, order = decode_graph(payload)
            del payload
        except Exception as e:
            comm.send(
                {
                    "op": "graph-refused",
                    "message": f"the scheduler could not unpickle the graph: "
                    f"{type(e).__name__}: {e} (is the scheduler's environment the client's?)",
                    "keys": msg["keys"],
                }
            )
            return 0
        try:
            msgs = self.state.update_graph(
                client, tasks, msg["keys"], order, stimulus_id=self._sid("update-graph")
            )
        except KeyError as e:
            comm.send({"op": "graph-refused", "message": str(e), "keys": msg["keys"]})
            return 0
        n = len(tasks)
        del tasks, order  # the state holds what it needs: free the decoded graph before sending
        self._send(msgs)
        return n

    async def _wait_for_workers(self, comm: _comm.Comm, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.state.workers) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._workers_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._workers_changed.wait(), remaining)
        with contextlib.suppress(_comm.CommClosedError):
            comm.send({"op": "workers", "n": len(self.state.workers)})


async def run_scheduler(address: str, **kwargs: Any) -> Scheduler:
    s = Scheduler(**kwargs)
    await s.start(address)
    return s
