"""Pacing on an absolute schedule: item k is due at t0 + offset_k / speed, so sleep errors never add up.

``speed=0`` means as fast as possible (tests, benches). Clock and sleep are injectable so the
schedule itself can be tested over a long simulated span without waiting for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    def __init__(
        self,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        start_delay_s: float = 0.0,
    ):
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self.start_delay_s = start_delay_s  # the first item is due this long after the first call
        self._t0: float | None = None

    def wait_until(self, offset_s: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Block until `offset_s` (stream time since the first call) is due; returns early on stop()."""
        if self.speed == 0:
            return
        if self._t0 is None:
            self._t0 = self.clock() + self.start_delay_s - offset_s / self.speed
        due = self._t0 + offset_s / self.speed
        while not stop():
            remaining = due - self.clock()
            if remaining <= 0:
                return
            self.sleep(min(remaining, 0.1))  # wake up now and then so close() is honoured quickly

    def restart(self) -> None:
        self._t0 = None
