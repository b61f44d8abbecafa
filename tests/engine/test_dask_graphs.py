"""Graphs built by dask collections run unchanged on the engine (``scheduler=client.get``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from taskbench.engine.client import Client
from taskbench.engine.cluster import InProcessCluster, LocalCluster

dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
pytestmark = pytest.mark.dask


@pytest.fixture(scope="module", params=["inprocess", "local"])
def client(request):
    cluster_type = InProcessCluster if request.param == "inprocess" else LocalCluster
    with cluster_type(2, 1) as cluster, Client(cluster) as client:
        yield client


def test_dataframe_groupby_mean_matches_dask(client):
    rng = np.random.default_rng(0)
    pdf = pd.DataFrame(
        {
            "k": rng.integers(0, 20, 50_000),
            "s": rng.choice(["a", "b", "c", None], 50_000),
            "x": rng.random(50_000),
        }
    )
    ddf = dd.from_pandas(pdf, npartitions=8)
    query = ddf.groupby("k").x.mean()
    ours = query.compute(scheduler=client.get).sort_index()
    theirs = query.compute(scheduler="sync").sort_index()
    pd.testing.assert_series_equal(ours, theirs)
    pd.testing.assert_series_equal(ours, pdf.groupby("k").x.mean().sort_index())
    by_string = ddf.groupby("s", dropna=False).x.sum()
    ours = by_string.compute(scheduler=client.get).sort_index()
    pd.testing.assert_series_equal(ours, by_string.compute(scheduler="sync").sort_index())
    # dask itself returns the NA-flavoured string index where pandas keeps NaN
    expected = pdf.groupby("s", dropna=False).x.sum().sort_index()
    assert ours.index.astype(object).fillna("<null>").tolist() == ["a", "b", "c", "<null>"]
    np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy())


def test_array_sum_matches_dask(client):
    x = da.random.default_rng(1).random((2_000, 1_000), chunks=(250, 500))
    total = x.sum()
    assert np.isclose(total.compute(scheduler=client.get), total.compute(scheduler="sync"))
    col_means = x.mean(axis=0).compute(scheduler=client.get)
    np.testing.assert_allclose(col_means, x.mean(axis=0).compute(scheduler="sync"))


def test_dask_compute_of_several_collections(client):
    import dask

    a = da.arange(1_000, chunks=100)
    b = dd.from_pandas(pd.DataFrame({"v": range(100)}), npartitions=4)
    s, n = dask.compute(a.sum(), b.v.count(), scheduler=client.get)
    assert (s, n) == (sum(range(1_000)), 100)
