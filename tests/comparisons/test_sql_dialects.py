"""SQL once: the DuckDB and Spark solutions run the registry's SQL, rendered for their dialect."""

from __future__ import annotations

import ast
import inspect
import re

import pytest
from taskbench.comparisons.queries import QUERIES, QUERY_IDS, month_parameters

duckdb_ = pytest.importorskip("taskbench.comparisons.solutions.duckdb_")
from taskbench.comparisons.solutions import spark  # noqa: E402  (imports no pyspark)

PARAMS = month_parameters("2016-01")
HANDLES = {
    "duckdb": (duckdb_, duckdb_.Handle(None, PARAMS, "trips_7", "zones_7")),
    "spark": (spark, spark.Handle(None, PARAMS, "trips_7", "zones_7", [])),
}
# What a query's own SQL would contain; a dialect fragment (a function name, a cast) would not.
QUERY_SQL = re.compile(r"GROUP BY|ORDER BY|JOIN|WHERE|count\(|avg\(|sum\(|lag\(", re.IGNORECASE)


def _registry_lines(query_id: str) -> list[str]:
    sql = QUERIES[query_id].sql
    return re.sub(r"\b(FROM|JOIN) (trips|zones)\b", r"\1 \2_7", sql).splitlines()


@pytest.mark.parametrize("dialect", HANDLES)
@pytest.mark.parametrize("query_id", QUERY_IDS)
def test_rendered_sql_is_the_registry_sql_but_for_the_dialect_rewrites(dialect, query_id):
    module, handle = HANDLES[dialect]
    query = QUERIES[query_id]
    rendered = module.render(query, handle).splitlines()
    registry = _registry_lines(query_id)
    assert len(rendered) == len(registry)
    for spec, line in zip(registry, rendered, strict=True):
        touched = any(re.search(r.pattern, spec) for r in module.DIALECT) or ":" in spec
        assert line == spec or touched, f"{dialect} {query_id}: {line!r} is not {spec!r}"
    text = "\n".join(rendered)
    assert text.startswith("SELECT")
    for name in query.names:
        assert re.search(rf"\b{name}\b", text), f"{dialect} {query_id}: no {name}"


@pytest.mark.parametrize("dialect", HANDLES)
def test_every_rewrite_is_used_and_says_why(dialect):
    module, _ = HANDLES[dialect]
    assert module.DIALECT
    for rewrite in module.DIALECT:
        assert rewrite.reason.strip()
        assert any(re.search(rewrite.pattern, q.sql) for q in QUERIES.values()), rewrite


@pytest.mark.parametrize("dialect", HANDLES)
def test_the_solution_holds_no_query_sql_of_its_own(dialect):
    module, _ = HANDLES[dialect]
    tree = ast.parse(inspect.getsource(module))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]
    assert not [s for s in literals if QUERY_SQL.search(s)]


@pytest.mark.parametrize("dialect", HANDLES)
def test_query_functions_carry_their_ids(dialect):
    module, _ = HANDLES[dialect]
    assert [getattr(module, q).__name__ for q in QUERY_IDS] == list(QUERY_IDS)


def test_parameters_are_bound_in_duckdb_and_inlined_without_a_zone_in_spark():
    query = QUERIES["q07"]
    assert query.parameters == ("month_start", "month_end")
    duck = duckdb_.render(query, HANDLES["duckdb"][1])
    assert "$month_start" in duck and "$month_end" in duck and ":month" not in duck
    sql = spark.render(query, HANDLES["spark"][1])
    assert ">= TIMESTAMP_NTZ '2016-01-01 00:00:00'" in sql
    assert "< TIMESTAMP_NTZ '2016-02-01 00:00:00'" in sql


@pytest.mark.parametrize("dialect", HANDLES)
def test_a_join_without_a_zones_table_says_how_to_get_one(dialect):
    module, handle = HANDLES[dialect]
    bare = type(handle)(**{**vars(handle), "zones": None})
    with pytest.raises(LookupError, match="--zones"):
        module.render(QUERIES["q09"], bare)
    assert "trips_7" in module.render(QUERIES["q01"], bare)
