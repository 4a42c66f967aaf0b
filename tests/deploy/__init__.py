"""A deploy harness: echo backends in child processes, clients under load in child
processes, and the events of a deploy (rolling restart, kill, rolling update behind
DNS, max connection age). Shared by tests/test_deploy.py and benchmarks/test_deploy.py.
"""

from __future__ import annotations

from .harness import Backend, Dns, DnsUnavailable, free_port, reap_all
from .load import CLIENTS, KINDS, retry_policy, run_load
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
    "CLIENTS",
    "KINDS",
    "Backend",
    "ClientResult",
    "Dns",
    "DnsUnavailable",
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
