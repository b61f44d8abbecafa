"""The problem set on the engine at 1M rows: one timing per query (asv).

``setup_cache`` generates the data once (seeded); each case starts the engine's solution
(``comparisons/solutions/engine.py`` with ``comparisons/configs/engine.toml``) on a
``LocalCluster``, loads and persists the trips, and runs the query once untimed, so the
timed runs are hot. The other engines are timed side by side by ``taskbench check`` and
the comparison runner, not here: asv tracks the engine commit by commit. ``make test``'s short
grid times four queries that cover the kinds of work (a tree reduction, a high-cardinality
group-by, a join and a full shuffle); ``TASKBENCH_ASV_FULL=1`` times all of them.
"""

from __future__ import annotations

from pathlib import Path

from taskbench.comparisons import solutions
from taskbench.comparisons.data import generate
from taskbench.comparisons.queries import QUERY_IDS

from . import FULL

ROWS = 1_000_000
#: q01 trips per payment type, q08 zone pairs, q09 join with the zones, q12 full shuffle
SHORT_QUERIES = ["q01", "q08", "q09", "q12"]


class Queries:
    params = [list(QUERY_IDS) if FULL else [q for q in SHORT_QUERIES if q in QUERY_IDS]]
    param_names = ["query"]
    timeout = 600
    number = 1
    repeat = (1, 3, 30.0)

    def setup_cache(self):
        # asv runs this in its cache folder, and removes the folder after the run
        out = Path.cwd() / "taxi-data"
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
