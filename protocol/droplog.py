"""Dropped messages logged as counts: a flood of garbage costs no log volume."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from .errors import ProtocolError


class DropLog:
    """Dropped (unauthenticated) messages logged as counts, not one line each.

    The first drop is logged at once; later ones are summed per reason and logged at most
    once per `interval_s`, so a flood of garbage costs no log volume.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._pending: Counter[str] = Counter()
        self._last_reason = ""
        self._next_at = -float("inf")
        self.total = 0

    def record(self, source: str, exc: ProtocolError) -> None:
        self.total += 1
        self._pending[str(exc.code)] += 1
        self._last_reason = f"{source}: {exc}"[:500]
        self.flush_due()

    def flush_due(self) -> None:
        """Log the counts gathered since the last line, if one is due."""
        if not self._pending or self._clock() < self._next_at:
            return
        counts = ", ".join(f"{code} {n}" for code, n in self._pending.most_common())
        self.logger.warning("dropped %d message(s) that failed checks (%s); last from %s",
                            sum(self._pending.values()), counts, self._last_reason)
        self._pending.clear()
        self._next_at = self._clock() + self.interval_s
