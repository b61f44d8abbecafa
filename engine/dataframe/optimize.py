"""Blockwise fusion: chains of partition-wise layers run as one task per partition.

Policy: a `Blockwise` layer's task ``(name, i)`` reads only partition ``i`` of its inputs
(row-wise operations, filters, the per-partition step of a reduction, a file read). Before a
graph is sent, connected blockwise layers with the same partition count are grouped, and each
partition of a group becomes one task: a `FusedProgram` that runs the group's steps in order
in one call, shared steps once. A group's results are the steps something outside needs (the
requested keys, or a task of another layer). With one result the fused task keeps that key,
so the task stream names it as before; with several it is a new ``fused-…`` key holding the
tuple, and its readers take their element with a nested ``getitem``. Layers join a group only
if no path leaves the group and comes back, so fusion never makes a cycle. A renumbered layer
(partition ``j`` reads partition ``i`` of its inputs, as a pruning filter does) joins its
inputs' group when each of its tasks reads one partition there and no two read the same: its
task runs in partition ``i``'s program.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from taskbench.engine.graph import execute


class Blockwise(dict):
    """A layer ``{(name, i): task}`` whose task ``i`` reads only partition ``i`` of its inputs;
    ``renumbered``: partition ``i`` reads some other partition of its inputs (a filter that
    left partitions out), so it starts a group and never joins its inputs'."""

    def __init__(self, tasks: Any = (), renumbered: bool = False) -> None:
        super().__init__(tasks)
        self.renumbered = renumbered


@dataclass(frozen=True, slots=True)
class FusedProgram:
    """One partition of a fused group: ``steps`` run in order on ``inputs``' values."""

    inputs: tuple
    steps: tuple  #: ((key, task), ...), each after what it reads
    outputs: tuple

    def __call__(self, *values: Any) -> Any:
        known = dict(zip(self.inputs, values, strict=True))
        for key, task in self.steps:
            known[key] = execute(task, 1, known)
        if len(self.outputs) == 1:
            return known[self.outputs[0]]
        return tuple(known[k] for k in self.outputs)


# ---------------------------------------------------------------- columns a program needs

ALL = None  #: every column (what is not known to need fewer)
#: func -> rule(args, kwargs, needed) -> [(argument, columns it needs or ALL), ...]
COLUMN_RULES: dict[Callable, Callable] = {}
#: func -> narrow(task, columns) -> the same step, making only those columns
NARROWERS: dict[Callable, Callable] = {}


def unwrap_call(task: tuple) -> tuple[Callable, list, dict]:
    """A step as (function, positional arguments, keyword arguments), through the wrappers
    the dataframe layer builds tasks with (``apply_spec``, ``apply_kwargs``)."""
    head, *rest = task
    wrapped = getattr(head, "wraps_call", None)
    return wrapped(*rest) if wrapped else (head, rest, {})


def prune_columns(steps: list, outputs: tuple, is_key: Callable) -> list:
    """``steps`` with each read narrowed to the columns the program's steps use (a column
    selection, a filter, ``assign``, a groupby chunk, ``len``); results leaving the program
    keep every column."""
    needed: dict = dict.fromkeys(outputs, ALL)
    for key, task in reversed(steps):
        func, args, kwargs = unwrap_call(task)
        rule = COLUMN_RULES.get(func)
        want = needed.get(key, set())
        uses = rule(args, kwargs, want) if rule else [(a, ALL) for a in [*args, *kwargs.values()]]
        for arg, columns in uses:
            if not (type(arg) is tuple and is_key(arg)):
                continue
            had = needed.get(arg, set())
            needed[arg] = ALL if had is ALL or columns is ALL else had | set(columns)
    out = []
    for key, task in steps:
        narrow = NARROWERS.get(unwrap_call(task)[0])
        if narrow is not None and needed.get(key, ALL) is not ALL:
            task = narrow(task, needed[key])
        out.append((key, task))
    return out


def is_task(value: Any) -> bool:
    return type(value) is tuple and bool(value) and callable(value[0])


def references(task: Any, is_key: Any) -> list:
    """The keys ``task`` reads, by the rule of `engine.graph` (tuples with a callable head are
    nested tasks, other tuples and lists are walked, atoms and tuples may be keys)."""
    found: list = []
    stack = [task]
    while stack:
        a = stack.pop()
        ta = type(a)
        if ta is tuple:
            if a and callable(a[0]):
                stack.extend(a[1:])
                continue
            if is_key(a):
                found.append(a)
                continue
            stack.extend(a)
        elif ta is list:
            stack.extend(a)
        elif ta in (str, bytes, int, float) and is_key(a):
            found.append(a)
    return found


def replace_references(task: Any, replacement: dict) -> Any:
    """``task`` with every reference found in ``replacement`` swapped for its value."""
    ta = type(task)
    if ta is tuple:
        if task and callable(task[0]):
            return (task[0], *[replace_references(a, replacement) for a in task[1:]])
        if task in replacement:
            return replacement[task]
        return tuple(replace_references(a, replacement) for a in task)
    if ta is list:
        return [replace_references(a, replacement) for a in task]
    if ta in (str, bytes, int, float) and task in replacement:
        return replacement[task]
    return task


def _layer_of(key: Any) -> Any:
    return key[0] if type(key) is tuple and key else key


def fuse(layers: dict[str, dict], keys: Iterable, known: Iterable = ()) -> dict:
    """The graph of ``layers`` that ``keys`` need, blockwise groups fused; flat."""
    keys = list(keys)
    graph: dict = {}
    for layer in layers.values():
        graph.update(layer)
    held = set(known)

    def is_key(k: Any) -> bool:
        try:
            return k in graph or k in held
        except TypeError:
            return False

    # cull, recording each needed task's references
    deps: dict = {}
    stack = [k for k in keys if k in graph]
    while stack:
        k = stack.pop()
        if k in deps:
            continue
        refs = references(graph[k], is_key)  # a task's, an alias's, a list's
        deps[k] = refs
        stack.extend(r for r in refs if r in graph)
    fusable = {
        name: {k for k in layer if k in deps and is_task(layer[k])}
        for name, layer in layers.items()
        if isinstance(layer, Blockwise)
    }
    renumbered = {name for name, layer in layers.items() if getattr(layer, "renumbered", False)}
    groups = _group_layers(fusable, deps, renumbered)
    indices = {k: i for group in groups for k, i in _group_indices(group, fusable, deps).items()}
    out = {k: graph[k] for k in deps}
    home: dict = {}  # a fused step's key -> the key of the task that now runs it

    def is_current_key(k: Any) -> bool:
        try:
            return k in out or k in held
        except TypeError:
            return False

    for group in groups:
        if len(group) > 1:
            _fuse_group(group, fusable, deps, indices, set(keys), out, home, is_current_key)
    return out


def _group_indices(group: list[str], fusable: dict, deps: dict) -> dict:
    """Each task of ``group`` (layers in dependency order) -> the partition whose program runs
    it: the partition of the group's tasks it reads, else its own. {} when some task reads two
    partitions of the group, or two tasks of a layer would run in one program."""
    index: dict = {}
    for name in group:
        taken: set = set()
        for k in fusable[name]:
            read = {index[r] for r in deps[k] if r in index}
            if len(read) > 1:
                return {}
            i = read.pop() if read else k[1]
            if i in taken:
                return {}
            taken.add(i)
            index[k] = i
    return index


def _group_layers(fusable: dict[str, set], deps: dict, renumbered: set) -> list[list[str]]:
    """Groups of blockwise layers, each in dependency order, that fuse without a cycle."""
    size = {name: len(ks) for name, ks in fusable.items() if ks}
    layer_deps: dict[str, set] = {}
    for k, refs in deps.items():
        layer_deps.setdefault(_layer_of(k), set()).update(
            _layer_of(r) for r in refs if r in deps and _layer_of(r) != _layer_of(k)
        )
    order = _topological(layer_deps)
    group_of: dict[str, int] = {}
    members: list[list[str]] = []

    def acyclic(union: set) -> bool:
        """No path leaves ``union`` and comes back: it can run as one task."""
        seen: set = set()
        stack = [d for m in union for d in layer_deps.get(m, ()) if d not in union]
        while stack:
            layer = stack.pop()
            if layer in union:
                return False
            if layer not in seen:
                seen.add(layer)
                stack.extend(layer_deps.get(layer, ()))
        return True

    def consistent(union: set) -> bool:
        """Without renumbered layers a task runs in its own partition; with them, see
        `_group_indices`."""
        if not union & renumbered:
            return True
        return bool(_group_indices(sorted(union, key=order.index), fusable, deps))

    for name in order:
        if name not in size:
            continue
        mine = {name}
        for dep in sorted(layer_deps.get(name, ()), key=order.index):
            g = group_of.get(dep)
            if g is None or size[dep] != size[name] or dep in mine:
                continue
            union = mine | set(members[g])
            # else a way out of the group and back, or partitions that do not line up
            if acyclic(union) and consistent(union):
                mine = union
                members[g] = []
        g = len(members)
        members.append(sorted(mine, key=order.index))
        group_of.update(dict.fromkeys(mine, g))
    return [ms for ms in members if ms]


def _topological(layer_deps: dict[str, set]) -> list[str]:
    names = set(layer_deps) | {d for ds in layer_deps.values() for d in ds}
    order: list[str] = []
    state: dict[str, int] = {}
    for start in sorted(names, key=str):
        stack = [(start, iter(sorted(layer_deps.get(start, ()), key=str)))]
        if start in state:
            continue
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next((d for d in it if d not in state), None)
            if nxt is None:
                stack.pop()
                state[node] = 2
                order.append(node)
            else:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(layer_deps.get(nxt, ()), key=str))))
    return order


def _fuse_group(
    group: list[str], fusable: dict, deps: dict, indices: dict, wanted: set, out: dict,
    home: dict, is_key: Any,
) -> None:  # fmt: skip
    """Replace ``group``'s tasks in ``out`` by one task per partition; a reader already
    fused elsewhere is reached through ``home`` (its program takes the value as an input)."""
    in_group = set().union(*(fusable[name] for name in group))
    readers: dict = {}
    for k, refs in deps.items():
        if k not in in_group:
            for r in refs:
                readers.setdefault(r, []).append(k)
    by_index: dict[Any, list] = {}
    for name in group:  # dependency order, so each partition's steps come out in order
        for k in sorted(fusable[name], key=indices.__getitem__):
            by_index.setdefault(indices[k], []).append(k)
    for index, steps in by_index.items():
        if len(steps) < 2:
            continue
        step_set = set(steps)
        outputs = tuple(k for k in steps if k in wanted or k in readers)
        # what the steps read now (an earlier group may have rewritten them)
        reads = [r for k in steps for r in references(out[k], is_key)]
        inputs = tuple(dict.fromkeys(r for r in reads if r not in step_set))
        run = prune_columns([(k, out.pop(k)) for k in steps], outputs, step_set.__contains__)
        program = FusedProgram(inputs, tuple(run), outputs)
        fused = outputs[0] if len(outputs) == 1 else (f"fused-{_layer_of(outputs[-1])}", index)
        out[fused] = (program, *inputs)
        home.update(dict.fromkeys(steps, fused))
        if len(outputs) == 1:
            continue
        swap = {o: (operator.getitem, fused, j) for j, o in enumerate(outputs)}
        for reader in {home.get(r, r) for o in outputs for r in readers.get(o, ())}:
            out[reader] = replace_references(out[reader], swap)
        for o in outputs:
            if o in wanted:
                out[o] = swap[o]
