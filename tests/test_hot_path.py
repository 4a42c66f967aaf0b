"""The reader path stays tiny: counted in function calls, not in seconds."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import pytest

from grpc_pool.testing.echo import EchoServer

# round_robin: get_channel alone, which calls a cycle's __next__ (a slot wrapper,
# not reported as a C call by the profiler); others: get_channel -> strategy.pick,
# with random() and len() as C calls.
BUDGET = {
    "round_robin": {"call": 1, "c_call": 0},
    "random": {"call": 2, "c_call": 2},
    "power_of_two": {"call": 2, "c_call": 3},
}


def profile_calls(fn: Any, repeat: int = 10) -> Counter[str]:
    events: Counter[str] = Counter()

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            events[event] += 1

    sys.setprofile(profiler)
    try:
        for _ in range(repeat):
            fn()
    finally:
        sys.setprofile(None)
    # the loop above adds fn() itself (counted) and nothing else per round
    return Counter({k: v // repeat for k, v in events.items()})


@pytest.mark.parametrize("strategy", sorted(BUDGET))
def test_get_channel_work_stays_within_budget(
    make_pool: Any, server: EchoServer, strategy: str
) -> None:
    """Python and C calls per get_channel() stay within the budget of each strategy."""
    pool = make_pool(server.target, size=4, strategy=strategy)
    pool.wait_ready(timeout=10, min_ready=4)
    counts = profile_calls(pool.get_channel)
    budget = BUDGET[strategy]
    assert counts["call"] <= budget["call"], counts
    assert counts["c_call"] <= budget["c_call"], counts


def test_get_channel_takes_no_lock(make_pool: Any, server: EchoServer) -> None:
    """No lock or condition is touched on the fast path (no acquire among C calls)."""
    pool = make_pool(server.target, size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    names: list[str] = []

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            names.append(getattr(arg, "__name__", "?"))

    sys.setprofile(profiler)
    try:
        pool.get_channel()
    finally:
        sys.setprofile(None)
    assert not [n for n in names if n in ("acquire", "__enter__", "wait", "release")], names
