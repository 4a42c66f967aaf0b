"""Slot invariants: contiguous 0..n-1, count equals populated entries,
re-register replaces in place, unknown unregister is a no-op; also under
concurrent register/unregister from many threads through the real writer."""

from __future__ import annotations

import random
import threading
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from grpc_pool._channel.build import build_channel
from grpc_pool._contract.commands import Call, Lost, Register, Reply
from grpc_pool._writer.slots import SlotTable


class SlotTableMachine(RuleBasedStateMachine):
    """The table against a dict model, over random register/unregister sequences."""

    def __init__(self) -> None:
        super().__init__()
        self.table: SlotTable[int, str] = SlotTable()
        self.model: dict[int, str] = {}

    @rule(key=st.integers(0, 12), value=st.text(max_size=3))
    def register(self, key: int, value: str) -> None:
        size_before = len(self.table)
        index_before = self.table.index_of(key)
        index, old = self.table.register(key, value)
        if key in self.model:
            assert old == self.model[key]
            assert index == index_before  # replaced in place
            assert len(self.table) == size_before
        else:
            assert old is None and index == size_before  # appended at the end
        self.model[key] = value

    @rule(key=st.integers(0, 12))
    def unregister(self, key: int) -> None:
        size_before = len(self.table)
        removed = self.table.unregister(key)
        assert removed == self.model.pop(key, None)
        assert len(self.table) == size_before - (removed is not None)

    @invariant()
    def contiguous_and_consistent(self) -> None:
        self.table.check()
        snapshot = self.table.snapshot()
        assert len(snapshot) == len(self.model)
        assert sorted(snapshot) == sorted(self.model.values())
        for key, value in self.model.items():
            index = self.table.index_of(key)
            assert index is not None and snapshot[index] == value


TestSlotTable = SlotTableMachine.TestCase
TestSlotTable.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_concurrent_register_unregister_through_the_writer(
    make_pool: Any, dead_target: str
) -> None:
    """16 threads post Register/Lost for their own slot at once; the published
    snapshot ends up exactly the channels each thread last registered."""
    slots = 16
    pool = make_pool(
        dead_target, size=slots, retire_grace=0.0, backoff_initial=5.0, backoff_max=5.0
    )
    writer = pool._writer
    workers = pool._call(lambda: dict(writer._crew.by_slot))
    channels = {s: [build_channel(pool.config, None, s, "test") for _ in range(3)] for s in workers}
    final: dict[int, Any] = {}
    start = threading.Barrier(slots)

    def churn(slot: int) -> None:
        rng = random.Random(slot)
        worker = workers[slot]
        current = None
        start.wait(5)
        for _ in range(200):
            if current is not None and rng.random() < 0.4:
                writer.queue.put(Lost(worker, slot, current, "test", 0.0))
                current = None
            else:
                current = rng.choice(channels[slot])
                writer.queue.put(Register(worker, slot, current, 0.0))
        final[slot] = current

    threads = [threading.Thread(target=churn, args=(s,)) for s in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)

    def check() -> tuple[Any, ...]:
        writer._layout._table.check()
        return writer._layout._table.snapshot()

    snapshot = pool._call(check)
    expected = {id(c) for c in final.values() if c is not None}
    assert {id(c) for c in snapshot} == expected
    assert len(snapshot) == len(expected)  # no duplicates, count == populated
    assert pool._snapshot == snapshot  # what readers see is what the writer holds
    assert pool.status().current_size == len(expected)
    pool.close(grace=0)
    for group in channels.values():  # ours (never subscribed: no grpcio poller to wait for)
        for channel in group:
            channel._close_grpc()


def test_writer_survives_a_failing_command(make_pool: Any, dead_target: str) -> None:
    """An exception inside a command is logged and the writer keeps serving."""
    pool = make_pool(dead_target, size=1)

    def boom() -> None:
        raise RuntimeError("injected")

    reply = Reply()
    pool._writer.queue.put(Call(boom, reply))
    assert reply.wait(5) and isinstance(reply.error, RuntimeError)
    pool._writer.queue.put(object())  # an unknown command
    assert pool.scale_up(1) == 2  # still serving
    assert pool._writer.thread.is_alive()
