"""Placement and work-stealing policies, chosen by name. Pure: no I/O, no clock.

Placement decides where a ready task goes:

- ``random``: a uniformly random worker (seeded, so runs repeat);
- ``round-robin``: the next worker in join order;
- ``locality``: the earliest estimated start — the worker's occupancy per thread plus the
  time to move the task's missing input bytes at the measured bandwidth.

Work stealing runs on a periodic ``balance`` tick. It moves queued tasks from saturated
workers to idle ones when the compute time saved exceeds the transfer cost. Each worker's
stealable tasks sit in log2 bins of their compute:transfer ratio, so a tick looks at the
most worthwhile tasks first and never scans everything. A steal is only a proposal: the
victim gives the task up only if it has not started it (see ``SchedulerState``).
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskbench.engine.state import SchedulerState, TaskState, WorkerState

STEAL_LEVELS = 15  # bins 0..14: compute/transfer ratio 2^0 .. 2^14 and above


class Placement:
    """Where a ready task with no pinned inputs should run."""

    name = ""

    def choose(self, state: SchedulerState, ts: TaskState) -> WorkerState | None:
        raise NotImplementedError


class RandomPlacement(Placement):
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def choose(self, state: SchedulerState, ts: TaskState) -> WorkerState | None:
        workers = state.worker_list
        return workers[self.rng.randrange(len(workers))] if workers else None


class RoundRobinPlacement(Placement):
    name = "round-robin"

    def __init__(self, seed: int = 0) -> None:
        self.next = 0

    def choose(self, state: SchedulerState, ts: TaskState) -> WorkerState | None:
        workers = state.worker_list
        if not workers:
            return None
        ws = workers[self.next % len(workers)]
        self.next += 1
        return ws


class LocalityPlacement(Placement):
    name = "locality"

    def __init__(self, seed: int = 0) -> None:
        pass

    def choose(self, state: SchedulerState, ts: TaskState) -> WorkerState | None:
        workers = state.worker_list
        if not workers:
            return None
        best = min(workers, key=_load)
        if not ts.dependencies:
            return best
        total = 0
        held: dict[WorkerState, int] = {}
        for dts in ts.dependencies:
            total += dts.nbytes
            for ws in dts.who_has:
                held[ws] = held.get(ws, 0) + dts.nbytes
        bandwidth = state.bandwidth
        best_cost = _load(best) + (total - held.get(best, 0)) / bandwidth
        for ws, nbytes in held.items():
            cost = _load(ws) + (total - nbytes) / bandwidth
            if cost < best_cost:
                best, best_cost = ws, cost
        return best


PLACEMENTS: dict[str, type[Placement]] = {
    p.name: p for p in (RandomPlacement, RoundRobinPlacement, LocalityPlacement)
}


def make_placement(name: str, seed: int = 0) -> Placement:
    try:
        return PLACEMENTS[name](seed)
    except KeyError:
        raise ValueError(
            f"unknown placement policy {name!r}; choose one of {sorted(PLACEMENTS)}"
        ) from None


def _load(ws: WorkerState) -> float:
    return ws.occupancy / ws.nthreads


# ---------------------------------------------------------------- work stealing


class WorkStealing:
    """Moves queued work from saturated to idle workers on each ``balance`` tick."""

    def __init__(self, latency: float = 1e-4, max_steals_per_tick: int = 10_000) -> None:
        self.latency = latency
        self.max_steals_per_tick = max_steals_per_tick

    def transfer_time(self, state: SchedulerState, ts: TaskState, ws: WorkerState | None) -> float:
        """Seconds to bring the inputs of ``ts`` to ``ws`` (to anyone, for ``None``)."""
        missing = sum(d.nbytes for d in ts.dependencies if ws is None or ws not in d.who_has)
        return self.latency + missing / state.bandwidth

    def level(self, state: SchedulerState, ts: TaskState) -> int:
        """The bin of ``ts``: log2 of its compute time over the cost of moving it, from 0.

        Bins only order the search; whether a steal pays off is decided at the tick, with
        the estimates of that moment (a bin may be stale: durations are learnt as we go).
        """
        ratio = state.estimate(ts.prefix) / self.transfer_time(state, ts, None)
        return min(max(int(math.log2(ratio)), 0), STEAL_LEVELS - 1) if ratio >= 1 else 0

    def balance(self, state: SchedulerState) -> list[tuple[TaskState, WorkerState, WorkerState]]:
        """Steals to propose: (task, victim, thief), most worthwhile first."""
        workers = state.worker_list
        if len(workers) < 2:
            return []
        total_threads = sum(ws.nthreads for ws in workers)
        mean = sum(ws.occupancy for ws in workers) / total_threads
        thieves = sorted((ws for ws in workers if _load(ws) < mean), key=_load)
        victims = sorted(
            (ws for ws in workers if _load(ws) > mean and any(ws.stealable)),
            key=_load,
            reverse=True,
        )
        if not thieves or not victims:
            return []
        load = {ws: ws.occupancy for ws in workers}
        proposals: list[tuple[TaskState, WorkerState, WorkerState]] = []
        for victim in victims:
            self._drain(state, victim, thieves, load, mean, proposals)
            if len(proposals) >= self.max_steals_per_tick:
                break
        return proposals

    def _drain(
        self,
        state: SchedulerState,
        victim: WorkerState,
        thieves: list[WorkerState],
        load: dict[WorkerState, float],
        mean: float,
        proposals: list[tuple[TaskState, WorkerState, WorkerState]],
    ) -> None:
        """Propose steals from ``victim``, best bins first, while each one pays off."""
        for level in range(STEAL_LEVELS - 1, -1, -1):
            for ts in list(victim.stealable[level]):
                if len(proposals) >= self.max_steals_per_tick:
                    return
                if not state.can_steal(ts, victim):
                    continue
                thief = min(thieves, key=lambda w: load[w] / w.nthreads)
                d = state.estimate(ts.prefix)
                move = self.transfer_time(state, ts, thief)
                # worth it when the task would finish on the thief before it starts here
                if (load[victim] - d) / victim.nthreads <= load[thief] / thief.nthreads + move + d:
                    break  # the rest of this bin is alike: try a lower one
                proposals.append((ts, victim, thief))
                load[victim] -= d
                load[thief] += d + move
                if load[victim] / victim.nthreads <= mean:
                    return
