"""The engine interface: same names in every solution module; a missing engine is reported."""

from __future__ import annotations

import types

import pytest
from taskbench.comparisons import solutions
from taskbench.comparisons.queries import QUERY_IDS

IMPLEMENTED = [name for name in solutions.ENGINES if solutions.is_implemented(name)]


def test_registry_names_the_five_engines():
    assert list(solutions.ENGINES) == ["pandas", "engine", "duckdb", "spark", "dask"]
    assert {"pandas", "duckdb", "spark", "dask"} <= set(IMPLEMENTED)


@pytest.mark.parametrize("engine", IMPLEMENTED)
def test_module_has_the_interface(engine):
    module = solutions.load_solution(engine)
    assert engine == module.NAME
    for name in ("version", "start", "load", "stop", *QUERY_IDS):
        assert callable(getattr(module, name)), f"{engine}: {name}"


def test_an_engine_without_its_module_is_an_error_not_a_crash(monkeypatch):
    monkeypatch.setenv(solutions.EXTRA_ENV, "planned=no.such.solution")
    assert not solutions.is_implemented("planned")
    with pytest.raises(
        solutions.NotImplementedYet, match=r"planned: not implemented yet \(no no\.such\.solution"
    ):
        solutions.load_solution("planned")


def test_unknown_engine_lists_the_valid_ones():
    with pytest.raises(KeyError, match="pandas, engine, duckdb, spark, dask"):
        solutions.load_solution("polars")


def test_a_missing_query_is_not_implemented_yet():
    module = types.SimpleNamespace(NAME="partial", q01=lambda h: None)
    assert solutions.query_function(module, "q01") is module.q01
    with pytest.raises(solutions.NotImplementedYet, match="partial: q02 not implemented yet"):
        solutions.query_function(module, "q02")
    with pytest.raises(KeyError, match="q13"):
        solutions.query_function(module, "q13")


def test_extra_solutions_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(solutions.EXTRA_ENV, "fake=tests.comparisons.fake_solution, none=no.such")
    assert solutions.all_engines()["fake"] == "tests.comparisons.fake_solution"
    assert solutions.is_implemented("fake") and not solutions.is_implemented("none")
    monkeypatch.setenv(solutions.EXTRA_ENV, "fake")
    with pytest.raises(ValueError, match="name=module"):
        solutions.all_engines()


def test_setup_and_teardown_compose_start_load_stop(datasets):
    handle = solutions.setup("pandas", datasets["generated"])
    assert len(solutions.run_query(solutions.load_solution("pandas"), handle, "q01")) == 4
    solutions.teardown(handle)
