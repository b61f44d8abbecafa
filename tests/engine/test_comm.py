"""Tests for engine.comm: frames, batching, serialization, handshake, hostile peers, pool.

Every test talks only to 127.0.0.1 (or in-process), and every wait is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import struct
import threading
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pytest
from taskbench.engine import comm as cm
from taskbench.engine.comm import (
    Comm,
    CommClosedError,
    ConnectionPool,
    HandshakeError,
    RemoteError,
    SerializationError,
    Server,
    connect,
    dumps,
    dumps_code,
    get_token,
    loads,
    parse_address,
)

TOKEN = "test-token-0123456789abcdef"
T = 5.0  # seconds: the bound on any single wait in these tests

ADDRESSES = [
    pytest.param("tcp://127.0.0.1:0", id="tcp"),
    pytest.param("inproc://", id="inproc"),
]


# --------------------------------------------------------------------------- helpers


def run(coro: Any, timeout: float = 20.0) -> Any:
    """Run one async test body on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def echo_handler(comm: Comm) -> None:
    """A small server: echoes, counts, fails, closes on request."""
    ticks = nframes = 0
    while True:
        msg, frames = await comm.read()
        op = msg["op"]
        if op == "echo":
            comm.send({**msg, "op": "reply"}, frames)
        elif op == "load":
            obj = loads(frames)
            comm.send(
                {
                    "op": "reply",
                    "writable": bool(obj.flags.writeable),
                    "types": [type(f).__name__ for f in frames],
                },
                dumps(obj),
            )
        elif op == "tick":
            ticks += 1
            nframes += len(frames)
        elif op == "stats":
            comm.send({"op": "reply", "ticks": ticks, "frames": nframes})
        elif op == "fail":
            comm.send({"op": "error", "message": "boom"})
        elif op == "peer":
            comm.send({"op": "reply", "peer": comm.peer, "local": comm.local})
        elif op == "half":
            # a frame announcing 100 bytes, only 10 of which ever arrive
            comm._p.transport.write(struct.pack("<QIQ", 100, 1, 100) + b"x" * 10)
            comm.close()
            return
        elif op == "close":
            comm.close()
            return
        elif op == "raise":
            raise RuntimeError("handler exploded")


@contextlib.asynccontextmanager
async def serving(
    address: str = "tcp://127.0.0.1:0", handler: Any = echo_handler, token: str = TOKEN
) -> AsyncIterator[Server]:
    server = Server(handler, token)
    await server.listen(address)
    try:
        yield server
    finally:
        server.close()


async def client(address: str, token: str = TOKEN) -> Comm:
    return await asyncio.wait_for(connect(address, token, timeout=T), T)


async def ping(comm: Comm, i: int = 0) -> None:
    """A request/response round trip that must succeed within the time bound."""
    reply, _ = await asyncio.wait_for(comm.request({"op": "echo", "i": i}), T)
    assert reply == {"op": "reply", "i": i}


def spy_encode(monkeypatch: pytest.MonkeyPatch) -> list[list[dict]]:
    """Record the messages of every batch that goes through ``_encode``."""
    batches: list[list[dict]] = []
    real = cm._encode

    def wrapper(batch: list) -> list:
        batches.append([m for m, _ in batch])
        return real(batch)

    monkeypatch.setattr(cm, "_encode", wrapper)
    return batches


def as_bytes(frame: Any) -> bytes:
    return memoryview(frame).cast("B").tobytes() if isinstance(frame, memoryview) else bytes(frame)


# raw wire helpers: written independently of comm._encode


def wire(frames: list[bytes]) -> bytes:
    lengths = [len(f) for f in frames]
    return (
        struct.pack("<QI", sum(lengths), len(lengths))
        + struct.pack(f"<{len(lengths)}Q", *lengths)
        + b"".join(frames)
    )


def msg_wire(headers: Any, data: tuple[bytes, ...] = ()) -> bytes:
    return wire([msgpack.packb(headers, use_bin_type=True), *data])


async def read_wire(reader: asyncio.StreamReader) -> tuple[list[dict], list[bytes]]:
    async def go() -> tuple[list[dict], list[bytes]]:
        _total, n = struct.unpack("<QI", await reader.readexactly(12))
        lengths = struct.unpack(f"<{n}Q", await reader.readexactly(8 * n))
        frames = [await reader.readexactly(k) for k in lengths]
        return msgpack.unpackb(frames[0]), frames[1:]

    return await asyncio.wait_for(go(), T)


async def raw_open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    _, host, port = parse_address(address)
    assert host == "127.0.0.1"
    return await asyncio.wait_for(asyncio.open_connection(host, port), T)


async def raw_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str = TOKEN
) -> None:
    """The client side of the handshake, done by hand on a raw socket."""
    (challenge,), _ = await read_wire(reader)
    assert challenge["op"] == "challenge"
    writer.write(msg_wire([{"op": "auth", "mac": cm._mac(token, challenge["nonce"])}]))
    (welcome,), _ = await read_wire(reader)
    assert welcome == {"op": "welcome"}


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = T) -> bool:
    """True if the peer closes (EOF or reset) within ``timeout``; data before that is ignored."""

    async def until_eof() -> None:
        for _ in range(10_000):
            try:
                if not await reader.read(1 << 16):
                    return
            except ConnectionError:
                return
        raise AssertionError("peer kept sending")

    try:
        await asyncio.wait_for(until_eof(), timeout)
    except TimeoutError:
        return False
    return True


def raw_close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


async def until(pred: Any, timeout: float = T) -> None:
    """Poll ``pred`` (bounded in count and time)."""
    for _ in range(int(timeout / 0.01)):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("address", ADDRESSES)
def test_small_round_trip(address):
    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                assert c.peer == server.address
                await ping(c, 1)
                reply, frames = await asyncio.wait_for(
                    c.request({"op": "echo", "x": "y"}, [b"data"]), T
                )
                assert reply == {"op": "reply", "x": "y"}  # no "_nframes" leaks through
                assert [bytes(f) for f in frames] == [b"data"]
                # write() = send + drain
                await asyncio.wait_for(c.write({"op": "echo", "w": 1}), T)
                assert (await c.read(timeout=T))[0] == {"op": "reply", "w": 1}
            finally:
                c.close()

    run(main())


@pytest.mark.parametrize("address", ADDRESSES)
def test_many_messages_batched_in_order(address, monkeypatch):
    batches = spy_encode(monkeypatch)

    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                batches.clear()
                for i in range(1000):
                    c.send({"op": "echo", "i": i})
                got = [(await c.read(timeout=T))[0]["i"] for _ in range(1000)]
                assert got == list(range(1000))
                mine = [b for b in batches if b and b[0]["op"] == "echo"]
                assert [len(b) for b in mine] == [1000]  # one loop iteration, one frame
                assert c.read_nowait() is None
            finally:
                c.close()

    run(main())


@pytest.mark.parametrize("address", ADDRESSES)
def test_large_array_out_of_band(address):
    arr = np.arange(10_000_000, dtype=np.float64)  # 80 MB

    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                frames = dumps(arr)
                assert len(frames) == 2 and frames[1].nbytes == arr.nbytes
                reply, rframes = await asyncio.wait_for(c.request({"op": "load"}, frames), 15)
                assert reply["writable"] is True  # server side: loaded array is writable
                assert reply["types"][1] == "bytearray"  # big frame in its own buffer
                assert isinstance(rframes[1], bytearray)
                back = loads(rframes)
                assert back.flags.writeable
                assert back.dtype == arr.dtype and back.shape == arr.shape
                assert np.array_equal(back, arr)
                back[0] = -1.0  # really writable
                assert arr[0] == 0.0
            finally:
                c.close()

    run(main(), timeout=40)


@pytest.mark.parametrize("address", ADDRESSES)
def test_data_messages_in_one_batch_get_their_own_frames(address, monkeypatch):
    batches = spy_encode(monkeypatch)
    big = os.urandom(200_000)
    typed = np.arange(1000, dtype=np.uint64)  # a small memoryview whose items are 8 bytes
    sent = [
        ({"op": "echo", "n": "a"}, [b"a1", b"a2"]),
        ({"op": "echo", "n": "b"}, []),
        ({"op": "echo", "n": "c"}, [bytearray(big)]),
        ({"op": "echo", "n": "d"}, [b""]),
        ({"op": "echo", "n": "e"}, [memoryview(typed), b"e2", memoryview(big)]),
    ]

    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                batches.clear()
                for msg, frames in sent:
                    c.send(msg, frames)
                await asyncio.wait_for(c.drain(), T)
                mine = [b for b in batches if b and b[0]["op"] == "echo"]
                assert [[m["n"] for m in b] for b in mine] == [["a", "b", "c", "d", "e"]]
                for msg, frames in sent:
                    reply, rframes = await c.read(timeout=T)
                    assert reply == {**msg, "op": "reply"}
                    assert [bytes(f) for f in rframes] == [as_bytes(f) for f in frames]
            finally:
                c.close()

    run(main())


@pytest.mark.parametrize("address", ADDRESSES)
def test_msgpack_types_round_trip(address):
    msg = {
        "op": "echo",
        "bytes": b"\x00\xff\x10",
        "str": "ünïcødé",
        "tuple": (1, "a", None),
        "list": [1, 2, 3],
        "nested": {"k": [{"x": (1.5, None, True)}], "b": b"\x01"},
        "key": ("x-123", 4),
        "keys": [("a", 0), ("a", 1)],
        "by_key": {("a", 0): 1, ("b", 1): [2]},
        "int_keys": {1: "one", -2: "minus two"},
        "big": 2**63 - 1,
        "neg": -(2**63),
        "float": 0.1,
        "empty": {},
    }

    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                reply, _ = await asyncio.wait_for(c.request(msg), T)
            finally:
                c.close()
        assert reply["bytes"] == b"\x00\xff\x10" and isinstance(reply["bytes"], bytes)
        assert reply["str"] == "ünïcødé"
        assert reply["tuple"] == (1, "a", None)
        assert reply["list"] == (1, 2, 3)  # sequences come back as tuples
        assert reply["nested"] == {"k": ({"x": (1.5, None, True)},), "b": b"\x01"}
        assert reply["key"] == ("x-123", 4) and hash(reply["key"])
        assert reply["keys"] == (("a", 0), ("a", 1))
        assert reply["by_key"] == {("a", 0): 1, ("b", 1): (2,)}
        assert reply["int_keys"] == {1: "one", -2: "minus two"}
        assert (reply["big"], reply["neg"], reply["float"]) == (2**63 - 1, -(2**63), 0.1)
        assert reply["empty"] == {}

    run(main())


def test_send_threadsafe():
    async def main():
        async with serving() as server:
            c = await client(server.address)
            try:
                t = threading.Thread(target=lambda: c.send_threadsafe({"op": "echo", "t": 1}))
                t.start()
                t.join(T)
                assert (await c.read(timeout=T))[0] == {"op": "reply", "t": 1}
            finally:
                c.close()

    run(main())


@pytest.mark.parametrize("address", ADDRESSES)
def test_request_error_reply_raises(address):
    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                with pytest.raises(RemoteError, match="boom"):
                    await asyncio.wait_for(c.request({"op": "fail"}), T)
                await ping(c)  # still usable
            finally:
                c.close()

    run(main())


@pytest.mark.parametrize("chunk", [1, 3, 13, 4096, 70_000, 1 << 20])
def test_parser_any_chunking(chunk):
    """The frame parser gives the same messages however the bytes are split."""
    big = bytes(range(256)) * 400  # 102400 bytes: goes the direct-read way
    batch = [
        ({"op": "a"}, [b"x" * 10]),
        ({"op": "b"}, [big, b"y"]),
        ({"op": "c"}, []),
    ]
    data = b"".join(bytes(p) for p in cm._encode(batch)) * 2

    p = cm._FrameProtocol(1 << 30)
    view = memoryview(data)
    while view.nbytes:
        piece = view[:chunk]
        while piece.nbytes:
            buf = p.get_buffer(piece.nbytes)
            n = min(buf.nbytes, piece.nbytes)
            buf[:n] = piece[:n]
            p.buffer_updated(n)
            piece = piece[n:]
        view = view[chunk:]
    assert p.closed_exc is None
    got = [(m, [bytes(f) for f in fs]) for m, fs in p.inbox]
    want = [(m, [bytes(f) for f in fs]) for m, fs in batch]
    assert got == want * 2


@pytest.mark.parametrize(
    "address",
    [
        pytest.param(
            "tcp://127.0.0.1:0",
            id="tcp",
        ),
        pytest.param("inproc://", id="inproc"),
    ],
)
def test_large_typed_memoryview_frame(address):
    arr = np.arange(1_000_000, dtype=np.uint64)  # 8 MB, memoryview format "Q"

    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                _, frames = await asyncio.wait_for(
                    c.request({"op": "echo"}, [memoryview(arr)]), 1.5
                )
                assert bytes(frames[0]) == arr.tobytes()
            finally:
                c.abort()

    run(main())


def test_batch_over_max_frames_is_split():
    n = cm.MAX_FRAMES + 5000

    async def main():
        async with serving() as server:
            c = await client(server.address)
            try:
                for _ in range(n):
                    c.send({"op": "tick"}, [b"x"])
                reply, _ = await asyncio.wait_for(c.request({"op": "stats"}), T)
                assert reply == {"op": "reply", "ticks": n, "frames": n}
            finally:
                c.abort()

    run(main())


@pytest.mark.parametrize("address", ADDRESSES)
def test_batch_over_frame_limit_is_split(address, monkeypatch):
    monkeypatch.setenv(cm.MAX_FRAME_ENV, "1000000")

    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                c.send({"op": "tick"}, [bytes(600_000)])
                c.send({"op": "tick"}, [bytes(600_000)])
                reply, _ = await asyncio.wait_for(c.request({"op": "stats"}), T)
                assert reply == {"op": "reply", "ticks": 2, "frames": 2}
            finally:
                c.abort()

    run(main())


def test_unencodable_header_is_dropped_loudly_and_spares_the_batch(caplog):
    caplog.set_level(logging.ERROR, logger="taskbench.engine.comm")

    async def main():
        async with serving() as server:
            c = await client(server.address)
            try:
                c.send({"op": "echo", "i": 1})
                c.send({"op": "echo", "bad": object()})
                c.send({"op": "echo", "i": 2})
                got = [(await c.read(timeout=1))[0]["i"] for _ in range(2)]
                assert got == [1, 2]
            finally:
                c.abort()

    run(main())
    assert "cannot be encoded" in caplog.text and "bad" in caplog.text


# --------------------------------------------------------------------------- dumps / loads


def test_dumps_numpy_out_of_band():
    arr = np.random.default_rng(0).random((500, 400))
    frames = dumps(arr)
    assert len(frames) > 1
    assert isinstance(frames[1], memoryview) and frames[1].nbytes == arr.nbytes
    assert np.shares_memory(np.frombuffer(frames[1], dtype=arr.dtype), arr)  # zero copy
    back = loads([frames[0], *(bytearray(f) for f in frames[1:])])
    assert np.array_equal(back, arr) and back.flags.writeable


@pytest.mark.parametrize(
    "arr",
    [
        pytest.param(np.asfortranarray(np.arange(20_000.0).reshape(100, 200)), id="fortran"),
        pytest.param(np.zeros(0), id="empty"),
        pytest.param(np.array(3.5), id="0d"),
        pytest.param(np.arange(100, dtype=np.int8)[::2], id="strided"),
        pytest.param(np.array(["a", "bc"], dtype=object), id="object"),
    ],
)
def test_dumps_numpy_layouts(arr):
    frames = dumps(arr)
    back = loads([frames[0], *(bytearray(f) for f in frames[1:])])
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert np.array_equal(back, arr)
    if arr.flags.f_contiguous and arr.ndim > 1:
        assert len(frames) == 2 and back.flags.f_contiguous


def test_dumps_pandas_out_of_band():
    n = 50_000
    df = pd.DataFrame(
        {"a": np.arange(n), "b": np.arange(n) * 0.5, "s": ["x", "y"] * (n // 2)},
        index=pd.RangeIndex(n, 2 * n),
    )
    frames = dumps(df)
    assert len(frames) > 1
    assert sum(f.nbytes for f in frames[1:]) >= 2 * 8 * n  # the numeric columns
    back = loads([frames[0], *(bytearray(f) for f in frames[1:])])
    pd.testing.assert_frame_equal(back, df)
    s = pd.Series(np.arange(n, dtype="f4"), name="s")
    pd.testing.assert_series_equal(loads(dumps(s)), s)


def test_dumps_lambda_falls_back_to_cloudpickle():
    k = 3
    frames = dumps(lambda x: x + k)
    assert loads(frames)(1) == 4
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(lambda x: x)  # plain pickle really cannot do it


def test_dumps_unpicklable_raises_serialization_error():
    with pytest.raises(SerializationError, match="lock"):
        dumps(threading.Lock())
    with pytest.raises(SerializationError, match=r"lock"):
        dumps({"nested": [threading.Lock()]})
    assert issubclass(SerializationError, TypeError)


def test_dumps_code():
    def local_fn(x):
        return x * 2

    frames = dumps_code({"f": local_fn, "g": lambda: 7, "arr": np.ones(10_000)})
    spec = loads(frames)
    assert spec["f"](4) == 8 and spec["g"]() == 7
    assert spec["arr"].sum() == 10_000
    assert len(frames) > 1  # arrays still out of band
    with pytest.raises(SerializationError, match="task specs"):
        dumps_code(threading.Lock())


# --------------------------------------------------------------------------- handshake


@pytest.mark.parametrize("address", ADDRESSES)
def test_handshake_wrong_token(address, caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")

    async def main():
        async with serving(address) as server:
            with pytest.raises(HandshakeError):
                await asyncio.wait_for(connect(server.address, "not-the-token"), T)
            await until(lambda: "wrong token" in caplog.text)
            c = await client(server.address)  # the server keeps serving
            try:
                await ping(c)
            finally:
                c.close()

    run(main())
    assert any(
        r.levelno == logging.WARNING and "refused connection" in r.getMessage()
        for r in caplog.records
    )


def test_handshake_silent_client_dropped(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")
    monkeypatch.setattr(cm, "HANDSHAKE_TIMEOUT", 0.3)

    async def main():
        async with serving() as server:
            good = await client(server.address)
            reader, writer = await raw_open(server.address)
            try:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                assert await closed_by_peer(reader, timeout=3)
                assert loop.time() - t0 < 3
            finally:
                raw_close(writer)
            try:
                await ping(good)
            finally:
                good.close()

    run(main())
    assert "refused connection" in caplog.text


def test_handshake_timeout_log_names_the_reason(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")
    monkeypatch.setattr(cm, "HANDSHAKE_TIMEOUT", 0.2)

    async def main():
        async with serving() as server:
            reader, writer = await raw_open(server.address)
            try:
                assert await closed_by_peer(reader, timeout=3)
            finally:
                raw_close(writer)

    run(main())
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "Timeout" in refused[0], refused


def test_handshake_by_hand_and_bad_auth(caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")

    async def main():
        async with serving() as server:
            # right MAC by hand: then it is a normal connection
            reader, writer = await raw_open(server.address)
            try:
                await raw_handshake(reader, writer)
                writer.write(msg_wire([{"op": "echo", "i": 5}]))
                (reply,), _ = await read_wire(reader)
                assert reply == {"op": "reply", "i": 5}
            finally:
                raw_close(writer)
            # a MAC for another nonce, a non-bytes MAC, and a wrong first op are all refused
            for auth in (
                {"op": "auth", "mac": cm._mac(TOKEN, b"other nonce")},
                {"op": "auth", "mac": "not bytes"},
                {"op": "hello"},
            ):
                reader, writer = await raw_open(server.address)
                try:
                    (challenge,), _ = await read_wire(reader)
                    assert len(challenge["nonce"]) == 32
                    writer.write(msg_wire([auth]))
                    assert await closed_by_peer(reader)
                finally:
                    raw_close(writer)

    run(main())
    assert "wrong token" in caplog.text and "expected auth" in caplog.text


def test_nonces_differ():
    async def main():
        async with serving() as server:
            nonces = []
            for _ in range(3):
                reader, writer = await raw_open(server.address)
                try:
                    (challenge,), _ = await read_wire(reader)
                    nonces.append(challenge["nonce"])
                finally:
                    raw_close(writer)
            assert len(set(nonces)) == 3

    run(main())


def test_connect_closes_socket_when_handshake_fails():
    async def main():
        seen_eof = asyncio.get_running_loop().create_future()

        async def not_taskbench(reader, writer):
            writer.write(msg_wire([{"op": "hello"}]))
            seen_eof.set_result(await closed_by_peer(reader, timeout=1.0))
            writer.close()

        srv = await asyncio.start_server(not_taskbench, "127.0.0.1", 0)
        try:
            port = srv.sockets[0].getsockname()[1]
            with pytest.raises(HandshakeError, match="not a taskbench server"):
                await asyncio.wait_for(connect(f"tcp://127.0.0.1:{port}", TOKEN), T)
            assert await asyncio.wait_for(seen_eof, T)
        finally:
            srv.close()

    run(main())


def test_get_token_from_env(monkeypatch, tmp_path):
    f = tmp_path / "token"
    f.write_text("from-file\n")
    monkeypatch.setenv(cm.TOKEN_FILE_ENV, str(f))
    monkeypatch.setenv(cm.TOKEN_ENV, "from-env")
    assert get_token() == "from-env"  # the variable wins over the file


def test_get_token_from_file(monkeypatch, tmp_path):
    f = tmp_path / "token"
    f.write_text("  from-file\n\n")
    monkeypatch.delenv(cm.TOKEN_ENV, raising=False)
    monkeypatch.setenv(cm.TOKEN_FILE_ENV, str(f))
    assert get_token() == "from-file"
    monkeypatch.setenv(cm.TOKEN_ENV, "")  # empty variable: the file is used
    assert get_token() == "from-file"
    f.write_text("\n")
    with pytest.raises(HandshakeError, match="empty"):
        get_token()
    monkeypatch.setenv(cm.TOKEN_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(OSError):
        get_token()


def test_get_token_missing(monkeypatch):
    monkeypatch.delenv(cm.TOKEN_ENV, raising=False)
    monkeypatch.delenv(cm.TOKEN_FILE_ENV, raising=False)
    with pytest.raises(HandshakeError) as info:
        get_token()
    assert cm.TOKEN_ENV in str(info.value) and cm.TOKEN_FILE_ENV in str(info.value)


def test_new_token():
    a, b = cm.new_token(), cm.new_token()
    assert a != b and len(a) == 64 and int(a, 16) >= 0


# --------------------------------------------------------------------------- hostile input


def head(headers: Any) -> bytes:
    return msgpack.packb(headers, use_bin_type=True)


# (id, raw bytes, substring of the logged reason); the same before and after the handshake
BAD_FRAMES = [
    ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad frame count"),
    ("all-ff", b"\xff" * 64, "bad frame count"),
    ("zero-frames", struct.pack("<QI", 0, 0) + b"\0" * 16, "bad frame count 0"),
    ("too-many-frames", struct.pack("<QI", 8, cm.MAX_FRAMES + 1), "bad frame count"),
    ("lengths-dont-add-up", struct.pack("<QI2Q", 10, 2, 3, 4) + b"x" * 7, "do not add up"),
    ("not-msgpack", wire([b"\xc1\xc1\xc1"]), "not msgpack"),
    ("empty-header", wire([b""]), "not msgpack"),
    ("header-not-list", wire([head({"op": "echo"})]), "not a list"),
    ("list-of-ints", wire([head([1, 2])]), "without an op"),
    ("dict-without-op", wire([head([{"mac": b"x"}])]), "without an op"),
    ("unhashable-key", wire([b"\x91\x81\x81\xa1a\x01\x02"]), "not msgpack"),
    ("claims-more-frames", wire([head([{"op": "echo", "_nframes": 3}]), b"d1"]), "more frames"),
    ("nframes-not-int", wire([head([{"op": "echo", "_nframes": "1"}]), b"d1"]), "more frames"),
    ("frames-left-over", wire([head([{"op": "echo"}]), b"d1"]), "left over"),
]


async def attack(address: str, payload: bytes, authed: bool) -> None:
    """A good client is connected; a raw socket sends ``payload``; it gets dropped and the
    good client keeps working."""
    good = await client(address)
    try:
        await ping(good, 1)
        reader, writer = await raw_open(address)
        try:
            if authed:
                await raw_handshake(reader, writer)
            writer.write(payload)
            assert await closed_by_peer(reader), "the bad connection was not closed"
        finally:
            raw_close(writer)
        await ping(good, 2)
        other = await client(address)  # and new clients are still welcome
        try:
            await ping(other, 3)
        finally:
            other.close()
    finally:
        good.close()


@pytest.mark.parametrize("authed", [False, True], ids=["pre-auth", "post-auth"])
@pytest.mark.parametrize(
    ("payload", "reason"), [p[1:] for p in BAD_FRAMES], ids=[p[0] for p in BAD_FRAMES]
)
def test_hostile_frames(payload, reason, authed, caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")

    async def main():
        async with serving() as server:
            await attack(server.address, payload, authed)

    run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("closing connection" in w and reason in w for w in warnings), warnings
    assert any("refused connection" in w for w in warnings) is not authed


def test_pre_auth_frame_limit(caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")
    limit = cm.PRE_AUTH_MAX_FRAME_BYTES
    payload = struct.pack("<QIQ", limit + 1, 1, limit + 1)  # the prefix alone is enough

    async def main():
        async with serving() as server:
            await attack(server.address, payload, authed=False)

    run(main())
    assert f"over the limit of {limit}" in caplog.text


def test_post_auth_frame_limit(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")
    monkeypatch.setenv(cm.MAX_FRAME_ENV, "100000")
    # over the pre-auth limit but under the configured one: fine once authenticated
    ok = msg_wire([{"op": "echo", "_nframes": 1}], (bytes(50_000),))
    too_big = struct.pack("<QIQ", 100_001, 1, 100_001)

    async def main():
        async with serving() as server:
            reader, writer = await raw_open(server.address)
            try:
                await raw_handshake(reader, writer)
                writer.write(ok)
                (reply,), frames = await read_wire(reader)
                assert reply["op"] == "reply" and len(frames[0]) == 50_000
            finally:
                raw_close(writer)
            await attack(server.address, too_big, authed=True)

    run(main())
    assert "over the limit of 100000" in caplog.text


@pytest.mark.parametrize("address", ADDRESSES)
def test_oversized_message_from_comm_closes_link(address, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")
    monkeypatch.setenv(cm.MAX_FRAME_ENV, "1000000")

    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                _, frames = await asyncio.wait_for(c.request({"op": "echo"}, [bytes(900_000)]), T)
                assert len(frames[0]) == 900_000
                c.send({"op": "echo"}, [bytes(2_000_000)])
                with pytest.raises(CommClosedError):
                    await c.read(timeout=T)
                assert c.closed
            finally:
                c.close()
            c2 = await client(server.address)
            try:
                await ping(c2)
            finally:
                c2.close()

    run(main())
    assert "over the limit of 1000000" in caplog.text


def test_truncated_frame_then_close(caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")

    async def main():
        async with serving() as server:
            good = await client(server.address)
            try:
                reader, writer = await raw_open(server.address)
                try:
                    await raw_handshake(reader, writer)
                    writer.write(msg_wire([{"op": "echo"}], (bytes(100_000),))[:50_000])
                    await asyncio.wait_for(writer.drain(), T)
                finally:
                    raw_close(writer)
                await until(lambda: len(server._comms) == 1)
                await ping(good)
            finally:
                good.close()

    run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_negative_nframes_rejected(caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")
    payload = wire([head([{"op": "echo", "_nframes": -1}, {"op": "echo", "_nframes": 2}]), b"d1"])

    async def main():
        async with serving() as server:
            reader, writer = await raw_open(server.address)
            try:
                await raw_handshake(reader, writer)
                writer.write(payload)
                assert await closed_by_peer(reader, timeout=1.0)
            finally:
                raw_close(writer)

    run(main())
    assert "closing connection" in caplog.text


# --------------------------------------------------------------------------- closing


@pytest.mark.parametrize("address", ADDRESSES)
def test_closed_comm_read_send_drain(address):
    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            c.close()
            assert c.closed
            with pytest.raises(CommClosedError):
                await c.read(timeout=T)
            with pytest.raises(CommClosedError):
                c.send({"op": "echo"})
            with pytest.raises(CommClosedError):
                await asyncio.wait_for(c.drain(), T)
            with pytest.raises(CommClosedError):
                await asyncio.wait_for(c.write({"op": "echo"}), T)
            c.close()  # idempotent
            c.abort()

    run(main())


@pytest.mark.parametrize("address", ADDRESSES)
def test_peer_close_surfaces(address):
    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                c.send({"op": "close"})
                with pytest.raises(CommClosedError):
                    await c.read(timeout=T)
                assert c.closed
                with pytest.raises(CommClosedError):
                    c.send({"op": "echo"})
                with pytest.raises(CommClosedError):
                    await asyncio.wait_for(c.drain(), T)
            finally:
                c.close()

    run(main())


@pytest.mark.parametrize("address", ADDRESSES)
def test_peer_closes_mid_frame(address):
    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                c.send({"op": "half"})
                with pytest.raises(CommClosedError):
                    await c.read(timeout=T)
            finally:
                c.close()

    run(main())


@pytest.mark.parametrize("address", ADDRESSES)
def test_send_then_close_delivers(address):
    """Messages queued before close() still go out; then the peer sees the close."""
    got: list = []
    done = threading.Event()

    async def handler(comm: Comm) -> None:
        try:
            for _ in range(100):
                got.append((await comm.read())[0]["i"])
        except CommClosedError:
            done.set()

    async def main():
        async with serving(address, handler) as server:
            c = await client(server.address)
            for i in range(3):
                c.send({"op": "x", "i": i})
            c.close()
            await until(done.is_set)

    run(main())
    assert got == [0, 1, 2]


@pytest.mark.parametrize("address", ADDRESSES)
def test_server_close_aborts_clients(address):
    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            await ping(c)
            server.close()
            with pytest.raises(CommClosedError):
                await c.read(timeout=T)
            c.close()
            with pytest.raises(OSError):
                await asyncio.wait_for(connect(server.address, TOKEN), T)

    run(main())


@pytest.mark.parametrize("address", ADDRESSES)
def test_handler_exception_logged_and_closed(address, caplog):
    caplog.set_level(logging.WARNING, logger="taskbench.engine.comm")

    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                c.send({"op": "raise"})
                with pytest.raises(CommClosedError):
                    await c.read(timeout=T)
            finally:
                c.close()
            c2 = await client(server.address)
            try:
                await ping(c2)
            finally:
                c2.close()

    run(main())
    assert "handler for" in caplog.text and "handler exploded" in caplog.text


def test_read_timeout():
    async def main():
        async with serving() as server:
            c = await client(server.address)
            try:
                with pytest.raises(TimeoutError):
                    await c.read(timeout=0.05)
                await ping(c)  # a timed-out read leaves the comm usable
            finally:
                c.close()

    run(main())


def test_drain_waits_for_slow_reader_and_surfaces_abort():
    """Backpressure over TCP: drain waits while the peer doesn't read, finishes when it
    resumes, and raises when the peer goes away instead."""

    async def main():
        resume = asyncio.Event()
        kill = asyncio.Event()

        async def slow(comm: Comm) -> None:
            comm._p.transport.pause_reading()
            await resume.wait()
            if kill.is_set():
                comm.abort()
                return
            comm._p.transport.resume_reading()
            _, frames = await comm.read()
            comm.send({"op": "reply", "n": len(frames[0]), "ok": frames[0] == payload})

        payload = os.urandom(1 << 16) * 512  # 32 MB
        async with serving(handler=slow) as server:
            for aborted in (False, True):
                resume.clear()
                kill.clear()
                c = await client(server.address)
                try:
                    c._p.transport.set_write_buffer_limits(high=1 << 16)
                    c.send({"op": "big"}, [payload])
                    await asyncio.sleep(0)  # the batch is flushed
                    await until(lambda c=c: c._p.paused)
                    drain = asyncio.ensure_future(c.drain())
                    await asyncio.sleep(0.1)
                    assert not drain.done()
                    if aborted:
                        kill.set()
                    resume.set()
                    if aborted:
                        with pytest.raises(CommClosedError):
                            await asyncio.wait_for(drain, T)
                    else:
                        await asyncio.wait_for(drain, T)
                        reply, _ = await c.read(timeout=T)
                        assert reply == {"op": "reply", "n": len(payload), "ok": True}
                finally:
                    c.abort()

    run(main())


# --------------------------------------------------------------------------- peer names


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("tcp://127.0.0.1:0", id="tcp"),
        pytest.param(
            "inproc://",
            id="inproc",
        ),
    ],
)
def test_server_sees_client_as_peer(address):
    async def main():
        async with serving(address) as server:
            c = await client(server.address)
            try:
                reply, _ = await asyncio.wait_for(c.request({"op": "peer"}), T)
                assert reply["local"] == server.address
                assert reply["peer"] == c.local
            finally:
                c.close()

    run(main())


# --------------------------------------------------------------------------- pool


@pytest.mark.parametrize("address", ADDRESSES)
def test_connection_pool(address):
    async def main():
        async with serving(address) as server:
            pool = ConnectionPool(TOKEN, limit_per_peer=2)
            try:
                a = await pool.get(server.address)
                await ping(a)
                pool.put(a)
                assert await pool.get(server.address) is a  # reused
                b = await pool.get(server.address)  # a is out: a new one
                assert b is not a
                pool.put(a)
                pool.put(b)
                # a closed connection is not handed out again
                a.send({"op": "close"})
                await until(lambda: a.closed)
                c = await pool.get(server.address)
                assert c is b
                pool.put(c)
                c.close()
                d = await pool.get(server.address)
                assert d is not a and d is not c and not d.closed
                await ping(d)
                # putting a closed one is ignored; over the limit, extra ones are closed
                pool.put(a)
                e, f = await pool.get(server.address), await pool.get(server.address)
                pool.put(d)
                pool.put(e)
                pool.put(f)
                assert f.closed and not d.closed and not e.closed
                g = await pool.get(server.address)
                assert g is e
                pool.forget(server.address)
                assert d.closed and not g.closed
                g.close()
            finally:
                pool.close()

    run(main())


def test_connection_pool_close_aborts_idle():
    async def main():
        async with serving() as server:
            pool = ConnectionPool(TOKEN)
            a = await pool.get(server.address)
            pool.put(a)
            pool.close()
            assert a.closed
            b = await pool.get(server.address)  # still usable after close
            try:
                await ping(b)
            finally:
                b.close()

    run(main())


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("tcp://127.0.0.1:8786", ("tcp", "127.0.0.1", 8786)),
        ("127.0.0.1:8786", ("tcp", "127.0.0.1", 8786)),
        ("tcp://localhost:0", ("tcp", "localhost", 0)),
        ("tcp://[::1]:8786", ("tcp", "::1", 8786)),
        ("[::1]:1", ("tcp", "::1", 1)),
        ("tcp://my-host.example.com:65535", ("tcp", "my-host.example.com", 65535)),
        ("inproc://abc", ("inproc", "abc", 0)),
        ("inproc://", ("inproc", "", 0)),
    ],
)
def test_parse_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "udp://127.0.0.1:1",
        "tls://127.0.0.1:1",
        "tcp://localhost",
        "localhost",
        "tcp://:80",
        "tcp://host:",
        "tcp://host:abc",
        "tcp://host:-1",
        "tcp://host:1.5",
        "",
    ],
)
def test_parse_address_errors(address):
    with pytest.raises(ValueError):
        parse_address(address)


def test_parse_address_port_range():
    with pytest.raises(ValueError):
        parse_address("tcp://127.0.0.1:70000")


def test_default_bind_is_loopback():
    async def main():
        server = Server(echo_handler, TOKEN)
        try:
            address = await server.listen()
            assert address.startswith("tcp://127.0.0.1:")
            assert int(address.rsplit(":", 1)[1]) > 0
            assert server._server.sockets[0].getsockname()[0] == "127.0.0.1"
        finally:
            server.close()

    run(main())


def test_inproc_names():
    async def main():
        async with serving("inproc://test-comm-named") as server:
            assert server.address == "inproc://test-comm-named"
            with pytest.raises(OSError, match="in use"):
                await Server(echo_handler, TOKEN).listen("inproc://test-comm-named")
            c = await client("inproc://test-comm-named")
            try:
                await ping(c)
            finally:
                c.close()
        with pytest.raises(ConnectionRefusedError):
            await connect("inproc://test-comm-named", TOKEN)
        async with serving("inproc://") as a, serving("inproc://") as b:
            assert a.address != b.address

    run(main())


def test_tcp_connect_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused

        async def main():
            with pytest.raises(OSError):
                await connect(f"tcp://127.0.0.1:{port}", TOKEN, timeout=T)

        run(main())
