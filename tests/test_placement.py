"""Placement (issue 23): one pure function of (slots, addresses, seed[, fleet index])
that the writer applies and the fleet simulation calls. Rendezvous hashing (gRFC A68's
property) by default, deterministic subsetting with ``fleet_index``."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grpc_pool
from grpc_pool._writer.placement import counts, place
from grpc_pool._writer.spread import Spreader
from grpc_pool.cli.bench.fleet import simulate

ADDRESSES = [f"10.0.{i // 200}.{i % 200}:50051" for i in range(400)]

address_sets = st.lists(st.sampled_from("abcdefghijkl"), min_size=1, max_size=12, unique=True)


@st.composite
def layouts(draw: Any) -> tuple[dict[int, str | None], list[str], int]:
    """Slots (some on addresses that may be gone, some new), the addresses now, a seed."""
    old = draw(address_sets)
    new = draw(address_sets)
    n = draw(st.integers(1, 20))
    slots = {i: draw(st.sampled_from([*old, None])) for i in range(n)}
    return slots, new, draw(st.integers(0, 2**64 - 1))


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_place_is_balanced_pure_and_keeps_what_it_can(
    case: tuple[dict[int, str | None], list[str], int],
) -> None:
    """Every slot gets an address; each address floor(N/K) or ceil(N/K) slots (N < K:
    N distinct addresses); how many go where depends only on (N, addresses, seed),
    never on where the slots are now; no slot moves that its address's count lets
    stay; and a placed layout is left as it is."""
    slots, addresses_now, seed = case
    result = place(slots, addresses_now, seed)
    n, k = len(slots), len(addresses_now)
    assert set(result) == set(slots)
    got = Counter(result.values())
    assert got == Counter(counts(n, addresses_now, seed))
    assert got == Counter(place(dict.fromkeys(slots), addresses_now, seed).values())
    assert all(got[a] in (n // k, -(-n // k)) for a in addresses_now)
    if n <= k:
        assert len(got) == n
    held = Counter(a for a in slots.values() if a in addresses_now)
    stay = sum(min(held[a], got[a]) for a in addresses_now)
    assert sum(1 for s, a in result.items() if slots[s] == a) == stay
    assert place(dict(result), addresses_now, seed) == result


@pytest.mark.parametrize(("n", "k"), [(4, 20), (6, 7), (6, 3), (8, 5), (1, 2)])
def test_one_backend_added_or_removed_moves_at_most_what_balance_needs(n: int, k: int) -> None:
    """With fewer slots than backends one backend added or removed moves at most one
    slot of a pool (A68's property); with more, only the slots the new floor/ceil
    counts require (one address's count changes by at most ceil(N/K))."""
    for seed in range(300):
        addresses = ADDRESSES[: k + 1]
        before = place(dict.fromkeys(range(n)), addresses[:k], seed)
        for after_addresses in (addresses, addresses[1:k]):
            after = place(dict(before), after_addresses, seed)
            moved = sum(1 for s in before if before[s] != after[s])
            if n < k:
                assert moved <= 1, (seed, before, after)
            old, new = Counter(before.values()), Counter(after.values())
            assert moved == sum(max(0, old[a] - new[a]) for a in old)


def test_a_new_backend_enters_a_subset_with_probability_slots_over_backends() -> None:
    """4 slots over 20 backends, a 21st added: over 4,000 pool seeds it enters about
    4/21 of the subsets (19%), and each time exactly one slot moves, to it."""
    entered = 0
    for seed in range(4000):
        before = place(dict.fromkeys(range(4)), ADDRESSES[:20], seed)
        after = place(dict(before), ADDRESSES[:21], seed)
        moved = [s for s in before if before[s] != after[s]]
        if ADDRESSES[20] in after.values():
            entered += 1
            assert [after[s] for s in moved] == [ADDRESSES[20]]
        else:
            assert not moved
    assert 0.16 < entered / 4000 < 0.22, entered


@pytest.mark.parametrize(
    ("n", "k"), [(4, 10), (3, 7), (6, 6), (10, 7), (5, 50), (2, 3), (6, 8), (9, 10), (13, 8)]
)
def test_deterministic_subsetting_is_within_one_of_the_mean_at_any_fleet_size(
    n: int, k: int
) -> None:
    """fleet_index 0..C-1 for every fleet size C up to 150: every backend holds floor or
    ceil(C*N/K) connections, and a pool's slots are on distinct backends (N <= K), also far
    out (indexes from 10**9)."""
    addresses = ADDRESSES[:k]
    total: Counter[str] = Counter()
    for index in range(150):
        got = counts(n, addresses, seed=random.getrandbits(64), fleet_index=index)
        assert sum(got.values()) == n
        if n <= k:
            assert len(got) == n
        total.update(got)
        values = [total[a] for a in addresses]
        assert max(values) - min(values) <= 1, (index, values)
    for index in range(10**9, 10**9 + 60):  # computed from three rounds at most
        got = counts(n, addresses, seed=0, fleet_index=index)
        assert sum(got.values()) == n and (n > k or len(got) == n)


def test_deterministic_subsetting_ignores_the_seed_and_the_address_order() -> None:
    """Every process derives the same subset for an index, whatever its pool's seed and
    the order its resolver returned the addresses in."""
    shuffled = ADDRESSES[:9][::-1]
    for index in range(20):
        assert counts(4, ADDRESSES[:9], 1, index) == counts(4, shuffled, 99, index)


def test_the_writer_applies_the_same_function() -> None:
    """The spreader's first layout is ``place`` of the pool's seed (and fleet index)."""
    two = ",".join(ADDRESSES[:7])
    for fleet_index in (None, 3):
        config = grpc_pool.PoolConfig("ipv4:" + two, size=3, fleet_index=fleet_index)
        spreader = Spreader(config, "p", lambda command: None)
        effects = spreader.start(range(3))
        expected = place(dict.fromkeys(range(3)), ADDRESSES[:7], spreader.seed, fleet_index)
        assert dict(effects.moves) == expected


def test_fleet_simulation_new_backends_get_their_share() -> None:
    """1,000 simulated pools of 4 through 8 -> 16 -> 8 backends (one at a time, and at
    once): the new backends hold >= 90% of their fair share, one backend changed moves
    at most one slot per pool, with fleet_index every backend is within one of the mean
    at every step; the rule before issue 23 gave them nothing; raw round_robin connects
    every pool to every backend."""
    pool = simulate("pool", pools=1000, slots=4, k=8)
    fleet = simulate("pool, fleet_index", pools=1000, slots=4, k=8)
    sticky = simulate("before #23 (sticky)", pools=1000, slots=4, k=8)
    rr = simulate("raw round_robin", pools=1000, slots=4, k=8)
    for phase in ("out, one at a time", "out, at once"):
        assert pool.new_share(phase) >= 0.9
        assert fleet.new_share(phase) >= 0.99
        assert sticky.new_share(phase) == 0
        assert rr.per_backend[phase] == [1000] * 16
    assert max(pool.moved["out, one at a time"] + pool.moved["in, one at a time"]) == 1
    for phase, per_backend in fleet.per_backend.items():
        assert max(per_backend) - min(per_backend) <= 1, phase


@pytest.mark.parametrize(
    ("options", "allowed"),
    [
        ({"fleet_index": -1}, "an int 0.."),
        ({"fleet_index": True}, "an int 0.."),
        ({"fleet_index": "3"}, "an int 0.."),
        ({"fleet_index": 2, "spread": "off"}, "None when spread is 'off'"),
    ],
)
def test_a_bad_fleet_index_is_refused_at_construction(
    options: dict[str, object], allowed: str
) -> None:
    """fleet_index is checked when the config is built: the error names the field, the
    value and what is allowed; GRPC_POOL_FLEET_INDEX is read from the environment."""
    with pytest.raises(grpc_pool.InvalidConfig, match=f"fleet_index.*{allowed}"):
        grpc_pool.PoolConfig("svc.test:1", **options)  # type: ignore[arg-type]
    env = {"GRPC_POOL_TARGET": "svc.test:1", "GRPC_POOL_FLEET_INDEX": "7"}
    assert grpc_pool.PoolConfig.from_env(environ=env).fleet_index == 7
