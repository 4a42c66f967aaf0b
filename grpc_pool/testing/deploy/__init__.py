"""A deploy harness: echo backends in child processes, clients under load in child
processes, and the events of a deploy (rolling restart, kill, rolling update behind
DNS, max connection age). Shared by tests/test_deploy.py, benchmarks/test_deploy.py
and ``python -m grpc_pool bench --deploy``.

Modules: ``backend`` (the echo backend, run by path), ``harness`` (child processes
with deadlines, DNS), ``load`` (the clients, every API of the pool beside raw
grpcio, and the load they run), ``scenario`` (backends, clients, an event, what
each client saw).
"""

from __future__ import annotations

from .dnsmasq import free_port
from .harness import Backend, Dns, DnsUnavailable, reap_all
from .load import APIS, CLIENTS, HOWS, KINDS, Client, EchoStub, retry_policy, run_load
from .scenario import (
    ClientResult,
    ScenarioResult,
    kill_one,
    rolling_restart,
    rolling_update,
    run_scenario,
    steady,
)

__all__ = [
    "APIS",
    "CLIENTS",
    "HOWS",
    "KINDS",
    "Backend",
    "Client",
    "ClientResult",
    "Dns",
    "DnsUnavailable",
    "EchoStub",
    "ScenarioResult",
    "free_port",
    "kill_one",
    "reap_all",
    "retry_policy",
    "rolling_restart",
    "rolling_update",
    "run_load",
    "run_scenario",
    "steady",
]
