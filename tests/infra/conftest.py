"""Local clusters for the tests: specs on free loopback ports, and the checks that nothing
is left once they are down."""

from __future__ import annotations

import random
from pathlib import Path

import psutil
import yaml
from taskbench.infra.local import LocalCluster, port_taken

CLUSTERS = Path(__file__).resolve().parents[2] / "infra" / "clusters"


def free_ports(nodes: int) -> dict[str, int]:
    """Spark master, its web UI with ``nodes`` free ports after it, and the engine's port,
    all below the kernel's ephemeral range: a port in it can be handed to any process that
    binds port 0 (a Spark worker does) between our check and our bind."""
    port_range = Path("/proc/sys/net/ipv4/ip_local_port_range")
    ephemeral_low = int(port_range.read_text().split()[0]) if port_range.exists() else 32768
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(min(20000, ephemeral_low // 2), ephemeral_low - 40)
        ports = [base, base + 10, *(base + 10 + i for i in range(1, nodes + 1)), base + 30]
        if not any(port_taken(p) for p in ports):
            return {"spark_port": base, "spark_webui_port": base + 10, "engine_port": base + 30}
    raise RuntimeError("no free ports found")


def spec_file(tmp_path: Path) -> Path:
    raw = yaml.safe_load((CLUSTERS / "local.yaml").read_text())
    raw["local"] = free_ports(raw["nodes"])
    raw["memory_gb_per_node"] = 1
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def recorded(cluster: LocalCluster) -> list[int]:
    return [int(p.read_text()) for p in cluster.layout.spark_pidfiles()
            + cluster.layout.engine_pidfiles()]  # fmt: skip


def assert_nothing_left(pids: list[int], cluster: LocalCluster) -> None:
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == []
    assert cluster.layout.spark_pidfiles() == [] and cluster.layout.engine_pidfiles() == []
    ports = cluster.ports
    assert not any(port_taken(p) for p in (ports.spark_port, ports.engine_port))
