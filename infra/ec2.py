"""EC2 through flintrock: its config made from a spec, and the cost guard before any launch.

flintrock pins old boto3 and PyYAML, so it lives in its own virtual environment
(``make flintrock`` makes ``.venv-flintrock``) and is called as its CLI. The config names no
secret: the key pair's name and identity file come from ``$TASKBENCH_EC2_KEY_NAME`` and
``$TASKBENCH_EC2_IDENTITY_FILE``. Every instance is tagged with the run id, and its user data
schedules a shutdown at the spec's maximum lifetime, with shutdown behaviour ``terminate``, so
a cluster nobody takes down ends on its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from taskbench.infra.spec import ClusterSpec

KEY_NAME_ENV = "TASKBENCH_EC2_KEY_NAME"
IDENTITY_FILE_ENV = "TASKBENCH_EC2_IDENTITY_FILE"
FLINTROCK_ENV = "TASKBENCH_FLINTROCK"  #: the flintrock executable, if not .venv-flintrock's
RUN_TAG = "taskbench-run"


class Ec2Error(RuntimeError):
    """An EC2 step that cannot go on; the message says what is missing."""


class BudgetError(Ec2Error):
    """A launch the user has not agreed to pay for."""


def cost_line(spec: ClusterSpec) -> str:
    """``3 instances x 0.192 USD/h x 2.0 h = 1.15 USD at most (m5.xlarge on-demand, …)``."""
    ec2 = spec.ec2
    assert ec2 is not None, "an ec2 spec"
    hours = spec.max_lifetime_minutes / 60
    return (
        f"{spec.instances} instances x {ec2.price_per_instance_hour:g} USD/h x {hours:g} h = "
        f"{spec.cost_estimate():.2f} USD at most ({ec2.instance_type} {ec2.market}, "
        f"{ec2.region}; price of {ec2.price_date}: {ec2.price_source})"
    )


def check_budget(spec: ClusterSpec, yes: bool, budget: float | None) -> None:
    """Raise BudgetError unless ``yes`` or a ``budget`` that covers the estimate."""
    cost = spec.cost_estimate()
    if yes or (budget is not None and budget >= cost):
        return
    why = (
        f"--budget {budget:g} USD does not cover it"
        if budget is not None
        else "nothing agreed to it"
    )
    raise BudgetError(
        f"launching {spec.name} may cost {cost:.2f} USD and {why}; pass --yes, or --budget "
        f"{cost:.2f} or more"
    )


def spark_release(version: str) -> str:
    """flintrock downloads a release by its full number: ``4.3`` is ``4.3.0``."""
    return version if version.count(".") == 2 else f"{version}.0"


def lifetime_user_data(spec: ClusterSpec) -> str:
    """The instances' user data: power off (which terminates them) at the maximum lifetime."""
    return f"#!/bin/bash\nshutdown -h +{spec.max_lifetime_minutes}\n"


def flintrock_config(
    spec: ClusterSpec, run_id: str, user_data: Path, download_source: str | None = None
) -> dict[str, Any]:
    """flintrock's config for ``spec`` (the fields of its config.yaml.template)."""
    ec2 = spec.ec2
    if ec2 is None:
        raise ValueError(f"spec {spec.name!r} has no ec2 section")
    missing = [name for name in (KEY_NAME_ENV, IDENTITY_FILE_ENV) if not os.environ.get(name)]
    if missing:
        raise Ec2Error(f"set {' and '.join(missing)}: the EC2 key pair's name and its .pem")
    spark: dict[str, Any] = {"version": spark_release(spec.spark.version)}
    if download_source:
        spark["download-source"] = download_source
    provider: dict[str, Any] = {
        "key-name": os.environ[KEY_NAME_ENV],
        "identity-file": os.environ[IDENTITY_FILE_ENV],
        "instance-type": ec2.instance_type,
        "region": ec2.region,
        "ami": ec2.ami,
        "user": ec2.user,
        "tags": [f"{RUN_TAG},{run_id}"],
        "tenancy": "default",
        "ebs-optimized": False,
        "instance-initiated-shutdown-behavior": "terminate",
        "user-data": str(user_data),
    }
    if ec2.market == "spot":
        provider["spot-price"] = ec2.price_per_instance_hour
    return {
        "services": {"spark": spark},
        "provider": "ec2",
        "providers": {"ec2": provider},
        "launch": {
            "num-slaves": spec.nodes,
            "install-hdfs": False,
            "install-spark": True,
            "java-version": 17,
        },
        "debug": False,
    }


def flintrock_executable(root: Path) -> Path:
    """flintrock's CLI: ``$TASKBENCH_FLINTROCK``, else ``ROOT/.venv-flintrock/bin/flintrock``."""
    given = os.environ.get(FLINTROCK_ENV)
    path = Path(given) if given else root / ".venv-flintrock" / "bin" / "flintrock"
    if not path.is_file() and not shutil.which(str(path)):
        raise Ec2Error(f"flintrock is not installed at {path}: run make flintrock")
    return path
