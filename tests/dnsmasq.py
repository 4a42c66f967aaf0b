"""The ``dns_server`` fixture: a real DNS server (dnsmasq, Debian's dnsmasq-base) on a
free loopback port; the server itself is ``grpc_pool.testing.deploy.dnsmasq``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from grpc_pool.testing.deploy.dnsmasq import DNSMASQ, SKIP_REASON, DnsServer

__all__ = ["DnsServer", "dns_server"]


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A started DnsServer with no records (``set_records`` them), closed after the test;
    the test is skipped with the reason when dnsmasq is not installed."""
    if DNSMASQ is None:
        print(f"skipped: {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    with DnsServer() as dns:
        yield dns
