"""The scheduler's state machine: events in, messages out, no I/O and no clock.

Task states (``TaskStateName``) and every transition in the table::

    released ──> waiting ──> processing ──> memory ──> released ──> forgotten
                  ↓  ↑        ↑  │  ↺ steal
                 no-worker ───┘  └──> erred ──> released

- released -> waiting: wanted by a client or a dependent; missing inputs are recommended too.
- waiting | no-worker -> processing: every input in memory (or its single input running on
  the worker it is pinned to), no extension holding it back: on the worker placement chose.
- waiting -> no-worker: ready, but no worker may take it; no-worker -> waiting: an extension
  holds it back again.
- processing -> processing: a steal; the victim gave it up unstarted, it moves to the thief.
- processing -> memory | erred: its worker reported; waiting | no-worker | released -> erred:
  an input erred, or it waited too long for a worker.
- waiting | no-worker | processing | memory | erred -> released: nobody needs it any more, or
  it must be recomputed; released -> forgotten: nobody wants it and nothing depends on it.

Each public event method takes a ``stimulus_id`` and returns ``(worker_msgs, client_msgs)``:
dicts from a worker address or client id to a list of messages. Inside an event,
transitions return recommendations ``{key: state}``, applied until none are left. A
recommendation to run is decided when it is applied (`SchedulerState._placement`): the task
goes to processing or no-worker, or stays waiting, so each transition ends in its finish
state (``validate`` checks it). Any pair that is not in the table raises
`InvalidTransition`: callers recommend the state they mean (``forgotten`` only from
``released``). Every transition goes to a bounded log of real states, so ``story(key)`` says
why a task is where it is; what is not a transition (steal requests and refusals, a
shuffle's new epochs) goes to the bounded ``events`` log (``events_of(key)``).

Placement and stealing are policies chosen by name (``engine.policies``). Whatever the
policy, a task whose single input is still running is handed to that input's worker at
once (eager assignment), so chains pay no round trip per task. Each task says which rule
put it on the worker it last went to (``TaskState.placed_by``: ``policy``, ``eager``,
``steal`` or ``restriction``), so a picture can say what really placed the work.

Durations are estimated per task prefix: a moving average of finished tasks; for a
prefix with none finished yet, the longest elapsed time of its running tasks (workers
report when such tasks start), and ``default_duration`` before that. A worker's
occupancy is the expected seconds of work assigned to it, kept incrementally and
recomputed from the current estimates on every ``balance`` tick.

A task may be *restricted* to one worker (``TaskState.restriction``): placement puts it
there, eager assignment pins it only there, and stealing never moves it.

Extensions (`StateExtension`) follow some tasks through the machine, and are called at
four points only: ``adopt`` (new tasks of a graph), ``may_run`` (before a task it follows is
placed), ``transitioned`` (after each transition of a task it follows) and
``workers_changed``; ``validate`` checks its own invariants. The p2p shuffle
(``engine.shuffle_state.P2PState``, created on its first request) is one: it restricts each
unpack task to its output's owner, holds unpacks back until their shards are delivered,
after a worker dies moves only that worker's outputs, and keeps a finished transfer running
again by wanting its result itself, as its pseudo-client (``StateExtension.client``).

A steal is a request/confirm exchange: ``balance`` asks the victim to give up queued
tasks; the victim gives one up only if it has not started it, and ``steal_response``
moves it to the thief (processing -> processing). A reply that no longer matches the
task's state is ignored, so a task is never run twice because of a steal, and never lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

from taskbench.engine.options import DEFAULTS, EngineOptions
from taskbench.engine.policies import STEAL_LEVELS, WorkStealing, make_placement
from taskbench.engine.shuffle_state import P2PState

TaskStateName = Literal[
    "released", "waiting", "no-worker", "processing", "memory", "erred", "forgotten"
]
#: What put a task on its worker: the placement policy; eager hand-over to its single
#: running input's worker; a steal; or its restriction.
PlacementRule = Literal["policy", "eager", "steal", "restriction"]
Key = Any  # str | bytes | int | float | tuple — see engine.graph
Msgs = dict[str, list[dict[str, Any]]]
_NO_TASKS: frozenset = frozenset()

DURATION_ALPHA = 0.5


class InvalidTransition(RuntimeError):
    """A transition that is not in the table."""


class TaskState:
    __slots__ = (
        "dependencies",
        "dependents",
        "duration",
        "exception",
        "extension",
        "key",
        "kind",
        "nbytes",
        "placed_by",
        "prefix",
        "priority",
        "processing_on",
        "restriction",
        "run",
        "state",
        "steal_level",
        "waiters",
        "waiting_on",
        "who_has",
        "who_wants",
    )

    def __init__(self, key: Key, prefix: str, run: object, kind: int, priority: int) -> None:
        self.key = key
        self.prefix = prefix
        self.run = run
        self.kind = kind
        self.priority = priority
        self.state: TaskStateName = "released"
        # empty collections are shared until first use: a million root tasks stay small
        self.dependencies: tuple[TaskState, ...] = ()
        self.dependents: dict[TaskState, None] | frozenset = _NO_TASKS
        self.waiting_on = 0
        self.waiters: dict[TaskState, None] | frozenset = _NO_TASKS
        self.who_has: list[WorkerState] | tuple = ()
        self.processing_on: WorkerState | None = None
        self.who_wants: frozenset[str] | None = None  # shared per client: see _wanted_by
        self.nbytes = 0
        self.duration = 0.0
        self.exception: dict[str, Any] | None = None
        self.steal_level = -1  # its bin on its worker while it may be stolen, else -1
        self.restriction: WorkerState | None = None  # the only worker it may run on
        self.placed_by: PlacementRule | None = None  # the rule that last placed it
        self.extension: StateExtension | None = None  # the extension that follows it, if any

    def __repr__(self) -> str:
        return f"<Task {self.key!r} {self.state}>"


class WorkerState:
    __slots__ = (
        "address",
        "has_what",
        "nbytes",
        "nthreads",
        "occupancy",
        "prefix_counts",
        "processing",
        "stealable",
    )

    def __init__(self, address: str, nthreads: int) -> None:
        self.address = address
        self.nthreads = nthreads
        self.processing: dict[TaskState, None] = {}
        self.prefix_counts: dict[str, int] = {}
        self.stealable: list[dict[TaskState, None]] = [{} for _ in range(STEAL_LEVELS)]
        self.has_what: dict[TaskState, None] = {}
        self.occupancy = 0.0
        self.nbytes = 0

    def __repr__(self) -> str:
        return f"<Worker {self.address} processing={len(self.processing)}>"


class StateExtension(Protocol):
    """Follows some tasks (those whose ``TaskState.extension`` it set) through the machine.

    It may change those tasks' ``restriction`` and its own client's wants in ``who_wants``,
    and recommends states into ``recs``; it never transitions a task itself.
    """

    #: The pseudo-client under which it wants tasks; never sent results or errors.
    client: str

    def adopt(self, new: list[TaskState], stimulus_id: str) -> None:
        """New tasks of a graph, before any is recommended: claim the ones it follows."""

    def may_run(self, ts: TaskState) -> bool:
        """Whether ``ts`` may be placed now (False holds it in waiting)."""

    def transitioned(
        self, ts: TaskState, start: str, finish: str, recs: dict[Key, str], stimulus_id: str
    ) -> None:
        """``ts`` went from ``start`` to ``finish`` (on forgotten, it lets go of ``ts``)."""

    def workers_changed(
        self, ws: WorkerState, joined: bool, recs: dict[Key, str], stimulus_id: str
    ) -> None:
        """``ws`` joined, or left (its tasks are already off it and recommended)."""

    def validate(self) -> None:
        """Check its invariants (``SchedulerState.validate``)."""


class SchedulerState:
    """Tasks, workers and clients, and the transitions between task states."""

    def __init__(
        self, options: EngineOptions = DEFAULTS, *, log_length: int = 100_000, **changes: Any
    ) -> None:
        """``options`` with ``changes`` (``SchedulerState(validate=True)`` in tests)."""
        options = options.replace(**changes)
        self.options = options
        placement, seed, stealing = options.placement, options.seed, options.stealing
        validate, bandwidth = options.validate, options.bandwidth
        default_duration = options.default_duration
        self.tasks: dict[Key, TaskState] = {}
        self.workers: dict[str, WorkerState] = {}
        self.worker_list: list[WorkerState] = []  # join order
        self.placement = make_placement(placement, seed)
        self.stealing: WorkStealing | None = WorkStealing() if stealing else None
        self.steals: dict[TaskState, tuple[WorkerState, WorkerState]] = {}
        self.first_started: dict[str, float] = {}  # prefix with none finished: earliest start
        self.running_estimates: dict[str, float] = {}
        self.clients: set[str] = set()
        self.unrunnable: dict[TaskState, None] = {}
        self.durations: dict[str, float] = {}
        self.validate = validate
        self.bandwidth = bandwidth
        self.default_duration = default_duration
        self.log: deque[tuple[Key, TaskStateName, TaskStateName, str]] = deque(maxlen=log_length)
        # what happened to a task that is not a transition: (key, what, detail, stimulus_id)
        self.events: deque[tuple[Key, str, Any, str]] = deque(maxlen=log_length)
        self.generation = 0
        self.extensions: list[StateExtension] = []
        self.shuffles: P2PState | None = None  # an extension, made on the first shuffle request
        self._internal_clients: frozenset[str] = frozenset()  # the extensions' pseudo-clients
        self._worker_msgs: Msgs = {}
        self._client_msgs: Msgs = {}
        self._compute: dict[WorkerState, list[TaskState]] = {}
        self._free: dict[str, list[Key]] = {}
        self._in_memory: dict[str, list[TaskState]] = {}
        self._root_levels: dict[float, int] = {}  # steal bin of an input-less task, by estimate
        self._transitions = {
            ("released", "waiting"): self._released_waiting,
            ("released", "forgotten"): self._released_forgotten,
            ("waiting", "processing"): self._waiting_processing,
            ("waiting", "no-worker"): self._waiting_no_worker,
            ("waiting", "released"): self._waiting_released,
            ("no-worker", "processing"): self._no_worker_processing,
            ("no-worker", "waiting"): self._no_worker_waiting,
            ("no-worker", "released"): self._no_worker_released,
            ("no-worker", "erred"): self._no_worker_erred,
            ("processing", "processing"): self._processing_processing,
            ("processing", "memory"): self._processing_memory,
            ("processing", "erred"): self._processing_erred,
            ("processing", "released"): self._processing_released,
            ("memory", "released"): self._memory_released,
            ("erred", "released"): self._erred_released,
            ("waiting", "erred"): self._waiting_erred,
            ("released", "erred"): self._released_erred,
        }

    # ================================================================== events

    def add_worker(self, address: str, nthreads: int, *, stimulus_id: str) -> tuple[Msgs, Msgs]:
        if address in self.workers:
            raise ValueError(f"worker {address} is already registered")
        ws = self.workers[address] = WorkerState(address, nthreads)
        self.worker_list.append(ws)
        recs = {ts.key: "processing" for ts in sorted(self.unrunnable, key=_by_priority)}
        self.unrunnable.clear()
        for ext in self.extensions:
            ext.workers_changed(ws, True, recs, stimulus_id)
        self._transitions_loop(recs, stimulus_id)
        return self._collect()

    def remove_worker(self, address: str, *, stimulus_id: str) -> tuple[Msgs, Msgs]:
        """A worker left or died: its running tasks and the results only it held are redone."""
        ws = self.workers.pop(address, None)
        if ws is None:
            return self._collect()
        self.worker_list.remove(ws)
        recs: dict[Key, str] = {}
        for ts in list(ws.processing):
            self._unassign(ts, tell_worker=False)
            recs[ts.key] = "released"
        for ts in ws.has_what:
            ts.who_has.remove(ws)
            if not ts.who_has:
                recs[ts.key] = "released"
        ws.has_what.clear()
        for ext in self.extensions:
            ext.workers_changed(ws, False, recs, stimulus_id)
        self._transitions_loop(recs, stimulus_id)
        return self._collect()

    def add_client(self, client: str) -> None:
        self.clients.add(client)

    def remove_client(self, client: str, *, stimulus_id: str) -> tuple[Msgs, Msgs]:
        self.clients.discard(client)
        keys = [ts.key for ts in self.tasks.values() if ts.who_wants and client in ts.who_wants]
        return self.release_keys(client, keys, stimulus_id=stimulus_id)

    def update_graph(
        self,
        client: str,
        tasks: Mapping[Key, tuple[Sequence[Key], object, int, str]],
        wanted: Iterable[Key],
        order: Mapping[Key, int],
        *,
        stimulus_id: str,
    ) -> tuple[Msgs, Msgs]:
        """Add tasks ``{key: (dependency keys, run, kind, prefix)}``; ``client`` wants ``wanted``.

        Dependencies must be in ``tasks`` or already known; the client validated the graph.
        """
        all_tasks = self.tasks
        wanted = list(wanted)
        # check everything first: a refused graph leaves no trace
        for key, spec in tasks.items():
            for dk in spec[0]:
                if dk not in tasks and dk not in all_tasks:
                    raise KeyError(f"task {key!r} depends on unknown key {dk!r}")
        for key in wanted:
            if key not in tasks and key not in all_tasks:
                raise KeyError(f"wanted key {key!r} is not in the graph")
        self.generation += 1
        base = self.generation << 40
        new: list[TaskState] = []
        linked: list[tuple[TaskState, Sequence[Key]]] = []
        priority = order.get
        for key, (deps, run, kind, prefix) in tasks.items():
            if key in all_tasks:
                continue
            ts = TaskState(key, prefix, run, kind, base + priority(key, 0))
            all_tasks[key] = ts
            new.append(ts)
            if deps:
                linked.append((ts, deps))
        for ts, deps in linked:
            ts.dependencies = tuple([all_tasks[dk] for dk in deps])
            for dts in ts.dependencies:
                _add_dependent(dts, ts)
        for ext in self.extensions:
            ext.adopt(new, stimulus_id)
        recs: dict[Key, str] = {}
        only_client = frozenset((client,))
        for key in wanted:
            ts = all_tasks[key]
            if ts.who_wants is None:
                ts.who_wants = only_client
            elif client not in ts.who_wants:
                ts.who_wants = ts.who_wants | only_client
            if ts.state == "memory":
                self._in_memory.setdefault(client, []).append(ts)
            elif ts.state == "erred":
                self._report_error(ts, {client})
            elif ts.state == "released":
                recs[key] = "waiting"
        for ts in sorted(new, key=_by_priority):
            if ts.state == "released":
                recs[ts.key] = "waiting"
        self._transitions_loop(recs, stimulus_id)
        return self._collect()

    def tasks_finished(
        self, address: str, done: Iterable[tuple[Key, int, float]], *, stimulus_id: str
    ) -> tuple[Msgs, Msgs]:
        """A batch of ``(key, nbytes, duration)`` from one worker."""
        ws = self.workers.get(address)
        if ws is None:
            return self._collect()
        recs: dict[Key, str] = {}
        for key, nbytes, duration in done:
            ts = self.tasks.get(key)
            if ts is None or ts.state == "forgotten":
                self._free.setdefault(address, []).append(key)
                continue
            if ts.state == "processing" and ts.processing_on is ws:
                ts.nbytes = nbytes
                ts.duration = duration
                self._transition(ts, "memory", stimulus_id, recs, ws)
            elif ts.state == "memory":
                _add_replica(ts, ws)
            else:
                # a result nobody asked this worker for (it was moved or released meanwhile)
                self._free.setdefault(address, []).append(key)
        self._transitions_loop(recs, stimulus_id)
        return self._collect()

    def task_erred(
        self, address: str, key: Key, error: dict[str, Any], *, stimulus_id: str
    ) -> tuple[Msgs, Msgs]:
        """A task raised; ``error`` holds the pickled exception and the remote traceback."""
        ts = self.tasks.get(key)
        ws = self.workers.get(address)
        if ts is None or ws is None or ts.state != "processing" or ts.processing_on is not ws:
            return self._collect()
        ts.exception = {**error, "origin": key}
        self._transitions_loop({key: "erred"}, stimulus_id)
        return self._collect()

    def missing_data(
        self, address: str, key: Key, source: str, task: Key, *, stimulus_id: str
    ) -> tuple[Msgs, Msgs]:
        """Worker ``address`` could not fetch ``key`` from ``source`` for ``task``."""
        recs: dict[Key, str] = {}
        ts = self.tasks.get(key)
        src = self.workers.get(source)
        if ts is not None and src is not None and src in ts.who_has:
            ts.who_has.remove(src)
            src.has_what.pop(ts, None)
            src.nbytes -= ts.nbytes
            if not ts.who_has and ts.state == "memory":
                recs[key] = "released"
        dts = self.tasks.get(task)
        if dts is not None and dts.state == "processing":
            pw = dts.processing_on
            if pw is not None and pw.address == address:
                recs[task] = "released"
        self._transitions_loop(recs, stimulus_id)
        return self._collect()

    def release_keys(
        self, client: str, keys: Iterable[Key], *, stimulus_id: str
    ) -> tuple[Msgs, Msgs]:
        recs: dict[Key, str] = {}
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None or not ts.who_wants or client not in ts.who_wants:
                continue
            ts.who_wants = ts.who_wants - {client} or None
            if ts.who_wants is None:
                if not ts.waiters and ts.state in ("memory", "erred", "released"):
                    recs[key] = "released" if ts.state != "released" else "forgotten"
                elif not ts.waiters and not ts.dependents:
                    recs[key] = "released"
        self._transitions_loop(recs, stimulus_id)
        return self._collect()

    def fail_unrunnable(self, reason: str, *, stimulus_id: str) -> tuple[Msgs, Msgs]:
        """Give up on tasks that have waited too long for a worker."""
        recs: dict[Key, str] = {}
        for ts in sorted(self.unrunnable, key=_by_priority):
            ts.exception = {"exception": None, "text": reason, "traceback": "", "origin": ts.key}
            recs[ts.key] = "erred"
        self._transitions_loop(recs, stimulus_id)
        return self._collect()

    def task_started(
        self, address: str, started: Iterable[tuple[Key, float]], *, stimulus_id: str
    ) -> tuple[Msgs, Msgs]:
        """Workers report starts of tasks whose prefix has no finished task yet."""
        for key, start in started:
            ts = self.tasks.get(key)
            if ts is None or ts.state != "processing" or ts.processing_on is None:
                continue
            if ts.processing_on.address != address:
                continue
            if ts.steal_level >= 0:  # running: no longer worth asking for
                ts.processing_on.stealable[ts.steal_level].pop(ts, None)
                ts.steal_level = -1
            if ts.prefix not in self.durations:
                first = self.first_started.get(ts.prefix)
                if first is None or start < first:
                    self.first_started[ts.prefix] = start
        return self._collect()

    def add_replicas(
        self, address: str, keys: Iterable[tuple[Key, int]], *, stimulus_id: str
    ) -> tuple[Msgs, Msgs]:
        """A worker fetched copies of these results from peers and still holds them."""
        ws = self.workers.get(address)
        if ws is None:
            return self._collect()
        for key, _nbytes in keys:
            ts = self.tasks.get(key)
            if ts is not None and ts.state == "memory":
                _add_replica(ts, ws)
            else:
                self._free.setdefault(address, []).append(key)
        return self._collect()

    def shuffle_request(
        self, address: str, msg: dict[str, Any], *, stimulus_id: str
    ) -> tuple[Msgs, Msgs]:
        """A p2p shuffle task on ``address`` asks for its plan; the reply goes back to it."""
        if self.shuffles is None:
            self.shuffles = P2PState(self)
            self.add_extension(self.shuffles)
        recs: dict[Key, str] = {}
        self.shuffles.request(address, msg, recs, stimulus_id)
        self._transitions_loop(recs, stimulus_id)
        return self._collect()

    def balance(self, now: float, *, stimulus_id: str) -> tuple[Msgs, Msgs]:
        """The periodic tick: refresh estimates and occupancies, then propose steals."""
        default = self.default_duration
        for prefix, first in self.first_started.items():
            self.running_estimates[prefix] = max(default, now - first)
        estimate = self.estimate
        for ws in self.worker_list:
            ws.occupancy = sum(n * estimate(p) for p, n in ws.prefix_counts.items())
        if self.stealing is not None:
            requests: dict[WorkerState, list[Key]] = {}
            for ts, victim, thief in self.stealing.balance(self):
                victim.stealable[ts.steal_level].pop(ts, None)
                ts.steal_level = -1
                self.steals[ts] = (victim, thief)
                requests.setdefault(victim, []).append(ts.key)
                self.log_event(
                    ts.key, "steal-request", (victim.address, thief.address), stimulus_id
                )
            for victim, keys in requests.items():
                self._worker_msgs.setdefault(victim.address, []).append(
                    {"op": "steal-request", "keys": keys}
                )
        return self._collect()

    def steal_response(
        self, address: str, key: Key, stolen: bool, *, stimulus_id: str
    ) -> tuple[Msgs, Msgs]:
        """The victim's answer: ``stolen`` if it gave the task up unstarted."""
        ts = self.tasks.get(key)
        entry = self.steals.get(ts) if ts is not None else None
        if entry is None or entry[0].address != address:
            return self._collect()  # stale: the task moved on since the request
        del self.steals[ts]
        victim, thief = entry
        if not stolen:
            self.log_event(key, "steal-refused", (victim.address, thief.address), stimulus_id)
            return self._collect()
        if thief.address not in self.workers:
            # the thief left meanwhile: place it afresh (the victim is alive: it answered)
            thief = self.placement.choose(self, ts)
        self.log_event(key, "stolen", (victim.address, thief.address), stimulus_id)
        recs: dict[Key, str] = {}
        self._transition(ts, "processing", stimulus_id, recs, thief)
        self._transitions_loop(recs, stimulus_id)
        return self._collect()

    def estimate(self, prefix: str) -> float:
        """Expected seconds for a task of ``prefix`` (see the module docstring)."""
        known = self.durations.get(prefix)
        if known is not None:
            return known
        return self.running_estimates.get(prefix, self.default_duration)

    def can_steal(self, ts: TaskState, victim: WorkerState) -> bool:
        """Queued on ``victim``, inputs all in memory, no dependent waiting for it there."""
        if ts.state != "processing" or ts.processing_on is not victim or ts in self.steals:
            return False
        if ts.waiting_on or ts.restriction is not None:
            return False
        return not any(d.state == "processing" and d.processing_on is victim for d in ts.dependents)

    # ================================================================== queries

    def story(self, key: Key) -> list[tuple[Key, TaskStateName, TaskStateName, str]]:
        """Every logged transition of ``key``: (key, start, finish, stimulus_id)."""
        return [entry for entry in self.log if entry[0] == key]

    def events_of(self, key: Key) -> list[tuple[Key, str, Any, str]]:
        """Every logged event of ``key`` that is not a transition: (key, what, detail, sid)."""
        return [entry for entry in self.events if entry[0] == key]

    # ================================================================== for extensions

    def add_extension(self, ext: StateExtension) -> None:
        """Call ``ext`` at the extension points from now on."""
        self.extensions.append(ext)
        self._internal_clients = self._internal_clients | {ext.client}

    def message_worker(self, address: str, msg: dict[str, Any]) -> None:
        """Queue ``msg`` for the worker at ``address``; it leaves with this event's messages."""
        self._worker_msgs.setdefault(address, []).append(msg)

    def log_event(self, key: Key, what: str, detail: Any, stimulus_id: str) -> None:
        """Log something that happened to ``key`` and is not a transition."""
        self.events.append((key, what, detail, stimulus_id))

    def who_has(self, keys: Iterable[Key]) -> dict[Key, list[str]]:
        out = {}
        for key in keys:
            ts = self.tasks.get(key)
            out[key] = [ws.address for ws in ts.who_has] if ts is not None else []
        return out

    # ================================================================== machinery

    def _collect(self) -> tuple[Msgs, Msgs]:
        wm = self._worker_msgs
        for addr, keys in self._free.items():
            if keys and addr in self.workers:
                wm.setdefault(addr, []).append({"op": "free", "keys": list(dict.fromkeys(keys))})
        for ws, tss in self._compute.items():
            addr = ws.address
            tasks = []
            runs = []
            durations = self.durations
            for ts in dict.fromkeys(tss):
                if ts.processing_on is not ws:
                    continue  # assigned and taken back within this event
                deps = (
                    [
                        (dts.key, dts.nbytes, [w.address for w in dts.who_has if w is not ws])
                        for dts in ts.dependencies
                    ]
                    if ts.dependencies
                    else ()  # shared: a million roots need no million empty lists
                )
                report_start = ts.prefix not in durations
                tasks.append((ts.key, ts.priority, ts.kind, deps, report_start))
                runs.append(ts.run)
            if tasks:
                wm.setdefault(addr, []).append({"op": "compute", "tasks": tasks, "runs": runs})
        for client, tss in self._in_memory.items():
            if tss:
                self._client_msgs.setdefault(client, []).append(
                    {
                        "op": "in-memory",
                        "keys": [ts.key for ts in tss],
                        "who_has": [[w.address for w in ts.who_has] for ts in tss],
                    }
                )
        self._compute = {}
        self._free = {}
        self._in_memory = {}
        out = self._worker_msgs, self._client_msgs
        self._worker_msgs = {}
        self._client_msgs = {}
        if self.validate:
            self.validate_state()
        return out

    def _transitions_loop(self, recs: dict[Key, str], stimulus_id: str) -> None:
        tasks = self.tasks
        log = self.log
        while recs:
            key, finish = recs.popitem()
            ts = tasks.get(key)
            if ts is None:
                continue
            start = ts.state
            if start == finish:
                continue
            if (
                start == "released"
                and finish == "waiting"
                and not ts.dependencies
                and ts.extension is None
                and ts.restriction is None
                and self.worker_list
            ):
                # a root: exactly what released -> waiting and its "processing" recommendation
                # (popped next) would do, without the round trip through ``recs``
                ts.state = "waiting"
                ts.waiting_on = 0
                log.append((key, "released", "waiting", stimulus_id))
                ws = self.placement.choose(self, ts)
                ts.placed_by = "policy"
                self._assign(ts, ws, recs)  # type: ignore[arg-type]  # workers exist
                log.append((key, "waiting", "processing", stimulus_id))
                continue
            if finish == "processing" and (start == "waiting" or start == "no-worker"):
                # decided now, not when recommended: its inputs may have moved meanwhile
                finish, ws = self._placement(ts)
                if finish == start:
                    continue
                if ws is not None:
                    self._transition(ts, finish, stimulus_id, recs, ws)
                    continue
            self._transition(ts, finish, stimulus_id, recs)

    def _placement(self, ts: TaskState) -> tuple[TaskStateName, WorkerState | None]:
        """Where a waiting or no-worker task goes now: ``("processing", worker)``;
        ``("no-worker", None)`` when it is ready but no worker may take it; or
        ``("waiting", None)`` while an input is missing or its extension holds it back."""
        ext = ts.extension
        if ext is not None and not ext.may_run(ts):
            return "waiting", None
        rw = ts.restriction
        if ts.waiting_on:
            ws = self._pinned_worker(ts)
            if ws is None:
                return "waiting", None
            ts.placed_by = "eager" if rw is None else "restriction"
            return "processing", ws
        rule: PlacementRule
        if rw is None:
            ws, rule = self.placement.choose(self, ts), "policy"
        else:
            ws, rule = (rw if self.workers.get(rw.address) is rw else None), "restriction"
        if ws is None:
            return "no-worker", None
        ts.placed_by = rule
        return "processing", ws

    def _transition(
        self,
        ts: TaskState,
        finish: str,
        stimulus_id: str,
        recs: dict[Key, str],
        *args: Any,
    ) -> None:
        start = ts.state
        func = self._transitions.get((start, finish))
        if func is None:
            raise InvalidTransition(
                f"Impossible transition from {start} to {finish} for {ts.key!r}"
            )
        func(ts, recs, *args)
        if self.validate:
            assert ts.state == finish, f"{start} -> {finish} ended in {ts.state}: {ts.key!r}"
        self.log.append((ts.key, start, finish, stimulus_id))
        ext = ts.extension
        if ext is not None:
            ext.transitioned(ts, start, finish, recs, stimulus_id)

    # ---------------------------------------------------------------- transitions

    def _released_waiting(self, ts: TaskState, recs: dict[Key, str]) -> None:
        ts.state = "waiting"
        waiting_on = 0
        for dts in ts.dependencies:
            if dts.state != "memory":
                waiting_on += 1
                _add_waiter(dts, ts)
                if dts.state == "released":
                    recs[dts.key] = "waiting"
                elif dts.state == "erred":
                    ts.exception = dts.exception
                    recs[ts.key] = "erred"
            else:
                _add_waiter(dts, ts)
        ts.waiting_on = waiting_on
        if waiting_on == 0 or self._pinned_worker(ts) is not None:
            recs[ts.key] = "processing"

    def _released_forgotten(self, ts: TaskState, recs: dict[Key, str]) -> None:
        ts.state = "forgotten"
        del self.tasks[ts.key]
        for dts in ts.dependencies:
            _discard(dts.dependents, ts)
            _discard(dts.waiters, ts)
            if dts.who_wants:
                continue
            if not dts.dependents:
                recs[dts.key] = "forgotten" if dts.state == "released" else "released"
            elif not dts.waiters and dts.state == "memory":
                recs[dts.key] = "released"
        ts.dependencies = ()

    def _waiting_processing(self, ts: TaskState, recs: dict[Key, str], ws: WorkerState) -> None:
        self._assign(ts, ws, recs)

    def _no_worker_processing(self, ts: TaskState, recs: dict[Key, str], ws: WorkerState) -> None:
        self.unrunnable.pop(ts, None)
        self._assign(ts, ws, recs)

    def _no_worker_waiting(self, ts: TaskState, recs: dict[Key, str]) -> None:
        self.unrunnable.pop(ts, None)
        ts.state = "waiting"

    def _processing_processing(self, ts: TaskState, recs: dict[Key, str], ws: WorkerState) -> None:
        """A steal: the victim gave ``ts`` up unstarted; it runs on ``ws`` instead."""
        self._unassign(ts, tell_worker=False)  # the victim already dropped it
        ts.placed_by = "steal"
        self._assign(ts, ws, recs)

    def _waiting_no_worker(self, ts: TaskState, recs: dict[Key, str]) -> None:
        ts.state = "no-worker"
        self.unrunnable[ts] = None

    def _assign(self, ts: TaskState, ws: WorkerState, recs: dict[Key, str]) -> None:
        prefix = ts.prefix
        ts.state = "processing"
        ts.processing_on = ws
        ws.processing[ts] = None
        counts = ws.prefix_counts
        counts[prefix] = counts.get(prefix, 0) + 1
        duration = self.durations.get(prefix)
        if duration is None:
            duration = self.running_estimates.get(prefix, self.default_duration)
        ws.occupancy += duration
        if ts.waiting_on == 0:
            self._mark_stealable(ts, duration)
        compute = self._compute.get(ws)
        if compute is None:
            compute = self._compute[ws] = []
        compute.append(ts)
        # hand over dependents whose inputs are now all here or already in memory
        for dts in ts.dependents:
            if dts.state == "waiting" and self._pinned_worker(dts) is ws:
                recs[dts.key] = "processing"

    def _mark_stealable(self, ts: TaskState, duration: float | None = None) -> None:
        """File a queued task whose inputs are all in memory under its steal bin.

        A task with no inputs has the bin of its prefix's estimate, cached per estimate.
        """
        stealing = self.stealing
        if stealing is None or ts.steal_level >= 0 or ts.restriction is not None:
            return
        if ts.dependencies:
            level = stealing.level(self, ts)
        else:
            if duration is None:
                duration = self.estimate(ts.prefix)
            levels = self._root_levels
            level = levels.get(duration, -1)
            if level < 0:
                if len(levels) >= 1024:  # estimates drift as tasks finish: keep it bounded
                    levels.clear()
                level = levels[duration] = stealing.level(self, ts)
        if level >= 0:
            ts.steal_level = level
            ts.processing_on.stealable[level][ts] = None

    def _pinned_worker(self, ts: TaskState) -> WorkerState | None:
        """Where ``ts`` goes at once, before its input finishes, if anywhere.

        A task with a single input that is running (a chain link, or one branch of a
        fan-out) goes to that input's worker: no transfer, no round trip. Reductions (two
        or more inputs) are not pinned: they wait for their inputs and are placed by policy,
        so that one worker does not collect a whole tree; stealing spreads fan-outs.
        """
        if len(ts.dependencies) != 1:
            return None
        (dts,) = ts.dependencies
        if dts.state != "processing" or dts in self.steals:
            return None
        ws = dts.processing_on
        if ts.restriction is not None and ws is not ts.restriction:
            return None
        return ws

    def _processing_memory(self, ts: TaskState, recs: dict[Key, str], ws: WorkerState) -> None:
        self._unassign(ts, tell_worker=False)
        prefix = ts.prefix
        old = self.durations.get(prefix)
        if old is None:
            self.durations[prefix] = ts.duration
            self.first_started.pop(prefix, None)
            self.running_estimates.pop(prefix, None)
        else:
            self.durations[prefix] = old + DURATION_ALPHA * (ts.duration - old)
        ts.state = "memory"
        ts.who_has = [ws]
        ws.has_what[ts] = None
        ws.nbytes += ts.nbytes
        for dts in ts.dependents:
            st = dts.state
            if st == "waiting":
                dts.waiting_on -= 1
                if dts.waiting_on == 0 or self._pinned_worker(dts) is not None:
                    recs[dts.key] = "processing"
            elif st == "processing":
                dts.waiting_on -= 1
                if dts.waiting_on == 0:
                    self._mark_stealable(dts)
        for dts in ts.dependencies:
            _discard(dts.waiters, ts)
            if not dts.waiters and not dts.who_wants:
                recs[dts.key] = "released"
        if ts.who_wants:
            internal = self._internal_clients
            for client in ts.who_wants:
                if client not in internal:
                    self._in_memory.setdefault(client, []).append(ts)
        elif not ts.waiters:
            recs[ts.key] = "released"

    def _processing_erred(self, ts: TaskState, recs: dict[Key, str]) -> None:
        self._unassign(ts)
        self._erred(ts, recs)

    def _waiting_erred(self, ts: TaskState, recs: dict[Key, str]) -> None:
        self._erred(ts, recs)

    def _released_erred(self, ts: TaskState, recs: dict[Key, str]) -> None:
        self._erred(ts, recs)

    def _no_worker_erred(self, ts: TaskState, recs: dict[Key, str]) -> None:
        self.unrunnable.pop(ts, None)
        self._erred(ts, recs)

    def _erred(self, ts: TaskState, recs: dict[Key, str]) -> None:
        ts.state = "erred"
        for dts in ts.dependents:
            if dts.state in ("waiting", "processing", "no-worker", "released"):
                dts.exception = ts.exception
                recs[dts.key] = "erred"
        for dts in ts.dependencies:
            _discard(dts.waiters, ts)
            if not dts.waiters and not dts.who_wants and dts.state == "memory":
                recs[dts.key] = "released"
        if ts.who_wants:
            self._report_error(ts, ts.who_wants)
        elif not ts.dependents:
            recs[ts.key] = "released"

    def _report_error(self, ts: TaskState, clients: Iterable[str]) -> None:
        exc = ts.exception or {}
        for client in clients:
            if client in self._internal_clients:
                continue
            self._client_msgs.setdefault(client, []).append(
                {"op": "task-erred", "key": ts.key, **exc}
            )

    def _processing_released(self, ts: TaskState, recs: dict[Key, str]) -> None:
        self._unassign(ts)
        self._to_released(ts, recs)

    def _unassign(self, ts: TaskState, tell_worker: bool = True) -> None:
        """Take ``ts`` off its worker; tell the worker to drop it (a no-op if it already did)."""
        ws = ts.processing_on
        if ws is None:
            return
        ws.processing.pop(ts, None)
        prefix = ts.prefix
        left = ws.prefix_counts[prefix] - 1
        if left:
            ws.prefix_counts[prefix] = left
        else:
            del ws.prefix_counts[prefix]
        ws.occupancy -= self.estimate(prefix)
        if ws.occupancy < 1e-12 or not ws.processing:
            ws.occupancy = 0.0
        if ts.steal_level >= 0:
            ws.stealable[ts.steal_level].pop(ts, None)
            ts.steal_level = -1
        self.steals.pop(ts, None)
        if tell_worker:
            self._free.setdefault(ws.address, []).append(ts.key)
        ts.processing_on = None

    def _waiting_released(self, ts: TaskState, recs: dict[Key, str]) -> None:
        self._to_released(ts, recs)

    def _no_worker_released(self, ts: TaskState, recs: dict[Key, str]) -> None:
        self.unrunnable.pop(ts, None)
        self._to_released(ts, recs)

    def _memory_released(self, ts: TaskState, recs: dict[Key, str]) -> None:
        for ws in ts.who_has:
            ws.has_what.pop(ts, None)
            ws.nbytes -= ts.nbytes
            self._free.setdefault(ws.address, []).append(ts.key)
        ts.who_has = ()
        for dts in ts.dependents:
            st = dts.state
            if st == "waiting" or st == "processing":
                dts.waiting_on += 1
            if st == "processing" or st == "no-worker":
                recs[dts.key] = "released"
        self._to_released(ts, recs)

    def _erred_released(self, ts: TaskState, recs: dict[Key, str]) -> None:
        ts.exception = None
        self._to_released(ts, recs)

    def _to_released(self, ts: TaskState, recs: dict[Key, str]) -> None:
        ts.state = "released"
        for dts in ts.dependencies:
            _discard(dts.waiters, ts)
        if ts.who_wants or ts.waiters:
            recs[ts.key] = "waiting"
            for dts in ts.waiters:
                if dts.state == "processing":
                    recs[dts.key] = "released"
        elif not ts.dependents:
            recs[ts.key] = "forgotten"
        else:
            # kept (released) so that dependents' results can be recomputed
            for dts in ts.dependencies:
                if not dts.waiters and not dts.who_wants and dts.state == "memory":
                    recs[dts.key] = "released"

    # ================================================================== checks

    def validate_state(self) -> None:
        """Check every invariant; raises AssertionError naming the task or worker."""
        for key, ts in self.tasks.items():
            assert ts.key == key, key
            st = ts.state
            assert st in ("released", "waiting", "no-worker", "processing", "memory", "erred"), ts
            if st == "processing":
                ws = ts.processing_on
                assert ws is not None and ws.address in self.workers, ts
                assert ts in ws.processing, (ts, ws)
                for dts in ts.dependencies:
                    assert dts.state == "memory" or (
                        dts.state == "processing" and dts.processing_on is ws
                    ), (ts, dts)
            else:
                assert ts.processing_on is None, ts
            if st == "memory":
                assert ts.who_has, ts
                for ws in ts.who_has:
                    assert ts in ws.has_what and ws.address in self.workers, (ts, ws)
            else:
                assert not ts.who_has, ts
            if st in ("waiting", "processing"):
                missing = sum(1 for d in ts.dependencies if d.state != "memory")
                assert ts.waiting_on == missing, (ts, ts.waiting_on, missing)
            ext = ts.extension
            if st == "waiting":
                assert (
                    (ts.waiting_on > 0 and self._pinned_worker(ts) is None)
                    or not self.workers
                    or (ext is not None and not ext.may_run(ts))
                ), ts
            rw = ts.restriction
            if rw is not None:
                assert self.workers.get(rw.address) is rw, (ts, rw)
                assert ts.steal_level < 0 and ts not in self.steals, ts
                assert st != "processing" or ts.processing_on is rw, (ts, rw)
            assert ext is None or ext in self.extensions, ts
            if st == "no-worker":
                assert ts in self.unrunnable, ts
            for dts in ts.dependencies:
                assert ts in dts.dependents, (ts, dts)
                assert dts.key in self.tasks, (ts, dts)
            for dts in ts.waiters:
                assert dts.state not in ("memory", "forgotten"), (ts, dts)
        assert [ws.address for ws in self.worker_list] == list(self.workers)
        for ws in self.workers.values():
            counts: dict[str, int] = {}
            for ts in ws.processing:
                assert ts.processing_on is ws, (ws, ts)
                counts[ts.prefix] = counts.get(ts.prefix, 0) + 1
            assert counts == ws.prefix_counts, (ws, counts, ws.prefix_counts)
            for ts in ws.has_what:
                assert ws in ts.who_has, (ws, ts)
            assert ws.occupancy >= 0 and (ws.processing or ws.occupancy == 0), ws
            for level, bin_ in enumerate(ws.stealable):
                for ts in bin_:
                    assert ts in ws.processing and ts.steal_level == level, (ws, ts)
        for ts, (victim, _thief) in self.steals.items():
            assert ts.state == "processing" and ts.processing_on is victim, ts
        for ts in self.unrunnable:
            assert ts.state == "no-worker", ts
        for ext in self.extensions:
            ext.validate()


def _add_replica(ts: TaskState, ws: WorkerState) -> None:
    """``ws`` holds a copy of the result of ``ts`` (which is in memory)."""
    if ws not in ts.who_has:
        ts.who_has.append(ws)
        ws.has_what[ts] = None
        ws.nbytes += ts.nbytes


def _add_dependent(ts: TaskState, dependent: TaskState) -> None:
    if ts.dependents is _NO_TASKS:
        ts.dependents = {dependent: None}
    else:
        ts.dependents[dependent] = None


def _add_waiter(ts: TaskState, waiter: TaskState) -> None:
    if ts.waiters is _NO_TASKS:
        ts.waiters = {waiter: None}
    else:
        ts.waiters[waiter] = None


def _discard(tasks: dict | frozenset, ts: TaskState) -> None:
    if ts in tasks:
        del tasks[ts]  # type: ignore[attr-defined]  # never the shared empty frozenset


def _by_priority(ts: TaskState) -> int:
    return ts.priority
