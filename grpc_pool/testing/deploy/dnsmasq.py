"""A real DNS server for tests: dnsmasq (Debian's dnsmasq-base) on a free loopback port,
answering only from a hosts file the test writes.

    with DnsServer({"svc.test": ["127.0.0.2", "127.0.0.3"]}) as dns:
        target = f"dns://127.0.0.1:{dns.port}/svc.test:{port}"
        dns.set_records({"svc.test": ["127.0.0.3", "127.0.0.4"]})  # file + SIGHUP

``tests/dnsmasq.py`` has the pytest fixture ``dns_server`` (skipped, with the
reason, without dnsmasq); it is here, in the package, so that the deploy bench's
DNS row (6b) runs from an installed copy too.
Names must end in ``.test`` (``--local=/test/``: anything else is REFUSED, never
forwarded). The TTL of every answer is 1 s (``--local-ttl=1``). ``stop()`` ends the
process with a deadline (SIGTERM, then SIGKILL); ``start()`` again reuses the port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence

__all__ = ["DNSMASQ", "SKIP_REASON", "DnsServer", "free_port"]

DNSMASQ = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
SKIP_REASON = "dnsmasq is not installed (Debian: apt-get install dnsmasq-base)"
START_TIMEOUT = 5.0
STOP_TIMEOUT = 3.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` now (dnsmasq binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free UDP+TCP port on {host}")


class DnsServer:
    """dnsmasq in the foreground on 127.0.0.1:``port`` (a free one by default).

    records: name -> IPs (IPv4 and IPv6 mixed; each an A or AAAA record).
    """

    def __init__(
        self, records: Mapping[str, Sequence[str]] | None = None, port: int | None = None
    ) -> None:
        if DNSMASQ is None:
            raise RuntimeError(SKIP_REASON)
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self._dir = tempfile.mkdtemp(prefix="grpc-pool-dns-")
        self._hosts = os.path.join(self._dir, "hosts")
        self._log_path = os.path.join(self._dir, "dnsmasq.log")
        self._proc: subprocess.Popen[bytes] | None = None
        self.records: dict[str, list[str]] = {}
        self.set_records(records or {})

    @property
    def server(self) -> str:
        """The authority of a ``dns://`` target: ``127.0.0.1:port``."""
        return f"{self.host}:{self.port}"

    def target(self, name: str, port: int) -> str:
        """``dns://127.0.0.1:<dns port>/<name>:<port>``."""
        return f"dns://{self.server}/{name}:{port}"

    def set_records(self, records: Mapping[str, Sequence[str]]) -> None:
        """Replace every record (the file, atomically) and make dnsmasq re-read it."""
        self.records = {name: list(ips) for name, ips in records.items()}
        lines = [f"{ip} {name}" for name, ips in self.records.items() for ip in ips]
        tmp = self._hosts + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(tmp, self._hosts)
        if self.running:
            assert self._proc is not None
            reads = self._reads()
            self._proc.send_signal(signal.SIGHUP)  # re-reads addn-hosts, clears its cache
            self._wait_reads(reads + 1)  # answers come from the new file from now on

    def _reads(self) -> int:
        """Times dnsmasq logged reading the hosts file ("read FILE - N names")."""
        return self.log().count(f"read {self._hosts} ")

    def _wait_reads(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while self._reads() < count:
            if time.monotonic() > deadline or not self.running:
                raise RuntimeError(f"dnsmasq did not read {self._hosts}: {self.log()}")
            time.sleep(0.01)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> DnsServer:
        """Start dnsmasq; return once it has bound its port (within START_TIMEOUT)."""
        if self.running:
            return self
        assert DNSMASQ is not None
        cmd = [
            DNSMASQ,
            "--keep-in-foreground",
            "--conf-file=/dev/null",  # not /etc/dnsmasq.conf
            "--pid-file",  # empty: no /run/dnsmasq.pid
            "--user=root",  # as root it would drop to nobody (unable to read the file)
            "--no-resolv",
            "--no-hosts",
            f"--addn-hosts={self._hosts}",
            f"--port={self.port}",
            f"--listen-address={self.host}",
            "--bind-interfaces",
            "--local-ttl=1",
            "--log-facility=-",
            "--local=/test/",  # *.test answered here: NXDOMAIN / no data, not REFUSED
        ]
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.log()}")
            if not _udp_port_free(self.host, self.port) and self._reads():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"dnsmasq did not bind {self.server} in {START_TIMEOUT}s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; the port stays this server's."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)

    def log(self) -> str:
        try:
            with open(self._log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _udp_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True
