"""Frames and settings shared by the dataframe tests.

``frames()`` draws pandas frames with the cases that break partitioned code: nulls in keys
and values, empty partitions (more partitions than rows), a single partition, one key that
holds 90% of the rows, string (``object`` and ``str``), boolean and datetime columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from taskbench.engine.local import get_sync

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

KEY_KINDS = ("int", "float", "str", "object", "skew", "bool")


class SyncClient:
    """``get`` on the synchronous executor, so tests never fall back to a default client."""

    get = staticmethod(get_sync)


def make_frame(n: int, seed: int, key_kind: str, null_share: float) -> pd.DataFrame:
    """A frame of ``n`` rows: key ``k`` of ``key_kind``, values with nulls, strings, times."""
    rng = np.random.default_rng(seed)
    nulls = rng.random(n) < null_share
    if key_kind == "int":
        k: Any = rng.integers(-3, 5, n)
    elif key_kind == "float":
        k = rng.integers(-3, 5, n).astype(float)
        k[nulls] = np.nan
        k[rng.random(n) < 0.1] = -0.0
    elif key_kind in ("str", "object"):
        k = np.array(["a", "b", "c", "d", "é"], dtype=object)[rng.integers(0, 5, n)]
        k[nulls] = None
        k[nulls & (rng.random(n) < 0.5)] = np.nan
        k = pd.Series(k, dtype="str" if key_kind == "str" else object)
    elif key_kind == "skew":
        k = np.where(rng.random(n) < 0.9, 7, rng.integers(0, 50, n))
    elif key_kind == "bool":
        k = rng.random(n) < 0.3
    else:
        raise ValueError(key_kind)
    v = rng.normal(size=n).round(3)
    v[rng.random(n) < null_share] = np.nan
    s = np.array(["x", "yy", "zzz", ""], dtype=object)[rng.integers(0, 4, n)]
    s[rng.random(n) < null_share] = None
    t = pd.Series(pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"))
    t[rng.random(n) < null_share] = pd.NaT
    return pd.DataFrame(
        {
            "k": k,
            "k2": rng.integers(0, 3, n),
            "i": rng.integers(-100, 100, n),
            "v": v,
            "s": pd.Series(s, dtype="str"),
            "t": t,
        }
    )


@st.composite
def frames(draw: Any, key_kinds: tuple[str, ...] = KEY_KINDS, max_rows: int = 80) -> tuple:
    """(pandas frame, npartitions)."""
    n = draw(st.integers(0, max_rows))
    seed = draw(st.integers(0, 2**32 - 1))
    key_kind = draw(st.sampled_from(key_kinds))
    null_share = draw(st.sampled_from([0.0, 0.2, 0.6]))
    nparts = draw(st.integers(1, 9))
    return make_frame(n, seed, key_kind, null_share), nparts


def lookup(keys: pd.Series, seed: int, name: str = "k") -> pd.DataFrame:
    """A right side for ``keys``: every other distinct key (nulls too), two of them twice."""
    distinct = keys.drop_duplicates()
    k = pd.concat([distinct.iloc[::2], distinct.iloc[:2]], ignore_index=True)
    rng = np.random.default_rng(seed)
    labels = pd.Series([f"z{i}" for i in range(len(k))], dtype="str")
    return pd.DataFrame({name: k, f"{name}_name": labels, f"{name}_w": rng.random(len(k))})
