"""The ``p2p`` shuffle: workers exchange shards directly, outside the graph, behind one barrier.

Graph (O(n + m) tasks for n inputs and m outputs; ``S`` is the output name):

- one ``p2p-assign`` task: asks the scheduler to give the m outputs owners among the workers
  alive when it runs (so the record, and the unpacks' restrictions, exist before any transfer
  runs); its result is the shuffle's *incarnation*, a number per scheduler record;
- n ``p2p-transfer`` tasks: split input ``i`` by target once, then deliver each output's shard to
  that output's owner: one message per destination and batch (pickle-5 out-of-band buffers,
  ``BATCH_BYTES`` at most, ``IN_FLIGHT`` batches in flight) answered by an ack, so a finished
  transfer means *delivered*; shards for this worker go into its own buffer without pickling;
- one ``p2p-barrier`` task on all transfers;
- m unpack tasks ``(S, j)``, each restricted to the owner of ``j``: concatenate the shards for
  ``j`` in input order with the ``tasks`` shuffle's ``concat_shards`` (the same rows, in the
  same order), and free them. An unpack checks that it holds a shard from every input (empty
  ones included) and raises if not, so a lost shard is an error, never a missing row.

Each side in one section of this module:

- *Scheduler* (`P2PState`, pure, driven by ``SchedulerState``): the record of each shuffle.
  Output ``j`` has an owner and an ``output_epoch``; transfer ``i`` has a ``done_epoch``, the
  plan epoch of its last finished run: it has delivered every output whose ``output_epoch`` is
  at most that. Each transfer run asks for its plan when it starts: the owners, and which
  outputs it still has to send. An unpack may run only on its owner and only once every
  transfer's ``done_epoch`` reaches its output's epoch.
- *Worker* (`ShuffleRuntime`, one per worker, reached from task code through the worker thread
  that runs it): plan requests over the worker's scheduler stream, sends to peers through the
  worker's connection pool, and the buffer of received shards, keyed by (output, input) so
  that a shard received twice replaces, never duplicates. The scheduler tells every worker to
  drop a shuffle's buffer when it forgets the shuffle's tasks.
- *Graph* (`p2p_layers`, the ``ShuffleBuilder`` of ``engine.dataframe.shuffle``) and the
  task functions. Without a cluster (the synchronous executor) the same tasks run against a
  process-local buffer.

Faults: when a worker dies, only the outputs it owned get new owners (a new epoch for those
outputs); every transfer runs again (the dead worker may hold shards of any input) but sends
only the shards of the moved outputs; outputs already unpacked on the survivors stay where
they are, and their unpack tasks are not re-run. A transfer whose send fails asks for a fresh
plan and resends what the new plan needs. An unpack that may have consumed its shards (it
started, even if its result was then lost or released) has its output's shards sent again
before it runs again. A forgotten shuffle's record stays dormant (``DORMANT`` of them), so
that the same graph submitted again wakes it, with a new incarnation, before any of its tasks
run: a worker may pick up a cancelled run still going, which never asks for a plan. Tasks
are assumed deterministic: a recomputed input partition must hold the same rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from taskbench.engine import comm as _comm
from taskbench.engine.state import SHUFFLE_CLIENT, SHUFFLE_WANT

if TYPE_CHECKING:
    from taskbench.engine.dataframe.core import _Frame
    from taskbench.engine.state import Key, SchedulerState, TaskState, WorkerState
    from taskbench.engine.worker import Worker

#: A message to a peer carries at most this many bytes of shards, and this many frames.
BATCH_BYTES = 32 * 2**20
BATCH_FRAMES = 4096
#: Batches a transfer has sent and not yet had acknowledged.
IN_FLIGHT = 4
#: Seconds to wait for the scheduler's plan, and for a peer's ack.
REQUEST_TIMEOUT = 60.0
SEND_TIMEOUT = 300.0
#: Seconds a transfer keeps retrying a peer it cannot reach before it fails.
RETRY_TIMEOUT = 120.0
LOCAL = "local"
#: Forgotten shuffles whose record is kept, should the same graph be submitted again.
DORMANT = 1000

ASSIGN, TRANSFER, BARRIER, OUTPUT = "assign", "transfer", "barrier", "output"


# =========================================================================== graph


def p2p_layers(
    frame: _Frame,
    npartitions: int,
    name: str,
    partitioner: dict,
    extra_key: Any,
    options: dict,
) -> dict[str, dict]:
    """The ``p2p`` shuffle's layers: assign, n transfers, a barrier, m unpacks ``(name, j)``.

    ``options``: ``encode_strings`` (default True) sends object columns of strings as Arrow
    arrays, as the ``tasks`` shuffle does (see ``split_columns``); the rest is ignored.
    """
    from taskbench.engine.dataframe.core import new_name

    n, m = frame.npartitions, npartitions
    columns = frame._meta.columns
    assign, transfer, barrier = (
        new_name("p2p-assign"), new_name("p2p-transfer"), new_name("p2p-barrier"),
    )  # fmt: skip
    # a dict is a literal to the graph: these names are never taken for references
    spec = {
        "id": name, "n": n, "m": m, "assign": assign, "transfer": transfer, "barrier": barrier,
        "output": name, "encode_strings": bool(options.get("encode_strings", True)),
    }  # fmt: skip
    args = (assign, extra_key, partitioner, columns)
    transfers = {(transfer, i): (p2p_transfer, spec, i, (frame._name, i), *args) for i in range(n)}
    return {
        assign: {assign: (p2p_assign, spec)},
        transfer: transfers,
        barrier: {barrier: (p2p_barrier, [(transfer, i) for i in range(n)])},
        name: {(name, j): (p2p_unpack, spec, j, barrier, frame._meta) for j in range(m)},
    }


def p2p_assign(spec: dict) -> int:
    """Give the outputs owners (the scheduler does, once per shuffle); the incarnation."""
    rt = _runtime()
    if rt.worker is None:
        return 0
    reply = rt.request({"spec": spec, "index": None})
    return -1 if reply.get("abandon") else reply["inc"]


def p2p_transfer(
    spec: dict, i: int, df: Any, inc: int, extra: Any, partitioner: dict, columns: Any
) -> int:
    """Send input ``i``'s shards to the owners of their outputs; return once all are acked."""
    if not df.columns.equals(columns):
        raise ValueError(
            f"a partition has columns {list(df.columns)}, but the collection's meta has "
            f"{list(columns)}; pass the right meta= where the partitions were made"
        )
    rt = _runtime()
    plan = rt.plan(spec, i)
    if plan is None:
        return inc  # this run is no longer wanted here
    m = spec["m"]
    targets = partitioner["func"](df, m, extra, **partitioner["kwargs"])
    split = _Split(df, targets, m, spec.get("encode_strings", True))
    delivered: dict[int, str] = {}
    deadline = time.monotonic() + RETRY_TIMEOUT
    pause = 0.05
    while True:
        todo = plan.todo(delivered)
        if not todo:
            return plan.inc
        failed = rt.deliver(spec["id"], plan, i, split, todo, delivered)
        if not failed:
            continue  # everything acked: the loop ends on an empty todo
        if time.monotonic() > deadline:
            raise ConnectionError(
                f"p2p shuffle {spec['id']}: input {i} could not reach {sorted(failed)} "
                f"for {RETRY_TIMEOUT:g} s, and the scheduler still names them as owners"
            )
        time.sleep(pause)  # give the scheduler time to notice a dead peer
        pause = min(pause * 2, 1.0)
        old, plan = plan, rt.plan(spec, i)
        if plan is None:
            return inc
        if plan.inc != old.inc:
            delivered = {}  # a new incarnation: the workers dropped what was delivered


def p2p_barrier(incarnations: list[int]) -> int:
    """Every transfer has delivered its shards."""
    return max(incarnations, default=0)


def p2p_unpack(spec: dict, j: int, barrier: int, meta: Any) -> Any:
    """Output ``j``: its shards from every input, in input order, concatenated once.

    The shards come from the newest incarnation this worker holds (a worker keeps only one).
    """
    from taskbench.engine.dataframe.shuffle import concat_shards

    rt = _runtime()
    shards = rt.take(spec["id"], j)
    n = spec["n"]
    missing = [i for i in range(n) if i not in shards]
    if missing:
        raise RuntimeError(
            f"p2p shuffle {spec['id']}: output {j} on {rt.address} lacks the shards of "
            f"{len(missing)} of {n} inputs (first: {missing[:5]}); delivered shards were lost"
        )
    parts = []
    for i in range(n):
        shard = shards.pop(i)
        if shard is None:
            continue
        parts.append(_comm.loads(shard.frames) if isinstance(shard, _Wire) else shard)
    if not parts:
        return meta.copy()
    return concat_shards(parts, meta.columns)


class _Split:
    """One input partition, sorted by target once (one take per column, as the ``tasks``
    shuffle does); output ``j``'s shard is ``(index, [column arrays])``, slices of that."""

    def __init__(self, df: Any, targets: Any, m: int, encode_strings: bool) -> None:
        from taskbench.engine.dataframe.shuffle import split_columns

        self.shards = split_columns(df, targets, m, encode_strings=encode_strings)

    def local(self, j: int) -> tuple | None:
        index, arrays = self.shards[j]
        if not len(index):
            return None
        # copies: a slice would keep the whole sorted column alive in the buffer (an Arrow
        # array of encoded strings is a take of its own, and immutable: kept as it is)
        return index.copy(deep=True), [_copy(a) for a in arrays]

    def wire(self, j: int) -> _Wire | None:
        shard = self.shards[j]
        return _Wire(_comm.dumps(shard)) if len(shard[0]) else None


def _copy(values: Any) -> Any:
    copy = getattr(values, "copy", None)
    return values if copy is None else copy()


class _Wire:
    """A shard as it travels and waits: pickle-5 frames, unpickled only by the unpack."""

    __slots__ = ("frames", "nbytes")

    def __init__(self, frames: list) -> None:
        self.frames = frames
        self.nbytes = sum(_nbytes(f) for f in frames)


def _nbytes(frame: Any) -> int:
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)


class _Plan:
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


# =========================================================================== worker side


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

    def plan(self, spec: dict, i: int) -> _Plan | None:
        """Transfer ``i``'s plan, fresh from the scheduler; None: this run is not wanted."""
        if self.worker is None:
            return _Plan(0, 1, [LOCAL], None, list(range(spec["m"])))
        reply = self.request({"spec": spec, "index": i})
        if reply.get("abandon"):
            return None
        return _Plan(reply["inc"], reply["epoch"], reply["workers"], reply["owners"], reply["send"])

    def deliver(
        self, sid: str, plan: _Plan, source: int, split: _Split, todo: list[int], delivered: dict
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
            batch: list[tuple[int, _Wire | None]] = []
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
                shard = _Wire(list(frames[pos : pos + k])) if k else None
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


_LOCAL_RUNTIME = ShuffleRuntime(None)
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


def _runtime() -> ShuffleRuntime:
    """The runtime of the worker whose thread runs this task; the local one outside workers."""
    from taskbench.engine.worker import get_worker

    worker = get_worker()
    return _LOCAL_RUNTIME if worker is None else worker_runtime(worker)


# =========================================================================== scheduler side


class ShuffleRecord:
    """One shuffle as the scheduler tracks it (see the module docstring for the epochs)."""

    __slots__ = (
        "_table", "done_epoch", "epoch", "id", "incarnation", "m", "members", "min_done", "n",
        "others", "output_epoch", "outputs", "owners", "planned", "spec", "stale", "transfers",
    )  # fmt: skip

    def __init__(self, spec: dict, incarnation: int, owners: list[WorkerState | None]) -> None:
        self.spec = spec
        self.id: str = spec["id"]
        self.n: int = spec["n"]
        self.m: int = spec["m"]
        self.incarnation = incarnation
        self.epoch = 1
        self.owners = owners
        self.output_epoch = [1] * self.m
        self.done_epoch = [0] * self.n
        self.planned = [0] * self.n
        self.min_done = 0
        # outputs whose owner may not hold all their shards (consumed, lost, or never sent)
        self.stale: set[int] = set()
        self.transfers: dict[int, TaskState] = {}
        self.outputs: dict[int, TaskState] = {}
        self.others: dict[Key, TaskState] = {}
        self.members = 0
        self._table: tuple[list[str], list[int]] | None = None

    def table(self) -> tuple[list[str], list[int]]:
        """(worker addresses, owner index per output), for plans; cached until owners move."""
        if self._table is None:
            index: dict[WorkerState, int] = {}
            owners = []
            for ws in self.owners:
                assert ws is not None, f"shuffle {self.id}: an output has no owner"
                owners.append(index.setdefault(ws, len(index)))
            self._table = ([ws.address for ws in index], owners)
        return self._table


class P2PState:
    """The scheduler's side of p2p shuffles: owners, epochs, restrictions. Pure.

    ``SchedulerState`` calls in at its hook points (a worker added or removed, a shuffle task
    entering waiting, leaving processing, finishing, forgotten) and asks ``runnable`` before
    placing an unpack. Recommendations go into the caller's ``recs``; messages into the
    state's outgoing worker messages.
    """

    def __init__(self, state: SchedulerState) -> None:
        self.state = state
        self.records: dict[str, ShuffleRecord] = {}
        # records whose tasks were all forgotten, kept in case the same graph comes back
        self.dormant: OrderedDict[str, ShuffleRecord] = OrderedDict()
        self.by_name: dict[Key, tuple[ShuffleRecord, str]] = {}
        self.incarnations = 0

    # ------------------------------------------------------------------ events

    def request(self, address: str, msg: dict, recs: dict, stimulus_id: str) -> None:
        """A shuffle task running on ``address`` asks for its incarnation or its plan."""
        st = self.state
        spec, index = msg["spec"], msg["index"]
        ws = st.workers.get(address)
        key = spec["assign"] if index is None else (spec["transfer"], index)
        ts = st.tasks.get(key)
        reply: dict[str, Any] = {"op": "shuffle-plan", "req": msg["req"]}
        if ws is None or ts is None or ts.state != "processing" or ts.processing_on is not ws:
            reply["abandon"] = True  # a stale run: the task moved on since it started
        else:
            rec = self.records.get(spec["id"])
            if rec is None:
                rec = self._start(spec, recs, stimulus_id)
            reply["inc"] = rec.incarnation
            if index is not None:
                rec.planned[index] = rec.epoch
                workers, owners = rec.table()
                done = rec.done_epoch[index]
                send = (
                    None if done == 0 else [j for j, e in enumerate(rec.output_epoch) if e > done]
                )
                reply.update(epoch=rec.epoch, workers=workers, owners=owners, send=send)
        st._worker_msgs.setdefault(address, []).append(reply)

    def _start(self, spec: dict, recs: dict, stimulus_id: str) -> ShuffleRecord:
        """A record for a shuffle with none: a new one, or the dormant one of the same graph.

        A dormant record comes back with a new incarnation (workers dropped its buffers and
        refuse its old shards) and a new epoch for every output: every transfer sends
        everything again. Whatever ran before the record existed is healed: an unpack placed
        unrestricted goes back, a transfer that finished without a plan runs again.
        """
        st = self.state
        self.incarnations += 1
        slots = [ws for ws in st.worker_list for _ in range(ws.nthreads)]
        m = spec["m"]
        owners = [slots[j % len(slots)] if slots else None for j in range(m)]
        rec = self.dormant.pop(spec["id"], None)
        if rec is None:
            rec = ShuffleRecord(spec, self.incarnations, owners)
            for name, role in (
                (spec["assign"], ASSIGN), (spec["barrier"], BARRIER),
                (spec["transfer"], TRANSFER), (spec["output"], OUTPUT),
            ):  # fmt: skip
                self.by_name[name] = (rec, role)
        else:
            rec.incarnation = self.incarnations
            rec.epoch += 1
            rec.output_epoch = [rec.epoch] * m
            rec.owners = owners
            rec.stale.clear()
            rec._table = None
        self.records[rec.id] = rec
        tasks = st.tasks
        for key, role, index in itertools.chain(
            ((spec["assign"], ASSIGN, 0), (spec["barrier"], BARRIER, 0)),
            (((spec["transfer"], i), TRANSFER, i) for i in range(rec.n)),
            (((spec["output"], j), OUTPUT, j) for j in range(m)),
        ):
            ts = tasks.get(key)
            if ts is None or ts.shuffle is not None:
                continue
            self._join(rec, ts, role, index)
            if role == OUTPUT and ts.state == "processing":
                recs[key] = "released"
            elif role == TRANSFER and ts.state == "memory":
                self._force(ts, recs)
        st.log.append((rec.id, "shuffle", f"incarnation-{rec.incarnation}", stimulus_id))
        return rec

    def _join(self, rec: ShuffleRecord, ts: TaskState, role: str, index: int) -> None:
        ts.shuffle = (rec, role, index)
        rec.members += 1
        if role == TRANSFER:
            rec.transfers[index] = ts
            if rec.done_epoch[index] < rec.epoch:
                ts.who_wants = (ts.who_wants or frozenset()) | SHUFFLE_WANT
        elif role == OUTPUT:
            rec.outputs[index] = ts
            ts.restriction = rec.owners[index]
        else:
            rec.others[ts.key] = ts

    def adopt(self, new: Iterable[TaskState], stimulus_id: str) -> None:
        """Tasks of a new graph that belong to a known shuffle (one more output, or the same
        graph again after its tasks were forgotten: the record wakes up before they run)."""
        by_name = self.by_name
        for ts in new:
            key = ts.key
            if ts.shuffle is not None:
                continue
            if type(key) is tuple:
                if len(key) != 2 or type(key[1]) is not int:
                    continue
                hit = by_name.get(key[0])
                if hit is None or hit[1] not in (TRANSFER, OUTPUT):
                    continue
                rec, role = hit
                if not 0 <= key[1] < (rec.n if role == TRANSFER else rec.m):
                    continue
                index = key[1]
            elif type(key) is str:
                hit = by_name.get(key)
                if hit is None or hit[1] not in (ASSIGN, BARRIER):
                    continue
                rec, role = hit
                index = 0
            else:
                continue
            if rec.id in self.dormant:
                self._start(rec.spec, {}, stimulus_id)  # joins every task of it there is
            else:
                self._join(rec, ts, role, index)

    def worker_added(self, recs: dict, stimulus_id: str) -> None:
        """Outputs left without an owner (every worker had died) get the newcomers."""
        for rec in self.records.values():
            orphans = [j for j, ws in enumerate(rec.owners) if ws is None]
            if orphans:
                self._move(rec, orphans, recs, stimulus_id)

    def worker_removed(self, ws: WorkerState, recs: dict, stimulus_id: str) -> None:
        """Only the outputs ``ws`` owned move; their shards will be sent again."""
        for rec in self.records.values():
            lost = [j for j, owner in enumerate(rec.owners) if owner is ws]
            if lost:
                self._move(rec, lost, recs, stimulus_id)

    # ------------------------------------------------------------------ transition hooks

    def runnable(self, ts: TaskState) -> bool:
        """An unpack runs only on an owner that holds the shards of every input."""
        rec, role, j = ts.shuffle
        if role != OUTPUT:
            return True
        return (
            rec.owners[j] is not None
            and j not in rec.stale
            and (rec.min_done >= rec.output_epoch[j])
        )

    def task_waiting(self, ts: TaskState, recs: dict) -> None:
        """An unpack that may have consumed its shards before: send them again first."""
        rec, role, j = ts.shuffle
        if role == OUTPUT and j in rec.stale and rec.owners[j] is not None:
            self._bump(rec, [j], recs, self.state._stimulus_id)

    def task_unassigned(self, ts: TaskState) -> None:
        """An unpack left its worker (done, lost or cancelled): its shards may be gone."""
        rec, role, j = ts.shuffle
        if role == OUTPUT:
            rec.stale.add(j)

    def task_done(self, ts: TaskState, recs: dict) -> None:
        """A transfer finished: it delivered everything its last plan asked for."""
        rec, role, i = ts.shuffle
        if role != TRANSFER:
            return
        done = rec.done_epoch[i] = max(rec.done_epoch[i], rec.planned[i])
        low = min(rec.done_epoch)
        if low > rec.min_done:
            rec.min_done = low
            for ots in rec.outputs.values():
                if ots.state == "waiting":
                    recs[ots.key] = "processing"
        if done < rec.epoch:
            # outputs moved while it ran: once more, for those; keep its inputs for that run
            for dts in ts.dependencies:
                if dts.state == "memory" and recs.get(dts.key) == "released":
                    del recs[dts.key]
            self._force(ts, recs)
        elif ts.who_wants and SHUFFLE_CLIENT in ts.who_wants:
            ts.who_wants = ts.who_wants - SHUFFLE_WANT or None

    def task_forgotten(self, ts: TaskState, recs: dict) -> None:
        rec, role, index = ts.shuffle
        ts.shuffle = None
        ts.restriction = None
        if role == TRANSFER:
            del rec.transfers[index]
        elif role == OUTPUT:
            del rec.outputs[index]
            if not rec.outputs:  # the last output is gone: no transfer needs to run for it
                for tts in rec.transfers.values():
                    self._unwant(tts, recs)
        else:
            del rec.others[ts.key]
        rec.members -= 1
        if rec.members == 0:
            self._forget(rec)

    # ------------------------------------------------------------------ machinery

    def _move(self, rec: ShuffleRecord, outputs: list[int], recs: dict, stimulus_id: str) -> None:
        """New owners for ``outputs``: the workers owning fewest outputs of this shuffle."""
        st = self.state
        counts = dict.fromkeys(st.worker_list, 0)
        for ws in rec.owners:
            if ws in counts:
                counts[ws] += 1
        bump = []
        for j in outputs:
            ws = min(counts, key=lambda w: counts[w] / w.nthreads) if counts else None
            if ws is not None:
                counts[ws] += 1
            rec.owners[j] = ws
            ts = rec.outputs.get(j)
            if ts is not None:
                ts.restriction = ws
            # an unpack waiting now sends for its shards now; any other when it next waits
            if ws is not None and ts is not None and ts.state in ("waiting", "no-worker"):
                bump.append(j)
            else:
                rec.stale.add(j)
        rec._table = None
        st.log.append((rec.id, "shuffle", f"moved-{len(outputs)}-outputs", stimulus_id))
        if bump:
            self._bump(rec, bump, recs, stimulus_id)

    def _bump(self, rec: ShuffleRecord, outputs: list[int], recs: dict, stimulus_id: str) -> None:
        """A new epoch for ``outputs``: every transfer sends their shards (only theirs) again."""
        rec.epoch += 1
        for j in outputs:
            rec.output_epoch[j] = rec.epoch
            rec.stale.discard(j)
        for i, ts in rec.transfers.items():
            if rec.done_epoch[i] < rec.epoch:
                self._force(ts, recs)
        self.state.log.append((rec.id, "shuffle", f"epoch-{rec.epoch}", stimulus_id))

    def _force(self, ts: TaskState, recs: dict) -> None:
        """A transfer behind the shuffle's epoch: the shuffle wants it to run (again).

        The want holds until a run finishes on the current epoch, whatever else lets go of
        the task meanwhile (a waiting or running one asks for a fresh plan when it starts).
        """
        ts.who_wants = (ts.who_wants or frozenset()) | SHUFFLE_WANT
        if ts.state == "memory":
            recs[ts.key] = "released"
        elif ts.state == "released":
            recs[ts.key] = "waiting"

    def _unwant(self, ts: TaskState, recs: dict) -> None:
        """Nothing needs this transfer's shards any more: let go of it as a client would."""
        if not ts.who_wants or SHUFFLE_CLIENT not in ts.who_wants:
            return
        ts.who_wants = ts.who_wants - SHUFFLE_WANT or None
        if ts.who_wants is None and not ts.waiters:
            if ts.state in ("memory", "erred"):
                recs[ts.key] = "released"
            elif ts.state == "released" and not ts.dependents:
                recs[ts.key] = "forgotten"

    def _forget(self, rec: ShuffleRecord) -> None:
        st = self.state
        del self.records[rec.id]
        self.dormant[rec.id] = rec
        while len(self.dormant) > DORMANT:
            _sid, old = self.dormant.popitem(last=False)
            spec = old.spec
            for name in (spec["assign"], spec["barrier"], spec["transfer"], spec["output"]):
                if self.by_name.get(name, (None,))[0] is old:
                    del self.by_name[name]
        for address in st.workers:
            st._worker_msgs.setdefault(address, []).append(
                {"op": "shuffle-drop", "id": rec.id, "inc": rec.incarnation}
            )

    def validate(self) -> None:
        st = self.state
        for sid, rec in self.dormant.items():
            assert rec.members == 0 and sid not in self.records, sid
        for sid, rec in self.records.items():
            assert rec.id == sid, sid
            assert rec.members == len(rec.transfers) + len(rec.outputs) + len(rec.others), rec.id
            assert rec.members > 0, rec.id
            for group in (rec.transfers, rec.outputs, rec.others):
                for ts in group.values():
                    assert st.tasks.get(ts.key) is ts and ts.shuffle[0] is rec, (rec.id, ts)
            for ws in rec.owners:
                assert ws is None or st.workers.get(ws.address) is ws, (rec.id, ws)
            assert rec.min_done == min(rec.done_epoch), (rec.id, rec.min_done)
            assert max(rec.output_epoch) <= rec.epoch and max(rec.done_epoch) <= rec.epoch
            for j, ts in rec.outputs.items():
                assert ts.restriction is rec.owners[j], (rec.id, ts)
                if ts.state == "processing":
                    assert self.runnable(ts) and ts.processing_on is rec.owners[j], (rec.id, ts)
                if ts.state == "waiting" and rec.owners[j] is not None:
                    assert j not in rec.stale, (rec.id, ts)
            if rec.outputs:
                # a transfer behind the epoch is wanted by the shuffle until it catches up
                for i, tts in rec.transfers.items():
                    if rec.done_epoch[i] < rec.epoch:
                        assert tts.who_wants and SHUFFLE_CLIENT in tts.who_wants, (rec.id, tts)
                        assert tts.state != "memory", (rec.id, tts)
