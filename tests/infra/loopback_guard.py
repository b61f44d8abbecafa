"""Refuse any socket connection beyond loopback (127.0.0.0/8, ::1) or a Unix socket.

Plain stdlib, so flintrock's own interpreter can load it too. ``install()`` patches
``socket.socket.connect`` (and ``connect_ex``) for the whole process; the refusal is an
``OSError(EACCES)`` naming the address, which no retry loop takes for a server still booting.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

REFUSED = "non-loopback connection refused by the test guard"


def is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0] if isinstance(address, tuple) else address
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def install() -> None:
    if getattr(socket.socket.connect, "_loopback_guard", False):
        return
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: object) -> None:
        if not is_loopback(address):
            raise OSError(errno.EACCES, f"{REFUSED}: {address!r}")

    def connect(self, address):
        check(address)
        return original_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return original_connect_ex(self, address)

    connect._loopback_guard = True
    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
