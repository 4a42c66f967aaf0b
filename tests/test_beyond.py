"""Beyond the reference: load-based sizing, max-age refresh, several targets,
key affinity. Real servers, real RPCs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool.testing.echo import ECHO, SLOW, EchoServer

from .conftest import Recorder, wait_until


def slow_load(pool: grpc_pool.Pool, calls: int, seconds: float) -> list[Any]:
    return [
        pool.get_channel().unary_unary(SLOW).future(str(seconds).encode(), timeout=30)
        for _ in range(calls)
    ]


# -- autoscale ---------------------------------------------------------------------


def test_autoscale_grows_under_load_and_shrinks_after(make_pool: Any, server: EchoServer) -> None:
    """8 slow RPCs in flight with max 2 per channel: 1 -> 3 -> 4 (delta 2, max_size 4);
    idle again: back down to min_size, at most 2 per interval."""
    rec = Recorder()
    pool = make_pool(
        server.target,
        size=1,
        autoscale=True,
        autoscale_interval=0.3,
        min_size=1,
        max_size=4,
        max_rpcs_per_channel=2,
        min_rpcs_per_channel=1,
        max_resize_delta=2,
        listeners=[rec],
    )
    pool.wait_ready(timeout=10)
    calls = slow_load(pool, 8, 1.5)
    # Events reach listeners on their own thread: wait for the event, not the size.
    wait_until(
        lambda: any(e.new_size == 4 for e in rec.named("autoscale")), 10, "growth to max_size"
    )
    assert pool.status().expected_size == 4
    grown = [e for e in rec.named("autoscale") if e.new_size > e.previous_size]
    assert all(e.new_size - e.previous_size <= 2 for e in grown)  # max_resize_delta
    assert any(e.peak >= 8 and e.min_channels == 4 for e in grown)
    assert grown[-1].new_size == 4  # clamped to max_size
    assert [c.result(timeout=30) for c in calls] == [b"1.5"] * 8
    wait_until(lambda: pool.status().expected_size == 1, 10, "shrink to min_size")
    shrunk = [e for e in rec.named("autoscale") if e.new_size < e.previous_size]
    assert all(e.previous_size - e.new_size <= 2 for e in shrunk)
    steps = [
        (e.peak, e.previous_size, e.new_size)
        for e in rec.named("autoscale")
        if e.new_size != e.previous_size
    ]
    print(f"\nautoscale (peak, from, to): {steps}")


def test_autoscale_does_not_flap_inside_the_band(make_pool: Any, server: EchoServer) -> None:
    """Load steady at 4 in flight (per-channel peaks summed: 4 to 8 per check): the
    band ceil(peak / 3)..peak holds 3 throughout, and the pool of 3 stays at 3 through
    many checks, though each check sees a somewhat different peak."""
    rec = Recorder()
    pool = make_pool(
        server.target,
        size=3,
        autoscale=True,
        autoscale_interval=0.2,
        min_size=1,
        max_size=8,
        max_rpcs_per_channel=3,
        min_rpcs_per_channel=1,
        listeners=[rec],
    )
    pool.wait_ready(timeout=10, min_ready=3)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            pool.get_channel().unary_unary(SLOW)(b"0.1", timeout=10)

    with ThreadPoolExecutor(4) as executor:
        for _ in range(4):
            executor.submit(load)
        wait_until(lambda: len(rec.named("autoscale")) >= 8, 15, "8 autoscale checks")
        stop.set()
    checks = rec.named("autoscale")[:8]
    assert all(e.min_channels <= 3 <= e.max_channels for e in checks), checks
    assert all(e.new_size == e.previous_size == 3 for e in checks)


def test_stream_limit_warning_at_max_size(
    make_pool: Any, server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """At max_size, channels near the server's stream limit: a warning and an event."""
    rec = Recorder()
    pool = make_pool(
        server.target,
        size=2,
        autoscale=True,
        autoscale_interval=0.3,
        max_size=2,
        max_rpcs_per_channel=2,
        min_rpcs_per_channel=1,
        stream_limit=4,
        listeners=[rec],
    )
    pool.wait_ready(timeout=10, min_ready=2)
    calls = slow_load(pool, 8, 1.0)
    wait_until(lambda: rec.named("stream_limit_near"), 10, "stream limit event")
    event = rec.named("stream_limit_near")[0]
    assert event.stream_limit == 4 and event.per_channel >= 3.2 and event.size == 2
    assert "near the server's stream limit" in caplog.text
    assert [c.result(timeout=30) for c in calls] == [b"1.0"] * 8


# -- max-age refresh -----------------------------------------------------------------


def test_max_age_refresh_one_at_a_time_never_fewer_ready(
    make_pool: Any, server: EchoServer
) -> None:
    """Channels past their age are replaced, primed first, one slot at a time; the
    rotation never shrinks meanwhile and RPCs keep succeeding."""
    ready = threading.Event()
    active, most = [0], [0]
    lock = threading.Lock()

    def primer(channel: grpc.Channel) -> None:
        assert channel.unary_unary(ECHO)(b"warm", timeout=5) == b"warm"
        if ready.is_set():
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            time.sleep(0.05)  # an overlap would show here
            with lock:
                active[0] -= 1

    pool = make_pool(server.target, size=3, max_connection_age=0.3, primer=primer)
    pool.wait_ready(timeout=10, min_ready=3)
    first_ids = {s.channel_id for s in pool.stats().slots}
    ready.set()
    smallest, errors = 3, []
    deadline = time.monotonic() + 10
    while pool.stats().connects < 12 and time.monotonic() < deadline:
        smallest = min(smallest, len(pool._snapshot))
        try:
            pool.get_channel().unary_unary(ECHO)(b"x", timeout=5)
        except grpc.RpcError as exc:
            errors.append(exc)
    assert pool.stats().connects >= 12  # 3 first connections, then 9+ refreshes
    assert smallest == 3 and errors == []
    assert most[0] == 1
    print(
        f"\nmax-age 0.3s: {pool.stats().connects} connects, fewest ready {smallest}/3, "
        f"most refreshes at once {most[0]}, RPC errors {len(errors)}"
    )
    assert not first_ids & {s.channel_id for s in pool.stats().slots}


def test_failing_primer_keeps_channels_out_of_rotation(make_pool: Any, server: EchoServer) -> None:
    def primer(channel: grpc.Channel) -> None:
        raise RuntimeError("cold cache")

    pool = make_pool(server.target, size=1, primer=primer)
    wait_until(lambda: pool.stats().slots[0].failures >= 2, 10, "2 failed attempts")
    assert pool.status().current_size == 0
    assert "primer failed: RuntimeError: cold cache" in (pool.stats().slots[0].last_error or "")


# -- several targets -------------------------------------------------------------------


def test_slots_spread_over_several_targets(make_pool: Any, make_server: Any) -> None:
    """Slot i talks to target i mod k; a dead target's slots reconnect on their own
    while the others keep serving."""
    a, b = make_server(), make_server()
    pool = make_pool([a.target, b.target], size=4)
    pool.wait_ready(timeout=10, min_ready=4)
    assert {s.slot: s.target for s in pool.stats().slots} == {
        0: a.target,
        1: b.target,
        2: a.target,
        3: b.target,
    }
    for _ in range(8):
        pool.get_channel().unary_unary(ECHO)(b"x", timeout=5)
    assert (len(a.peers), len(b.peers)) == (2, 2)
    b.stop()
    wait_until(lambda: pool.status().current_size == 2, 10, "b's slots out")
    assert pool.status().state == "degraded"
    assert {c.target for c in pool._snapshot} == {a.target}
    for _ in range(6):
        assert pool.get_channel().unary_unary(ECHO)(b"a", timeout=5) == b"a"
    b.start()
    assert pool.wait_ready(timeout=10, min_ready=4).state == "healthy"


def test_lb_options_pass_through_to_each_pooled_channel(make_pool: Any, make_server: Any) -> None:
    """A multi-address target with gRPC's round_robin policy: each pooled channel
    balances across both servers (one connection per server per channel)."""
    a, b = make_server(), make_server()
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    pool = make_pool(target, size=2, options=[("grpc.lb_policy_name", "round_robin")])
    pool.wait_ready(timeout=10, min_ready=2)

    def both_servers_see_both_channels() -> bool:
        for channel in pool._snapshot:
            channel.unary_unary(ECHO)(b"x", timeout=5)
        return len(a.peers) == 2 and len(b.peers) == 2  # 2 channels x 2 servers

    wait_until(both_servers_see_both_channels, 10, "round robin over both servers")
    assert a.calls > 0 and b.calls > 0


# -- key affinity -------------------------------------------------------------------------


def slots_of(pool: grpc_pool.Pool, keys: range) -> dict[int, int]:
    return {k: pool.get_channel(key=k).slot for k in keys}


def test_key_affinity_is_stable_and_moves_few_keys(make_pool: Any, server: EchoServer) -> None:
    """Same key, same slot; adding a slot moves about 1/n of keys, all to the new
    slot; removing one moves only that slot's keys."""
    pool = make_pool(server.target, size=4)
    pool.wait_ready(timeout=10, min_ready=4)
    keys = range(2000)
    before = slots_of(pool, keys)
    assert before == slots_of(pool, keys)
    assert set(Counter(before.values())) == {0, 1, 2, 3}
    pool.scale_up(1)
    pool.wait_ready(timeout=10, min_ready=5)
    after = slots_of(pool, keys)
    moved = [k for k in keys if after[k] != before[k]]
    assert {after[k] for k in moved} == {4}  # only to the new slot
    assert 0.1 < len(moved) / len(keys) < 0.3  # about 1/5
    print(f"\nkey affinity: 4 -> 5 slots moved {len(moved) / len(keys):.1%} of {len(keys)} keys")
    pool.scale_down(1)  # removes a slot (no load: the newest)
    gone = ({0, 1, 2, 3, 4} - {c.slot for c in pool._snapshot}).pop()
    final = slots_of(pool, keys)
    assert all(final[k] == after[k] for k in keys if after[k] != gone)


def test_key_falls_back_while_its_slot_is_not_ready(make_pool: Any, make_server: Any) -> None:
    a, b = make_server(), make_server()
    pool = make_pool([a.target, b.target], size=2)
    pool.wait_ready(timeout=10, min_ready=2)
    key = next(k for k in range(100) if pool.get_channel(key=k).target == b.target)
    b.stop()
    wait_until(lambda: pool.status().current_size == 1, 10, "b out")
    assert pool.get_channel(key=key).target == a.target
    b.start()
    pool.wait_ready(timeout=10, min_ready=2)
    assert pool.get_channel(key=key).target == b.target  # back home
