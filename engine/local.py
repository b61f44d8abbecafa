"""The synchronous executor: the whole graph in the calling thread, in priority order.

It runs the same graph normalisation and task execution as the cluster, and records the
same task records, so any bug can be replayed in one thread.
"""

from __future__ import annotations

import heapq
import time
from typing import Any

from taskbench.engine.graph import (
    execute,
    key_prefix,
    key_str,
    normalize_graph,
    order,
    pack_results,
)
from taskbench.engine.sizeof import sizeof
from taskbench.engine.stream import TaskRecord, TaskStream

WORKER_NAME = "sync"


class SyncExecutor:
    """``get(dsk, keys)`` in one thread; ``stream`` keeps every task record."""

    def __init__(self) -> None:
        self.stream = TaskStream()

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        tasks, out_keys = normalize_graph(dsk, keys)
        deps = {k: t.dependencies for k, t in tasks.items()}
        priority = order(deps)
        waiting = {k: len(d) for k, d in deps.items()}
        dependents: dict[Any, list] = {}
        for k, ds in deps.items():
            for d in ds:
                dependents.setdefault(d, []).append(k)
        # a result is dropped once no dependent still needs it and nobody asked for it
        needed = {k: len(dependents.get(k, ())) for k in tasks}
        wanted = set(out_keys)
        ready = [(priority[k], k) for k, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        data: dict[Any, Any] = {}
        records = self.stream.records
        while ready:
            _, key = heapq.heappop(ready)
            spec = tasks[key]
            values = {d: data[d] for d in spec.dependencies}
            queued = time.time()
            start = time.time()
            result = execute(spec.run, spec.kind, values)
            stop = time.time()
            nbytes = sizeof(result)
            sized = time.time()
            records.append(
                TaskRecord(key_str(key), key_prefix(key), WORKER_NAME, 0, queued, start, stop,
                           nbytes, sized - stop, "memory", [])
            )  # fmt: skip
            data[key] = result
            for d in spec.dependencies:
                needed[d] -= 1
                if needed[d] == 0 and d not in wanted:
                    del data[d]
            for dep in dependents.get(key, ()):
                waiting[dep] -= 1
                if waiting[dep] == 0:
                    heapq.heappush(ready, (priority[dep], dep))
        return pack_results(keys, {k: data[k] for k in out_keys}, container=tuple)


def get_sync(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """dask-style ``get`` on the synchronous executor."""
    return SyncExecutor().get(dsk, keys, **kwargs)
