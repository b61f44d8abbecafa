"""A worker's side of the p2p shuffle: the buffer of received shards and the sends to peers.

One `ShuffleRuntime` per worker (``Worker.shuffle``, made on first use by `worker_runtime`;
or, with no worker, a process-local stand-in for the synchronous executor). Task code reaches
it from the worker thread that runs it; it asks the scheduler for plans over the worker's
scheduler stream, sends to peers through the worker's connection pool, and keeps the shards it
receives keyed by (output, input), so that a shard received twice replaces, never duplicates.
A message to a peer carries the shards of one destination and batch (pickle-5 out-of-band
buffers, ``BATCH_BYTES`` at most, ``IN_FLIGHT`` batches in flight) and is answered by an ack,
so a finished send means *delivered*; shards for this worker go into its own buffer without
pickling. The buffer holds one incarnation per shuffle: shards of an older one are refused,
and the scheduler's ``shuffle-drop`` frees the buffer when it forgets the shuffle.

This module is imported by ``engine.worker`` and never imports it: the worker is passed in.
The scheduler's side is ``engine.shuffle_state``; the graph and the task functions that use
this runtime are in ``engine.dataframe.p2p``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Protocol

from taskbench.engine import comm as _comm

if TYPE_CHECKING:
    from taskbench.engine.worker import Worker

#: A message to a peer carries at most this many bytes of shards, and this many frames.
BATCH_BYTES = 32 * 2**20
BATCH_FRAMES = 4096
#: Batches a transfer has sent and not yet had acknowledged.
IN_FLIGHT = 4
#: Seconds to wait for the scheduler's plan, and for a peer's ack.
REQUEST_TIMEOUT = 60.0
SEND_TIMEOUT = 300.0
#: The address of the process-local stand-in (no worker).
LOCAL = "local"


class Shards(Protocol):
    """One input partition split by output: what `ShuffleRuntime.deliver` sends."""

    def local(self, j: int) -> Any:
        """Output ``j``'s shard to keep in this process (None: empty)."""

    def wire(self, j: int) -> Wire | None:
        """Output ``j``'s shard as frames to send (None: empty)."""


class Wire:
    """A shard as it travels and waits: pickle-5 frames, unpickled only by the unpack."""

    __slots__ = ("frames", "nbytes")

    def __init__(self, frames: list) -> None:
        self.frames = frames
        self.nbytes = sum(_nbytes(f) for f in frames)


def _nbytes(frame: Any) -> int:
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)


class Plan:
    """A transfer's plan: who owns each output, and which outputs it still has to send."""

    __slots__ = ("epoch", "inc", "owners", "send", "workers")

    def __init__(self, inc: int, epoch: int, workers: list, owners: list | None, send: Any):
        self.inc = inc
        self.epoch = epoch
        self.workers = workers
        self.owners = owners  # index into workers per output; None: all on workers[0]
        self.send = send  # outputs to send; None: all

    def owner(self, j: int) -> str:
        return self.workers[self.owners[j] if self.owners is not None else 0]

    def todo(self, delivered: dict[int, str]) -> list[int]:
        """The outputs to send whose current owner has not acked this run's shard."""
        outputs = range(len(self.owners)) if self.send is None else self.send
        return [j for j in outputs if delivered.get(j) != self.owner(j)]


class _Buffer:
    """Shards received for one shuffle incarnation: output -> {input: shard}."""

    __slots__ = ("inc", "shards")

    def __init__(self, inc: int) -> None:
        self.inc = inc
        self.shards: dict[int, dict[int, Any]] = {}


class ShuffleRuntime:
    """A worker's side of p2p shuffles (or, with no worker, a process-local stand-in)."""

    def __init__(self, worker: Worker | None) -> None:
        self.worker = worker
        self.address = worker.address if worker is not None else LOCAL
        self.lock = threading.Lock()
        self.buffers: dict[str, _Buffer] = {}
        self.dropped: OrderedDict[str, int] = OrderedDict()
        self.pending: dict[int, concurrent.futures.Future] = {}
        self.sent = 0  # shards delivered by this worker's transfers (acked or kept here)
        self._reqs = itertools.count()

    # -------------------------------------------------------------- the task threads' side

    def request(self, msg: dict, timeout: float = REQUEST_TIMEOUT) -> dict:
        """Ask the scheduler (over the worker's stream) and wait for its answer."""
        w = self.worker
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self.lock:
            req = next(self._reqs)
            self.pending[req] = fut
        msg = {**msg, "op": "shuffle-request", "req": req}
        w._loop.call_soon_threadsafe(self._send_request, fut, msg)
        try:
            return fut.result(timeout)
        finally:
            with self.lock:
                self.pending.pop(req, None)

    def plan(self, spec: dict, i: int) -> Plan | None:
        """Transfer ``i``'s plan, fresh from the scheduler; None: this run is not wanted."""
        if self.worker is None:
            return Plan(0, 1, [LOCAL], None, list(range(spec["m"])))
        reply = self.request({"spec": spec, "index": i})
        if reply.get("abandon"):
            return None
        return Plan(reply["inc"], reply["epoch"], reply["workers"], reply["owners"], reply["send"])

    def deliver(
        self, sid: str, plan: Plan, source: int, split: Shards, todo: list[int], delivered: dict
    ) -> set[str]:
        """Send the shards of ``todo`` to their owners; record what was acked; failed peers."""
        inc = plan.inc
        by_owner: dict[str, list[int]] = {}
        for j in todo:
            by_owner.setdefault(plan.owner(j), []).append(j)
        local = by_owner.pop(self.address, [])
        in_flight: deque = deque()
        failed: set[str] = set()

        def settle() -> None:
            fut, address, outputs = in_flight.popleft()
            try:
                fut.result(SEND_TIMEOUT + 10)
            except Exception:
                failed.add(address)
                return
            for j in outputs:
                delivered[j] = address
            with self.lock:
                self.sent += len(outputs)

        for address, outputs in by_owner.items():  # remote first: the network starts early
            batch: list[tuple[int, Wire | None]] = []
            size = nframes = 0
            for k, j in enumerate(outputs):
                if address in failed:
                    break
                shard = split.wire(j)
                batch.append((j, shard))
                if shard is not None:
                    size += shard.nbytes
                    nframes += len(shard.frames)
                last = k == len(outputs) - 1
                if last or size >= BATCH_BYTES or nframes >= BATCH_FRAMES:
                    while len(in_flight) >= IN_FLIGHT:
                        settle()
                    in_flight.append(
                        (self._send_shards(address, sid, inc, source, batch), address,
                         [j for j, _ in batch])
                    )  # fmt: skip
                    batch, size, nframes = [], 0, 0
        if local:
            self.put(sid, inc, source, {j: split.local(j) for j in local})
            for j in local:
                delivered[j] = self.address
            with self.lock:
                self.sent += len(local)
        while in_flight:
            settle()
        return failed

    def put(self, sid: str, inc: int, source: int, shards: dict[int, Any]) -> None:
        """Shards of input ``source`` for outputs owned here (no pickling)."""
        with self.lock:
            buf = self._buffer(sid, inc)
            if buf is not None:
                for j, shard in shards.items():
                    buf.shards.setdefault(j, {})[source] = shard

    def take(self, sid: str, j: int) -> dict[int, Any]:
        """Remove and return output ``j``'s shards, ``{input: shard}``, from the newest buffer."""
        with self.lock:
            buf = self.buffers.get(sid)
            if buf is None:
                return {}
            shards = buf.shards.pop(j, {})
            if not buf.shards and self.worker is None:
                del self.buffers[sid]  # nobody drops the local stand-in's buffers
            return shards

    # -------------------------------------------------------------- the event loop's side

    def _send_request(self, fut: concurrent.futures.Future, msg: dict) -> None:
        sched = self.worker._sched
        try:
            if sched is None:
                raise _comm.CommClosedError("not connected to the scheduler")
            sched.send(msg)
        except _comm.CommClosedError as e:
            if not fut.done():
                fut.set_exception(e)

    def _send_shards(
        self, address: str, sid: str, inc: int, source: int, batch: list
    ) -> concurrent.futures.Future:
        parts = []
        frames: list = []
        for j, shard in batch:
            if shard is None:
                parts.append((j, 0))
            else:
                parts.append((j, len(shard.frames)))
                frames.extend(shard.frames)
        msg = {"op": "shuffle-receive", "id": sid, "inc": inc, "source": source, "parts": parts}
        return asyncio.run_coroutine_threadsafe(
            self._request_peer(address, msg, frames), self.worker._loop
        )

    async def _request_peer(self, address: str, msg: dict, frames: list) -> dict:
        pool = self.worker._pool
        comm = await pool.get(address)
        try:
            reply, _ = await asyncio.wait_for(comm.request(msg, frames), SEND_TIMEOUT)
        except BaseException:
            comm.abort()
            raise
        pool.put(comm)
        return reply

    def receive(self, msg: dict, frames: list) -> dict:
        """A peer's ``shuffle-receive``: file its shards; the ack tells it they are held."""
        sid, inc, source = msg["id"], msg["inc"], msg["source"]
        with self.lock:
            buf = self._buffer(sid, inc)
            if buf is None:
                return {"op": "shuffle-ack", "stale": True}
            pos = 0
            for j, k in msg["parts"]:
                shard = Wire(list(frames[pos : pos + k])) if k else None
                buf.shards.setdefault(j, {})[source] = shard
                pos += k
        return {"op": "shuffle-ack"}

    def scheduler_message(self, msg: dict) -> None:
        op = msg["op"]
        if op == "shuffle-plan":
            with self.lock:
                fut = self.pending.pop(msg["req"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif op == "shuffle-drop":
            self.drop(msg["id"], msg["inc"])

    def drop(self, sid: str, inc: int) -> None:
        """The scheduler forgot this shuffle: free what is left of its buffer."""
        with self.lock:
            self.dropped[sid] = max(inc, self.dropped.get(sid, 0))
            self.dropped.move_to_end(sid)
            while len(self.dropped) > 10_000:
                self.dropped.popitem(last=False)
            buf = self.buffers.get(sid)
            if buf is not None and buf.inc <= inc:
                del self.buffers[sid]

    def reset(self, exc: BaseException | None = None) -> None:
        """The worker lost the scheduler (or closes): fail waiting requests, drop buffers."""
        with self.lock:
            pending, self.pending = self.pending, {}
            self.buffers.clear()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc or _comm.CommClosedError("lost the scheduler"))

    # -------------------------------------------------------------- both

    def _buffer(self, sid: str, inc: int) -> _Buffer | None:
        # caller holds self.lock; None: shards of an incarnation that is over
        if self.dropped.get(sid, -1) >= inc:
            return None
        buf = self.buffers.get(sid)
        if buf is None or buf.inc < inc:
            buf = self.buffers[sid] = _Buffer(inc)
        elif buf.inc > inc:
            return None
        return buf

    def held(self, sid: str | None = None) -> int:
        """The number of shards held (for one shuffle, or all)."""
        with self.lock:
            bufs = self.buffers.values() if sid is None else [self.buffers.get(sid)]
            return sum(len(s) for b in bufs if b is not None for s in b.shards.values())


_runtime_lock = threading.Lock()


def worker_runtime(worker: Worker) -> ShuffleRuntime:
    """``worker``'s shuffle runtime, made on first use (from a task thread or the loop)."""
    rt = worker.shuffle
    if rt is None:
        with _runtime_lock:
            rt = worker.shuffle
            if rt is None:
                rt = worker.shuffle = ShuffleRuntime(worker)
    return rt
