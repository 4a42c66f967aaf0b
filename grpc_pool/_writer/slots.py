"""The slot table: contiguous ready channels, as PoolState keeps them. Writer-only."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["SlotTable"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SlotTable(Generic[K, V]):
    """Entries live at indices 0..n-1 with no gaps.

    ``register`` appends a new key or replaces a known key's value in place;
    ``unregister`` moves the last entry into the freed index (O(1)); an unknown
    key is a no-op. Not thread-safe: only the writer thread touches it.
    """

    __slots__ = ("_index", "_keys", "_values")

    def __init__(self) -> None:
        self._keys: list[K] = []
        self._values: list[V] = []
        self._index: dict[K, int] = {}

    def register(self, key: K, value: V) -> tuple[int, V | None]:
        """Put ``value`` for ``key``; return its index and the value it replaced."""
        i = self._index.get(key)
        if i is None:
            i = len(self._values)
            self._index[key] = i
            self._keys.append(key)
            self._values.append(value)
            return i, None
        old = self._values[i]
        self._values[i] = value
        return i, old

    def unregister(self, key: K) -> V | None:
        """Remove ``key``; return its value, or None when it held no slot."""
        i = self._index.pop(key, None)
        if i is None:
            return None
        value = self._values[i]
        last_key = self._keys.pop()
        last_value = self._values.pop()
        if i < len(self._values):
            self._keys[i] = last_key
            self._values[i] = last_value
            self._index[last_key] = i
        return value

    def get(self, key: K) -> V | None:
        i = self._index.get(key)
        return None if i is None else self._values[i]

    def index_of(self, key: K) -> int | None:
        return self._index.get(key)

    def snapshot(self) -> tuple[V, ...]:
        return tuple(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def check(self) -> None:
        """Raise AssertionError unless the invariants hold (for tests)."""
        if not (len(self._keys) == len(self._values) == len(self._index)):
            raise AssertionError("slot table sizes differ")
        for i, key in enumerate(self._keys):
            if self._index[key] != i:
                raise AssertionError(f"key {key!r} at {i} indexed as {self._index[key]}")
