"""asv suites of taskbench (``asv.conf.json``: ``benchmark_dir = benchmarks``).

- ``deterministic``: metrics with no clock (simulated balance, messages, bytes and transitions
  per task, the sizeof estimate's error), checked against ``baseline/`` by ``make test``;
  always run whole. Select it with ``--bench '^deterministic\\.'``.
- ``balance``, ``scheduler``, ``shuffle``, ``sizeof``, ``taxi``: timings on this machine.
  ``make test`` runs them with ``--quick`` on a short grid, about 3 minutes in all;
  ``TASKBENCH_ASV_FULL=1`` runs every case (``FULL`` below), which takes much longer.
"""

from __future__ import annotations

import os

#: Whether the timing suites run their whole grid (``TASKBENCH_ASV_FULL`` set, not ``0``).
FULL = os.environ.get("TASKBENCH_ASV_FULL", "") not in ("", "0")
