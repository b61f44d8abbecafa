"""A worker's side of the p2p shuffle: the buffer of received shards and the sends to peers.

One `ShuffleRuntime` per worker (``Worker.shuffle``, made on first use by `worker_runtime`;
or, with no worker, a process-local stand-in for the synchronous executor). Task code reaches
it from the worker thread that runs it; it asks the scheduler for plans over the worker's
scheduler stream, sends to peers through the worker's connection pool, and keeps the shards it
receives keyed by (output, input), so that a shard received twice replaces, never duplicates.
A message to a peer carries one input's shards for a run of that peer's outputs as one piece
(a `Batch`: one pickle with out-of-band buffers, ``BATCH_BYTES`` at most, ``IN_FLIGHT``
batches in flight) and is answered by an ack, so a finished send means *delivered*; the
shards for this worker go into its own buffer as one piece, without pickling. A shard is a
row range of a batch. The buffer holds one incarnation per shuffle: shards of an older one
are refused, and the scheduler's ``shuffle-drop`` frees the buffer when it forgets the
shuffle.

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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from taskbench.engine import comm as _comm

if TYPE_CHECKING:
    from taskbench.engine.worker import Worker

#: A message to a peer carries one input's shards for a run of that peer's outputs, as one
#: piece of about this many bytes at most (a single output's shard may be more).
BATCH_BYTES = 32 * 2**20
#: Batches a transfer has sent and not yet had acknowledged.
IN_FLIGHT = 4
#: Seconds to wait for the scheduler's plan, and for a peer's ack.
REQUEST_TIMEOUT = 60.0
SEND_TIMEOUT = 300.0
#: The address of the process-local stand-in (no worker).
LOCAL = "local"


class Shards(Protocol):
    """One input partition split by output: what `ShuffleRuntime.deliver` sends."""

    #: A rough size of one row as it travels, to cut batches at ``BATCH_BYTES``.
    row_bytes: float

    def count(self, j: int) -> int:
        """The rows of output ``j``."""

    def piece(self, outputs: list[int], wire: bool = False) -> Any:
        """The rows of ``outputs``, output after output, as one value; ``wire``: to travel."""


class Batch:
    """One input's shards for several outputs, as one piece: a value kept in this process, or
    the pickle-5 frames it travelled as, unpickled once, by the first unpack that reads it."""

    __slots__ = ("_value", "frames")

    def __init__(self, value: Any = None, frames: list | None = None) -> None:
        self._value = value
        self.frames = frames

    def value(self) -> Any:
        value = self._value
        if value is None:  # two threads may both unpickle: the same value, twice
            value = self._value = _comm.loads(self.frames)
        return value


class Shard(NamedTuple):
    """An output's shard from one input: rows ``start:stop`` of a batch's piece."""

    batch: Batch
    start: int
    stop: int


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
        """Send the shards of ``todo`` to their owners and keep this worker's own; record in
        ``delivered`` what was acked; return the peers that failed.

        A peer gets one batch per ``BATCH_BYTES`` of its outputs (one piece, pickled once),
        with at most ``IN_FLIGHT`` batches awaiting their acks. Peers go first: their acks
        travel while this worker's own piece is cut.
        """
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

        for address, outputs in by_owner.items():
            for batch in _batches(outputs, split):
                if address in failed:
                    break
                while len(in_flight) >= IN_FLIGHT:
                    settle()
                counts = [split.count(j) for j in batch]
                frames = _comm.dumps(split.piece(batch, wire=True)) if any(counts) else []
                msg = {"op": "shuffle-receive", "id": sid, "inc": inc, "source": source,
                       "outputs": batch, "counts": counts}  # fmt: skip
                in_flight.append((self._send(address, msg, frames), address, batch))
        if local:
            counts = [split.count(j) for j in local]
            batch = Batch(split.piece(local)) if any(counts) else None
            self.put(sid, inc, source, local, counts, batch)
            with self.lock:
                self.sent += len(local)
            for j in local:
                delivered[j] = self.address
        while in_flight:
            settle()
        return failed

    def put(
        self, sid: str, inc: int, source: int, outputs: list, counts: list, batch: Batch | None
    ) -> bool:
        """File input ``source``'s shards for ``outputs``: each one's ``counts`` rows of
        ``batch``, output after output. A shard filed again replaces the old one. False: the
        incarnation is over, and nothing was filed."""
        with self.lock:
            buf = self._buffer(sid, inc)
            if buf is None:
                return False
            start = 0
            for j, count in zip(outputs, counts, strict=True):
                shard = Shard(batch, start, start + count) if count else None
                buf.shards.setdefault(j, {})[source] = shard
                start += count
        return True

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

    def _send(self, address: str, msg: dict, frames: list) -> concurrent.futures.Future:
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
        """A peer's ``shuffle-receive``: file its batch; the ack tells it the shards are held."""
        batch = Batch(frames=list(frames)) if frames else None
        held = self.put(msg["id"], msg["inc"], msg["source"], msg["outputs"], msg["counts"], batch)
        return {"op": "shuffle-ack"} if held else {"op": "shuffle-ack", "stale": True}

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


def _batches(outputs: list[int], split: Shards) -> Iterator[list[int]]:
    """``outputs`` cut into runs of about ``BATCH_BYTES`` each (at least one output a run)."""
    limit = BATCH_BYTES / max(split.row_bytes, 1.0)
    run: list[int] = []
    rows = 0
    for j in outputs:
        count = split.count(j)
        if run and rows + count > limit:
            yield run
            run, rows = [], 0
        run.append(j)
        rows += count
    if run:
        yield run


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
