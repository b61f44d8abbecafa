"""A test double for the check and compare runners: pandas answers with planted faults.

q01 is off by one, q02 raises, q03 returns fractional keys, q05 is missing;
``FAKE_HANG=1`` makes q04 hang, ``FAKE_DIE=1`` kills the process in q06, and
``FAKE_CRASH=1`` kills the process at start.
"""

from __future__ import annotations

import os
import time

from taskbench.comparisons.solutions import pandas_ as base

NAME = "fake"
load, stop = base.load, base.stop
q07, q08, q09, q10, q11, q12 = (
    base.q07,
    base.q08,
    base.q09,
    base.q10,
    base.q11,
    base.q12,
)


def version() -> str:
    return "fake 0"


def start(config):
    if os.environ.get("FAKE_CRASH"):
        os._exit(3)
    return None


def q01(h):
    answer = base.q01(h)
    answer["count"] += 1
    return answer


def q02(h):
    raise ValueError("planted failure\nwith a second line")


def q03(h):
    answer = base.q03(h)
    answer["passenger_count"] = answer["passenger_count"] + 0.5
    return answer


def q04(h):
    if os.environ.get("FAKE_HANG"):
        time.sleep(600)
    return base.q04(h)


def q06(h):
    if os.environ.get("FAKE_DIE"):
        os._exit(4)
    return base.q06(h)
