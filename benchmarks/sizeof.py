"""Cost and accuracy of `engine.sizeof` on 1M-row results (DESIGN.md, "sizeof cost").

``track_us_per_call`` is the median of 200 timed calls in one process; ``time_sizeof`` gives
asv's own statistics for both modes, deep being the exact size whose cost lagged 2016 workers.
The estimate's error against the exact size is deterministic, so it is in
``deterministic.Sizeof`` (checked against the stored baseline by ``make test``).
"""

from __future__ import annotations

import os
import pickle
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd
from taskbench.engine.sizeof import set_mode, sizeof

ROWS = 1_000_000
SEED = 42
CALLS = 200
KINDS = ["object", "skewed", "str", "numpy"]


def _strings(rng: np.random.Generator, lengths: np.ndarray) -> list[str]:
    """Distinct ASCII strings with the given lengths, sliced out of one random text."""
    ends = np.cumsum(lengths)
    text = rng.integers(97, 123, int(ends[-1]), dtype=np.uint8).tobytes().decode("ascii")
    starts = (ends - lengths).tolist()
    return [text[a:b] for a, b in zip(starts, ends.tolist(), strict=True)]


def make_frame(kind: str, rows: int = ROWS, seed: int = SEED) -> Any:
    """A seeded result of one kind: 4 numeric + 3 string columns, or a float64 array.

    object: 12-char ids, 200 shared city names, texts of 0-40 chars (object dtype);
    skewed: texts with log-normal lengths (median 20 chars, sigma 0.5, 1.0, 1.5; object dtype);
    str: the object frame with pandas' default arrow-backed ``str`` columns; numpy: 1M float64.
    """
    rng = np.random.default_rng(seed)
    if kind == "numpy":
        return rng.random(rows)
    columns: dict[str, Any] = {f"f{i}": rng.random(rows) for i in range(3)}
    columns["i0"] = rng.integers(0, 1_000_000, rows)
    if kind == "skewed":
        for j, sigma in enumerate((0.5, 1.0, 1.5)):
            lengths = np.minimum(np.exp(np.log(20) + sigma * rng.standard_normal(rows)), 5000)
            columns[f"s{j}"] = _strings(rng, lengths.astype(np.int64))
    else:
        cities = np.array(_strings(rng, rng.integers(4, 21, 200)), dtype=object)
        columns["s0"] = _strings(rng, np.full(rows, 12))
        columns["s1"] = cities[rng.integers(0, len(cities), rows)]
        columns["s2"] = _strings(rng, rng.integers(0, 41, rows))
    dtype = "str" if kind == "str" else object
    for name in ("s0", "s1", "s2"):
        columns[name] = pd.Series(columns[name], dtype=dtype)
    return pd.DataFrame(columns)


def median_us(obj: Any, calls: int = CALLS) -> float:
    """Median wall time of one `sizeof` call on obj, in microseconds, after one warm-up call."""
    sizeof(obj)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        sizeof(obj)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


class _Base:
    params = [KINDS]
    param_names = ["kind"]
    timeout = 300

    def setup_cache(self) -> dict[str, str]:
        """Each kind's result pickled to its own file in asv's cache folder (the working folder,
        removed after the run), so a benchmark process loads only the one it measures."""
        paths = {}
        for kind in KINDS:
            path = os.path.abspath(f"sizeof-{kind}.pickle")
            with open(path, "wb") as f:
                pickle.dump(make_frame(kind), f, protocol=5)
            paths[kind] = path
        return paths

    setup_cache.timeout = 300

    def setup(self, paths: dict[str, str], kind: str, *rest: str) -> None:
        with open(paths[kind], "rb") as f:
            self.obj = pickle.load(f)


class SizeofCost(_Base):
    def track_us_per_call(self, paths: dict[str, str], kind: str) -> float:
        return median_us(self.obj)

    track_us_per_call.unit = "us"


class SizeofModes(_Base):
    params = [KINDS, ["sampled", "deep"]]
    param_names = ["kind", "mode"]
    repeat = (1, 5, 30.0)  # deep mode on an object frame takes about 0.3 s per call

    def setup(self, paths: dict[str, str], kind: str, mode: str) -> None:
        super().setup(paths, kind)
        set_mode(mode)

    def teardown(self, paths: dict[str, str], kind: str, mode: str) -> None:
        set_mode("sampled")

    def time_sizeof(self, paths: dict[str, str], kind: str, mode: str) -> None:
        sizeof(self.obj)
