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

import contextlib
import functools
import gc
import re
import sys
from array import array
from collections.abc import Collection, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress, islice, repeat
from operator import eq, ge, is_, itemgetter, not_, or_
from typing import Any, TypeAlias


class GraphError(ValueError):
    """A graph that cannot run: names the keys involved."""


class MissingKeyError(GraphError, KeyError):
    """An output key that is neither in the graph nor held by the cluster.

    A `GraphError` like every graph problem, and a `KeyError` as dask's ``get`` contract asks.
    """

    __str__ = GraphError.__str__  # the message as it is, not KeyError's repr of it


Key: TypeAlias = str | bytes | int | float | tuple

KIND_DATA, KIND_PLAIN, KIND_NODE = 0, 1, 2

# Exact types only: a bool or a numpy scalar is a literal, never a key (even if it hashes equal).
_ATOMS = frozenset({str, bytes, int, float})
_TASK_SPEC = "dask._task_spec"
_MAX_NAMED = 10  # keys named in one error message


@dataclass(slots=True)
class Graph:
    """A normalized graph as parallel lists, in the mapping's insertion order.

    ``runs[i]``/``kinds[i]`` are what `TaskSpec` holds; ``kinds`` is None when every task is
    plain. ``pos`` (key -> index) and ``dep_pos`` (each dependency's index, -1 for a key outside
    the graph, in ``chain(*deps)`` order) are set when the graph has dependencies.
    """

    keys: list
    deps: list
    runs: list
    kinds: list | None
    pos: dict | None = None
    dep_pos: list | None = None
    # hints from the column-wise path (None: unknown), for `order_graph` and `encode_graph`
    key_cols: list | None = None  # keys are tuples of one length: their columns
    run_cols: tuple | None = None  # every task (f, *args) plain: (f or the heads, arg columns)
    edges: bool | None = None  # False: no task has dependencies
    prev: bytes | None = None  # per task 1 if it depends on the task before it alone, else 0

    def specs(self) -> dict[Key, TaskSpec]:
        kinds = self.kinds if self.kinds is not None else repeat(KIND_PLAIN)
        return {
            k: TaskSpec(k, d, r, kd)
            for k, d, r, kd in zip(self.keys, self.deps, self.runs, kinds, strict=False)
        }


@dataclass(slots=True)
class TaskSpec:
    """One task of a normalized graph; `run` is what `execute` takes on the worker."""

    key: Key
    dependencies: tuple[Key, ...]
    run: object
    kind: int


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic collector while building a million objects: its passes, triggered by
    allocations, otherwise cost about as much as the building (half of a 1M-task update)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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


def pack_results(keys: Any, results: Mapping[Key, object], *, container: type = list) -> Any:
    """`keys`' nesting with each key replaced by its result (a single key gives its value).

    Each list of keys becomes a ``container``; a ``get`` passes ``tuple``, as dask's does.
    """
    if type(keys) is not list:
        return results[keys]
    out = [
        pack_results(k, results, container=container) if type(k) is list else results[k]
        for k in keys
    ]
    return out if container is list else container(out)


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
    known = _as_known(known_keys)
    with paused_gc():
        g = _fast_normalize(dsk, known)
        if g is not None:
            out = _output_keys(dsk, known, keys)
            _check_cycle(g)
            return g.specs(), out
        tasks, forward = _normalize_slow(dsk, known)
    out = _output_keys(dsk, known, keys)
    if forward:
        cycle = _find_cycle({k: t.dependencies for k, t in tasks.items()})
        if cycle is not None:
            raise GraphError(_describe_cycle(cycle))
    return tasks, out


def normalize(dsk: Any, keys: Any, known_keys: Collection[Key] = ()) -> tuple[Graph, list[Key]]:
    """`normalize_graph` as a `Graph` of parallel lists (no per-task objects): what a client
    sends. Same validation, same errors, same dependencies, runs and kinds."""
    dsk = _as_dict(dsk)
    known = _as_known(known_keys)
    with paused_gc():
        return _normalize(dsk, keys, known)


def _normalize(dsk: dict, keys: Any, known: Collection) -> tuple[Graph, list[Key]]:
    g = _fast_normalize(dsk, known)
    if g is None:
        tasks, _ = _normalize_slow(dsk, known)
        specs = tasks.values()
        g = Graph(
            list(tasks),
            [t.dependencies for t in specs],
            [t.run for t in specs],
            [t.kind for t in specs],
        )
        if g.kinds.count(KIND_PLAIN) == len(g.kinds):
            g.kinds = None
    out = _output_keys(dsk, known, keys)
    _check_cycle(g)
    return g, out


def _as_known(known: Collection[Key]) -> Collection[Key]:
    if known and not isinstance(known, set | frozenset | dict | KeysView):
        known = set(known)
    return known


def _output_keys(dsk: dict, known: Collection, keys: Any) -> list[Key]:
    out = flatten_keys(keys)
    try:
        if all(map(dsk.__contains__, out)):  # the usual case, without the per-key loop
            return out
    except TypeError:
        pass
    missing = []
    for key in out:
        try:
            if key in dsk or (known and key in known):
                continue
        except TypeError:
            validate_key(key)
        missing.append(key)
    if missing:
        raise MissingKeyError(f"output keys not in the graph: {_shorten(missing)}")
    return out


def _dep_positions(g: Graph) -> None:
    """Fill ``g.pos`` and ``g.dep_pos`` (once); both stay None for a graph without edges."""
    if g.dep_pos is not None or not any(g.deps):
        return
    g.pos = pos = dict(zip(g.keys, range(len(g.keys)), strict=False))
    g.dep_pos = list(map(pos.get, chain.from_iterable(g.deps), repeat(-1)))


def _check_cycle(g: Graph) -> None:
    """Raise GraphError on a cycle; only searched when some task references a later one."""
    if g.edges is False or g.prev is not None:
        return  # no references, or each to the task before
    _dep_positions(g)
    if g.dep_pos is None:
        return
    owners = chain.from_iterable(map(repeat, range(len(g.keys)), map(len, g.deps)))
    if any(map(ge, g.dep_pos, owners)):  # a reference to itself or to a later task
        cycle = _find_cycle(dict(zip(g.keys, g.deps, strict=False)))
        if cycle is not None:
            raise GraphError(_describe_cycle(cycle))


_ATOMS_OR_TUPLE = _ATOMS | {tuple}


def _fast_normalize(dsk: dict, known: Collection) -> Graph | None:
    """The column-wise path for graphs whose keys are flat and whose plain tasks hold only keys
    and literals at the top level (``(f, i)``, ``(f, ('x', i), 2)``, ...): the checks run per
    argument position over all tasks at once. None when anything needs the per-task scan
    (nested tasks, lists, unknown references, invalid keys, non-callable heads); that path then
    decides, and raises, exactly as before."""
    keys = list(dsk)
    n = len(keys)
    if n == 0:
        return None
    ktypes = set(map(type, keys))
    key_cols = None
    if ktypes == {tuple}:
        lengths = set(map(len, keys))
        if len(lengths) == 1:
            key_cols = [list(map(itemgetter(j), keys)) for j in range(lengths.pop())]
            for col in key_cols:
                if not set(map(type, col)) <= _ATOMS:
                    return None  # nested tuple keys (valid) or invalid parts: the per-key check
        elif not set(map(type, chain.from_iterable(keys))) <= _ATOMS:
            return None
    elif not ktypes <= _ATOMS_OR_TUPLE:
        return None
    elif tuple in ktypes:
        tkeys = [k for k in keys if type(k) is tuple]
        if not set(map(type, chain.from_iterable(tkeys))) <= _ATOMS:
            return None
    # the argument types that can equal a key (1 == 1.0; never a str and a tuple)
    matching = set()
    for t in ktypes:
        matching |= _MATCHING[t]
    vals = list(dsk.values())
    g = Graph(keys, [], vals, None, key_cols=key_cols)
    if set(map(type, vals)) == {tuple}:
        lengths = set(map(len, vals))
        if len(lengths) == 1:
            return g if _fast_deps(g, None, lengths.pop(), dsk, known, matching) else None
        groups = _by_length(range(n), list(map(len, vals)))
        g.deps = [()] * n
    else:
        vtypes = list(map(type, vals))
        rows = [i for i, t in enumerate(vtypes) if t is tuple]
        groups = _by_length(rows, [len(vals[i]) for i in rows])
        ts = sys.modules.get(_TASK_SPEC)
        node_type = ts.GraphNode if ts is not None else None
        scanner = _Scanner(dsk, known, dsk)
        g.deps = deps = [()] * n
        g.kinds = kinds = [KIND_PLAIN] * n
        g.runs = vals = list(vals)
        for i, t in enumerate(vtypes):
            if t is tuple:
                continue
            k, v = keys[i], vals[i]
            try:
                if node_type is not None and isinstance(v, node_type):
                    spec = _node_spec(k, v, dsk, known, scanner, ts)
                else:
                    spec = _value_spec(k, v, dsk, known, scanner, ts)
            except GraphError:
                return None  # an earlier task may fail first: the per-task path raises
            deps[i], vals[i], kinds[i] = spec.dependencies, spec.run, spec.kind
        if kinds.count(KIND_PLAIN) == n:
            g.kinds = None
    g.prev = None
    for length, rows in groups.items():
        if length == 0 or not _fast_deps(g, rows, length, dsk, known, matching):
            return None  # () as a value, or something for the per-task path
    return g


_MATCHING = {
    int: {int, float},
    float: {int, float},
    str: {str},
    bytes: {bytes},
    tuple: {tuple},
}


def _by_length(rows: Sequence[int], lengths: list[int]) -> dict[int, list[int]]:
    """Rows grouped by their task's length."""
    groups: dict[int, list[int]] = {}
    for i, ln in zip(rows, lengths, strict=True):
        g = groups.get(ln)
        if g is None:
            groups[ln] = [i]
        else:
            g.append(i)
    return groups


def _fast_deps(
    g: Graph, rows: list[int] | None, length: int, dsk: dict, known: Collection, matching: set
) -> bool:
    """Fill the dependencies of the plain tasks at `rows` (all rows if None), tuples of one
    `length`; False when the per-task path must decide (see `_fast_normalize`).

    For all rows, also record ``g.run_cols`` (the heads, then each argument's column), and
    ``g.prev`` when every task depends on nothing or on the task just before it."""
    vals = g.runs if rows is None else [g.runs[i] for i in rows]
    heads = list(map(itemgetter(0), vals))
    h0 = heads[0]
    if all(map(is_, heads, repeat(h0))):
        if not callable(h0):
            return False
        heads = h0  # one callable for every task
    elif not all(map(callable, heads)):
        return False
    contains = dsk.__contains__
    cols = []
    found: list[tuple[list, list]] = []  # (column, is-a-reference) for columns with references
    for j in range(1, length):
        col = list(map(itemgetter(j), vals))
        cols.append(col)
        types = set(map(type, col))
        if types <= _ATOMS_OR_TUPLE:
            if types & matching:
                try:
                    hit = list(map(contains, col))
                except TypeError:  # a tuple holding something unhashable: a container
                    return False
                if known:
                    hit = list(map(or_, hit, map(known.__contains__, col)))
            elif known:
                try:
                    hit = list(map(known.__contains__, col))
                except TypeError:
                    return False
            else:
                hit = None  # no argument here can equal a key
            if tuple in types and any(
                type(a) is tuple and a
                for a, h in zip(col, hit or repeat(False, len(col)), strict=True)
                if not h
            ):
                return False  # a nested task, a container or a missing key: the scan decides
            if hit is not None and any(hit):
                found.append((col, hit))
        elif tuple in types or list in types:
            return False
        elif types & _ATOMS:
            atoms = [a for a in col if type(a) in _ATOMS]
            if any(map(contains, atoms)) or (known and any(map(known.__contains__, atoms))):
                return False
    if not found:
        deps = [()] * len(vals)
    elif len(found) == 1:
        col, hit = found[0]
        deps = [(a,) if h else () for a, h in zip(col, hit, strict=True)]
    else:
        deps = []
        arg_rows = zip(*[c for c, _ in found], strict=True)
        row_hits = zip(*[h for _, h in found], strict=True)
        for row, hits in zip(arg_rows, row_hits, strict=True):
            ds = [a for a, h in zip(row, hits, strict=True) if h]
            deps.append(tuple(dict.fromkeys(ds)) if len(ds) > 1 else tuple(ds))
    if rows is not None:
        for i, d in zip(rows, deps, strict=True):
            g.deps[i] = d
        return True
    g.deps = deps
    g.run_cols = (heads, cols)
    if not found:
        g.edges = False
    elif len(found) == 1 and not known:
        # every reference the key just before? (a chain, or runs of chains)
        col, hit = found[0]
        keys = g.keys
        if not hit[0] and all(map(eq, compress(col[1:], hit[1:]), compress(keys, hit[1:]))):
            g.prev = bytes(hit)
    return True


def _normalize_slow(dsk: dict, known: Collection) -> tuple[dict[Key, TaskSpec], bool]:
    """The per-task scan: TaskSpecs, and whether some task references a later one."""
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

    return tasks, forward or scanner.forward


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


def _find_cycle(tasks: Mapping[Key, Sequence[Key]]) -> list[Key] | None:
    """A cycle as [a, b, ..., a] (each depends on the next), or None; iterative DFS.

    `tasks` maps each key to its dependencies."""
    state: dict[Key, int] = {}  # 1: on the current path, 2: done
    for root in tasks:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        iters = [iter(tasks[root])]
        while iters:
            for d in iters[-1]:
                if d not in tasks:
                    continue
                s = state.get(d)
                if s is None:
                    state[d] = 1
                    path.append(d)
                    iters.append(iter(tasks[d]))
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


def order_graph(g: Graph) -> list[int] | None:
    """`order` of a `Graph`, as a priority per task in ``g.keys`` order; None when it is the
    insertion order (no dependencies, or each task depends on the one before only)."""
    if g.edges is False or g.prev is not None or not any(g.deps):
        return None
    _dep_positions(g)
    n = len(g.keys)
    dp = g.dep_pos
    offs = [0, *accumulate(map(len, g.deps))]
    has_dependents = bytearray(n)
    for d in dp:
        if d >= 0:
            has_dependents[d] = 1
    prio = [-1] * n
    on_path = bytearray(n)
    c = 0
    roots = compress(range(n), map(not_, has_dependents))
    for root in chain(roots, range(n)):  # then the keys left over: only on a cycle
        if prio[root] >= 0:
            continue
        on_path[root] = 1
        path = [root]
        iters = [iter(dp[offs[root] : offs[root + 1]])]
        while iters:
            for d in iters[-1]:
                if d < 0 or prio[d] >= 0 or on_path[d]:
                    continue
                on_path[d] = 1
                path.append(d)
                iters.append(iter(dp[offs[d] : offs[d + 1]]))
                break
            else:
                done = path.pop()
                iters.pop()
                on_path[done] = 0
                prio[done] = c
                c += 1
    return prio


# --------------------------------------------------------------------------- the wire format
#
# A graph travels as ("g1", n, keys, deps, runs, kinds, priorities), each part in the most
# compact of a few forms, so that the scheduler rebuilds 10^6 tasks with a handful of C-level
# passes and no per-task unpickling: keys as columns (a range, one constant, a dictionary of
# names, int64 array), dependencies as "the task before" or as indices into the keys (so they
# are the very key objects), runs as one callable plus argument columns (an argument column may
# be a key column or "the dependency", sharing those objects too). Anything else goes as the
# plain list, pickled.

_WIRE = "g1"
_IMMUTABLE = _ATOMS | {type(None), bool}


def _encode_col(col: list) -> tuple:
    n = len(col)
    types = set(map(type, col))
    if len(types) != 1 or not types <= _IMMUTABLE:
        return ("list", col)  # a mutable literal must stay one object per task
    t = types.pop()
    first = col[0]
    if col.count(first) == n:
        return ("const", first)
    if t is int:
        if col[-1] - first == n - 1 and col == list(range(first, first + n)):
            return ("range", first, first + n)
        try:
            return ("i64", array("q", col))
        except OverflowError:
            return ("list", col)
    if t is str:
        names = list(dict.fromkeys(col))
        if len(names) * 4 <= n:
            index = dict(zip(names, range(len(names)), strict=False))
            return ("dict", names, array("I", map(index.__getitem__, col)))
    return ("list", col)


def _decode_col(enc: tuple, n: int) -> list:
    form = enc[0]
    if form == "list":
        return enc[1]
    if form == "const":
        return [enc[1]] * n
    if form == "range":
        return list(range(enc[1], enc[2]))
    if form == "i64":
        return enc[1].tolist()
    if form == "dict":
        return list(map(enc[1].__getitem__, enc[2]))
    raise ValueError(f"unknown column form {form!r}")


def encode_graph(g: Graph, priorities: list[int] | None) -> tuple:
    """The wire form of a normalized graph and its `order_graph` priorities (None: insertion
    order); `decode_graph` turns it into what ``SchedulerState.update_graph`` takes."""
    n = len(g.keys)
    keys = g.keys
    if g.key_cols is not None:
        key_cols = g.key_cols
        keys_enc: tuple = ("cols", [_encode_col(c) for c in key_cols])
    else:
        key_cols = None
        keys_enc = ("list", keys)
    if g.edges is False or not any(g.deps):
        deps_enc: tuple = ("none",)
    elif g.prev is not None:
        deps_enc = ("prev", g.prev)
    else:
        _dep_positions(g)
        if min(g.dep_pos) >= 0:
            deps_enc = ("idx", array("I", map(len, g.deps)), array("q", g.dep_pos))
        else:
            deps_enc = ("list", g.deps)
    runs_enc: tuple = ("list", g.runs)
    if g.run_cols is not None and g.kinds is None and n:
        heads, cols = g.run_cols
        arg_encs = []
        for col in cols:
            arg_encs.append(_encode_arg_col(col, key_cols, g.prev, keys))
        heads_enc = ("list", heads) if type(heads) is list else ("const", heads)
        runs_enc = ("cols", heads_enc, arg_encs)
    kinds_enc = None if g.kinds is None else bytes(g.kinds)
    prio_enc = None if priorities is None else array("q", priorities)
    return (_WIRE, n, keys_enc, deps_enc, runs_enc, kinds_enc, prio_enc)


def _encode_arg_col(col: list, key_cols: list | None, prev: bytes | None, keys: list) -> tuple:
    n = len(col)
    types = set(map(type, col))
    if key_cols is not None and len(types) == 1 and types <= _ATOMS:  # never an object's __eq__
        for j, kc in enumerate(key_cols):
            if col == kc and set(map(type, kc)) == types:
                return ("key", j)  # the key's own part: decoded as the same objects
    # the task before's key where the task depends on it, literals elsewhere
    if (
        prev is not None
        and n > 1
        # types first: a key is only compared with a value of its own type
        and all(
            map(is_, map(type, compress(col[1:], prev[1:])), map(type, compress(keys, prev[1:])))
        )
        and all(map(eq, compress(col[1:], prev[1:]), compress(keys, prev[1:])))
    ):
        others = {i: col[i] for i in compress(range(n), map(not_, prev))}
        if len(others) * 4 <= n:
            return ("prev", others)
    return _encode_col(col)


def decode_graph(payload: tuple) -> tuple[dict[Key, tuple], dict[Key, int]]:
    """``({key: (dependencies, run, kind, prefix)}, {key: priority})`` from `encode_graph`."""
    with paused_gc():
        return _decode_graph(payload)


def _decode_graph(payload: tuple) -> tuple[dict[Key, tuple], dict[Key, int]]:
    tag, n, keys_enc, deps_enc, runs_enc, kinds_enc, prio_enc = payload
    if tag != _WIRE:
        raise ValueError(f"unknown graph format {tag!r}")
    ints0 = None  # a decoded 0..n-1 column, reused for the priorities
    if keys_enc[0] == "cols":
        key_cols = [_decode_col(c, n) for c in keys_enc[1]]
        keys = list(zip(*key_cols, strict=False))
        for enc, col in zip(keys_enc[1], key_cols, strict=False):
            if enc[0] == "range" and enc[1] == 0:
                ints0 = col
        first = keys_enc[1][0]
        if first[0] == "const" and type(first[1]) is not tuple:
            prefixes: Any = repeat(key_prefix(first[1]))
        elif first[0] == "dict":
            prefixes = map([key_prefix(nm) for nm in first[1]].__getitem__, first[2])
        else:
            prefixes = map(key_prefix, key_cols[0])
    else:
        key_cols = None
        keys = keys_enc[1]
        prefixes = map(key_prefix, keys)
    form = deps_enc[0]
    if form == "none":
        deps: Any = repeat(())
    elif form == "prev":
        deps = [(k,) if m else () for k, m in zip(chain((None,), keys), deps_enc[1], strict=False)]
    elif form == "idx":
        counts, dep_pos = deps_enc[1], deps_enc[2]
        flat = iter(list(map(keys.__getitem__, dep_pos)))
        if max(counts, default=0) <= 1:
            deps = [(next(flat),) if c else () for c in counts]
        else:
            deps = [tuple(islice(flat, c)) for c in counts]
    elif form == "list":
        deps = deps_enc[1]
    else:
        raise ValueError(f"unknown dependency form {form!r}")
    if runs_enc[0] == "cols":
        _, heads_enc, arg_encs = runs_enc
        cols = [heads_enc[1] if heads_enc[0] == "list" else repeat(heads_enc[1], n)]
        for enc in arg_encs:
            if enc[0] == "key":
                cols.append(key_cols[enc[1]])  # type: ignore[index]
            elif enc[0] == "prev":
                pairs = zip(chain((None,), keys), deps_enc[1], strict=False)
                col = [k if m else None for k, m in pairs]
                for i, v in enc[1].items():
                    col[i] = v
                cols.append(col)
            else:
                cols.append(_decode_col(enc, n))
        runs: Any = zip(*cols, strict=False)
    else:
        runs = runs_enc[1]
    kinds: Any = repeat(KIND_PLAIN) if kinds_enc is None else list(kinds_enc)
    tasks = dict(zip(keys, zip(deps, runs, kinds, prefixes, strict=False), strict=False))
    if len(tasks) != n:
        raise ValueError(f"the graph holds {len(tasks)} tasks, not {n}")
    if prio_enc is None:
        prio = dict(zip(keys, ints0 if ints0 is not None else range(n), strict=False))
    else:
        prio = dict(zip(keys, prio_enc, strict=False))
    return tasks, prio
