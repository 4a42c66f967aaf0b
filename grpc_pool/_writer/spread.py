"""Who places slots on backends: the writer-side state that applies the placement
(``placement.place``, a pure function), one warm move at a time. It returns moves as
data (``Effects.moves``, ``next_move``); the writer sends them. Writer thread only."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Mapping
from typing import Any

from .._config.config import PoolConfig
from .._config.targets import NEEDS_DNS_EXTRA, Plan, channel_config, plan, spread_off_reason
from .._contract.commands import Resolved
from .._contract.events import ResolvedEvent
from .._workers.resolver import Found, ResolverThread, default_resolve_ttl
from .layout import NOTHING, Effects
from .placement import place

__all__ = ["Spreader"]

logger = logging.getLogger(__name__)


def _say_why_off(config: PoolConfig, name: str) -> None:
    """Once per pool: WARNING when the pool cannot resolve a target it would spread (a
    ``dns://server/`` target without dnspython), DEBUG otherwise: spreading off by
    choice, nothing to spread, or a scheme grpcio resolves itself (``unix:``, ``xds:``;
    unknown schemes are refused at construction)."""
    reason = spread_off_reason(config)
    if reason is None:
        return
    cannot = reason == NEEDS_DNS_EXTRA
    logger.log(
        logging.WARNING if cannot else logging.DEBUG,
        "pool %s: not spreading %r over its backends: %s%s",
        name,
        config.target_label,
        reason,
        "; grpcio resolves it as given" if cannot else "",
    )


class Spreader:
    """The writer's spreading state: addresses, each slot's address, pending moves.

    Off (``enabled`` False) for ``spread="off"``, a list of targets or a target
    the pool cannot resolve: then every method does nothing and ``dial`` is None.
    A slot's first address is sent at once (``Effects.moves``); a later change is
    a move, handed out by ``next_move`` through the writer's refresh arbitration
    (one slot at a time, interleaved with max-age refreshes), and the worker
    swaps warm.
    """

    def __init__(self, config: PoolConfig, name: str, post: Callable[[object], None]) -> None:
        self._config = config
        self._name = name
        self._plan: Plan | None = plan(config)
        self.enabled = self._plan is not None
        self.addresses: tuple[str, ...] = ()
        self._resolved = False  # an answer (or a first failure) arrived: slots may connect
        self._assigned: dict[int, str | None] = {}  # each slot's address, moves included
        self._pending: dict[int, str | None] = {}  # moves not handed out yet
        self._sent: dict[int, str | None] = {}  # what each worker was told last
        self.seed = random.getrandbits(64)  # this pool's rendezvous ranking
        self.thread: ResolverThread | None = None  # Parkable, when it resolves
        p = self._plan
        if p is None:
            _say_why_off(config, name)
        elif p.static is None:
            user = config.resolver
            resolve: Callable[[str], Found] = default_resolve_ttl
            if user is not None:
                resolve = lambda target: (user(target), None)  # noqa: E731
            self.thread = ResolverThread(p.target, resolve, config.resolve_interval, post, name)

    @property
    def dial(self) -> Callable[[str | None], PoolConfig] | None:
        """For workers: the channel config of an address; None when spreading is off."""
        p = self._plan
        if p is None:
            return None
        config, authority = self._config, p.authority
        return lambda address: channel_config(config, address, authority)

    def start(self, slots: Collection[int]) -> Effects:
        """Before the first slot starts: static addresses now, else the resolver thread."""
        p = self._plan
        if p is not None and p.static is not None:
            return self.resolved(Resolved(p.static), slots)
        if self.thread is not None:
            self.thread.start()
        return NOTHING

    def poke(self) -> None:
        """A connection failed: maybe the backends changed."""
        if self.thread is not None:
            self.thread.poke()

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()

    def join(self, deadline: float) -> None:
        if self.thread is not None:
            self.thread.join(deadline)

    def resolved(self, command: Resolved, slots: Collection[int]) -> Effects:
        old = self.addresses
        if command.error is not None:
            kept = ", ".join(old) or f"the target {self._config.target_label!r} as given"
            logger.warning(
                "pool %s: resolving %r failed (%s); keeping %s",
                self._name,
                self._config.target_label,
                command.error,
                kept,
            )
            event = (
                ResolvedEvent,
                {"addresses": old, "added": (), "removed": (), "error": command.error},
            )
            effects = Effects(events=(event,))
            if not self._resolved:  # never resolved: connect to the target as given
                self._resolved = True
                effects += self.layout(slots)
            return effects
        new = command.addresses
        first = not self._resolved
        self._resolved = True
        if new == old and not first:
            return NOTHING
        added = tuple(a for a in new if a not in old)
        removed = tuple(a for a in old if a not in new)
        self.addresses = new
        logger.info(
            "pool %s: %r resolved to %s (added %s, removed %s)",
            self._name,
            self._config.target_label,
            ", ".join(new),
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
        )
        fields: dict[str, Any] = {"addresses": new, "added": added, "removed": removed}
        fields["error"] = None
        event = (ResolvedEvent, fields)
        return Effects(changed=True, events=(event,)) + self.layout(slots)

    def layout(self, slots: Collection[int]) -> Effects:
        """Place the slots on the addresses: new slots at once (moves), others pending."""
        if not self.enabled or not self._resolved:
            return NOTHING
        self._sent = {s: a for s, a in self._sent.items() if s in slots}
        current = {slot: self._assigned.get(slot) for slot in slots}
        target: Mapping[int, str | None]
        if self.addresses:
            target = place(current, self.addresses, self.seed, self._config.fleet_index)
        else:
            target = current
        self._assigned = dict(target)
        self._pending = {}
        now: list[tuple[int, str | None]] = []
        for slot, address in sorted(target.items()):
            if slot not in self._sent:
                self._sent[slot] = address  # its first address: nothing to swap
                now.append((slot, address))
            elif self._sent[slot] != address:
                self._pending[slot] = address
        return Effects(changed=bool(now), moves=tuple(now))

    def next_move(self, slots: Collection[int]) -> tuple[int, str | None] | None:
        """The next pending move (slot, address), to hand to its worker now; the
        worker holds the grant until its replacement is in (or failed)."""
        while self._pending:
            slot, address = self._pending.popitem()
            if slot in slots and self._sent.get(slot, address) != address:
                logger.info(
                    "pool %s slot %d: moving %s -> %s", self._name, slot, self._sent[slot], address
                )
                self._sent[slot] = address
                return slot, address
        return None
