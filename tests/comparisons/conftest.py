"""Shared fixtures: small datasets made once per session, engines started once per session."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from taskbench.comparisons import solutions
from taskbench.comparisons.data import generate, import_files
from taskbench.comparisons.normalize import normalize
from taskbench.comparisons.queries import QUERIES

from tests.comparisons.edge_data import write_edge_dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SAMPLES = SHARED_DATA / "tlc-samples"
ZONE_LOOKUP = SHARED_DATA / "taxi_zone_lookup.csv"
DATASETS = ("generated", "edge", "real")
CORES = 2

# Each engine's library, for a clear skip where an extra is not installed.
LIBRARIES = {"duckdb": "duckdb", "spark": "pyspark", "dask": "distributed"}


def make_dataset(kind: str, root: Path) -> Path:
    """Write one of the test datasets under ``root``."""
    out = root / kind
    if kind == "generated":
        generate(out, rows=20_000, start="2015-01", months=2, seed=0)
    elif kind == "edge":
        write_edge_dataset(out)
    elif kind == "real":
        if not SAMPLES.exists():
            pytest.skip(f"real TLC samples absent: {SAMPLES} (see shared/data/README.md)")
        import_files([SAMPLES], out, zones=ZONE_LOOKUP)
    else:
        raise ValueError(kind)
    return out


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("taxi")


@pytest.fixture(scope="session")
def datasets(dataset_root: Path) -> dict[str, Path]:
    """Datasets by kind, each made on first use."""
    made: dict[str, Path] = {}

    class Lazy(dict):
        def __missing__(self, kind: str) -> Path:
            made[kind] = make_dataset(kind, dataset_root)
            self[kind] = made[kind]
            return made[kind]

    return Lazy()


class EnginePool:
    """Engines started on first use and kept for the session, with one handle per dataset."""

    def __init__(self) -> None:
        self.sessions: dict[str, tuple[Any, Any, Any]] = {}
        self.handles: dict[tuple[str, Path], Any] = {}

    def handle(self, engine: str, data_dir: Path) -> tuple[Any, Any]:
        """(solution module, handle) for an engine and a dataset."""
        if engine in LIBRARIES:
            pytest.importorskip(LIBRARIES[engine], reason=f"the {engine} extra is not installed")
        if engine == "spark" and shutil.which("java") is None:
            pytest.skip("Spark needs Java 17 on PATH")
        if not solutions.is_implemented(engine):
            pytest.skip(f"{engine}: not implemented yet")
        if engine not in self.sessions:
            solution = solutions.load_solution(engine)
            config = solutions.load_config(engine, cores=CORES)
            self.sessions[engine] = (solution, config, solution.start(config))
        solution, config, session = self.sessions[engine]
        key = (engine, data_dir)
        if key not in self.handles:
            self.handles[key] = solution.load(session, data_dir, config)
        return solution, self.handles[key]

    def close(self) -> None:
        for solution, _, session in self.sessions.values():
            solution.stop(session)


@pytest.fixture(scope="session")
def engines() -> Any:
    pool = EnginePool()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def reference(datasets: dict[str, Path], engines: EnginePool) -> Any:
    """reference(kind, query_id): the pandas answer, normalised, computed once."""
    cache: dict[tuple[str, str], Any] = {}

    def answer(kind: str, query_id: str) -> Any:
        if (kind, query_id) not in cache:
            solution, handle = engines.handle("pandas", datasets[kind])
            raw = solutions.run_query(solution, handle, query_id)
            cache[kind, query_id] = normalize(raw, QUERIES[query_id])
        return cache[kind, query_id]

    return answer
