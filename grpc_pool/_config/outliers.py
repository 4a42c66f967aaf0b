"""``OutlierEjection``: taking a backend whose calls fail with server-side errors
out of the pick (gRFC A50, Envoy's consecutive_5xx, Finagle's failure accrual)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from .validate import MAX_COUNT, _check_bool, _check_number, _invalid, check_seconds

__all__ = ["DEFAULT_EJECTION", "FAILURE_CODES", "NEUTRAL_CODES", "OutlierEjection"]

# What says "this backend is broken" (UNAVAILABLE only when the call reached it:
# a failed pick is the connection's business, the worker's). Everything else a
# server answers (NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED, ...) is the
# caller's own error and counts as an answer; CANCELLED proves nothing either way.
FAILURE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
    }
)
# Neither a failure nor an answer (unless deadline_exceeded makes it a failure).
NEUTRAL_CODES = frozenset({grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED})


def _count(name: str, value: object, low: int, high: int = MAX_COUNT) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(name, value, f"an int {low}..{high}")


@dataclass(frozen=True, slots=True)
class OutlierEjection:
    """Outlier ejection (``PoolConfig.outlier_ejection``; on by default, None is off).

    A backend is a target (an address when the pool spreads): all the slots on it
    leave the pick together, and come back together.

    consecutive_failures: failures in a row on a backend that eject it at once
        (Envoy's consecutive_5xx, Finagle's failure accrual). Default 5; 0 is off.
    interval: seconds between the statistical checks. Default 1.0.
    failure_percentage: eject a backend whose failed share of the interval's calls
        is at least this percentage (gRFC A50 failure_percentage_ejection).
        Default 85; 0 is off.
    success_rate_stdev: eject a backend whose success rate is below the mean of
        all backends' minus this many standard deviations (A50
        success_rate_ejection, 1.9 as its stdev_factor 1900). Default 1.9; 0 is off.
        It needs about 5 backends or more to ever eject one.
    minimum_hosts: backends with ``request_volume`` calls in the interval needed
        before either statistical check runs. Default 3.
    request_volume: calls in the interval a backend needs to be judged. Default 20.
    base_ejection_time: seconds an ejection lasts, times the backend's
        ejections in a row (A50's multiplier). Default 30.0.
    max_ejection_time: the longest ejection, seconds. Default 300.0.
    max_ejection_percent: never more than this percentage of the backends out at
        once (rounded down), and never the last one. Default 50.
    deadline_exceeded: also count DEADLINE_EXCEEDED as a failure. Default False
        (a deadline the caller chose too short is not the backend's fault).
    """

    consecutive_failures: int = 5
    interval: float = 1.0
    failure_percentage: int = 85
    success_rate_stdev: float = 1.9
    minimum_hosts: int = 3
    request_volume: int = 20
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 50
    deadline_exceeded: bool = False

    def __post_init__(self) -> None:
        _count("consecutive_failures", self.consecutive_failures, 0)
        check_seconds("interval", self.interval, allow_zero=False)
        _count("failure_percentage", self.failure_percentage, 0, 100)
        _check_number(
            "success_rate_stdev", self.success_rate_stdev, "0.0..100.0", lambda v: 0 <= v <= 100
        )
        _count("minimum_hosts", self.minimum_hosts, 1)
        _count("request_volume", self.request_volume, 1)
        check_seconds("base_ejection_time", self.base_ejection_time, allow_zero=False)
        check_seconds("max_ejection_time", self.max_ejection_time, allow_zero=False)
        if self.max_ejection_time < self.base_ejection_time:
            raise _invalid(
                "max_ejection_time",
                self.max_ejection_time,
                f">= base_ejection_time ({self.base_ejection_time})",
            )
        _count("max_ejection_percent", self.max_ejection_percent, 0, 100)
        _check_bool("deadline_exceeded", self.deadline_exceeded)

    @property
    def failure_codes(self) -> frozenset[grpc.StatusCode]:
        """The status codes counted as a backend's failure."""
        if self.deadline_exceeded:
            return FAILURE_CODES | {grpc.StatusCode.DEADLINE_EXCEEDED}
        return FAILURE_CODES

    @property
    def neutral_codes(self) -> frozenset[grpc.StatusCode]:
        """Codes that are neither a failure nor an answer."""
        return NEUTRAL_CODES - self.failure_codes


# PoolConfig's default: on.
DEFAULT_EJECTION = OutlierEjection()
