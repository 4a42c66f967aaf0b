"""Outlier ejection (``PoolConfig.outlier_ejection``): which backends leave the pick.

``decide`` is the rule, a pure function of each backend's figures and the records
so far (testable without threads). ``Ejector`` is the writer's side: it reads the
counts the readers keep on each channel (``RpcCounter.answered/failed/failing``),
calls ``decide`` on every tick (failures in a row) and every ``interval`` (the
statistics), and says which channels the published state leaves out. A backend is
a channel's target (an address when the pool spreads). Writer thread only.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .._channel.pooled import PooledChannel
from .._config.config import PoolConfig
from .._config.outliers import OutlierEjection
from .._contract.events import BackendEjectedEvent, BackendUnejectedEvent
from .._contract.state import Ejection
from .layout import NOTHING, Effects

__all__ = ["Ejector", "Sample", "decide", "ejection_limit"]

logger = logging.getLogger(__name__)

# Seconds between the statistical checks while no call ends (an idle pool): its
# writer wakes this rarely instead of every ``interval``; the first check after
# calls resume judges everything since the last one.
IDLE_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One backend's figures: calls answered and failed in the interval (0 and 0
    between intervals), and failures in a row now."""

    backend: str
    answered: int = 0
    failed: int = 0
    failing: int = 0


def ejection_limit(backends: int, percent: int) -> int:
    """Most backends out at once: ``percent`` of them rounded down, never all."""
    return max(0, min(backends * percent // 100, backends - 1))


def decide(
    policy: OutlierEjection,
    samples: Sequence[Sample],
    records: Mapping[str, Ejection],
    now: float,
    statistical: bool,
) -> tuple[dict[str, Ejection], list[tuple[Ejection, str]]]:
    """The records after this check, and the changes as (record, reason).

    samples: every backend in rotation or ejected. statistical: the interval is
    over (judge its calls); otherwise only failures in a row and expiries count.
    """
    result = dict(records)
    changes: list[tuple[Ejection, str]] = []
    for backend, record in records.items():
        if record.ejected and record.until is not None and record.until <= now:
            record = replace(record, ejected=False, until=None)
            result[backend] = record
            changes.append((record, f"ejection of {record.ejected_for:g} s over"))
    candidates: list[tuple[float, str, str]] = []  # (badness, backend, reason)
    for sample in samples:
        known = result.get(sample.backend)
        if known is not None and known.ejected:
            continue
        if statistical and known is not None and known.multiplier and not sample.failed:
            # an interval without failure earns one step back (A50's multiplier decay)
            result[sample.backend] = replace(known, multiplier=known.multiplier - 1)
        streak = policy.consecutive_failures
        if streak and sample.failing >= streak:
            reason = f"{sample.failing} failures in a row (consecutive_failures {streak})"
            candidates.append((2.0, sample.backend, reason))
    if statistical:
        candidates += _statistical(policy, samples, result)
    backends = {s.backend for s in samples} | {b for b, r in result.items() if r.ejected}
    limit = ejection_limit(len(backends), policy.max_ejection_percent)
    out = sum(1 for r in result.values() if r.ejected)
    seen: set[str] = set()
    for _, backend, reason in sorted(candidates, reverse=True):
        if backend in seen or out >= limit:
            continue
        seen.add(backend)
        old = result.get(backend) or Ejection(backend)
        multiplier = old.multiplier + 1
        duration = min(policy.base_ejection_time * multiplier, policy.max_ejection_time)
        record = Ejection(backend, True, old.ejections + 1, multiplier, now + duration, duration)
        result[backend] = record
        changes.append((record, reason))
        out += 1
    return result, changes


def _statistical(
    policy: OutlierEjection, samples: Sequence[Sample], records: Mapping[str, Ejection]
) -> list[tuple[float, str, str]]:
    """A50's two checks over the backends with enough calls in the interval."""
    judged = [
        s
        for s in samples
        if s.answered + s.failed >= policy.request_volume
        and not (records.get(s.backend) or Ejection(s.backend)).ejected
    ]
    if len(judged) < policy.minimum_hosts:
        return []
    found: list[tuple[float, str, str]] = []
    threshold = policy.failure_percentage
    if threshold:
        for s in judged:
            share = 100.0 * s.failed / (s.answered + s.failed)
            if share >= threshold:
                reason = (
                    f"{share:.0f}% of {s.answered + s.failed} calls failed in {policy.interval:g} s"
                    f" (failure_percentage {threshold})"
                )
                found.append((1.0 + share / 1000, s.backend, reason))
    factor = policy.success_rate_stdev
    if factor:
        rates = [s.answered / (s.answered + s.failed) for s in judged]
        mean, stdev = statistics.fmean(rates), statistics.pstdev(rates)
        floor = mean - stdev * factor
        for s, rate in zip(judged, rates, strict=True):
            if rate < floor:
                reason = (
                    f"success rate {rate:.0%} below {floor:.0%} (mean {mean:.0%}, stdev"
                    f" {stdev:.0%}, success_rate_stdev {factor:g})"
                )
                found.append((1.0 + (1 - rate) / 1000, s.backend, reason))
    return found


def _quiet(samples: Iterable[Sample], records: Iterable[Ejection]) -> bool:
    """No call ended in the interval and no backend is out or on a multiplier."""
    return not any(s.answered or s.failed for s in samples) and not any(
        r.ejected or r.multiplier for r in records
    )


class Ejector:
    """The writer's outlier ejection: counts read, ``decide`` called, what to leave out."""

    def __init__(self, config: PoolConfig, name: str, wake: Callable[[], None]) -> None:
        # Off without counts (track_in_flight=False): nothing to judge by.
        policy = config.outlier_ejection if config.track_in_flight else None
        self._policy = policy
        self._name = name
        self._wake = wake
        self._pending = False  # one wake queued at most
        self.records: dict[str, Ejection] = {}
        self._seen: dict[str, tuple[int, int]] = {}  # channel id -> (answered, failed)
        self._skip: dict[str, int] = {}  # channel id -> failures in a row already judged
        self._next = time.monotonic() + (policy.interval if policy else 0.0)

    def deadlines(self) -> list[float]:
        if self._policy is None:
            return []
        ends = [r.until for r in self.records.values() if r.until is not None]
        return [self._next, *ends]

    def kept(self, channels: tuple[PooledChannel, ...]) -> tuple[PooledChannel, ...]:
        """The channels the pick may use: none on an ejected backend, unless no
        other is left (better an ejected backend than none)."""
        out = {b for b, r in self.records.items() if r.ejected}
        if not out:
            return channels
        kept = tuple(c for c in channels if c.target not in out)
        return kept or channels

    def published(self) -> tuple[Ejection, ...]:
        return tuple(self.records[b] for b in sorted(self.records))

    def _alarm(self) -> None:
        """A reader's call failed again in a row (its thread): wake the writer once."""
        if not self._pending:
            self._pending = True
            self._wake()

    def tick(self, channels: Sequence[PooledChannel]) -> Effects:
        policy = self._policy
        if policy is None:
            return NOTHING
        self._pending = False
        now = time.monotonic()
        statistical = now >= self._next
        if statistical:
            self._next = now + policy.interval
        samples = self._samples(channels, statistical)
        records, changes = decide(policy, list(samples.values()), self.records, now, statistical)
        changed = records != self.records
        self.records = records
        if statistical and (len(samples) < 2 or _quiet(samples.values(), records.values())):
            # Nothing to judge and nothing to decay, or one backend (never ejected):
            # the writer sleeps (a failure streak still wakes it through on_failing).
            self._next = now + max(policy.interval, IDLE_INTERVAL)
        if not changes:
            return Effects(changed=changed)
        events: list[tuple[Any, dict[str, Any]]] = []
        for record, reason in changes:
            # What was judged is not judged again: the run at the ejection, and the
            # calls that failed while it was out (they were in flight before it).
            for channel in channels:
                if channel.target == record.backend and channel._counter is not None:
                    self._skip[channel.channel_id] = channel._counter.failing
            events.append(self._report(record, reason, samples.get(record.backend)))
        return Effects(changed=True, events=tuple(events))

    def _samples(self, channels: Sequence[PooledChannel], statistical: bool) -> dict[str, Sample]:
        found: dict[str, list[int]] = {}
        seen: dict[str, tuple[int, int]] = {}
        for channel in channels:
            counter = channel._counter
            if counter is None:
                continue
            if counter.on_failing is None:
                counter.on_failing = self._alarm
            cid = channel.channel_id
            answered, failed, failing = counter.answered, counter.failed, counter.failing
            skip = self._skip.get(cid, 0)
            if failing < skip:  # an answer reset it since
                self._skip.pop(cid, None)
                skip = 0
            figures = found.setdefault(channel.target, [0, 0, 0])
            figures[2] += failing - skip
            if statistical:
                last = self._seen.get(cid, (0, 0))
                figures[0] += answered - last[0]
                figures[1] += failed - last[1]
                seen[cid] = (answered, failed)
        if statistical:
            self._seen = seen
        return {b: Sample(b, *f) for b, f in found.items()}

    def _report(
        self, record: Ejection, reason: str, sample: Sample | None
    ) -> tuple[Any, dict[str, Any]]:
        backend = record.backend
        if record.ejected:
            logger.warning(
                "pool %s: backend %s ejected for %g s (ejection %d): %s",
                self._name,
                backend,
                record.ejected_for,
                record.ejections,
                reason,
            )
            fields = {
                "backend": backend,
                "reason": reason,
                "duration": record.ejected_for,
                "ejections": record.ejections,
                "answered": sample.answered if sample else 0,
                "failed": sample.failed if sample else 0,
            }
            return BackendEjectedEvent, fields
        logger.warning("pool %s: backend %s back in the pick: %s", self._name, backend, reason)
        return BackendUnejectedEvent, {"backend": backend, "reason": reason}
