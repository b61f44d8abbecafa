"""The scheduler's side of the p2p shuffle: owners, epochs and restrictions. Pure.

`P2PState` is a `StateExtension` of ``SchedulerState`` (see ``engine.state``): the state
machine calls it when tasks of a shuffle change state and when workers come and go, and asks
it whether an unpack may run. It imports no I/O, no thread and no clock; the graph and task
functions are in ``engine.dataframe.p2p``, the worker's buffers and sends in
``engine.shuffle_runtime``.

The record of each shuffle: output ``j`` has an owner and an ``output_epoch``; transfer ``i``
has a ``done_epoch``, the plan epoch of its last finished run: it has delivered every output
whose ``output_epoch`` is at most that. Each transfer run asks for its plan when it starts: the
owners, and which outputs it still has to send. An unpack may run only on its owner and only
once every transfer's ``done_epoch`` reaches its output's epoch. The owners are given when the
assign task asks, to the workers alive then; the answer carries the shuffle's *incarnation*, a
number per scheduler record.

Faults: when a worker dies, only the outputs it owned get new owners (a new epoch for those
outputs); every transfer runs again (the dead worker may hold shards of any input) but sends
only the shards of the moved outputs; outputs already unpacked on the survivors stay where
they are, and their unpack tasks are not re-run. An unpack that may have consumed its shards
(it started, even if its result was then lost or released) has its output's shards sent again
before it runs again. The shuffle keeps a transfer that must run again wanted as the
pseudo-client ``SHUFFLE_CLIENT``. A forgotten shuffle's record stays dormant (``DORMANT`` of
them), so that the same graph submitted again wakes it, with a new incarnation, before any of
its tasks run: a worker may pick up a cancelled run still going, which never asks for a plan.
The scheduler tells every worker to drop a shuffle's buffer when it forgets the shuffle's
tasks. Tasks are assumed deterministic: a recomputed input partition must hold the same rows.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskbench.engine.state import Key, SchedulerState, TaskState, WorkerState

#: The shuffle's own want on transfers it must run (again); never told about results.
SHUFFLE_CLIENT = "p2p-shuffle"
SHUFFLE_WANT = frozenset((SHUFFLE_CLIENT,))
#: Forgotten shuffles whose record is kept, should the same graph be submitted again.
DORMANT = 1000

ASSIGN, TRANSFER, BARRIER, OUTPUT = "assign", "transfer", "barrier", "output"


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
    """The scheduler's side of p2p shuffles; a `StateExtension` of ``SchedulerState``.

    Recommendations go into the caller's ``recs``; messages to workers through the state.
    """

    client = SHUFFLE_CLIENT

    def __init__(self, state: SchedulerState) -> None:
        self.state = state
        self.records: dict[str, ShuffleRecord] = {}
        # records whose tasks were all forgotten, kept in case the same graph comes back
        self.dormant: OrderedDict[str, ShuffleRecord] = OrderedDict()
        self.by_name: dict[Key, tuple[ShuffleRecord, str]] = {}
        # every task of a live record: (record, role, index)
        self.members: dict[TaskState, tuple[ShuffleRecord, str, int]] = {}
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
        st.message_worker(address, reply)

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
            if ts is None or ts.extension is not None:
                continue
            self._join(rec, ts, role, index)
            if role == OUTPUT and ts.state == "processing":
                recs[key] = "released"
            elif role == TRANSFER and ts.state == "memory":
                self._force(ts, recs)
        st.log_event(rec.id, "shuffle-incarnation", rec.incarnation, stimulus_id)
        return rec

    def _join(self, rec: ShuffleRecord, ts: TaskState, role: str, index: int) -> None:
        ts.extension = self
        self.members[ts] = (rec, role, index)
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

    # ------------------------------------------------------------------ StateExtension

    def adopt(self, new: Iterable[TaskState], stimulus_id: str) -> None:
        """Tasks of a new graph that belong to a known shuffle (one more output, or the same
        graph again after its tasks were forgotten: the record wakes up before they run)."""
        by_name = self.by_name
        for ts in new:
            key = ts.key
            if ts.extension is not None:
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

    def workers_changed(self, ws: WorkerState, joined: bool, recs: dict, stimulus_id: str) -> None:
        """A newcomer gets the outputs left without an owner (every worker had died); a
        worker that left gives up only the outputs it owned: their shards are sent again."""
        for rec in self.records.values():
            if joined:
                moved = [j for j, owner in enumerate(rec.owners) if owner is None]
            else:
                moved = [j for j, owner in enumerate(rec.owners) if owner is ws]
            if moved:
                self._move(rec, moved, recs, stimulus_id)

    def may_run(self, ts: TaskState) -> bool:
        """An unpack runs only on an owner that holds the shards of every input."""
        rec, role, j = self.members[ts]
        if role != OUTPUT:
            return True
        return (
            rec.owners[j] is not None
            and j not in rec.stale
            and (rec.min_done >= rec.output_epoch[j])
        )

    def transitioned(
        self, ts: TaskState, start: str, finish: str, recs: dict, stimulus_id: str
    ) -> None:
        """Follow a shuffle task: an unpack that left its worker may have consumed its shards
        (they are sent again before it next waits); a finished transfer moves the epoch."""
        rec, role, index = self.members[ts]
        if finish == "forgotten":
            self._leave(ts, rec, role, index, recs)
        elif role == OUTPUT:
            if start == "processing":  # done, lost or cancelled: its shards may be gone
                rec.stale.add(index)
            if finish == "waiting" and index in rec.stale and rec.owners[index] is not None:
                self._bump(rec, [index], recs, stimulus_id)
        elif role == TRANSFER and finish == "memory":
            self._transfer_done(ts, rec, index, recs)

    # ------------------------------------------------------------------ machinery

    def _transfer_done(self, ts: TaskState, rec: ShuffleRecord, i: int, recs: dict) -> None:
        """A transfer finished: it delivered everything its last plan asked for."""
        done = rec.done_epoch[i] = max(rec.done_epoch[i], rec.planned[i])
        low = min(rec.done_epoch)
        if low > rec.min_done:
            rec.min_done = low
            for ots in rec.outputs.values():
                if ots.state == "waiting":
                    recs[ots.key] = "processing"  # the state decides whether it can run now
        if done < rec.epoch:
            # outputs moved while it ran: once more, for those; keep its inputs for that run
            for dts in ts.dependencies:
                if dts.state == "memory" and recs.get(dts.key) == "released":
                    del recs[dts.key]
            self._force(ts, recs)
        elif ts.who_wants and SHUFFLE_CLIENT in ts.who_wants:
            ts.who_wants = ts.who_wants - SHUFFLE_WANT or None
            if ts.who_wants is None and not ts.waiters:
                recs[ts.key] = "released"  # the shuffle held the only want on it

    def _leave(self, ts: TaskState, rec: ShuffleRecord, role: str, index: int, recs: dict) -> None:
        """A forgotten task leaves its record; the last one puts the record to sleep."""
        del self.members[ts]
        ts.extension = None
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
        st.log_event(rec.id, "shuffle-moved", len(outputs), stimulus_id)
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
        self.state.log_event(rec.id, "shuffle-epoch", rec.epoch, stimulus_id)

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
            st.message_worker(address, {"op": "shuffle-drop", "id": rec.id, "inc": rec.incarnation})

    def validate(self) -> None:
        st = self.state
        for sid, rec in self.dormant.items():
            assert rec.members == 0 and sid not in self.records, sid
        for ts, (rec, _role, _index) in self.members.items():
            assert ts.extension is self and st.tasks.get(ts.key) is ts, ts
            assert self.records.get(rec.id) is rec, (rec.id, ts)
        assert len(self.members) == sum(rec.members for rec in self.records.values())
        for sid, rec in self.records.items():
            assert rec.id == sid, sid
            assert rec.members == len(rec.transfers) + len(rec.outputs) + len(rec.others), rec.id
            assert rec.members > 0, rec.id
            for group in (rec.transfers, rec.outputs, rec.others):
                for ts in group.values():
                    assert self.members[ts][0] is rec, (rec.id, ts)
            for ws in rec.owners:
                assert ws is None or st.workers.get(ws.address) is ws, (rec.id, ws)
            assert rec.min_done == min(rec.done_epoch), (rec.id, rec.min_done)
            assert max(rec.output_epoch) <= rec.epoch and max(rec.done_epoch) <= rec.epoch
            for j, ts in rec.outputs.items():
                assert ts.restriction is rec.owners[j], (rec.id, ts)
                if ts.state == "processing":
                    assert self.may_run(ts) and ts.processing_on is rec.owners[j], (rec.id, ts)
                if ts.state == "waiting" and rec.owners[j] is not None:
                    assert j not in rec.stale, (rec.id, ts)
            if rec.outputs:
                # a transfer behind the epoch is wanted by the shuffle until it catches up
                for i, tts in rec.transfers.items():
                    if rec.done_epoch[i] < rec.epoch:
                        assert tts.who_wants and SHUFFLE_CLIENT in tts.who_wants, (rec.id, tts)
                        assert tts.state != "memory", (rec.id, tts)
