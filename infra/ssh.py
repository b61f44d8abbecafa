"""Our own steps on a cluster's nodes over SSH: commands, a secret file, a folder fetched back.

flintrock does the launch, the installs (``run-command``) and the destroy; what needs a
node's output or a file with a mode (the engine's token, the run folder of a comparison)
goes through a ``NodeShell``. Remote paths are relative to the login user's home. The
production shell is paramiko with the key pair's identity file; tests give a recording one.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Protocol


class NodeError(RuntimeError):
    """A command on a node that failed; the message names the node and the command."""


class NodeShell(Protocol):
    def run(self, host: str, command: str, timeout: float = 600.0, echo: bool = False) -> str:
        """``command``'s stdout; NodeError on a non-zero exit. ``echo`` streams it too."""
        ...

    def put(self, host: str, local: Path, remote: str, mode: int = 0o600) -> None:
        """Copy ``local`` to ``remote`` with ``mode`` set before any byte is written."""
        ...

    def fetch_tree(self, host: str, remote: str, local: Path) -> int:
        """Copy the folder ``remote`` to ``local``; the number of files."""
        ...


class ParamikoShell:
    """A NodeShell over paramiko, one connection per node, kept while the shell lives."""

    def __init__(self, user: str, identity_file: str, connect_timeout: float = 10.0) -> None:
        self.user = user
        self.identity_file = identity_file
        self.connect_timeout = connect_timeout
        self._clients: dict[str, object] = {}

    def _client(self, host: str):  # -> paramiko.SSHClient
        import paramiko

        if host not in self._clients:
            client = paramiko.SSHClient()
            client.load_system_host_keys()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # new nodes: first use
            try:
                client.connect(host, username=self.user, key_filename=self.identity_file,
                               look_for_keys=False, timeout=self.connect_timeout)  # fmt: skip
            except (OSError, paramiko.SSHException) as e:
                raise NodeError(f"{self.user}@{host}: cannot connect over SSH ({e})") from None
            self._clients[host] = client
        return self._clients[host]

    def run(self, host: str, command: str, timeout: float = 600.0, echo: bool = False) -> str:
        _, stdout, stderr = self._client(host).exec_command(command, timeout=timeout)
        lines = []
        for line in stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
        err = stderr.read().decode(errors="replace").strip()
        status = stdout.channel.recv_exit_status()
        if status:
            tail = (err or "".join(lines)).strip().splitlines()[-5:]
            raise NodeError(f"{host}: {command.split()[0]} … exited {status}: "
                            + " | ".join(tail))  # fmt: skip
        return "".join(lines)

    def put(self, host: str, local: Path, remote: str, mode: int = 0o600) -> None:
        with self._client(host).open_sftp() as sftp, sftp.open(remote, "wb") as f:
            f.chmod(mode)
            f.write(Path(local).read_bytes())

    def fetch_tree(self, host: str, remote: str, local: Path) -> int:
        with self._client(host).open_sftp() as sftp:
            return _fetch(sftp, remote, Path(local))

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _fetch(sftp, remote: str, local: Path) -> int:
    local.mkdir(parents=True, exist_ok=True)
    count = 0
    for entry in sftp.listdir_attr(remote):
        source, target = f"{remote}/{entry.filename}", local / entry.filename
        if stat.S_ISDIR(entry.st_mode or 0):
            count += _fetch(sftp, source, target)
        else:
            sftp.get(source, str(target))
            count += 1
    return count
