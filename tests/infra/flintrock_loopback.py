"""flintrock's own CLI for the EC2 tests against moto: loopback only, SSH replaced.

Run by flintrock's interpreter (``.venv-flintrock``) with ``AWS_ENDPOINT_URL`` at a moto server
on 127.0.0.1. moto invents public IP addresses for the instances, so:

- every non-loopback ``socket.connect`` raises (``loopback_guard``);
- ``FAKE_SSH_LOG=FILE``: provisioning, ``run-command`` and ``copy-file`` append what they
  would have done on each host to FILE (JSON lines) instead of connecting;
- without it, flintrock's real SSH step runs and the guard stops it: a launch that fails after
  its instances exist, the failure the cleanup tests need.

moto's own gap, measured: it rejects flintrock's instance-store block mappings
(``MissingParameter … ebs``), so those are dropped. Key pairs for the cluster come from
paramiko, not ``ssh-keygen``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loopback_guard

loopback_guard.install()

import flintrock.core  # noqa: E402
import flintrock.ec2  # noqa: E402
import flintrock.ssh  # noqa: E402
import paramiko  # noqa: E402
from flintrock.flintrock import main  # noqa: E402

LOG = os.environ.get("FAKE_SSH_LOG")


def record(step: str, host: str, **what: object) -> None:
    with open(LOG, "a") as f:  # type: ignore[arg-type]
        f.write(json.dumps({"step": step, "host": host, **what}) + "\n")


def key_pair() -> flintrock.ssh.SSHKeyPair:
    import io

    key = paramiko.RSAKey.generate(2048)
    private = io.StringIO()
    key.write_private_key(private)
    return flintrock.ssh.SSHKeyPair(f"ssh-rsa {key.get_base64()} flintrock", private.getvalue())


def without_instance_store(get_mappings):
    @functools.wraps(get_mappings)
    def mappings(**kwargs):
        return [m for m in get_mappings(**kwargs) if "Ebs" in m]

    return mappings


flintrock.ec2.generate_ssh_key_pair = key_pair
flintrock.ec2.get_ec2_block_device_mappings = without_instance_store(
    flintrock.ec2.get_ec2_block_device_mappings
)

if LOG:

    def provision_cluster(*, cluster, java_version, services, user, identity_file):
        for host in [cluster.master_ip, *cluster.slave_ips]:
            record("provision", host, java=java_version,
                   services=[type(s).__name__ for s in services])  # fmt: skip

    def run_command_node(*, user, host, identity_file, command):
        record("run-command", host, command=" ".join(command))

    def copy_file_node(*, user, host, identity_file, local_path, remote_path):
        record("copy-file", host, local=local_path, remote=remote_path)

    flintrock.ec2.provision_cluster = provision_cluster
    flintrock.core.run_command_node = run_command_node
    flintrock.core.copy_file_node = copy_file_node

if __name__ == "__main__":
    sys.exit(main())
