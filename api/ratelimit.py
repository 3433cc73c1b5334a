"""Per-token limits on mutating requests, in process (each API process counts its own)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from sweep.errors import RateLimited


class RequestLimiter:
    """Counts requests per key against the limits of ``SWEEP_RATE_LIMIT`` (e.g. 120/minute)."""

    def __init__(self, rate: str) -> None:
        off = rate.strip().lower() in ("", "off")
        self._items: list[RateLimitItem] = [] if off else parse_many(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, key: str) -> None:
        """Count one request for ``key``; RateLimited, with seconds to wait, when over a limit."""
        for item in self._items:
            if not self._limiter.hit(item, key):
                reset_at, _ = self._limiter.get_window_stats(item, key)
                wait = max(1, math.ceil(reset_at - time.time()))
                raise RateLimited(
                    f"rate limit of {item} reached for this token; retry in {wait} s",
                    retry_after=wait,
                )
