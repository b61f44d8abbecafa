"""The task spec: dask's plain graphs and task_spec nodes, validated and run.

A graph maps keys to tasks. A key is a str, bytes, int, float or a tuple of those. A task is
dask's plain spec, ``(callable, *args)``, or a ``dask._task_spec`` node. Inside a plain task an
argument is a *reference* when it is a key of the graph (or of the keys the cluster already
holds); lists and non-task tuples are walked for references, tuples whose first element is
callable are nested tasks, and everything else (dicts, arrays, ...) is a literal. The same rule
decides the dependencies in `normalize_graph` and the substitution in `execute`, so the two can
never disagree. This module never imports dask: nodes are recognised only when
``dask._task_spec`` is already loaded, as it must be for a node to exist.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Collection, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias


class GraphError(ValueError):
    """A graph that cannot run: names the keys involved."""


Key: TypeAlias = str | bytes | int | float | tuple

KIND_DATA, KIND_PLAIN, KIND_NODE = 0, 1, 2

# Exact types only: a bool or a numpy scalar is a literal, never a key (even if it hashes equal).
_ATOMS = frozenset({str, bytes, int, float})
_TASK_SPEC = "dask._task_spec"
_MAX_NAMED = 10  # keys named in one error message


@dataclass(slots=True)
class TaskSpec:
    """One task of a normalized graph; `run` is what `execute` takes on the worker."""

    key: Key
    dependencies: tuple[Key, ...]
    run: object
    kind: int


def _identity(x: object) -> object:
    return x


def validate_key(key: object) -> None:
    """Raise GraphError unless `key` is a str, bytes, int, float or a tuple of those."""
    stack = [key]
    while stack:
        part = stack.pop()
        typ = type(part)
        if typ is tuple:
            stack.extend(part)
        elif typ not in _ATOMS:
            raise GraphError(f"invalid key {key!r}: {typ.__name__} is not a key type")


def key_str(key: Key) -> str:
    """A stable readable string for `key`: str unchanged, bytes decoded, others repr'd."""
    typ = type(key)
    if typ is str:
        return key  # type: ignore[return-value]
    if typ is bytes:
        return key.decode("utf-8", "backslashreplace")  # type: ignore[union-attr]
    return repr(key)


_HEX8 = re.compile(r"[a-f]+")
_HEX32 = re.compile(r"[a-f0-9]{32}")


def key_prefix(key: Key) -> str:
    """The task-group name of a key, as dask's ``key_split``: ``('inc-1a2b', 0)`` -> ``'inc'``."""
    while type(key) is tuple:
        if not key:
            return "Other"
        key = key[0]
    if type(key) is bytes:
        key = key.decode("utf-8", "backslashreplace")
    if type(key) is not str:
        return "Other"
    return _name_prefix(key)


@functools.lru_cache(maxsize=100_000)
def _name_prefix(name: str) -> str:
    try:
        words = name.split("-")
        head = words[0]
        result = head if head[0].isalpha() else head.split(",")[0].strip("_'()\"")
        for word in words[1:]:
            if word.isalpha() and not (len(word) == 8 and _HEX8.match(word) is not None):
                result += f"-{word}"
            else:
                break
        if len(result) == 32 and _HEX32.match(result):
            return "data"
        if result[0] == "<":
            result = result.strip("<>").split()[0].split(".")[-1]
        return sys.intern(result)
    except Exception:
        return "Other"


def flatten_keys(keys: Any) -> list[Key]:
    """The keys of a nested list of keys, in order; a tuple is a key, never flattened."""
    if type(keys) is not list:
        return [keys]
    out: list[Key] = []
    stack: list[Iterator[Any]] = [iter(keys)]
    while stack:
        for k in stack[-1]:
            if type(k) is list:
                stack.append(iter(k))
                break
            out.append(k)
        else:
            stack.pop()
    return out


def pack_results(keys: Any, results: Mapping[Key, object]) -> Any:
    """`keys`' nesting with each key replaced by its result (a single key gives its value)."""
    if type(keys) is not list:
        return results[keys]
    return [pack_results(k, results) if type(k) is list else results[k] for k in keys]


def _shorten(keys: Sequence[Key]) -> str:
    shown = ", ".join(map(repr, keys[:_MAX_NAMED]))
    if len(keys) > _MAX_NAMED:
        shown += f", ... ({len(keys)} keys)"
    return shown


def _describe_cycle(path: list[Key]) -> str:
    names = [key_str(k) for k in path]
    if len(names) > 2 * _MAX_NAMED:
        names = [*names[:_MAX_NAMED], f"... ({len(path) - 1} keys) ...", *names[-_MAX_NAMED:]]
    return "cycle: " + " -> ".join(names) + " (each task depends on the next)"


class _Scanner:
    """The slow path of the dependency scan: containers, nested tasks and tuple keys."""

    __slots__ = ("dsk", "forward", "known", "names", "tasks")

    def __init__(self, dsk: dict, known: Collection, tasks: dict) -> None:
        self.dsk = dsk
        self.known = known
        self.tasks = tasks
        self.forward = False  # some reference to a task later in insertion order
        self.names: set[str] | None = None

    def scan(self, arg: object, key: Key, deps: list, strict: bool) -> bool:
        """Append the references inside `arg` to deps; return whether it holds a task."""
        dsk, known, tasks = self.dsk, self.known, self.tasks
        has_task = False
        stack = [arg]
        while stack:
            a = stack.pop()
            ta = type(a)
            if ta is tuple:
                if not a:
                    continue
                if callable(a[0]):
                    has_task = True
                    stack.extend(reversed(a))
                    continue
                try:
                    if a in dsk:
                        deps.append(a)
                        if a not in tasks:
                            self.forward = True
                        continue
                    if known and a in known:
                        deps.append(a)
                        continue
                except TypeError:  # holds something unhashable: a container
                    pass
                if strict and type(a[0]) is str and self._looks_like_missing_key(a):
                    raise GraphError(
                        f"task {key!r} depends on missing key {a!r}: there are keys named "
                        f"{a[0]!r} in the graph, but not this one"
                    )
                stack.extend(reversed(a))
            elif ta is list:
                stack.extend(reversed(a))
            elif ta in _ATOMS:
                if a in dsk:
                    deps.append(a)
                    if a not in tasks:
                        self.forward = True
                elif known and a in known:
                    deps.append(a)
        return has_task

    def _looks_like_missing_key(self, a: tuple) -> bool:
        if self.names is None:
            self.names = {k[0] for k in self.dsk if type(k) is tuple and k and type(k[0]) is str}
        if a[0] not in self.names:
            return False
        return all(type(p) is int for p in a[1:])


def _as_dict(dsk: Any) -> dict:
    if type(dsk) is dict:
        return dsk
    if not isinstance(dsk, Mapping) and hasattr(dsk, "__dask_graph__"):
        # An expression or collection: never iterate it (dict(expr) hangs), ask for its graph.
        dsk = dsk.__dask_graph__()
    if isinstance(dsk, dict):
        return dsk
    if isinstance(dsk, Mapping):
        return dict(dsk)
    raise TypeError(f"a graph must be a Mapping or have __dask_graph__, not {type(dsk).__name__}")


def normalize_graph(
    dsk: Any, keys: Any, known_keys: Collection[Key] = ()
) -> tuple[dict[Key, TaskSpec], list[Key]]:
    """Validate a graph and turn each task into a TaskSpec; return (tasks, flat output keys).

    `dsk` is dask's plain spec ``{key: (callable, *args)}``, a mapping with ``dask._task_spec``
    nodes (mixed with plain tasks and data), or anything with ``__dask_graph__()``. A top-level
    value that is a key is an alias of that key; a top-level list holding references or tasks is
    computed like an argument; other values are data. A top-level non-empty tuple must be a task:
    literal tuple data must be wrapped (e.g. ``[(1, 2)]`` or ``(tuple, [1, 2])``). `known_keys`
    are keys the cluster already holds, which tasks may reference. Raises GraphError, naming the
    keys, for an invalid key, a non-callable task, a missing dependency, a missing output key or
    a cycle. The whole graph is kept; culling is the caller's business.
    """
    dsk = _as_dict(dsk)
    known: Collection[Key] = known_keys
    if known and not isinstance(known, set | frozenset | dict | KeysView):
        known = set(known)
    ts = sys.modules.get(_TASK_SPEC)
    node_type = ts.GraphNode if ts is not None else None
    tasks: dict[Key, TaskSpec] = {}
    scanner = _Scanner(dsk, known, tasks)
    atoms = _ATOMS
    forward = False

    for k, v in dsk.items():
        tk = type(k)
        if tk is not str:
            if tk is tuple:
                for p in k:
                    if type(p) not in atoms:
                        validate_key(k)
            elif tk not in atoms:
                validate_key(k)

        if type(v) is tuple and v and callable(v[0]):
            deps: list = []
            # v[0] is callable, hence neither a key nor a container: the loop skips it.
            for a in v:
                ta = type(a)
                if ta in atoms:
                    if a in dsk:
                        deps.append(a)
                        if a not in tasks:
                            forward = True
                    elif known and a in known:
                        deps.append(a)
                elif ta is tuple:
                    try:
                        hit = a in dsk  # the common ('name', i) reference, inline
                    except TypeError:
                        hit = False
                    if hit:
                        deps.append(a)
                        if a not in tasks:
                            forward = True
                    else:
                        scanner.scan(a, k, deps, True)
                elif ta is list:
                    scanner.scan(a, k, deps, True)
            tasks[k] = TaskSpec(
                k, tuple(dict.fromkeys(deps)) if len(deps) > 1 else tuple(deps), v, KIND_PLAIN
            )
        elif node_type is not None and isinstance(v, node_type):
            tasks[k] = _node_spec(k, v, dsk, known, scanner, ts)
        else:
            tasks[k] = _value_spec(k, v, dsk, known, scanner, ts)

    forward = forward or scanner.forward
    out = flatten_keys(keys)
    missing = []
    for key in out:
        try:
            if key in dsk or (known and key in known):
                continue
        except TypeError:
            validate_key(key)
        missing.append(key)
    if missing:
        raise GraphError(f"output keys not in the graph: {_shorten(missing)}")
    if forward:
        cycle = _find_cycle(tasks)
        if cycle is not None:
            raise GraphError(_describe_cycle(cycle))
    return tasks, out


def _node_spec(k: Key, v: Any, dsk: dict, known: Collection, scanner: _Scanner, ts: Any):
    if isinstance(v, ts.Task) and not callable(v.func):
        raise GraphError(
            f"task {k!r} is not callable: its func is {v.func!r} ({type(v.func).__name__})"
        )
    deps = v.dependencies
    tasks = scanner.tasks
    for d in deps:
        if d in dsk:
            if d not in tasks:
                scanner.forward = True
        elif not (known and d in known):
            raise GraphError(f"task {k!r} depends on missing key {d!r}")
    if len(deps) > 1:
        try:
            deps = sorted(deps)
        except TypeError:
            deps = sorted(deps, key=lambda d: (type(d).__name__, key_str(d)))
    return TaskSpec(k, tuple(deps), v, KIND_NODE)


def _value_spec(k: Key, v: Any, dsk: dict, known: Collection, scanner: _Scanner, ts: Any):
    tv = type(v)
    if tv in _ATOMS or tv is tuple:
        try:
            if v in dsk:
                if v not in scanner.tasks:
                    scanner.forward = True
                return TaskSpec(k, (v,), (_identity, v), KIND_PLAIN)
            if known and v in known:
                return TaskSpec(k, (v,), (_identity, v), KIND_PLAIN)
        except TypeError:
            pass
        if tv is tuple and v:
            hint = ""
            if type(v[0]) is str and scanner._looks_like_missing_key(v):
                hint = f"; if it is meant as a key, {v!r} is not in the graph"
            raise GraphError(
                f"task {k!r} is not callable: its first element is {v[0]!r} "
                f"({type(v[0]).__name__}){hint}"
            )
    elif tv is list:
        deps: list = []
        if scanner.scan(v, k, deps, False) or deps:
            deps = list(dict.fromkeys(deps))
            return TaskSpec(k, tuple(deps), (_identity, v), KIND_PLAIN)
    elif ts is not None and isinstance(v, ts.TaskRef):
        target = v.key
        if target in dsk:
            if target not in scanner.tasks:
                scanner.forward = True
        elif not (known and target in known):
            raise GraphError(f"task {k!r} depends on missing key {target!r}")
        return TaskSpec(k, (target,), (_identity, target), KIND_PLAIN)
    return TaskSpec(k, (), v, KIND_DATA)


def _find_cycle(tasks: Mapping[Key, TaskSpec]) -> list[Key] | None:
    """A cycle as [a, b, ..., a] (each depends on the next), or None; iterative DFS."""
    state: dict[Key, int] = {}  # 1: on the current path, 2: done
    for root in tasks:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        iters = [iter(tasks[root].dependencies)]
        while iters:
            for d in iters[-1]:
                if d not in tasks:
                    continue
                s = state.get(d)
                if s is None:
                    state[d] = 1
                    path.append(d)
                    iters.append(iter(tasks[d].dependencies))
                    break
                if s == 1:
                    return [*path[path.index(d) :], d]
            else:
                state[path.pop()] = 2
                iters.pop()
    return None


def _subst(a: Any, values: Mapping[Key, object]) -> Any:
    ta = type(a)
    if ta is tuple:
        if not a:
            return a
        if callable(a[0]):
            return a[0](*[_subst(x, values) for x in a[1:]])
        try:
            if a in values:
                return values[a]
        except TypeError:
            pass
        return tuple([_subst(x, values) for x in a])
    if ta is list:
        return [_subst(x, values) for x in a]
    if ta in _ATOMS:
        return values.get(a, a)
    return a


def execute(run: object, kind: int, values: Mapping[Key, object]) -> object:
    """Run one task: `values` maps its dependencies' keys to their values."""
    if kind == KIND_PLAIN:
        func = run[0]  # type: ignore[index]
        args = run[1:]  # type: ignore[index]
        if not values:
            for a in args:
                ta = type(a)
                if ta is tuple or ta is list:
                    return func(*[_subst(x, values) for x in args])
            return func(*args)
        new = []
        for a in args:
            ta = type(a)
            if ta in _ATOMS:
                new.append(values.get(a, a))
            elif ta is tuple or ta is list:
                new.append(_subst(a, values))
            else:
                new.append(a)
        return func(*new)
    if kind == KIND_NODE:
        return run(values)  # type: ignore[operator]
    if kind == KIND_DATA:
        return run
    raise ValueError(f"unknown task kind {kind!r}")


def order(dependencies: Mapping[Key, Sequence[Key]]) -> dict[Key, int]:
    """A static priority per key, lower first: a depth-first post-order from the sinks.

    Sinks (keys nothing depends on) are visited in insertion order and each task's dependencies
    in their listed order, so a subtree completes before the next one starts and independent
    tasks keep insertion order. Dependencies outside the mapping are ignored; keys left over
    (only possible on a cycle) follow in insertion order.
    """
    has_dependents: set[Key] = set()
    for deps in dependencies.values():
        has_dependents.update(deps)
    prio: dict[Key, int] = {}
    n = 0
    roots = [k for k in dependencies if k not in has_dependents]
    for phase in (roots, dependencies):
        for root in phase:
            if root in prio:
                continue
            on_path = {root}
            path = [root]
            iters = [iter(dependencies[root])]
            while iters:
                for d in iters[-1]:
                    if d in prio or d in on_path or d not in dependencies:
                        continue
                    on_path.add(d)
                    path.append(d)
                    iters.append(iter(dependencies[d]))
                    break
                else:
                    done = path.pop()
                    iters.pop()
                    on_path.discard(done)
                    prio[done] = n
                    n += 1
    return prio
