"""The dataframe layer on real worker processes (LocalCluster), in both sizeof modes."""

from __future__ import annotations

import pandas as pd
import pytest
import taskbench.engine.dataframe as edf
from pandas.testing import assert_frame_equal
from taskbench.engine.client import Client
from taskbench.engine.cluster import LocalCluster
from taskbench.engine.sizeof import get_mode

from tests.engine.dataframe.helpers import make_frame
from tests.engine.dataframe.test_shuffle import row_checksums


def worker_sizeof_mode(_: object) -> str:
    return get_mode()


@pytest.fixture(scope="module", params=["sampled", "deep"])
def cluster_client(request: pytest.FixtureRequest):
    with (
        LocalCluster(2, 1, env={"TASKBENCH_SIZEOF": request.param}) as cluster,
        Client(cluster) as client,
    ):
        yield request.param, client


def test_workers_run_in_the_requested_sizeof_mode(cluster_client):
    mode, client = cluster_client
    modes = client.get({("m", i): (worker_sizeof_mode, i) for i in range(4)}, [("m", 0)])
    assert modes == (mode,)


def test_pipeline_on_worker_processes(cluster_client):
    _, client = cluster_client
    pdf = make_frame(20_000, 11, "object", 0.1)
    df = edf.from_pandas(pdf, 12).persist(client)
    assert df.length().compute() == len(pdf)

    shuffled = df.shuffle("k", 40, max_branch=8).persist()
    out = shuffled.compute()
    assert row_checksums(out).equals(row_checksums(pdf))
    assert len(out) == len(pdf)

    got = shuffled.groupby("k", dropna=False).agg({"v": ["sum", "count"], "i": "max"}).compute()
    want = pdf.groupby("k", dropna=False).agg({"v": ["sum", "count"], "i": "max"})
    assert_frame_equal(got, want, check_dtype=False, check_index_type=False, rtol=1e-9)

    right = pd.DataFrame({"k": ["a", "b", "é"], "label": ["A", "B", "E"]})
    joined = df.merge(edf.from_pandas(right, 2), on="k", how="left", broadcast=False).compute()
    assert len(joined) == len(pdf)
    assert joined.label.notna().sum() == pdf.k.isin(["a", "b", "é"]).sum()

    ordered = df.sort_values("v", npartitions=5).compute()
    assert_frame_equal(ordered, pdf.sort_values("v", kind="stable"))
