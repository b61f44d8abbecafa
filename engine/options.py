"""The engine's settings, with their defaults written once: `EngineOptions`.

The command line (``taskbench engine scheduler|worker`` flags), `LocalCluster`,
`InProcessCluster`, the `Scheduler`, the simulator and the comparison solution all build from
one `EngineOptions`. The module is pure: no I/O, no clock, no environment; it imports only the
standard library, so the state and the simulator can use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

SizeofMode = Literal["sampled", "deep"]
SIZEOF_MODES: tuple[SizeofMode, ...] = get_args(SizeofMode)
#: The environment variable a worker process reads its sizeof mode from (see `engine.sizeof`).
SIZEOF_ENV = "TASKBENCH_SIZEOF"


@dataclass(frozen=True)
class EngineOptions:
    """Scheduler and cluster settings; every default of the engine lives here."""

    placement: str = "locality"  #: a name in `engine.policies.PLACEMENTS`
    stealing: bool = True  #: work stealing on or off
    balance_interval: float = 0.1  #: seconds between the scheduler's balance ticks
    seed: int = 0  #: seed of the random placement
    validate: bool = False  #: check the state's invariants after every event (tests)
    no_worker_timeout: float = 30.0  #: seconds a task waits for a worker before it fails
    bandwidth: float = 100e6  #: bytes/s the scheduler assumes for a transfer
    default_duration: float = 0.0005  #: seconds assumed for a task prefix never seen
    sizeof: SizeofMode = "sampled"  #: the workers' result-size estimate (`engine.sizeof`)
    #: bytes of freed memory a worker process keeps to reuse (`engine.worker.keep_freed_memory`)
    malloc_keep: int = 256 << 20

    def __post_init__(self) -> None:
        from taskbench.engine.policies import PLACEMENTS

        if self.placement not in PLACEMENTS:
            known = ", ".join(sorted(PLACEMENTS))
            raise ValueError(f"unknown placement {self.placement!r}; known: {known}")
        if self.sizeof not in SIZEOF_MODES:
            raise ValueError(f"sizeof mode must be one of {SIZEOF_MODES}, got {self.sizeof!r}")
        if self.balance_interval <= 0 or self.no_worker_timeout <= 0 or self.bandwidth <= 0:
            raise ValueError("balance_interval, no_worker_timeout and bandwidth must be > 0")
        if isinstance(self.malloc_keep, bool) or not isinstance(self.malloc_keep, int):
            raise TypeError(
                f"malloc_keep must be a whole number of bytes, got {self.malloc_keep!r}"
            )
        if self.malloc_keep < 0:
            raise ValueError(f"malloc_keep must be >= 0 bytes, got {self.malloc_keep}")

    def replace(self, **changes: Any) -> EngineOptions:
        """A copy with ``changes``; an unknown name is a TypeError that names it."""
        unknown = set(changes) - FIELDS
        if unknown:
            raise TypeError(f"unknown engine option(s) {sorted(unknown)}; known: {sorted(FIELDS)}")
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def split(cls, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``settings`` divided into engine options and the rest."""
        ours = {k: v for k, v in settings.items() if k in FIELDS}
        return ours, {k: v for k, v in settings.items() if k not in FIELDS}

    def scheduler_args(self) -> list[str]:
        """These options as ``taskbench engine scheduler`` flags (all of them, explicitly)."""
        args = [
            "--placement", self.placement, "--balance-interval", repr(self.balance_interval),
            "--seed", str(self.seed), "--no-worker-timeout", repr(self.no_worker_timeout),
            "--bandwidth", repr(self.bandwidth), "--default-duration", repr(self.default_duration),
        ]  # fmt: skip
        if not self.stealing:
            args.append("--no-stealing")
        if self.validate:
            args.append("--validate")
        return args

    def worker_args(self, sizeof: bool = True) -> list[str]:
        """These options as ``taskbench engine worker`` flags (``sizeof``: with the sizeof mode)."""
        args = ["--malloc-keep", str(self.malloc_keep)]
        return [*args, "--sizeof", self.sizeof] if sizeof else args

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = frozenset(f.name for f in dataclasses.fields(EngineOptions))
DEFAULTS = EngineOptions()
