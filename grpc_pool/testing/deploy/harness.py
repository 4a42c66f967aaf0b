"""Child processes with deadlines: echo backends (``backend.py``), and a DNS server
(dnsmasq, ``dnsmasq.py``).

Every child is started in its own session, remembered, and ended: by the caller
(``term``/``kill``/``wait``, ``stop``), by ``reap_all()`` in a ``finally``, and by
``atexit`` as a last resort. Backends also exit by themselves after ``lifetime``.
Loopback only (127.0.0.x); ports from ``free_port()`` (``dnsmasq.py``: free for TCP and UDP).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from .dnsmasq import DNSMASQ, SKIP_REASON, DnsServer

BACKEND = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend.py")
_CHILDREN: list[subprocess.Popen[Any]] = []


def reap_all() -> None:
    """Kill and wait for every child still running (bounded)."""
    for proc in _CHILDREN:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    _CHILDREN.clear()


atexit.register(reap_all)


class Backend:
    """One ``backend.py`` child: ``start()`` waits for its READY line; restartable."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        record: str | None = None,
        grace: float = 1.0,
        max_age_ms: int = 0,
        max_age_grace_ms: int = 1000,
        lifetime: float = 90.0,
        slow_ms: int = 0,
        stall_ms: int = 0,
        fail: bool = False,
    ) -> None:
        self.port, self.host, self.record, self.grace = port, host, record, grace
        self.max_age_ms, self.max_age_grace_ms = max_age_ms, max_age_grace_ms
        self.lifetime = lifetime
        self.slow_ms = slow_ms
        self.stall_ms = stall_ms
        self.fail = fail
        self.proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> Backend:
        cmd = [
            sys.executable, BACKEND, "--port", str(self.port), "--host", self.host,
            "--grace", str(self.grace), "--lifetime", str(self.lifetime),
            "--max-age-ms", str(self.max_age_ms),
            "--max-age-grace-ms", str(self.max_age_grace_ms),
            "--slow-ms", str(self.slow_ms), "--stall-ms", str(self.stall_ms),
        ]  # fmt: skip
        if self.record:
            cmd += ["--record", self.record]
        if self.fail:
            cmd += ["--fail"]
        env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, text=True, start_new_session=True, env=env
        )
        _CHILDREN.append(self.proc)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:  # readline: READY, or EOF if it died
            line = self.proc.stdout.readline()
            if line.startswith("READY") or not line:
                break
        if not line.startswith("READY"):
            self.kill()
            self.wait()
            raise RuntimeError(f"backend {self.address} did not start: {line!r}")
        return self

    def term(self) -> None:
        """SIGTERM: a graceful stop (GOAWAY, then ``grace`` for calls in flight)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stall(self, on: bool) -> None:
        """Start (SIGUSR1) or end (SIGUSR2) a stall of ``stall_ms`` per request."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def kill(self) -> None:
        """SIGKILL: a crash, connections reset."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()

    def wait(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- DNS: a real DNS server (dnsmasq.py) ---------------------------------------------------
class DnsUnavailable(Exception):
    """No DNS server can run here (dnsmasq is not installed); the message says why."""


class Dns:
    """dnsmasq on a loopback port answering A records for names under ``.test``."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        if DNSMASQ is None:
            raise DnsUnavailable(SKIP_REASON)
        self._server = DnsServer(records).start()
        self.port = self._server.port

    def set(self, records: dict[str, list[str]]) -> None:
        self._server.set_records(records)

    def stop(self) -> None:
        self._server.stop()


def end_children(procs: Sequence[Any], backends: Sequence[Backend], join: float = 5.0) -> None:
    """Client processes joined (killed past ``join`` seconds), then every backend
    sent SIGTERM at once and waited for: one teardown for every scenario."""
    for proc in procs:
        proc.join(join)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    for backend in backends:
        backend.term()
    for backend in backends:
        backend.wait(5)


def spread_hosts(count: int, first: int = 1) -> Sequence[str]:
    """Loopback addresses 127.0.0.<first>.. (Linux routes all of 127/8 to lo)."""
    return [f"127.0.0.{first + i}" for i in range(count)]
