"""Load-balance quality on a real cluster: makespan ÷ lower bound, per policy and workload (asv).

``Real`` runs the load-balance workloads on a 2-worker ``LocalCluster``. The simulated figures
(the same workloads in ``engine.sim``, 8 workers × 2 threads) are deterministic and live in
``deterministic.Simulated``, where ``make test`` checks them against the stored baseline.
``taskbench bench balance [--sim] [--vs dask]`` prints the same tables, with dask beside the
real ones. The short grid (``make test``) runs the default policy (``locality+stealing``) on
every workload; ``TASKBENCH_ASV_FULL=1`` runs every policy.
"""

from __future__ import annotations

from taskbench.comparisons.bench.balance import POLICIES, run_real
from taskbench.engine.workloads import NAMES

from . import FULL

REAL_SCALE = 0.5  # about 1 s of real time per run
SHORT_POLICIES = ["locality+stealing"]  # the engine's defaults


class Real:
    params = (list(POLICIES) if FULL else SHORT_POLICIES, list(NAMES))
    param_names = ["policy", "workload"]
    timeout = 300
    unit = "ratio"

    def track_makespan_ratio(self, policy, workload):
        return run_real(workload, policy, 2, REAL_SCALE)[0]["makespan_ratio"]
