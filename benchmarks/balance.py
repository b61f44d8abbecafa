"""Load-balance quality: makespan ÷ lower bound, per placement policy and workload (asv).

``Simulated`` runs the real scheduler state and policies in the simulator (8 workers × 2
threads): deterministic, so a regression shows with no noise. ``Real`` runs the same
workloads on a 2-worker ``LocalCluster``. ``taskbench bench balance [--sim] [--vs dask]``
prints the same tables, with dask beside the real ones.
"""

from __future__ import annotations

from taskbench.comparisons.bench.balance import POLICIES, run_real, run_sim
from taskbench.engine.workloads import NAMES

SIM_SCALE = 1.0  # a perfect schedule takes about 2 s of virtual time
REAL_SCALE = 0.5  # about 1 s of real time per run


class Simulated:
    params = (list(POLICIES), list(NAMES))
    param_names = ["policy", "workload"]

    def setup(self, policy, workload):
        self.result, _ = run_sim(workload, policy, 8, 2, SIM_SCALE)

    def track_makespan_ratio(self, policy, workload):
        return self.result["makespan_ratio"]

    track_makespan_ratio.unit = "ratio"

    def track_idle_fraction(self, policy, workload):
        return self.result["idle_fraction"]

    track_idle_fraction.unit = "fraction"


class Real:
    params = (list(POLICIES), list(NAMES))
    param_names = ["policy", "workload"]
    timeout = 300
    unit = "ratio"

    def track_makespan_ratio(self, policy, workload):
        return run_real(workload, policy, 2, REAL_SCALE)[0]["makespan_ratio"]
