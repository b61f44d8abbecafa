import operator
import pickle
import random
import re
import subprocess
import sys

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from taskbench.engine.graph import (
    KIND_DATA,
    KIND_NODE,
    KIND_PLAIN,
    GraphError,
    TaskSpec,
    execute,
    flatten_keys,
    key_prefix,
    key_str,
    normalize_graph,
    order,
    pack_results,
    validate_key,
)


def inc(x):
    return x + 1


def add(*xs):
    return sum(xs)


def ident(*xs):
    return xs


def run_all(tasks, known=None):
    """Execute every task in `order` priority, checking dependencies are ready first."""
    prio = order({k: s.dependencies for k, s in tasks.items()})
    results = dict(known or {})
    for k in sorted(tasks, key=prio.__getitem__):
        spec = tasks[k]
        assert all(d in results for d in spec.dependencies), k
        results[k] = execute(spec.run, spec.kind, {d: results[d] for d in spec.dependencies})
    return results


def get(dsk, keys, **kwargs):
    """A synchronous `get`, usable as dask's `scheduler=`."""
    tasks, _ = normalize_graph(dsk, keys)
    return pack_results(keys, run_all(tasks))


# --- plain spec -----------------------------------------------------------------------------


def test_plain_literals_keys_and_kinds():
    dsk = {"x": 1, "y": (inc, "x"), "z": (add, "y", 10, "x"), "s": "not a key"}
    tasks, out = normalize_graph(dsk, ["z", ["y"]])
    assert out == ["z", "y"]
    assert tasks["x"] == TaskSpec("x", (), 1, KIND_DATA)
    assert tasks["s"].kind == KIND_DATA
    assert tasks["y"].dependencies == ("x",)
    assert tasks["z"].dependencies == ("y", "x")
    assert tasks["z"].kind == KIND_PLAIN
    results = run_all(tasks)
    assert pack_results(["z", ["y"]], results) == [13, [2]]


def test_dependencies_unique_first_seen_order():
    dsk = {"a": 1, "b": 2, "c": (add, "b", "a", "b", ["a", ("b",)], (inc, "b"))}
    tasks, _ = normalize_graph(dsk, "c")
    assert tasks["c"].dependencies == ("b", "a")


def test_nested_lists_tuples_and_tasks():
    dsk = {
        "x": 1,
        ("y", 0): 2,
        "lst": (sum, ["x", ("y", 0), 3]),
        "tup": (ident, ("x", ("y", 0), 5)),
        "nested": (add, (inc, (inc, "x")), ("y", 0)),
        "deep": (ident, [[("x", [("y", 0)])]]),
        "key_first": (ident, ("y", 0)),
    }
    tasks, _ = normalize_graph(dsk, list(dsk))
    assert tasks["tup"].dependencies == ("x", ("y", 0))
    assert tasks["deep"].dependencies == ("x", ("y", 0))
    r = run_all(tasks)
    assert r["lst"] == 1 + 2 + 3
    assert r["tup"] == ((1, 2, 5),)
    assert r["nested"] == 3 + 2
    assert r["deep"] == ([[(1, [2])]],)
    assert r["key_first"] == (2,)  # a tuple that is a key is its value, not a container


def test_literals_are_left_alone():
    arr = np.arange(3)
    dsk = {
        "x": 1,
        "y": (ident, {"x": "x"}, arr, True, np.int64(1), 1.5, None, b"x", "other", [], "x"),
    }
    tasks, _ = normalize_graph(dsk, "y")
    assert tasks["y"].dependencies == ("x",)
    got = run_all(tasks)["y"]
    assert got[0] == {"x": "x"} and got[1] is arr and got[2] is True
    assert got[3:] == (np.int64(1), 1.5, None, b"x", "other", [], 1)


def test_numeric_and_bytes_keys():
    dsk = {1: 10, 2.5: (inc, 1), b"k": (add, 1, 2.5), "s": (ident, True, 1.0)}
    r = run_all(normalize_graph(dsk, [b"k"])[0])
    assert r[b"k"] == 21
    assert r["s"] == (True, 10)  # True is a literal; 1.0 == 1 is the key 1, as in dask


def test_aliases():
    dsk = {"x": 1, ("t", 0): 2, "a": "x", "b": ("t", 0), "c": "a", "d": (inc, "c")}
    tasks, _ = normalize_graph(dsk, ["d", "b"])
    assert tasks["a"].kind == KIND_PLAIN and tasks["a"].dependencies == ("x",)
    assert tasks["b"].dependencies == (("t", 0),)
    r = run_all(tasks)
    assert (r["a"], r["b"], r["c"], r["d"]) == (1, 2, 1, 2)


def test_top_level_lists():
    dsk = {"x": 1, "refs": ["x", [(inc, "x")], 3], "data": [("t", 1), 2], "empty": ()}
    tasks, _ = normalize_graph(dsk, ["refs", "data"])
    assert tasks["refs"].kind == KIND_PLAIN
    assert tasks["data"].kind == KIND_DATA and tasks["empty"].kind == KIND_DATA
    r = run_all(tasks)
    assert r["refs"] == [1, [2], 3]
    assert r["data"] == [("t", 1), 2]


def test_known_keys():
    dsk = {"y": (inc, "x"), "z": (add, ("old", 0), "y"), "w": "x"}
    known = {"x", ("old", 0)}
    tasks, out = normalize_graph(dsk, ["z", "x"], known_keys=known)
    assert out == ["z", "x"]
    assert tasks["y"].dependencies == ("x",)
    assert tasks["z"].dependencies == (("old", 0), "y")
    assert tasks["w"].dependencies == ("x",)
    r = run_all(tasks, known={"x": 1, ("old", 0): 100})
    assert r["z"] == 102 and r["w"] == 1
    # a list works as known_keys too
    assert normalize_graph(dsk, "z", known_keys=list(known))[0]["y"].dependencies == ("x",)


def test_run_is_picklable():
    dsk = {"x": 1, "a": "x", "b": ["x", (inc, "a")], "c": (inc, "a")}
    tasks, _ = normalize_graph(dsk, "c")
    for spec in tasks.values():
        run = cloudpickle.loads(cloudpickle.dumps(spec.run))
        assert execute(run, spec.kind, {"x": 1, "a": 1}) == execute(
            spec.run, spec.kind, {"x": 1, "a": 1}
        )
    assert pickle.loads(pickle.dumps(tasks["c"])) == tasks["c"]


# --- execute --------------------------------------------------------------------------------


def test_execute_kinds():
    assert execute([1, 2], KIND_DATA, {}) == [1, 2]
    assert execute((inc, 1), KIND_PLAIN, {}) == 2
    assert execute((inc, "x"), KIND_PLAIN, {"x": 5}) == 6
    assert execute((ident, [(inc, 1)], ("a", 2)), KIND_PLAIN, {}) == ([2], ("a", 2))
    assert execute(lambda values: values["x"] * 2, KIND_NODE, {"x": 4}) == 8
    with pytest.raises(ValueError, match="kind"):
        execute((inc, 1), 7, {})


def test_execute_unhashable_args_with_values():
    arr = np.ones(2)
    got = execute((ident, arr, {"a": 1}, (arr, "x"), ["x", arr]), KIND_PLAIN, {"x": 3})
    assert got[0] is arr and got[1] == {"a": 1}
    assert got[2][0] is arr and got[2][1] == 3
    assert got[3][0] == 3 and got[3][1] is arr


# --- dask task_spec nodes -------------------------------------------------------------------


def test_task_spec_nodes_mixed_with_plain():
    ts = pytest.importorskip("dask._task_spec")
    dsk = {
        "x": ts.DataNode("x", 2),
        "y": ts.Task("y", operator.mul, ts.TaskRef("x"), 10),
        "z": ts.Task("z", sum, ts.List(ts.TaskRef("x"), ts.TaskRef("y"), 1)),
        "n": ts.Task("n", operator.add, ts.Task(None, inc, ts.TaskRef("z")), 1),
        "a": ts.Alias("a", "n"),
        "p": (add, "a", "x"),
        "r": ts.TaskRef("p"),
        "lit": 7,
    }
    tasks, _ = normalize_graph(dsk, ["p", "r"])
    assert tasks["x"].kind == tasks["y"].kind == KIND_NODE
    assert tasks["z"].dependencies == ("x", "y")  # sorted: stable across processes
    assert tasks["a"].dependencies == ("n",)
    assert tasks["p"].kind == KIND_PLAIN and tasks["p"].dependencies == ("a", "x")
    assert tasks["r"].dependencies == ("p",)
    r = run_all(tasks)
    assert r["z"] == 23 and r["n"] == 25 and r["a"] == 25 and r["p"] == 27 and r["r"] == 27


def test_task_spec_node_errors():
    ts = pytest.importorskip("dask._task_spec")
    with pytest.raises(GraphError, match=r"task 'y' depends on missing key 'x'"):
        normalize_graph({"y": ts.Task("y", inc, ts.TaskRef("x"))}, "y")
    with pytest.raises(GraphError, match=r"task 'a' depends on missing key 'gone'"):
        normalize_graph({"a": ts.Alias("a", "gone")}, "a")
    with pytest.raises(GraphError, match=r"task 'bad' is not callable: .*3 \(int\)"):
        normalize_graph({"bad": ts.Task("bad", 3)}, "bad")
    with pytest.raises(GraphError, match=r"cycle: .*a -> b -> a|cycle: .*b -> a -> b"):
        normalize_graph(
            {"a": ts.Task("a", inc, ts.TaskRef("b")), "b": ts.Task("b", inc, ts.TaskRef("a"))},
            "a",
        )
    tasks, _ = normalize_graph({"y": ts.Task("y", inc, ts.TaskRef("x"))}, "y", known_keys={"x"})
    assert tasks["y"].dependencies == ("x",)


def test_dask_array_graph():
    da = pytest.importorskip("dask.array")
    x = da.ones(10, chunks=5).sum()
    tasks, keys = normalize_graph(x.__dask_graph__(), x.__dask_keys__())
    assert keys == flatten_keys(x.__dask_keys__())
    assert pack_results(x.__dask_keys__(), run_all(tasks)) == [10.0]
    assert x.compute(scheduler=get) == 10.0  # an expression object, not a dict


def test_dask_dataframe_groupby_mean():
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd

    rng = np.random.default_rng(42)
    df = pd.DataFrame({"a": rng.integers(0, 5, 200), "b": rng.random(200)})
    ddf = dd.from_pandas(df, npartitions=4)
    expected = df.groupby("a").b.mean()
    got = ddf.groupby("a").b.mean().compute(scheduler=get)
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index())
    q = ddf.groupby("a").b.mean()
    tasks, _ = normalize_graph(q.__dask_graph__(), q.__dask_keys__())
    parts = pack_results(q.__dask_keys__(), run_all(tasks))
    pd.testing.assert_series_equal(pd.concat(parts).sort_index(), expected.sort_index())


def test_no_dask_import():
    code = (
        "import sys\n"
        "from taskbench.engine.graph import normalize_graph, execute\n"
        "tasks, _ = normalize_graph({'x': 1, 'y': (abs, 'x')}, 'y')\n"
        "assert execute(tasks['y'].run, tasks['y'].kind, {'x': -1}) == 1\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'dask'], 'dask imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- errors ---------------------------------------------------------------------------------


def test_error_not_callable():
    with pytest.raises(GraphError, match=r"task 'x' is not callable: its first element is 'inc'"):
        normalize_graph({"x": ("inc", 1)}, "x")
    with pytest.raises(GraphError, match=r"task 't' .*not callable.*\(int\)"):
        normalize_graph({"t": (1, 2)}, "t")


def test_error_missing_tuple_key():
    dsk = {("x", 0): 1, ("x", 1): 2, "y": (add, ("x", 0), ("x", 3))}
    with pytest.raises(GraphError, match=r"task 'y' depends on missing key \('x', 3\)"):
        normalize_graph(dsk, "y")
    with pytest.raises(GraphError, match=r"task 'z' .*\('x', 3\)"):
        normalize_graph({**dsk, "y": 1, "z": (inc, [("x", 3)])}, "z")
    with pytest.raises(GraphError, match=r"task 'w' is not callable.*\('x', 5\) is not in"):
        normalize_graph({("x", 0): 1, "w": ("x", 5)}, "w")
    # a known key is not missing; a name that is not a key name is a literal
    normalize_graph(dsk, "y", known_keys={("x", 3)})
    tasks, _ = normalize_graph({("x", 0): 1, "y": (ident, ("other", 3))}, "y")
    assert tasks["y"].dependencies == ()


def test_error_missing_output_keys():
    with pytest.raises(GraphError, match=r"output keys not in the graph: 'b', \('c', 1\)"):
        normalize_graph({"a": 1}, ["a", ["b", ("c", 1)]])


def test_error_cycles():
    with pytest.raises(GraphError, match=r"cycle: x -> x"):
        normalize_graph({"x": (inc, "x")}, "x")
    dsk = {"a": (inc, "b"), "b": (inc, "c"), "c": (add, "a", 1), "d": (inc, "a")}
    with pytest.raises(GraphError) as info:
        normalize_graph(dsk, "d")
    path = str(info.value).removeprefix("cycle: ").split(" (")[0].split(" -> ")
    assert set(path) == {"a", "b", "c"} and len(path) == 4 and path[0] == path[-1]
    with pytest.raises(GraphError, match=r"cycle: .*a -> b -> a|cycle: .*b -> a -> b"):
        normalize_graph({"a": "b", "b": ["a"]}, "a")
    with pytest.raises(GraphError, match=r"cycle: \('t', 0\) -> \('t', 1\) -> \('t', 0\)"):
        normalize_graph({("t", 0): (inc, [("t", 1)]), ("t", 1): (inc, (inc, ("t", 0)))}, [])


def test_error_invalid_keys():
    with pytest.raises(GraphError, match=r"invalid key None"):
        normalize_graph({None: 1}, [])
    with pytest.raises(GraphError, match=r"invalid key \('x', None\)"):
        normalize_graph({("x", None): 1}, [])
    with pytest.raises(GraphError, match=r"invalid key \('x', \[1\]\)"):
        normalize_graph({"x": 1}, [("x", [1])])
    for bad in [None, ("a", None), ("a", ("b", frozenset())), [1], True]:
        with pytest.raises(GraphError):
            validate_key(bad)
    for good in ["a", b"a", 1, 1.5, (), ("a", 1, ("b", 2.0, b"c"))]:
        validate_key(good)


def test_error_not_a_graph():
    with pytest.raises(TypeError, match="Mapping"):
        normalize_graph([("x", 1)], "x")


# --- large graphs ---------------------------------------------------------------------------


N = 100_000


def test_long_chain_no_recursion():
    dsk = {("c", 0): (inc, 0)}
    dsk.update({("c", i): (inc, ("c", i - 1)) for i in range(1, N)})
    rev = dict(reversed(dsk.items()))  # forward references: the full cycle check runs
    for graph in (dsk, rev):
        tasks, _ = normalize_graph(graph, [("c", N - 1)])
        assert run_all(tasks)[("c", N - 1)] == N


def test_long_cycle_message_is_short():
    dsk = {i: (inc, (i + 1) % N) for i in range(N)}
    with pytest.raises(GraphError, match="cycle:") as info:
        normalize_graph(dsk, [0])
    assert len(str(info.value)) < 500


def test_many_independent_tasks():
    dsk = {("noop", i): (ident, i) for i in range(N)}
    tasks, out = normalize_graph(dsk, list(dsk))
    assert len(tasks) == N and len(out) == N
    prio = order({k: s.dependencies for k, s in tasks.items()})
    assert list(prio.values()) == list(range(N))


# --- order ----------------------------------------------------------------------------------


def tree_reduction(width, fanin):
    deps = {("leaf", i): () for i in range(width)}
    level, layer = 0, [("leaf", i) for i in range(width)]
    while len(layer) > 1:
        level += 1
        nxt = []
        for j in range(0, len(layer), fanin):
            key = (f"level{level}", j // fanin)
            deps[key] = tuple(layer[j : j + fanin])
            nxt.append(key)
        layer = nxt
    return deps, layer[0]


def test_order_tree_reduction_subtrees_contiguous():
    deps, root = tree_reduction(27, 3)
    prio = order(deps)
    assert sorted(prio.values()) == list(range(len(deps)))
    for k, ds in deps.items():
        assert all(prio[d] < prio[k] for d in ds)
        sub, stack = set(), [k]
        while stack:
            x = stack.pop()
            if x not in sub:
                sub.add(x)
                stack.extend(deps[x])
        ps = sorted(prio[x] for x in sub)
        assert ps == list(range(ps[0], ps[0] + len(ps))) and ps[-1] == prio[k]
    assert prio[root] == len(deps) - 1
    assert prio[("leaf", 0)] == 0 and prio[("leaf", 1)] == 1


def test_order_insertion_order_and_outside_keys():
    assert order({"b": (), "a": (), "c": ()}) == {"b": 0, "a": 1, "c": 2}
    assert order({"y": ("x",), "z": ("y", "elsewhere")}) == {"y": 0, "z": 1}
    assert order({"a": ("b",), "b": ("a",)}).keys() == {"a", "b"}  # a cycle still terminates


# --- keys -----------------------------------------------------------------------------------


def test_flatten_and_pack():
    keys = ["a", ["b", ("c", 0), []], [["d"]]]
    assert flatten_keys(keys) == ["a", "b", ("c", 0), "d"]
    assert flatten_keys(("c", 0)) == [("c", 0)]
    assert flatten_keys("a") == ["a"]
    values = {"a": 1, "b": 2, ("c", 0): 3, "d": 4}
    assert pack_results(keys, values) == [1, [2, 3, []], [[4]]]
    assert pack_results(("c", 0), values) == 3


def test_key_prefix_and_str():
    assert key_prefix("inc-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d") == "inc"
    assert key_prefix(("x-abc123", 0)) == "x"
    assert key_prefix("hello-world-1") == "hello-world"
    assert key_prefix(b"hello-world-1") == "hello-world"
    assert key_prefix("x-abcdefab") == "x"
    assert key_prefix("ae05086432ca935f6eba409a8ecd4896") == "data"
    assert key_prefix("_(x)") == "x"
    assert key_prefix(7) == key_prefix(()) == "Other"
    assert key_str("a") == "a" and key_str(b"a") == "a"
    assert key_str(("x", 0)) == "('x', 0)" and key_str(1) == "1"


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="abcdef0123456789-_()<>.,' xyzAB", max_size=40),
        st.tuples(st.text(alphabet="abcxyz0123-", max_size=20), st.integers()),
        st.binary(max_size=10).filter(lambda b: b.isascii()),
    )
)
def test_key_prefix_matches_dask(key):
    utils = pytest.importorskip("dask.utils")
    assert key_prefix(key) == utils.key_split(key)


# --- random DAGs ----------------------------------------------------------------------------


class Ref:
    def __init__(self, i):
        self.i = i


def total(*xs):
    """Sum of every number inside nested lists/tuples."""
    out, stack = 0, list(xs)
    while stack:
        x = stack.pop()
        if isinstance(x, list | tuple):
            stack.extend(x)
        else:
            out += x
    return out


def arg_strategy(n_before):
    leaves = st.integers(-5, 5)
    if n_before:
        leaves = st.one_of(leaves, st.integers(0, n_before - 1).map(Ref))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.lists(inner, min_size=1, max_size=3).map(tuple),
            st.lists(inner, max_size=3).map(lambda xs: ("task", *xs)),
        ),
        max_leaves=6,
    )


@st.composite
def random_dags(draw):
    n = draw(st.integers(1, 15))
    specs = [draw(st.lists(arg_strategy(i), max_size=4)) for i in range(n)]
    tuple_keys = draw(st.booleans())
    perm = draw(st.permutations(range(n)))
    return specs, tuple_keys, perm


@settings(max_examples=80, deadline=None)
@given(random_dags())
def test_random_dags_match_reference(dag):
    specs, tuple_keys, perm = dag

    def key(i):
        return ("node", i) if tuple_keys else f"node-{i}"

    def render(a):
        if isinstance(a, Ref):
            return key(a.i)
        if type(a) is list:
            return [render(x) for x in a]
        if type(a) is tuple and a[:1] == ("task",):
            return (total, *map(render, a[1:]))
        if type(a) is tuple:
            return tuple(render(x) for x in a)
        return a

    reference: list[int] = []

    def evaluate(a):
        if isinstance(a, Ref):
            return reference[a.i]
        if type(a) is tuple and a[:1] == ("task",):
            return total(*map(evaluate, a[1:]))
        if isinstance(a, list | tuple):
            return [evaluate(x) for x in a]
        return a

    for args in specs:
        reference.append(total(*map(evaluate, args)))
    dsk = {key(i): (total, *map(render, specs[i])) for i in perm}
    tasks, _ = normalize_graph(dsk, [key(i) for i in range(len(specs))])
    results = run_all(tasks)
    assert [results[key(i)] for i in range(len(specs))] == reference


def test_random_wide_graph_order_is_topological():
    rng = random.Random(42)
    deps = {}
    for i in range(2000):
        deps[i] = tuple(rng.sample(range(i), min(i, rng.randint(0, 4))))
    prio = order(deps)
    assert sorted(prio.values()) == list(range(len(deps)))
    assert all(prio[d] < prio[k] for k, ds in deps.items() for d in ds)


# --- the column-wise path and the wire format -------------------------------------------------


def _slow(dsk, keys, known=()):
    from taskbench.engine.graph import _normalize_slow, _output_keys

    tasks, _ = _normalize_slow(dsk, set(known))
    _output_keys(dsk, set(known), keys)
    return tasks


GRAPHS = [
    {("noop", i): (ident, i) for i in range(50)},
    {("c", 0): 0, **{("c", i): (inc, ("c", i - 1)) for i in range(1, 50)}},
    {("c", 0): (inc, 0), **{("c", i): (inc, ("c", i - 1)) for i in range(1, 50)}},
    {"a": 1, "b": (add, "a", 2), "c": (add, "a", "b", "a"), "d": (ident, "b")},
    {("x", i): (add, ("x", i - 1) if i else 0, ("y", i)) for i in range(10)}
    | {("y", i): (inc, i) for i in range(10)},
    {("a", i): (ident, True, 1.0, b"x", None, {"k": i}) for i in range(8)} | {1: (inc, 2)},
    {i: (inc, i - 1) for i in range(1, 20)} | {0: 50},
    {("t", 1, 2): (ident, ("t", 1, 2)[:2]), ("t", 1): (inc, 3)},
]


@pytest.mark.parametrize("dsk", GRAPHS)
def test_fast_path_matches_per_task_scan(dsk):
    from taskbench.engine.graph import decode_graph, encode_graph, normalize, order_graph

    keys = list(dsk)
    tasks, out = normalize_graph(dsk, keys)
    assert tasks == _slow(dsk, keys)
    g, out2 = normalize(dsk, keys)
    assert out2 == out and g.specs() == tasks
    prio = order({k: s.dependencies for k, s in tasks.items()})
    p = order_graph(g)
    assert (list(range(len(keys))) if p is None else p) == [prio[k] for k in keys]
    payload = pickle.loads(cloudpickle.dumps(encode_graph(g, p)))
    decoded, dprio = decode_graph(payload)
    assert dprio == prio
    assert list(decoded) == keys
    for k, (deps, run, kind, prefix) in decoded.items():
        assert deps == tasks[k].dependencies and run == tasks[k].run and kind == tasks[k].kind
        assert prefix == key_prefix(k)
        vals = dict.fromkeys(deps, 1)
        if kind != KIND_DATA:
            assert execute(run, kind, vals) == execute(tasks[k].run, kind, vals)


def test_encoding_never_asks_a_literal_for_its_truth():
    from taskbench.engine.graph import decode_graph, encode_graph, normalize, order_graph

    # a frame's ``==`` answers with a frame, whose truth value raises
    frames = [pd.DataFrame({"k": [i]}) for i in range(4)]
    for dsk in (
        {("a", i): (ident, frames[i]) for i in range(4)},
        {("b", 0): (ident, frames[0])} | {("b", i): (ident, ("b", i - 1)) for i in range(1, 4)},
    ):
        g, _ = normalize(dsk, list(dsk))
        decoded, _ = decode_graph(encode_graph(g, order_graph(g)))
        assert decoded[next(iter(dsk))][1][1] is frames[0]


def test_fast_path_errors_are_the_per_task_errors():
    bad = {("a", 0): (inc, 1), ("a", 1): (1, 2), ("a", 2): (inc, ("a", 5))}
    with pytest.raises(GraphError, match=r"task \('a', 1\) is not callable"):
        normalize_graph(bad, [("a", 0)])
    with pytest.raises(GraphError, match="cycle"):
        normalize_graph({("a", i): (inc, ("a", (i + 1) % 5)) for i in range(5)}, [("a", 0)])
    with pytest.raises(GraphError, match="depends on missing key"):
        normalize_graph({("a", 0): (inc, 0), ("a", 1): (inc, ("a", 7))}, [("a", 1)])
    tasks, _ = normalize_graph({("a", 0): (inc, ("k", 1))}, [("a", 0)], known_keys={("k", 1)})
    assert tasks[("a", 0)].dependencies == (("k", 1),)


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_random_uniform_graphs_fast_equals_slow(data):
    n = data.draw(st.integers(1, 30))
    keys = [("k", i) for i in range(n)]
    arg = st.one_of(st.integers(-3, 40), st.sampled_from(keys), st.just(True), st.text(max_size=2))
    width = data.draw(st.integers(0, 3))
    dsk = {k: (ident, *[data.draw(arg) for _ in range(width)]) for k in keys}
    try:
        expect = _slow(dsk, keys)
    except GraphError as e:
        with pytest.raises(GraphError, match=re.escape(str(e))):
            normalize_graph(dsk, keys)
        return
    if any(
        order_forward
        for order_forward in [
            any(keys.index(d) >= i for d in t.dependencies if d in dsk)
            for i, t in enumerate(expect.values())
        ]
    ):
        return  # may be a cycle: covered above
    tasks, _ = normalize_graph(dsk, keys)
    assert tasks == expect
