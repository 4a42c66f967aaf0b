"""``dns://HOST[:PORT]/name[:port]``: A and AAAA asked of that one DNS server with
dnspython (the ``[dns]`` extra), with the answer's TTL. Resolver thread only."""

from __future__ import annotations

import ipaddress

from .._config.targets import NEEDS_DNS_EXTRA, join_host_port

__all__ = ["query"]

# Seconds one record type may take in all (tries included); a server that does not
# answer fails the resolution after this (the resolver thread retries, keeping the
# last good addresses).
TIMEOUT = 2.0


def query(
    server: tuple[str, int], host: str, port: str, timeout: float = TIMEOUT
) -> tuple[list[str], float]:
    """(sorted ``host:port`` addresses, the smallest answer TTL in seconds) of ``host``'s
    A and AAAA records at ``server`` only (no /etc/resolv.conf, no search list).
    Raises LookupError when neither type has a record (NXDOMAIN, no data, SERVFAIL,
    REFUSED), dnspython's timeout when the server does not answer, ImportError
    without dnspython."""
    try:
        import dns.resolver
    except ImportError as exc:
        raise ImportError(NEEDS_DNS_EXTRA) from exc
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server[0]]
    resolver.port = server[1]
    resolver.timeout, resolver.lifetime = timeout / 2, timeout  # per try / in all
    resolver.search = []
    resolver.use_search_by_default = False
    ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    ttls: list[int] = []
    errors: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers) as e:
            errors.append(f"{rdtype}: {type(e).__name__}")  # a timeout propagates as it is
            continue
        if answer.rrset is not None:
            ttls.append(answer.rrset.ttl)
        ips.update(ipaddress.ip_address(str(record.address)) for record in answer)
    if not ips:
        raise LookupError(f"{host} at {join_host_port(*map(str, server))}: " + ", ".join(errors))
    ordered = sorted(ips, key=lambda ip: (ip.version, ip))  # IPv4 first, as getaddrinfo's
    return [join_host_port(str(ip), port) for ip in ordered], float(min(ttls, default=0))
