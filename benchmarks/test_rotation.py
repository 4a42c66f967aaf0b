"""5f. A backend's graceful stop (GOAWAY) to the last RPC picked onto its pooled
channels: the pool against the same pool with the old rotation rule (a
reconnecting channel stayed in rotation), in the same run
(grpc_pool.cli.bench.rotation, shared with ``python -m grpc_pool bench``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from grpc_pool.cli.bench import core, rotation

from .conftest import SETTINGS

Report = Callable[[list[core.Row]], None]


@pytest.mark.benchmark(min_rounds=1)
def test_stop_to_last_pick(benchmark: Any, report: Report) -> None:
    """The window after a backend's graceful stop in which RPCs are still picked
    onto its channels: the pool against the old rotation rule."""
    report([rotation.rotation_row(SETTINGS)])
    benchmark.pedantic(rotation.stop_window, rounds=1, iterations=1)
