"""Length-prefixed frames over asyncio TCP (or in-process), with a shared-secret handshake.

One frame on the wire is ``u64 total | u32 nframes | u64 length × nframes | frames``.
Frame 0 is a msgpack list of message headers (dicts with an ``"op"``); the other frames
are data buffers, claimed in order by each header's ``"_nframes"`` count. Messages sent
in the same event-loop iteration travel in one frame, and a link that is busy (the
transport asked us to pause) collects messages until it drains: sent at once when idle,
batched under load.

Data goes as pickle protocol 5 with out-of-band buffers, read straight into their own
``bytearray`` (no copy through a stream buffer). A frame over the size limit, a malformed
frame or a failed handshake is logged and closes that connection only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import pickle
import secrets
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import cloudpickle
import msgpack

logger = logging.getLogger("taskbench.engine.comm")

PROTOCOL = 1  # the shape of the engine's messages: a worker of another protocol is refused
TOKEN_ENV = "TASKBENCH_TOKEN"
TOKEN_FILE_ENV = "TASKBENCH_TOKEN_FILE"
MAX_FRAME_ENV = "TASKBENCH_MAX_FRAME_BYTES"
DEFAULT_MAX_FRAME_BYTES = 2**31
PRE_AUTH_MAX_FRAME_BYTES = 4096
PRE_AUTH_MAX_FRAMES = 4
MAX_FRAMES = 1 << 16
HANDSHAKE_TIMEOUT = 10.0
_PREFIX = struct.Struct("<QI")
_BIG_FRAME = 1 << 16
_SCRATCH = 1 << 18

Frames = list[Any]
Message = dict[str, Any]


class CommClosedError(ConnectionError):
    """The connection is closed; pending reads and writes fail with this."""


class ProtocolError(ValueError):
    """The peer sent something that is not a valid frame."""


class HandshakeError(ConnectionError):
    """The peer did not prove it knows the shared secret."""


class SerializationError(TypeError):
    """An object could not be pickled for the wire."""


# --------------------------------------------------------------------------- secrets


def new_token() -> str:
    return secrets.token_hex(32)


def get_token() -> str:
    """The shared secret: ``$TASKBENCH_TOKEN``, else the file named by ``$TASKBENCH_TOKEN_FILE``."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
        if token:
            return token
        raise HandshakeError(f"token file {path} is empty")
    raise HandshakeError(
        f"no shared secret: set {TOKEN_ENV} or {TOKEN_FILE_ENV} (the scheduler prints how)"
    )


def _mac(token: str, nonce: bytes) -> bytes:
    return hmac.new(token.encode(), nonce, hashlib.sha256).digest()


def max_frame_bytes() -> int:
    return int(os.environ.get(MAX_FRAME_ENV, DEFAULT_MAX_FRAME_BYTES))


# --------------------------------------------------------------------------- data


def dumps(obj: object) -> Frames:
    """Pickle ``obj`` (protocol 5, buffers out of band); cloudpickle when plain pickle can't."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception:
        buffers = []
        try:
            head = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        except Exception as e:
            raise SerializationError(f"cannot pickle {type(obj).__name__}: {e}") from e
    return [head, *(b.raw() for b in buffers)]


def dumps_code(obj: object) -> Frames:
    """Pickle task specs: cloudpickle, so functions defined in ``__main__`` travel by value."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        head = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception as e:
        raise SerializationError(f"cannot pickle the task specs: {e}") from e
    return [head, *(b.raw() for b in buffers)]


def loads(frames: Sequence[Any]) -> Any:
    return pickle.loads(frames[0], buffers=frames[1:])


# --------------------------------------------------------------------------- frames


def _nbytes(frame: Any) -> int:
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)


def _split(batch: list[tuple[Message, Sequence[Any]]], limit: int) -> list[list]:
    """Chunks of the batch that each fit one frame (a single oversized message goes alone)."""
    chunks: list[list] = [[]]
    size = frames = 0
    for msg, data in batch:
        n = sum(_nbytes(f) for f in data) + 256
        if chunks[-1] and (size + n > limit or frames + len(data) >= MAX_FRAMES - 1):
            chunks.append([])
            size = frames = 0
        chunks[-1].append((msg, data))
        size += n
        frames += len(data)
    return chunks


def _encodable(batch: list[tuple[Message, Sequence[Any]]], peer: str) -> list:
    """Drop (and log) the messages whose headers msgpack cannot encode; keep the rest."""
    kept = []
    for msg, data in batch:
        try:
            msgpack.packb(msg, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as e:
            logger.error(
                "dropped a message to %s that cannot be encoded (%s): %.200r", peer, e, msg
            )
            continue
        kept.append((msg, data))
    return kept


def _encode(batch: list[tuple[Message, Sequence[Any]]]) -> list[Any]:
    headers = []
    data: list[Any] = []
    for msg, frames in batch:
        if frames:
            msg = {**msg, "_nframes": len(frames)}
            for f in frames:
                if isinstance(f, memoryview) and (f.ndim != 1 or f.itemsize != 1):
                    f = f.cast("B")  # asyncio slices partial sends by item, not byte
                data.append(f)
        headers.append(msg)
    head = msgpack.packb(headers, use_bin_type=True)
    lengths = [len(head), *(_nbytes(f) for f in data)]
    prefix = _PREFIX.pack(sum(lengths), len(lengths)) + struct.pack(f"<{len(lengths)}Q", *lengths)
    # small pieces are joined into one write; big buffers go as they are (no copy)
    out: list[Any] = []
    small = [prefix, head]
    for f, n in zip(data, lengths[1:], strict=True):
        if n < _BIG_FRAME:
            small.append(f)
        else:
            out.append(b"".join(small))
            small = []
            out.append(f)
    if small:
        out.append(b"".join(small))
    return out


class _FrameProtocol(asyncio.BufferedProtocol):
    """Reads frames into a scratch buffer, or straight into a big frame's own bytearray."""

    def __init__(self, limit: int, max_frames: int = MAX_FRAMES) -> None:
        self.limit = limit
        self.max_frames = max_frames
        self.peer_limit = max_frame_bytes()  # what we may send: the peer's default limit
        self.transport: asyncio.BaseTransport | None = None
        self.inbox: deque[tuple[Message, Frames]] = deque()
        self.waiter: asyncio.Future | None = None
        self.closed_exc: BaseException | None = None
        self.paused = False
        self.drain_waiters: list[asyncio.Future] = []
        self.on_resume: Callable[[], None] | None = None
        self._scratch = bytearray(_SCRATCH)
        self._buf = bytearray()
        self._direct: bytearray | None = None
        self._direct_filled = 0
        self._lengths: tuple[int, ...] | None = None
        self._nframes = 0
        self._total = 0
        self._frames: Frames = []

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self._close(CommClosedError(f"connection lost: {exc}" if exc else "connection closed"))

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        waiters, self.drain_waiters = self.drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self.on_resume is not None:
            self.on_resume()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._direct is not None:
            return memoryview(self._direct)[self._direct_filled :]
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self._direct is not None:
                self._direct_filled += nbytes
                if self._direct_filled < len(self._direct):
                    return
                self._frames.append(self._direct)
                self._direct = None
                if len(self._frames) == self._nframes:
                    self._deliver()
            else:
                self._buf += memoryview(self._scratch)[:nbytes]
            self._parse()
        except ProtocolError as e:
            self.fail(e)

    # -- parsing
    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        while True:
            if self._lengths is None:
                if self._nframes == 0:
                    if len(buf) - pos < _PREFIX.size:
                        break
                    total, n = _PREFIX.unpack_from(buf, pos)
                    if n == 0 or n > self.max_frames:
                        raise ProtocolError(f"bad frame count {n}")
                    if total > self.limit:
                        raise ProtocolError(
                            f"frame of {total} bytes is over the limit of {self.limit}"
                        )
                    self._nframes, self._total = n, total
                    pos += _PREFIX.size
                need = 8 * self._nframes
                if len(buf) - pos < need:
                    break
                lengths = struct.unpack_from(f"<{self._nframes}Q", buf, pos)
                pos += need
                if sum(lengths) != self._total:
                    raise ProtocolError("frame lengths do not add up to the frame size")
                self._lengths = lengths
                self._frames = []
            while len(self._frames) < self._nframes:
                size = self._lengths[len(self._frames)]
                avail = len(buf) - pos
                if avail >= size:
                    self._frames.append(buf[pos : pos + size])
                    pos += size
                elif size >= _BIG_FRAME:
                    target = bytearray(size)
                    target[:avail] = buf[pos:]
                    pos += avail
                    self._direct, self._direct_filled = target, avail
                    del buf[:pos]
                    return
                else:
                    del buf[:pos]
                    return
            self._deliver()
        del buf[:pos]

    def _deliver(self) -> None:
        frames, self._frames = self._frames, []
        self._lengths = None
        self._nframes = 0
        try:
            headers = msgpack.unpackb(frames[0], use_list=False, strict_map_key=False)
        except Exception as e:
            raise ProtocolError(f"header is not msgpack: {e}") from e
        if not isinstance(headers, tuple):
            raise ProtocolError("header is not a list of messages")
        i = 1
        for msg in headers:
            if not isinstance(msg, dict) or "op" not in msg:
                raise ProtocolError(f"message without an op: {msg!r:.80}")
            n = msg.pop("_nframes", 0)
            if type(n) is not int or n < 0 or i + n > len(frames):
                raise ProtocolError("message claims more frames than were sent")
            self.inbox.append((msg, frames[i : i + n]))
            i += n
        if i != len(frames):
            raise ProtocolError("frames left over that no message claimed")
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def fail(self, exc: ProtocolError) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        logger.warning("closing connection from %s: %s", peer, exc)
        self._close(CommClosedError(f"protocol error: {exc}"))
        if self.transport is not None:
            self.transport.abort()

    def _close(self, exc: BaseException) -> None:
        if self.closed_exc is None:
            self.closed_exc = exc
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)
        for d in self.drain_waiters:
            if not d.done():
                d.set_exception(exc)
        self.drain_waiters = []


class Comm:
    """One connection: batched ``send``, awaitable ``read`` and ``drain``."""

    def __init__(self, protocol: _FrameProtocol, local: str, peer: str) -> None:
        self._p = protocol
        self._loop = asyncio.get_running_loop()
        self._out: list[tuple[Message, Sequence[Any]]] = []
        self._flush_scheduled = False
        self.local = local
        self.peer = peer
        protocol.on_resume = self._flush

    @property
    def closed(self) -> bool:
        return self._p.closed_exc is not None

    def send(self, msg: Message, frames: Sequence[Any] = ()) -> None:
        """Queue a message; it goes out at the end of this loop iteration, with its peers."""
        if self._p.closed_exc is not None:
            raise CommClosedError(f"connection to {self.peer} is closed") from self._p.closed_exc
        self._out.append((msg, frames))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def send_threadsafe(self, msg: Message, frames: Sequence[Any] = ()) -> None:
        self._loop.call_soon_threadsafe(self._send_quietly, msg, frames)

    def _send_quietly(self, msg: Message, frames: Sequence[Any]) -> None:
        if not self.closed:
            self.send(msg, frames)

    def _flush(self, force: bool = False) -> None:
        self._flush_scheduled = False
        if not self._out or (self._p.paused and not force) or self._p.closed_exc is not None:
            return
        batch, self._out = self._out, []
        transport = self._p.transport
        for chunk in _split(batch, self._p.peer_limit):
            try:
                pieces = _encode(chunk)
            except (TypeError, ValueError, OverflowError):
                pieces = _encode(_encodable(chunk, self.peer))
            for piece in pieces:
                transport.write(piece)

    async def drain(self) -> None:
        """Wait until everything queued has been handed to the kernel."""
        if self._flush_scheduled:
            self._flush_scheduled = False
            self._flush()
        while self._p.paused or self._out:
            if self._p.closed_exc is not None:
                raise CommClosedError(str(self._p.closed_exc)) from self._p.closed_exc
            fut = self._loop.create_future()
            self._p.drain_waiters.append(fut)
            await fut
            self._flush()
        if self._p.closed_exc is not None:
            raise CommClosedError(str(self._p.closed_exc)) from self._p.closed_exc

    async def write(self, msg: Message, frames: Sequence[Any] = ()) -> None:
        self.send(msg, frames)
        await self.drain()

    async def read(self, timeout: float | None = None) -> tuple[Message, Frames]:
        p = self._p
        while not p.inbox:
            if p.closed_exc is not None:
                raise CommClosedError(f"{self.peer}: {p.closed_exc}") from p.closed_exc
            p.waiter = self._loop.create_future()
            try:
                await asyncio.wait_for(p.waiter, timeout)
            finally:
                p.waiter = None
        return p.inbox.popleft()

    def read_nowait(self) -> tuple[Message, Frames] | None:
        return self._p.inbox.popleft() if self._p.inbox else None

    async def request(self, msg: Message, frames: Sequence[Any] = ()) -> tuple[Message, Frames]:
        """Send one message and read one reply; an ``error`` reply raises."""
        self.send(msg, frames)
        reply, rframes = await self.read()
        if reply["op"] == "error":
            raise RemoteError(reply.get("message", "remote error"))
        return reply, rframes

    def close(self) -> None:
        if self._out and not self.closed:
            self._flush(force=True)
        t = self._p.transport
        if t is not None and not t.is_closing():
            t.close()
        self._p._close(CommClosedError("closed locally"))

    def abort(self) -> None:
        t = self._p.transport
        if t is not None:
            t.abort()
        self._p._close(CommClosedError("aborted locally"))


class RemoteError(RuntimeError):
    """The peer answered a request with an error message."""


# --------------------------------------------------------------------------- handshake


async def _server_handshake(comm: Comm, token: str) -> None:
    nonce = secrets.token_bytes(32)
    await comm.write({"op": "challenge", "nonce": nonce})
    msg, _ = await comm.read(timeout=HANDSHAKE_TIMEOUT)
    mac = msg.get("mac")
    if msg.get("op") != "auth" or not isinstance(mac, bytes):
        raise HandshakeError(f"expected auth, got {msg.get('op')!r}")
    if not hmac.compare_digest(mac, _mac(token, nonce)):
        raise HandshakeError("wrong token")
    await comm.write({"op": "welcome"})


async def _client_handshake(comm: Comm, token: str) -> None:
    try:
        msg, _ = await comm.read(timeout=HANDSHAKE_TIMEOUT)
        if msg.get("op") != "challenge" or not isinstance(msg.get("nonce"), bytes):
            raise HandshakeError(f"{comm.peer} is not a taskbench server")
        await comm.write({"op": "auth", "mac": _mac(token, msg["nonce"])})
        msg, _ = await comm.read(timeout=HANDSHAKE_TIMEOUT)
    except (CommClosedError, TimeoutError) as e:
        raise HandshakeError(f"{comm.peer} refused the handshake (wrong token?): {e}") from None
    if msg.get("op") != "welcome":
        raise HandshakeError(f"{comm.peer} refused the handshake")


# --------------------------------------------------------------------------- addresses


def parse_address(address: str) -> tuple[str, str, int]:
    """``tcp://host:port`` (or ``host:port``) → ("tcp", host, port); ``inproc://name``."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme == "inproc":
        return scheme, rest, 0
    if scheme != "tcp":
        raise ValueError(f"unknown scheme in address {address!r}")
    host, _, port = rest.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"address {address!r} is not host:port (port 0-65535)")
    return scheme, host.strip("[]"), int(port)


Handler = Callable[[Comm], Awaitable[None]]


class Server:
    """Accepts connections, runs the handshake, then hands each ``Comm`` to ``handler``."""

    def __init__(self, handler: Handler, token: str) -> None:
        self.handler = handler
        self.token = token
        self.address = ""
        self._server: asyncio.AbstractServer | None = None
        self._inproc_name: str | None = None
        self._comms: set[Comm] = set()
        self._tasks: set[asyncio.Task] = set()

    async def listen(self, address: str = "tcp://127.0.0.1:0") -> str:
        scheme, host, port = parse_address(address)
        loop = asyncio.get_running_loop()
        if scheme == "inproc":
            name = host or f"{os.getpid()}-{secrets.token_hex(4)}"
            if name in _INPROC:
                raise OSError(f"inproc address {name!r} is in use")
            _INPROC[name] = (loop, self._accept_inproc)
            self._inproc_name = name
            self.address = f"inproc://{name}"
            return self.address
        self._server = await loop.create_server(self._tcp_protocol, host, port, reuse_address=True)
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        self.address = f"tcp://{_fmt_host(bound_host)}:{bound_port}"
        return self.address

    def _tcp_protocol(self) -> _FrameProtocol:
        p = _FrameProtocol(PRE_AUTH_MAX_FRAME_BYTES, PRE_AUTH_MAX_FRAMES)
        loop = asyncio.get_running_loop()
        loop.call_soon(self._start, p)
        return p

    def _accept_inproc(self, p: _FrameProtocol) -> None:
        self._start(p)

    def _start(self, p: _FrameProtocol) -> None:
        task = asyncio.ensure_future(self._serve(p))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, p: _FrameProtocol) -> None:
        peer = _peer_name(p)
        comm = Comm(p, self.address, peer)
        try:
            await _server_handshake(comm, self.token)
        except (HandshakeError, CommClosedError, TimeoutError) as e:
            logger.warning("refused connection from %s: %s", peer, str(e) or type(e).__name__)
            comm.abort()
            return
        p.limit = max_frame_bytes()
        p.max_frames = MAX_FRAMES
        self._comms.add(comm)
        try:
            await self.handler(comm)
        except CommClosedError:
            pass
        except Exception:
            logger.exception("handler for %s failed", peer)
        finally:
            self._comms.discard(comm)
            comm.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._inproc_name is not None:
            _INPROC.pop(self._inproc_name, None)
        for comm in list(self._comms):
            comm.abort()
        for t in list(self._tasks):
            t.cancel()


def _fmt_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _peer_name(p: _FrameProtocol) -> str:
    t = p.transport
    peer = t.get_extra_info("peername") if t is not None else None
    if isinstance(peer, tuple):
        return f"tcp://{_fmt_host(peer[0])}:{peer[1]}"
    return str(peer)


async def connect(address: str, token: str, timeout: float = 10.0) -> Comm:
    """Open a connection and pass the handshake; raises ``HandshakeError`` or ``OSError``."""
    scheme, host, port = parse_address(address)
    loop = asyncio.get_running_loop()
    if scheme == "inproc":
        entry = _INPROC.get(host)
        if entry is None:
            raise ConnectionRefusedError(f"nothing listens at {address}")
        server_loop, accept = entry
        mine = _FrameProtocol(max_frame_bytes())
        theirs = _FrameProtocol(PRE_AUTH_MAX_FRAME_BYTES, PRE_AUTH_MAX_FRAMES)
        me = f"inproc-client-{id(mine):x}"
        # each transport reports, as its peer, the other end's name
        t_mine = _InprocTransport(theirs, server_loop, address)
        t_theirs = _InprocTransport(mine, loop, me)
        t_mine.other, t_theirs.other = t_theirs, t_mine
        mine.connection_made(t_mine)
        server_loop.call_soon_threadsafe(_inproc_accept, theirs, t_theirs, accept)
        comm = Comm(mine, me, address)
    else:
        try:
            _, p = await asyncio.wait_for(
                loop.create_connection(lambda: _FrameProtocol(max_frame_bytes()), host, port),
                timeout,
            )
        except TimeoutError:
            raise TimeoutError(f"timed out connecting to {address}") from None
        comm = Comm(p, _local_name(p), address)
    try:
        await _client_handshake(comm, token)
    except BaseException:
        comm.abort()
        raise
    return comm


def _local_name(p: _FrameProtocol) -> str:
    sock = p.transport.get_extra_info("sockname") if p.transport else None
    return f"tcp://{_fmt_host(sock[0])}:{sock[1]}" if isinstance(sock, tuple) else str(sock)


# --------------------------------------------------------------------------- in-process

_INPROC: dict[str, tuple[asyncio.AbstractEventLoop, Callable[[_FrameProtocol], None]]] = {}


def _inproc_accept(p: _FrameProtocol, t: _InprocTransport, accept: Callable) -> None:
    p.connection_made(t)
    accept(p)


class _InprocTransport(asyncio.Transport):
    """Delivers written bytes to the peer's protocol on the peer's loop (same frame code)."""

    def __init__(self, peer: _FrameProtocol, peer_loop: asyncio.AbstractEventLoop, name: str):
        super().__init__()
        self.peer = peer
        self.peer_loop = peer_loop
        self.name = name
        self.other: _InprocTransport | None = None
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.name if name == "peername" else default

    def write(self, data: Any) -> None:
        if self._closing:
            return
        self.peer_loop.call_soon_threadsafe(self._feed, bytes(data))

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        p = self.peer
        while view.nbytes and p.closed_exc is None:
            buf = p.get_buffer(view.nbytes)
            n = min(buf.nbytes, view.nbytes)
            buf[:n] = view[:n]
            p.buffer_updated(n)
            view = view[n:]

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.peer_loop.call_soon_threadsafe(self.peer.connection_lost, None)
        if self.other is not None and not self.other._closing:
            self.other.close()

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0


class ConnectionPool:
    """Reusable request connections to peers, one idle list per address."""

    def __init__(self, token: str, limit_per_peer: int = 4) -> None:
        self.token = token
        self.limit = limit_per_peer
        self._idle: dict[str, list[Comm]] = {}

    async def get(self, address: str, timeout: float = 10.0) -> Comm:
        idle = self._idle.get(address)
        while idle:
            comm = idle.pop()
            if not comm.closed:
                return comm
        return await connect(address, self.token, timeout)

    def put(self, comm: Comm) -> None:
        if comm.closed:
            return
        idle = self._idle.setdefault(comm.peer, [])
        if len(idle) < self.limit:
            idle.append(comm)
        else:
            comm.close()

    def forget(self, address: str) -> None:
        for comm in self._idle.pop(address, []):
            comm.abort()

    def close(self) -> None:
        for comms in self._idle.values():
            for comm in comms:
                comm.abort()
        self._idle.clear()
