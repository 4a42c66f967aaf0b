"""A fault-injection TCP proxy on loopback for tests: client -> FaultProxy -> real server.

Usage::

    with FaultProxy(server.target) as proxy:      # listening on 127.0.0.1:<port 0>
        channel = grpc.insecure_channel(proxy.target)
        proxy.blackhole()                         # ... RPCs now hang until their deadline
        proxy.pass_traffic()                      # back to normal

API (every command is synchronous: it runs on the proxy thread and has taken effect when it
returns; it raises ``RuntimeError`` if the proxy thread does not answer within 5 s):

- ``FaultProxy(upstream, host="127.0.0.1")``: ``upstream`` is ``"127.0.0.1:PORT"``,
  ``"localhost:PORT"`` or ``"[::1]:PORT"``; anything else is a ``ValueError`` (the proxy
  only ever binds and connects loopback). ``host`` is the listen address, 127.0.0.1 or ::1.
- ``start() -> FaultProxy``: bind port 0, listen, start the single proxy thread.
- ``target -> str``: ``"127.0.0.1:<port>"`` to give to gRPC; ``port -> int``.
- ``close(timeout=5.0) -> None``: idempotent; stops the thread, joins it (bounded, raises
  ``RuntimeError`` if it has not ended by then) and closes every socket; open connections are
  reset. Also the context manager's exit (``__enter__`` starts the proxy if needed).
- ``pass_traffic()``: normal forwarding; undoes ``blackhole``, ``refuse`` and ``latency``.
- ``reset_all() -> int``: RST every open connection, both the client and the upstream side
  (``SO_LINGER (1, 0)`` then close); returns how many were reset. The mode is unchanged, so
  new connections are still accepted.
- ``blackhole()``: existing and new connections stay open (new ones are still accepted and
  connected upstream) but nothing is forwarded in either direction. Data is *held*, not
  dropped: the proxy stops reading, so bytes wait in kernel buffers (and, once those fill,
  the sender blocks), like a network partition where TCP keeps retransmitting. A FIN or
  RST from either side is not seen or passed on either. After ``pass_traffic()`` the held
  bytes flow again, so an old connection can resume if its endpoints have not given up.
  Also turns listening back on if ``refuse()`` had turned it off.
- ``refuse()``: stop listening: ``connect()`` to ``target`` gets ECONNREFUSED. Connections
  already open keep their current behaviour (pass, black hole or latency). Listening is
  resumed on the SAME port by ``pass_traffic()`` or ``blackhole()``; the port stays reserved
  meanwhile by a second socket bound to it with SO_REUSEADDR that never listens, so no other
  socket can take it (Linux semantics: a bound, non-listening socket refuses SYNs with RST).
  Should re-binding still fail, the OSError is raised by the command that re-listens.
- ``latency(seconds)``: delay every chunk by ``seconds`` in each direction (the data read
  at ``t`` is sent at ``t + seconds``; order kept; throughput not limited). It applies to
  data read from then on; ``latency(0)`` removes it. Does not change the other modes (a
  black hole stays one).
- Counters (read from any thread): ``connections_accepted`` (total), ``active_connections``
  (open now, including black-holed ones), ``bytes_forwarded`` (bytes written to either side),
  ``connections_reset`` (by ``reset_all``); ``listening`` and ``blackholed`` (bool),
  ``current_latency`` (float).

Design: one thread runs a ``selectors`` loop with a 50 ms timeout (shorter when a delayed
chunk is due sooner) and checks a stop flag each turn; commands reach it through a queue and
a socketpair that wakes the selector. Each accepted client socket is paired with a
non-blocking connection to ``upstream``. Interest is recomputed every turn: read a side only
while forwarding and while less than 1 MiB waits for the other side; write interest only
when a send would block or a connect is pending. A black-holed connection is unregistered,
so a peer's EOF cannot make the loop spin. An error on one side (e.g. ECONNRESET) resets
the other side; an EOF is passed on as ``shutdown(SHUT_WR)`` once the pending data is sent.

What grpcio 1.85 does through it (plain channels, local subchannel pool):

- reset: READY -> IDLE at once; RPCs in flight fail UNAVAILABLE ("Connection reset by
  peer"); the channel stays IDLE until the next RPC (or try_to_connect) reconnects it.
- refuse (plus reset): IDLE -> (CONNECTING) -> TRANSIENT_FAILURE; RPCs without wait_for_ready
  fail UNAVAILABLE at once; after ``pass_traffic()`` it reconnects on its backoff (~1 s).
- black hole: a connected channel stays READY indefinitely without keepalive (RPCs end only
  at their deadline); a new channel stays CONNECTING until its 20 s connect timeout. Since
  the proxy's kernel still ACKs, TCP_USER_TIMEOUT never fires and ``keepalive_timeout_ms``
  alone did not bound detection: the keepalive ping failed after ~60 s
  (``grpc.http2.ping_timeout_ms`` default); with ``keepalive_time_ms=1000`` and
  ``grpc.http2.ping_timeout_ms=1000`` the channel went IDLE after ~2 s.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultProxy"]

POLL_INTERVAL = 0.05  # selector timeout: how often the loop looks at the stop flag
COMMAND_TIMEOUT = 5.0  # how long a command waits for the proxy thread
CHUNK = 65536
MAX_PENDING = 1 << 20  # stop reading a side while this much waits for the other side
LOOPBACK = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}
_RST_LINGER = struct.pack("ii", 1, 0)


def _parse_loopback(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[::1]:port"`` -> (loopback ip, port), else ValueError."""
    host, sep, port_text = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or host not in LOOPBACK or not port_text.isdigit():
        raise ValueError(f"FaultProxy only talks to loopback host:port, got {address!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {address!r}")
    return LOOPBACK[host], port


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _reset_close(sock: socket.socket) -> None:
    """Close with SO_LINGER (1, 0): the kernel sends RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER)
    sock.close()


@dataclass(eq=False)
class _Side:
    """One socket of a link and the data waiting to be written to it."""

    sock: socket.socket
    connected: bool
    out: deque[tuple[float, bytes]] = field(default_factory=deque)  # (release time, data)
    out_bytes: int = 0
    eof: bool = False  # its peer sent FIN (recv returned b"")
    shut_wr: bool = False  # FIN passed on to it
    want_write: bool = False  # the last send would have blocked
    events: int = 0  # what it is registered for now (0: not registered)


@dataclass(eq=False)
class _Link:
    client: _Side
    upstream: _Side

    def other(self, side: _Side) -> _Side:
        return self.upstream if side is self.client else self.client


class FaultProxy:
    """A TCP proxy on loopback that can pass, reset, black-hole, refuse or delay traffic."""

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self._upstream_addr = _parse_loopback(upstream)
        if host not in ("127.0.0.1", "::1"):
            raise ValueError(f"FaultProxy listens on 127.0.0.1 or ::1 only, got {host!r}")
        self.host = host
        self.port = 0
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._reserve: socket.socket | None = None  # holds the port, never listens
        self._listener: socket.socket | None = None
        self._links: set[_Link] = set()
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._blackholed = False
        self._latency = 0.0
        self.connections_accepted = 0
        self.connections_reset = 0
        self.bytes_forwarded = 0
        self._active = 0

    # -- public API ----------------------------------------------------------------------

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def active_connections(self) -> int:
        return self._active

    @property
    def listening(self) -> bool:
        return self._listener is not None

    @property
    def blackholed(self) -> bool:
        return self._blackholed

    @property
    def current_latency(self) -> float:
        return self._latency

    def start(self) -> FaultProxy:
        if self._closed:
            raise RuntimeError("FaultProxy is closed")
        if self._thread is not None:
            return self
        reserve = socket.socket(_family(self.host), socket.SOCK_STREAM)
        try:
            reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reserve.bind((self.host, 0))
        except BaseException:
            reserve.close()
            raise
        self._reserve = reserve
        self.port = reserve.getsockname()[1]
        self._listen()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(
            target=self._run, name=f"faultproxy-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._stop.set()
            self._wake()
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"FaultProxy thread did not stop within {timeout}s")
        else:
            self._close_all()
        if self._error is not None:
            raise RuntimeError("FaultProxy thread failed") from self._error

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<FaultProxy {self.target} -> {self.upstream} listening={self.listening} "
            f"blackholed={self._blackholed} latency={self._latency} active={self._active}>"
        )

    def pass_traffic(self) -> None:
        def do() -> None:
            self._blackholed = False
            self._latency = 0.0
            self._listen()

        self._call(do)

    def reset_all(self) -> int:
        def do() -> int:
            links = list(self._links)
            for link in links:
                self._abort(link)
            self.connections_reset += len(links)
            return len(links)

        result: int = self._call(do)
        return result

    def blackhole(self) -> None:
        def do() -> None:
            self._blackholed = True
            self._listen()

        self._call(do)

    def refuse(self) -> None:
        self._call(self._unlisten)

    def latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds!r}")

        def do() -> None:
            self._latency = float(seconds)

        self._call(do)

    # -- commands --------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the proxy thread and return its result (bounded wait)."""
        thread = self._thread
        if thread is None or self._closed or not thread.is_alive():
            raise RuntimeError(f"FaultProxy is not running: {self!r}")
        command = _Command(fn)
        self._commands.put(command)
        self._wake()
        if not command.done.wait(COMMAND_TIMEOUT):
            raise RuntimeError(f"FaultProxy thread did not answer within {COMMAND_TIMEOUT}s")
        if command.error is not None:
            raise command.error
        return command.result

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending) or closed
            self._wake_w.send(b"\0")

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command.result = command.fn()
            except Exception as exc:  # handed to the caller
                command.error = exc
            command.done.set()

    # -- listening -------------------------------------------------------------------------

    def _listen(self) -> None:
        if self._listener is not None:
            return
        sock = socket.socket(_family(self.host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
            self._sel.register(sock, selectors.EVENT_READ, None)
        except BaseException:
            sock.close()
            raise
        self._listener = sock

    def _unlisten(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            self._sel.unregister(sock)
            sock.close()  # connections still in its backlog get RST from the kernel

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(64):  # bounded: the rest are accepted on the next turn
            try:
                client, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            self.connections_accepted += 1
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = socket.socket(_family(self._upstream_addr[0]), socket.SOCK_STREAM)
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = upstream.connect_ex(self._upstream_addr)
            if err not in (0, errno.EINPROGRESS):
                upstream.close()
                _reset_close(client)
                continue
            link = _Link(_Side(client, connected=True), _Side(upstream, connected=err == 0))
            self._links.add(link)
            self._active = len(self._links)

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                timeout = POLL_INTERVAL
                for link in self._links:
                    self._update_interest(link)
                    if not self._blackholed:
                        for side in (link.client, link.upstream):
                            # a due chunk waits for writability (or for the flush below)
                            if side.out and side.connected and not side.want_write:
                                timeout = min(timeout, max(0.0, side.out[0][0] - now))
                for key, mask in self._sel.select(timeout):
                    self._dispatch(key, mask)
                self._run_commands()
                if not self._blackholed:
                    for link in list(self._links):
                        self._flush(link, link.client)
                        if link in self._links:
                            self._flush(link, link.upstream)
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._close_all()
            self._fail_pending_commands()

    def _fail_pending_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command.error = RuntimeError("FaultProxy closed")
            command.done.set()

    def _close_all(self) -> None:
        for link in list(self._links):
            self._abort(link)
        self._unlisten()
        if self._reserve is not None:
            self._reserve.close()
            self._reserve = None
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.fileobj is self._wake_r:
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
            return
        if key.data is None:  # the listener
            if self._listener is not None and key.fileobj is self._listener:
                self._accept()
            return
        link, side = key.data
        if link not in self._links or self._blackholed:
            return
        if mask & selectors.EVENT_WRITE:
            side.want_write = False
            if not side.connected:
                err = side.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._abort(link)  # upstream down: the client gets RST
                    return
                side.connected = True
            self._flush(link, side)
        if mask & selectors.EVENT_READ and link in self._links:
            self._read(link, side)

    def _update_interest(self, link: _Link) -> None:
        for side in (link.client, link.upstream):
            events = 0
            if not self._blackholed:
                other = link.other(side)
                if side.connected and not side.eof and other.out_bytes < MAX_PENDING:
                    events |= selectors.EVENT_READ
                if not side.connected or side.want_write:
                    events |= selectors.EVENT_WRITE
            if events == side.events:
                continue
            if side.events == 0:
                self._sel.register(side.sock, events, (link, side))
            elif events == 0:
                self._sel.unregister(side.sock)
            else:
                self._sel.modify(side.sock, events, (link, side))
            side.events = events

    def _read(self, link: _Link, side: _Side) -> None:
        other = link.other(side)
        try:
            data = side.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._abort(link)  # e.g. ECONNRESET: pass the reset on
            return
        if not data:
            side.eof = True
            self._flush(link, other)  # passes the FIN on if nothing is pending
            return
        other.out.append((time.monotonic() + self._latency, data))
        other.out_bytes += len(data)

    def _flush(self, link: _Link, side: _Side) -> None:
        """Send what is due to ``side``; pass an EOF on once nothing is pending."""
        if not side.connected:
            return
        now = time.monotonic()
        while side.out and side.out[0][0] <= now:
            release, data = side.out[0]
            try:
                sent = side.sock.send(data)
            except (BlockingIOError, InterruptedError):
                side.want_write = True
                return
            except OSError:
                self._abort(link)
                return
            self.bytes_forwarded += sent
            side.out_bytes -= sent
            if sent < len(data):
                side.out[0] = (release, data[sent:])
                side.want_write = True
                return
            side.out.popleft()
        other = link.other(side)
        if other.eof and not side.out and not side.shut_wr:
            side.shut_wr = True
            try:
                side.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._abort(link)
                return
        if link.client.shut_wr and link.upstream.shut_wr:
            self._drop(link, closer=socket.socket.close)

    def _abort(self, link: _Link) -> None:
        self._drop(link, closer=_reset_close)

    def _drop(self, link: _Link, closer: Callable[[socket.socket], None]) -> None:
        if link not in self._links:
            return
        self._links.discard(link)
        self._active = len(self._links)
        for side in (link.client, link.upstream):
            if side.events:
                self._sel.unregister(side.sock)
                side.events = 0
            closer(side.sock)


@dataclass(eq=False)
class _Command:
    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: Exception | None = None
