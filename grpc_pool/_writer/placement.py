"""Where a pool's slots go: ONE pure function of (each slot's address now, the
addresses, a seed[, the pool's index in its fleet]). The writer's spreader applies
its answer; the fleet simulation (``python -m grpc_pool bench --fleet``) calls the
very same function for thousands of pools. No state, no I/O, no clock.

- Random subsetting (default), gRFC A68's rendezvous hashing: the pool ranks the
  addresses by a hash of (its seed, the address). With N slots and K addresses
  every address gets floor(N/K) slots and the first N mod K of the ranking one
  more (N < K: the top N, one each). One address added or removed changes the
  top N by at most one, so one slot moves (more only where floor/ceil needs it),
  and a new address enters a pool's subset with probability N/K: across a fleet
  it gets its fair share, whatever the pools held before.
- Deterministic subsetting (``fleet_index``, the Google SRE book's): the sorted
  addresses, shuffled once per round with a seed every process knows, laid end to
  end; pool i takes the i-th slice of N. Any fleet of pools 0..C-1 then puts
  floor or ceil(C*N/K) connections on every address: within one of the mean.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import lru_cache

__all__ = ["counts", "place", "rank", "score"]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment: separates the rounds' seeds


@lru_cache(maxsize=8192)
def _address_hash(address: str) -> int:
    """A stable 64-bit hash of an address (the same in every process, unlike hash())."""
    return int.from_bytes(hashlib.blake2b(address.encode(), digest_size=8).digest(), "little")


def score(seed: int, address: str) -> int:
    """Rendezvous score of ``address`` for ``seed``: splitmix64's finalizer over the
    address's stable hash mixed with the seed (cheap, and uniform per seed)."""
    x = (_address_hash(address) ^ seed) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def rank(seed: int, addresses: Sequence[str]) -> list[str]:
    """The addresses (deduplicated) by descending score: the pool's preference order."""
    return sorted(dict.fromkeys(addresses), key=lambda a: (-score(seed, a), a))


def counts(
    n: int, addresses: Sequence[str], seed: int, fleet_index: int | None = None
) -> dict[str, int]:
    """How many of ``n`` slots each address gets (addresses with 0 left out)."""
    ranked = rank(seed, addresses)
    k = len(ranked)
    if k == 0:
        raise ValueError("no address to place slots on")
    base, extra = divmod(n, k)
    if fleet_index is None:
        chosen = ranked[:extra]
    else:
        chosen = _slice(tuple(sorted(ranked)), extra, fleet_index)
    result = dict.fromkeys(ranked, base) if base else {}
    for address in chosen:
        result[address] = result.get(address, 0) + 1
    return result


def place(
    slots: Mapping[int, str | None],
    addresses: Sequence[str],
    seed: int,
    fleet_index: int | None = None,
) -> dict[int, str]:
    """Each slot's address: how many go where is ``counts`` (a function of the
    addresses, the number of slots, the seed and the fleet index only, never of where
    the slots are now); which slot goes where keeps as many slots in place as that
    allows (slots: each slot's current address; None or a gone one: to place).

    seed: the pool's random seed (random subsetting). fleet_index: the pool's index
    in its fleet (0, 1, ...): deterministic subsetting; the seed is then not used,
    every process derives the same shuffles.
    """
    want = counts(len(slots), addresses, seed, fleet_index)
    result: dict[int, str] = {}
    free: list[int] = []
    left = dict(want)
    for slot in sorted(slots):
        address = slots[slot]
        if address is not None and left.get(address, 0) > 0:
            result[slot] = address
            left[address] -= 1
        else:
            free.append(slot)
    wanting = [a for a in want for _ in range(left[a])]  # in ranking order
    result.update(zip(free, wanting, strict=True))
    return result


# -- deterministic subsetting --------------------------------------------------------


def _slice(addresses: tuple[str, ...], m: int, index: int) -> list[str]:
    """Pool ``index``'s m addresses: positions [index*m, index*m + m) of the rounds laid
    end to end; distinct (m < K). Computed from at most three rounds, whatever the index.

    A pool taking more than about half a round takes the complement of a slice of
    K - m instead: balanced exclusions are balanced inclusions, and the rounds' fix-up
    below needs K >= 2m - 1."""
    if m == 0:
        return []
    if index < 0:
        raise ValueError(f"fleet_index must be >= 0, got {index}")
    k = len(addresses)
    if 2 * m - 1 > k:
        excluded = set(_slice(addresses, k - m, index))
        return [a for a in addresses if a not in excluded]
    r, offset = divmod(index * m, k)
    taken = _round(addresses, m, r)[offset : offset + m]
    if len(taken) < m:
        taken += _round(addresses, m, r + 1)[: m - len(taken)]
    return taken


def _round(addresses: tuple[str, ...], m: int, r: int) -> list[str]:
    """Round r: the addresses ranked with the round's seed. Where a slice of m crosses
    into it (holding ``held`` addresses of round r - 1's tail), its head takes the first
    addresses, in its order, that the slice does not hold yet, found before its own
    tail; its tail is never reordered, so round r - 1's tail is its plain ranking and
    no round depends on more than the one before it."""
    k = len(addresses)
    order = rank((r * _GOLDEN) & _MASK, addresses)
    held = (r * k) % m
    if held == 0:
        return order
    ahead = ((r + 1) * k) % m  # the next crossing slice's part of this round's tail
    free, tail = order[: k - ahead], order[k - ahead :]
    previous = rank(((r - 1) * _GOLDEN) & _MASK, addresses)
    holding = set(previous[k - held :])
    head = [a for a in free if a not in holding][: m - held]
    chosen = set(head)
    return head + [a for a in free if a not in chosen] + tail
