"""Row 7a and ``bench --fleet``: a simulated fleet of pools through a scale-out and
back (K -> 2K -> K backends, one at a time and all at once), placed by the very
function the writer applies (``_writer/placement.place``), beside reference
placements: gRFC A68's random_subsetting, raw round_robin (every pool on every
backend) and the rule before issue 23 (slots stay put unless their backend goes)."""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..._writer.placement import place
from .core import Row

__all__ = ["MODES", "FleetResult", "fleet_row", "print_fleet", "simulate"]

Layout = dict[int, str]  # one pool: slot -> address
# A placement: (pool index, its seed, slot -> address now, addresses) -> new layout.
Placer = Callable[[int, int, Mapping[int, str | None], Sequence[str]], Layout]


def _pool(i: int, seed: int, slots: Mapping[int, str | None], addresses: Sequence[str]) -> Layout:
    return place(slots, addresses, seed)


def _fleet(i: int, seed: int, slots: Mapping[int, str | None], addresses: Sequence[str]) -> Layout:
    return place(slots, addresses, seed, fleet_index=i)


def _a68(i: int, seed: int, slots: Mapping[int, str | None], addresses: Sequence[str]) -> Layout:
    """gRFC A68: sort by a hash of (seed, address), keep the first subset_size; the
    child policy (round_robin) holds one connection per address of the subset."""
    key = seed.to_bytes(8, "little")
    ranked = sorted(addresses, key=lambda a: _a68_hash(key, a))
    kept = ranked[: len(slots)]
    result = {s: a for s, a in slots.items() if a in kept}
    new = [a for a in kept if a not in result.values()]
    result.update(zip([s for s in sorted(slots) if s not in result], new, strict=False))
    return result


_A68_CACHE: dict[tuple[bytes, str], bytes] = {}


def _a68_hash(key: bytes, address: str) -> bytes:
    found = _A68_CACHE.get((key, address))
    if found is None:
        found = hashlib.blake2b(address.encode(), key=key, digest_size=8).digest()
        _A68_CACHE[(key, address)] = found
    return found


def _sticky(i: int, seed: int, slots: Mapping[int, str | None], addresses: Sequence[str]) -> Layout:
    """Before issue 23: slots stay on their backend unless it is gone or over its
    floor/ceil quota; the ceil quotas go to the most-served (a random rank among equals)."""
    held: dict[str, list[int]] = {a: [] for a in addresses}
    free: list[int] = []
    for slot in sorted(slots):
        address = slots[slot]
        held.get(address, free).append(slot)  # type: ignore[arg-type]
    base, extra = divmod(len(slots), len(held))
    rng = random.Random(seed)
    order = sorted(held, key=lambda a: (-len(held[a]), rng.random()))
    result: Layout = {}
    wanting: list[str] = []
    for rank, address in enumerate(order):
        quota = base + (rank < extra)
        result.update((s, address) for s in held[address][:quota])
        free += held[address][quota:]
        wanting += [address] * max(0, quota - len(held[address]))
    result.update(zip(sorted(free), wanting, strict=False))
    return result


def _round_robin(
    i: int, seed: int, slots: Mapping[int, str | None], addresses: Sequence[str]
) -> Layout:
    """Raw grpcio round_robin: one connection to every address, whatever the pool size."""
    return dict(enumerate(addresses))


# Column name -> placement, in table order.
MODES: dict[str, Placer] = {
    "pool": _pool,
    "pool, fleet_index": _fleet,
    "before #23 (sticky)": _sticky,
    "A68 random_subsetting": _a68,
    "raw round_robin": _round_robin,
}


@dataclass
class FleetResult:
    """What one placement did: per phase, the connections per backend and the moves."""

    mode: str
    pools: int
    slots: int
    k: int
    per_backend: dict[str, list[int]] = field(default_factory=dict)  # phase -> counts
    moved: dict[str, list[int]] = field(default_factory=dict)  # phase -> per pool per change

    def ratios(self, phase: str) -> tuple[float, float]:
        """(max/mean, min/mean) of the connections per backend at the end of ``phase``."""
        counts = self.per_backend[phase]
        mean = statistics.fmean(counts)
        return max(counts) / mean, min(counts) / mean

    def new_share(self, phase: str) -> float:
        """The new backends' connections / their fair share, at the end of ``phase``."""
        counts = self.per_backend[phase]
        new = sum(counts[self.k :])
        fair = sum(counts) * (len(counts) - self.k) / len(counts)
        return new / fair if fair else 0.0


def _addresses(n: int) -> list[str]:
    return [f"10.{i // 250}.{i % 250}.1:50051" for i in range(n)]


def simulate(mode: str, pools: int = 1000, slots: int = 4, k: int = 25) -> FleetResult:
    """``pools`` pools of ``slots`` through K -> 2K -> K, one backend at a time, then
    K -> 2K and back at once. Seeds from a fixed RNG: the same run every time."""
    placer = MODES[mode]
    rng = random.Random(23)
    seeds = [rng.getrandbits(64) for _ in range(pools)]
    result = FleetResult(mode, pools, slots, k)
    everything = _addresses(2 * k)
    layouts: list[Layout] = [dict.fromkeys(range(slots), None) for _ in range(pools)]  # type: ignore[misc]

    def change(addresses: Sequence[str], phase: str) -> None:
        moves = result.moved.setdefault(phase, [])
        for i in range(pools):
            old = layouts[i]
            new = placer(i, seeds[i], old, addresses)
            layouts[i] = new
            if phase != "start":
                before, after = set(old.items()), set(new.items())
                moves.append(max(len(before - after), len(after - before)))
        total = Counter(a for layout in layouts for a in layout.values())
        result.per_backend[phase] = [total[a] for a in everything[: len(addresses)]]

    change(everything[:k], "start")
    for n in range(k + 1, 2 * k + 1):
        change(everything[:n], "out, one at a time")
    for n in range(2 * k - 1, k - 1, -1):
        change(everything[:n], "in, one at a time")
    change(everything, "out, at once")
    change(everything[:k], "in, at once")
    return result


def _cells(results: Sequence[FleetResult]) -> list[tuple[str, list[str]]]:
    def ratio(r: FleetResult, phase: str) -> str:
        high, low = r.ratios(phase)
        return f"{high:.2f} / {low:.2f}"

    def moved(r: FleetResult, phase: str) -> str:
        moves = r.moved[phase]
        return f"{statistics.fmean(moves):.2f} / {max(moves)}"

    per_pool = [
        f"{r.slots}" if r.mode != "raw round_robin" else f"{r.k}..{2 * r.k}" for r in results
    ]
    return [
        ("connections per pool", per_pool),
        ("at K: max/mean / min/mean", [ratio(r, "start") for r in results]),
        ("K->2K one at a time: moved per pool per change (mean / max)",
         [moved(r, "out, one at a time") for r in results]),
        ("at 2K: new backends' share of their fair share",
         [f"{r.new_share('out, one at a time'):.0%}" for r in results]),
        ("at 2K: max/mean / min/mean", [ratio(r, "out, one at a time") for r in results]),
        ("2K->K one at a time: moved per pool per change (mean / max)",
         [moved(r, "in, one at a time") for r in results]),
        ("back at K: max/mean / min/mean", [ratio(r, "in, one at a time") for r in results]),
        ("K->2K at once: moved per pool (mean / max)",
         [moved(r, "out, at once") for r in results]),
        ("K->2K at once: new backends' share",
         [f"{r.new_share('out, at once'):.0%}" for r in results]),
        ("2K->K at once: moved per pool (mean / max)", [moved(r, "in, at once") for r in results]),
    ]  # fmt: skip


def fleet_table(results: Sequence[FleetResult]) -> str:
    r0 = results[0]
    head = f"{r0.pools} pools x {r0.slots} slots, K = {r0.k} -> {2 * r0.k} -> {r0.k} backends"
    lines = [f"| {head} | " + " | ".join(r.mode for r in results) + " |"]
    lines.append("| --- |" + " --- |" * len(results))
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in _cells(results)]
    return "\n".join(lines)


def to_json(results: Sequence[FleetResult]) -> dict[str, Any]:
    """The benchmark's own output, for ``benchmarks/chart.py``."""
    return {
        r.mode: {
            "pools": r.pools,
            "slots": r.slots,
            "k": r.k,
            "per_backend": r.per_backend,
            "moved": {p: statistics.fmean(m) for p, m in r.moved.items() if m},
        }
        for r in results
    }


def print_fleet(
    out: TextIO, pools: int = 1000, slots: int = 4, k: int = 25, json_path: str | None = None
) -> list[FleetResult]:
    """``bench --fleet``: the table for every placement (and the data as JSON)."""
    results = [simulate(mode, pools, slots, k) for mode in MODES]
    print("grpc_pool bench --fleet: a simulated fleet (placement: _writer/placement.py)", file=out)
    print(fleet_table(results), file=out)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(to_json(results), f, indent=1)
        print(f"(data written to {json_path})", file=out)
    return results


def fleet_row(quick: bool) -> Row:
    """7a: after K -> 2K one backend at a time, the new backends' share of the fleet's
    connections over their fair share (goal >= 0.9); baseline: the rule before #23."""
    pools = 200 if quick else 1000
    new = simulate("pool", pools=pools)
    old = simulate("before #23 (sticky)", pools=pools)
    ratio = new.new_share("out, one at a time")
    high, low = new.ratios("out, one at a time")
    return Row(
        "fleet.share",
        ratio,
        f"{ratio:.0%} of fair share, max/mean {high:.2f}, min/mean {low:.2f} ({pools} pools)",
        f"before #23: {old.new_share('out, one at a time'):.0%}",
        target=(">=", 0.9),
    )
