"""Every engine x every query x every test dataset, checked against the pandas reference."""

from __future__ import annotations

import pytest
from taskbench.comparisons import solutions
from taskbench.comparisons.normalize import compare, normalize
from taskbench.comparisons.queries import QUERIES, QUERY_IDS

from tests.comparisons.conftest import DATASETS

MARKS = {"duckdb": [pytest.mark.duckdb], "spark": [pytest.mark.spark], "dask": [pytest.mark.dask]}
CASES = [
    pytest.param(engine, query, id=f"{engine}-{query}", marks=MARKS.get(engine, []))
    for engine in solutions.ENGINES
    for query in QUERY_IDS
]


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize(("engine", "query_id"), CASES)
def test_answer_matches_reference(engine, query_id, kind, datasets, engines, reference):
    solution, handle = engines.handle(engine, datasets[kind])
    try:
        function = solutions.query_function(solution, query_id)
    except solutions.NotImplementedYet as exc:
        pytest.skip(str(exc))
    query = QUERIES[query_id]
    got = normalize(function(handle), query)
    mismatch = compare(reference(kind, query_id), got, query)
    assert mismatch is None, f"{engine} {query_id} on {kind}: {mismatch}"
