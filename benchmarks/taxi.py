"""The problem set on the engine at 1M rows: one timing per query (asv).

``setup_cache`` generates the data once (seeded); each case starts the engine's solution
(``comparisons/solutions/engine.py`` with ``comparisons/configs/engine.toml``) on a
``LocalCluster``, loads and persists the trips, and runs the query once untimed, so the
timed runs are hot. The other engines are timed side by side by ``taskbench check`` and
the comparison runner, not here: asv tracks the engine commit by commit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from taskbench.comparisons import solutions
from taskbench.comparisons.data import generate
from taskbench.comparisons.queries import QUERY_IDS

ROWS = 1_000_000


class Queries:
    params = [list(QUERY_IDS)]
    param_names = ["query"]
    timeout = 600
    number = 1
    repeat = (1, 3, 30.0)

    def setup_cache(self):
        out = Path(tempfile.mkdtemp(prefix="taskbench-asv-taxi-")) / "data"
        generate(out, rows=ROWS, start="2015-01", months=2, seed=42)
        return str(out)

    def setup(self, data_dir, query):
        config = solutions.load_config("engine")
        self.module = solutions.load_solution("engine")
        self.session = self.module.start(config)
        self.handle = self.module.load(self.session, data_dir, config)
        self.query = getattr(self.module, query)
        self.query(self.handle)

    def teardown(self, data_dir, query):
        self.module.stop(self.session)

    def time_query(self, data_dir, query):
        self.query(self.handle)
