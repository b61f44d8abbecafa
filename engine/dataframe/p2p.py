"""The ``p2p`` shuffle's graph and task functions: workers exchange shards directly, outside
the graph, behind one barrier.

Graph (O(n + m) tasks for n inputs and m outputs; ``S`` is the output name):

- one ``p2p-assign`` task: asks the scheduler to give the m outputs owners among the workers
  alive when it runs (so the record, and the unpacks' restrictions, exist before any transfer
  runs); its result is the shuffle's *incarnation*, a number per scheduler record;
- n ``p2p-transfer`` tasks: order input ``i`` by target once (`PartitionSplit`), then deliver
  the shards through the worker's `ShuffleRuntime`: to each peer, the rows of the outputs it
  owns as one piece (strings as Arrow), and into this worker's own buffer, the rows of its
  outputs as another (no pickling, the input's string objects shared). It returns once every
  shard is acknowledged: a finished transfer means *delivered*;
- one ``p2p-barrier`` task on all transfers;
- m unpack tasks ``(S, j)``, each restricted to the owner of ``j``: concatenate the shards for
  ``j`` in input order with `concat_shards` (the same rows, in the same order, as the ``tasks``
  shuffle), and free them. An unpack checks that it holds a shard from every input (empty
  ones included) and raises if not, so a lost shard is an error, never a missing row.

A transfer whose send fails asks for a fresh plan and resends what the new plan needs; it
gives up after ``RETRY_TIMEOUT`` seconds of peers the scheduler still names as owners.
Without a cluster (the synchronous executor) the same tasks run against a process-local
runtime. The scheduler's bookkeeping (owners, epochs, faults) is ``engine.shuffle_state``;
the worker's buffers and sends are ``engine.shuffle_runtime``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from taskbench.engine.dataframe.core import new_name
from taskbench.engine.dataframe.partitioning import (
    PartitionSplit,
    check_partition_columns,
    concat_shards,
    piece_rows,
)
from taskbench.engine.shuffle_runtime import ShuffleRuntime, worker_runtime
from taskbench.engine.worker import get_worker

if TYPE_CHECKING:
    from taskbench.engine.dataframe.core import _Frame

#: Seconds a transfer keeps retrying a peer it cannot reach before it fails.
RETRY_TIMEOUT = 120.0

#: The runtime of tasks that run outside any worker (the synchronous executor).
_LOCAL_RUNTIME = ShuffleRuntime(None)


def _runtime() -> ShuffleRuntime:
    """The runtime of the worker whose thread runs this task; the local one outside workers."""
    worker = get_worker()
    return _LOCAL_RUNTIME if worker is None else worker_runtime(worker)


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
    arrays, as the ``tasks`` shuffle does (see ``PartitionSplit``); the rest is ignored.
    """
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
    check_partition_columns(df, columns)
    rt = _runtime()
    plan = rt.plan(spec, i)
    if plan is None:
        return inc  # this run is no longer wanted here
    m = spec["m"]
    targets = partitioner["func"](df, m, extra, **partitioner["kwargs"])
    split = PartitionSplit(df, targets, m, spec.get("encode_strings", True))
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
        parts.append(piece_rows(shard.batch.value(), shard.start, shard.stop))
    if not parts:
        return meta.copy()
    return concat_shards(parts, meta.columns)
