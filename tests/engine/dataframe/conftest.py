"""Fixtures for the dataframe tests: a synchronous and an in-process engine."""

from __future__ import annotations

from typing import Any

import pytest
from taskbench.engine.client import Client
from taskbench.engine.cluster import InProcessCluster

from tests.engine.dataframe.helpers import SyncClient


@pytest.fixture(scope="session")
def inproc_client():
    with InProcessCluster(2, 1) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(params=["sync", "inproc"])
def client(request: pytest.FixtureRequest) -> Any:
    if request.param == "sync":
        return SyncClient()
    return request.getfixturevalue("inproc_client")
