"""The real thing: ec2-small.yaml on AWS, up → compare (2 queries) → down, nothing left.

Costs money (tests/README.md says how much), so it runs only when asked: ``TASKBENCH_AWS_TEST=1``
with AWS credentials, ``TASKBENCH_EC2_KEY_NAME`` and ``TASKBENCH_EC2_IDENTITY_FILE`` set, and
``make flintrock`` done. It drives the commands a user types, in subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from taskbench.infra import ec2

from .conftest import CLUSTERS

NEEDED = ["TASKBENCH_AWS_TEST", ec2.KEY_NAME_ENV, ec2.IDENTITY_FILE_ENV]

pytestmark = [
    pytest.mark.aws,
    pytest.mark.skipif(
        any(not os.environ.get(name) for name in NEEDED)
        or not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")),
        reason=f"real EC2 costs money: set {', '.join(NEEDED)} and AWS credentials to run it",
    ),
    pytest.mark.timeout(3600),
]


def taskbench(*argv: str, timeout: float = 3000) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskbench.cli", *argv], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_ec2_small_up_compare_down_leaves_nothing(tmp_path: Path) -> None:
    where = ["--spec", str(CLUSTERS / "ec2-small.yaml"), "--dir", str(tmp_path / "c")]
    try:
        up = taskbench("cluster", "up", *where, "--budget", "1.20")
        assert up.returncode == 0, up.stderr[-3000:]
        run = tmp_path / "runs" / "aws"
        done = taskbench("cluster", "run", *where, "--", "compare", "--engines", "engine,spark",
                         "--queries", "q01,q07", "--repeat", "3", "--out", str(run))  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
        queries = [r for r in records if r.get("query") in ("q01", "q07")]
        assert queries and all(r["status"] == "valid" for r in queries)
        assert all(r["cluster"]["spec"]["name"] == "ec2-small" for r in queries)
    finally:
        down = taskbench("cluster", "down", *where)
    assert down.returncode == 0 and "is left" in down.stdout, down.stdout + down.stderr
