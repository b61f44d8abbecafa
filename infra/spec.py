"""Cluster specs (``infra/clusters/*.yaml``): what a cluster is, validated before anything starts.

A spec names a provider (``local`` or ``ec2``), the worker nodes with their cores and memory
(one master node runs beside them), the Spark version, the engine's workers and threads per
node, where the data comes from, and a maximum lifetime. An ``ec2`` spec also names region,
instance type, AMI, market and the price per instance-hour, stated in the spec with the date
it was read (there is no pricing API here). Unknown fields are errors: a typo must not fall
back to a default. Every error names the file, the field and what was expected.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from taskbench.comparisons.argtypes import parse_rows

PositiveInt = Annotated[int, Field(gt=0)]


DEFAULT_ROOT = Path("results/clusters")  #: clusters' folders, one per spec name


class SpecError(ValueError):
    """A spec that cannot be used: one line per problem, each naming the file and field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSpec(Strict):
    version: str = Field(pattern=r"^\d+\.\d+(\.\d+)?$", description="e.g. 4.3 or 4.3.0")
    #: where flintrock fetches the Spark release on EC2 (http(s):// or s3://, with ``{v}``);
    #: none: an Apache mirror
    download_source: str | None = Field(None, pattern=r"^(https?|s3)://.*\{v\}")


class EngineSpec(Strict):
    workers_per_node: PositiveInt
    threads_per_worker: PositiveInt


class GenerateSpec(Strict):
    """Each node generates its share with the deterministic generator (no bulk download)."""

    rows: PositiveInt
    seed: int = 0
    start: str = Field("2015-01", pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    months: PositiveInt = 1

    @field_validator("rows", mode="before")
    @classmethod
    def _rows(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return parse_rows(value)
            except Exception as e:
                raise ValueError("a row count such as 1M, 10M or 1e6") from e
        return value


class DataSpec(Strict):
    """Exactly one source: a local folder, generate-on-nodes, or an ``s3://`` prefix."""

    local: Path | None = None
    generate: GenerateSpec | None = None
    s3: str | None = Field(None, pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        given = [name for name in ("local", "generate", "s3") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of local, generate, s3 (got {given or 'none'})")
        return self


class Ec2Spec(Strict):
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description="e.g. us-east-1")
    instance_type: str = Field(pattern=r"^[a-z][a-z0-9\-]*\.[a-z0-9]+$", description="m5.xlarge")
    ami: str = Field(pattern=r"^ami-[0-9a-f]{8,17}$")
    market: Literal["on-demand", "spot"]
    price_per_instance_hour: float = Field(gt=0, description="USD, stated in the spec")
    price_date: dt.date  #: when the price was read
    price_source: str = Field(min_length=1)
    user: str = "ec2-user"


class LocalSpec(Strict):
    """Loopback ports of a local cluster; Spark workers' web UIs take the ports after the
    master's, one each."""

    spark_port: int = Field(7077, ge=1024, le=65535)
    spark_webui_port: int = Field(8080, ge=1024, le=65535)
    engine_port: int = Field(8786, ge=1024, le=65535)


class ClusterSpec(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    provider: Literal["local", "ec2"]
    nodes: PositiveInt  #: worker nodes; one master node runs beside them
    cores_per_node: PositiveInt
    memory_gb_per_node: float = Field(gt=0)
    spark: SparkSpec
    engine: EngineSpec
    data: DataSpec
    max_lifetime_minutes: PositiveInt
    local: LocalSpec | None = None
    ec2: Ec2Spec | None = None

    @model_validator(mode="after")
    def _provider_fields(self) -> ClusterSpec:
        if self.provider == "ec2" and self.ec2 is None:
            raise ValueError("provider ec2 needs an ec2 section (region, instance_type, ...)")
        if self.provider == "local" and self.ec2 is not None:
            raise ValueError("provider local takes no ec2 section")
        if self.provider == "ec2" and self.local is not None:
            raise ValueError("provider ec2 takes no local section")
        if self.provider == "ec2" and self.data.local is not None:
            raise ValueError("provider ec2 generates its data on the nodes or reads s3://; "
                             "a local folder is not uploaded")  # fmt: skip
        if self.provider == "local" and self.data.s3 is not None:
            raise ValueError("provider local reads local or generated data, not s3")
        engine_cores = self.engine.workers_per_node * self.engine.threads_per_worker
        if engine_cores > self.cores_per_node:
            raise ValueError(
                f"the engine's {self.engine.workers_per_node} workers x "
                f"{self.engine.threads_per_worker} threads need {engine_cores} cores per node, "
                f"the spec gives {self.cores_per_node}"
            )
        return self

    @property
    def instances(self) -> int:
        """Machines the cluster runs: the worker nodes and the master."""
        return self.nodes + 1

    def cost_estimate(self) -> float:
        """USD if the cluster lives its whole maximum lifetime (0 for a local cluster)."""
        if self.ec2 is None:
            return 0.0
        hours = self.max_lifetime_minutes / 60
        return self.instances * self.ec2.price_per_instance_hour * hours


SCALARS = (str, int, float, bool, dt.date)


def _where(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_spec(path: str | Path) -> ClusterSpec:
    """The spec in ``path``; a SpecError naming the file and each bad field otherwise."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{path}{line}: not YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    try:
        return ClusterSpec.model_validate(raw)
    except ValidationError as e:
        lines = [
            f"{path}: {_where(err['loc'])}: {err['msg']}"
            + (f" (got {err['input']!r})" if isinstance(err["input"], SCALARS) else "")
            for err in e.errors(include_url=False)
        ]
        raise SpecError("\n".join(lines)) from None
