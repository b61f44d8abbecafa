"""The client: submits graphs, waits for their keys, gathers results straight from workers.

``Client.get(dsk, keys)`` keeps dask's ``get`` contract (``dask.utils_test``'s mixin: a
list of keys gives a tuple of results, a missing output key raises ``KeyError``), so
``dask.compute(..., scheduler=client.get)`` runs dask collections on the engine. A task's
exception is raised here with its original type and message, and the remote traceback
attached as a note. Keys are reference-counted across ``get`` calls and futures; the
scheduler is told to release a key when nothing here holds it any more.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import itertools
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from taskbench.engine import comm as _comm
from taskbench.engine.graph import (
    Graph,
    GraphError,
    encode_graph,
    normalize,
    order_graph,
    pack_results,
)
from taskbench.engine.stream import TaskStream

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_default_client: weakref.ref | None = None


def default_client() -> Client | None:
    """The most recently created client that is still open, if any."""
    client = _default_client() if _default_client is not None else None
    return client if client is not None and not client._closed else None


def io_loop() -> asyncio.AbstractEventLoop:
    """The process's I/O loop, running in a daemon thread (started on first use)."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="taskbench-io", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def sync(coro: Any, timeout: float | None = None) -> Any:
    """Run a coroutine on the I/O loop from a plain thread and wait for it."""
    fut = asyncio.run_coroutine_threadsafe(coro, io_loop())
    try:
        return fut.result(timeout)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise TimeoutError(f"timed out after {timeout} s") from None


class TaskError(Exception):
    """A task failed, and its exception could not be rebuilt here."""


class _KeyState:
    __slots__ = ("error", "refs", "waiters", "who_has")

    def __init__(self) -> None:
        self.refs = 0
        self.who_has: tuple | None = None
        self.error: dict | None = None
        self.waiters: list[_Wait] | None = None


class _Wait:
    """Counts down the keys of one request; done when all are in memory or one failed."""

    __slots__ = ("error", "failed_key", "future", "remaining")

    def __init__(self, n: int, future: asyncio.Future) -> None:
        self.remaining = n
        self.future = future
        self.error: dict | None = None
        self.failed_key: Any = None

    def key_done(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self.future.done():
            self.future.set_result(None)

    def key_failed(self, key: Any, error: dict) -> None:
        if not self.future.done():
            self.failed_key = key
            self.error = error
            self.future.set_result(None)


class Future:
    """A key computed on the cluster; ``result()`` waits for it."""

    def __init__(self, key: Any, client: Client) -> None:
        self.key = key
        self.client = client
        client._acquire([key])
        weakref.finalize(self, client._release_later, [key])

    def result(self, timeout: float | None = None) -> Any:
        return self.client.gather([self], timeout=timeout)[0]

    def done(self) -> bool:
        ks = self.client._keys.get(self.key)
        return ks is not None and (ks.who_has is not None or ks.error is not None)

    def __repr__(self) -> str:
        return f"<Future {self.key!r}>"


class Client:
    """Connects to a scheduler address, or to a cluster object that has ``address``/``token``."""

    def __init__(
        self,
        address: Any,
        *,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if hasattr(address, "address"):
            token = token or getattr(address, "token", None)
            address = address.address
        self.address = address
        self.token = token if token is not None else _comm.get_token()
        self.id = f"client-{uuid.uuid4().hex[:12]}"
        self.timeout = timeout
        self._keys: dict[Any, _KeyState] = {}
        self._held_remote: set = set()
        self._stream_rows: list = []
        self._replies: asyncio.Queue | None = None
        self._comm: _comm.Comm | None = None
        self._pool: _comm.ConnectionPool | None = None
        self._closed = False
        self._counter = itertools.count()
        sync(self._start(), timeout)
        atexit.register(self.close)
        global _default_client
        _default_client = weakref.ref(self)

    async def _start(self) -> None:
        self._replies = asyncio.Queue()
        self._pool = _comm.ConnectionPool(self.token)
        self._comm = await _comm.connect(self.address, self.token, self.timeout)
        await self._comm.write({"op": "register-client", "client": self.id})
        reply, _ = await self._comm.read(timeout=self.timeout)
        if reply["op"] != "registered":
            why = reply.get("message", reply["op"])
            raise ConnectionError(f"the scheduler refused this client: {why}")
        self._reader = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                msg, _ = await self._comm.read()
                op = msg["op"]
                if op == "in-memory":
                    self._in_memory(msg["keys"], msg["who_has"])
                elif op == "task-erred":
                    self._erred(msg["key"], msg)
                elif op == "graph-refused":
                    for key in msg["keys"]:
                        self._erred(key, {"text": msg["message"], "graph_refused": True})
                else:
                    await self._replies.put(msg)
        except _comm.CommClosedError as e:
            err = {"text": f"lost the scheduler at {self.address}: {e}", "lost": True}
            for key in list(self._keys):
                self._erred(key, err)
            await self._replies.put({"op": "closed", "message": str(e)})

    def _in_memory(self, keys: tuple, who_has: tuple) -> None:
        for key, holders in zip(keys, who_has, strict=True):
            ks = self._keys.get(key)
            if ks is None:
                continue
            ks.who_has = holders
            ks.error = None
            if ks.waiters:
                for w in ks.waiters:
                    w.key_done()
                ks.waiters = None

    def _erred(self, key: Any, error: dict) -> None:
        ks = self._keys.get(key)
        if ks is None:
            return
        ks.error = error
        if ks.waiters:
            for w in ks.waiters:
                w.key_failed(key, error)
            ks.waiters = None

    async def _request(self, msg: dict) -> dict:
        self._comm.send(msg)
        reply = await asyncio.wait_for(self._replies.get(), self.timeout)
        if reply["op"] in ("error", "closed"):
            raise ConnectionError(reply.get("message"))
        return reply

    # ------------------------------------------------------------ reference counts

    def _acquire(self, keys: Iterable) -> None:
        for key in keys:
            ks = self._keys.get(key)
            if ks is None:
                ks = self._keys[key] = _KeyState()
            ks.refs += 1

    def _release_later(self, keys: list) -> None:
        if self._closed:
            return
        loop = io_loop()
        with contextlib.suppress(RuntimeError):  # the interpreter is shutting down
            loop.call_soon_threadsafe(self._release, keys)

    def _release(self, keys: Iterable) -> None:
        gone = []
        for key in keys:
            ks = self._keys.get(key)
            if ks is None:
                continue
            ks.refs -= 1
            if ks.refs <= 0:
                del self._keys[key]
                gone.append(key)
        if gone and self._comm is not None and not self._comm.closed:
            self._comm.send({"op": "release-keys", "keys": gone})

    # ------------------------------------------------------------ graphs

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """Compute ``keys`` of ``dsk`` (a dict graph or a dask expression) and return them."""
        timeout = kwargs.get("timeout")
        graph, out_keys = normalize(dsk, keys, known_keys=self._keys)
        return sync(self._get(graph, out_keys, keys), timeout)

    async def _get(self, graph: Graph, out_keys: list, keys: Any) -> Any:
        wanted = list(dict.fromkeys(out_keys))
        self._acquire(wanted)
        try:
            await self._submit(graph, wanted)
            values = await self._gather(wanted)
        finally:
            self._release(wanted)
        return pack_results(keys, values, container=tuple)

    async def _submit(self, graph: Graph, wanted: list) -> None:
        frames = _comm.dumps_code(encode_graph(graph, order_graph(graph)))
        self._comm.send({"op": "update-graph", "keys": wanted}, frames)

    async def _wait(self, keys: list) -> None:
        fut = asyncio.get_running_loop().create_future()
        pending = []
        for key in keys:
            ks = self._keys[key]
            if ks.error is not None:
                self._raise(key, ks.error)
            if ks.who_has is None:
                pending.append(ks)
        if not pending:
            return
        w = _Wait(len(pending), fut)
        for ks in pending:
            if ks.waiters is None:
                ks.waiters = [w]
            else:
                ks.waiters.append(w)
        await fut
        if w.error is not None:
            # the key that failed first: a later error (the connection closing) may overwrite
            # that key's state before this coroutine resumes
            self._raise(w.failed_key, w.error)

    def _raise(self, key: Any, error: dict) -> None:
        blob = error.get("exception")
        exc: BaseException | None = None
        if blob is not None:
            try:
                exc = _comm.loads([blob])
            except Exception:
                exc = None
        if exc is None:
            if error.get("graph_refused"):
                raise GraphError(error.get("text", "graph refused"))
            if error.get("lost"):
                raise ConnectionError(error.get("text"))
            exc = TaskError(f"task {key!r} failed: {error.get('text', 'unknown error')}")
        tb = error.get("traceback")
        origin = error.get("origin", key)
        note = f"raised by task {origin!r} on the cluster"
        if tb:
            note += f"; remote traceback:\n{tb}"
        exc.add_note(note)
        exc.remote_traceback = tb  # type: ignore[attr-defined]
        raise exc

    async def _gather(self, keys: list) -> dict:
        """Wait for ``keys`` and fetch them from the workers that hold them."""
        results: dict = {}
        for _attempt in range(20):
            await self._wait(keys)
            by_worker: dict[str, list] = {}
            for key in keys:
                if key not in results:
                    by_worker.setdefault(self._keys[key].who_has[0], []).append(key)
            fetched = await asyncio.gather(
                *(self._fetch(addr, ks) for addr, ks in by_worker.items()),
                return_exceptions=True,
            )
            lost = []
            for (addr, ks), got in zip(by_worker.items(), fetched, strict=True):
                if isinstance(got, _comm.RemoteError):
                    raise _comm.SerializationError(str(got))
                if isinstance(got, BaseException):
                    got = {}
                results.update(got)
                missing = [k for k in ks if k not in got]
                if missing:
                    lost.append((addr, missing))
            if not lost:
                return results
            for addr, missing in lost:
                for k in missing:
                    self._keys[k].who_has = None
                self._comm.send({"op": "gather-failed", "worker": addr, "keys": missing})
                await self._expect("who-has")
        raise ConnectionError(f"could not gather {len(keys) - len(results)} keys after retries")

    async def _expect(self, op: str) -> dict:
        while True:
            reply = await asyncio.wait_for(self._replies.get(), self.timeout)
            if reply["op"] == op:
                return reply
            if reply["op"] == "closed":
                raise ConnectionError(reply["message"])

    async def _fetch(self, address: str, keys: list) -> dict:
        comm = await self._pool.get(address, self.timeout)
        try:
            _, frames = await comm.request({"op": "get-data", "keys": keys})
        except BaseException:
            comm.abort()
            raise
        self._pool.put(comm)
        return _comm.loads(frames) if frames else {}

    # ------------------------------------------------------------ futures

    def submit(self, func: Callable, *args: Any, key: Any = None, **kwargs: Any) -> Future:
        """Run ``func(*args, **kwargs)`` on the cluster; args may be futures."""
        if key is None:
            key = f"{getattr(func, '__name__', 'task')}-{uuid.uuid4().hex}"
        args = tuple(a.key if isinstance(a, Future) else a for a in args)
        if kwargs:
            task = (_apply_kwargs, func, list(args), [list(kv) for kv in kwargs.items()])
        else:
            task = (func, *args)
        graph, _ = normalize({key: task}, [key], known_keys=self._keys)
        fut = Future(key, self)
        sync(self._submit(graph, [key]), self.timeout)
        return fut

    def map(self, func: Callable, *iterables: Iterable, **kwargs: Any) -> list[Future]:
        name = getattr(func, "__name__", "task")
        token = uuid.uuid4().hex
        dsk = {}
        keys = []
        for i, args in enumerate(zip(*iterables, strict=True)):
            key = (f"{name}-{token}", i)
            args = tuple(a.key if isinstance(a, Future) else a for a in args)
            dsk[key] = (
                (_apply_kwargs, func, list(args), [list(kv) for kv in kwargs.items()])
                if kwargs
                else (func, *args)
            )
            keys.append(key)
        graph, _ = normalize(dsk, keys, known_keys=self._keys)
        futures = [Future(k, self) for k in keys]
        sync(self._submit(graph, keys), self.timeout)
        return futures

    def persist(self, dsk: Any, keys: Any) -> list[Future]:
        """Start computing ``keys`` of ``dsk`` and keep them on the workers while futures live."""
        graph, out_keys = normalize(dsk, keys, known_keys=self._keys)
        out_keys = list(dict.fromkeys(out_keys))
        futures = [Future(k, self) for k in out_keys]
        sync(self._submit(graph, out_keys), self.timeout)
        return futures

    def wait(self, futures: Iterable[Future], timeout: float | None = None) -> None:
        """Block until every future is computed (results stay on the workers)."""
        keys = list(dict.fromkeys(f.key for f in futures))
        sync(self._wait(keys), timeout)

    def gather(self, futures: Iterable[Future], timeout: float | None = None) -> list:
        futures = list(futures)
        keys = [f.key for f in futures]

        async def run() -> dict:
            return await self._gather(list(dict.fromkeys(keys)))

        values = sync(run(), timeout)
        return [values[k] for k in keys]

    # ------------------------------------------------------------ cluster

    def task_stream(self, start: int = 0) -> TaskStream:
        """The task records the scheduler holds, from record index ``start`` on."""
        reply = sync(self._request({"op": "task-stream", "start": start}), self.timeout)
        if start > 0 and reply["first"] > start:
            raise ValueError(
                f"records {start}..{reply['first'] - 1} were dropped from the scheduler's "
                "bounded stream; raise stream_length or read the stream more often"
            )
        return TaskStream.from_rows(reply["rows"])

    def stream_position(self) -> int:
        """Index of the next record; pass it to ``task_stream`` to see only what follows."""
        return sync(self._request({"op": "task-stream", "start": -1}), self.timeout)["end"]

    def identity(self) -> dict:
        return sync(self._request({"op": "identity"}), self.timeout)

    def wait_for_workers(self, n: int, timeout: float = 30.0) -> int:
        reply = sync(
            self._request({"op": "wait-for-workers", "n": n, "timeout": timeout}), timeout + 5
        )
        if reply["n"] < n:
            raise TimeoutError(f"only {reply['n']} of {n} workers joined within {timeout} s")
        return reply["n"]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def shut() -> None:
            if self._comm is not None and not self._comm.closed:
                self._comm.send({"op": "close-client"})
                with contextlib.suppress(TimeoutError, _comm.CommClosedError):
                    await asyncio.wait_for(self._comm.drain(), 2)
                self._comm.close()
            if self._pool is not None:
                self._pool.close()

        with contextlib.suppress(TimeoutError, RuntimeError):
            sync(shut(), 5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _apply_kwargs(func: Callable, args: list, kwargs: list) -> Any:
    return func(*args, **dict(kwargs))
