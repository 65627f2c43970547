"""One interface for every energy source: start, run the workload, stop -> joules.

Two kinds of hardware sit behind it:
- *counters* (Intel RAPL ``energy_uj``, NVML total energy in mJ) are read at start and stop and
  differenced (with wrap-around where the counter wraps);
- *power gauges* (Jetson INA3221 hwmon, tegrastats) give watts; ``IntegratingMeter`` samples
  them on a thread and integrates P dt with the trapezoid rule.

A source that cannot be read is never a meter reading 0 W: ``probe()`` functions return
``Unmeasured(source, reason)`` instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bridge_edge.bench.results import Unmeasured

__all__ = ["EnergyInterval", "EnergyMeter", "IntegratingMeter", "Unmeasured", "trapezoid_joules"]


@dataclass(frozen=True)
class EnergyInterval:
    joules: float
    seconds: float
    samples: int  # counter reads or power samples behind the number

    @property
    def mean_watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else float("nan")


class EnergyMeter(Protocol):
    source: str  # "rapl", "nvml", "ina3221", "tegrastats"
    scope: str  # what the number covers, e.g. "CPU package(s)", "Jetson module input (VDD_IN)"

    def start(self) -> None: ...

    def stop(self) -> EnergyInterval: ...


def trapezoid_joules(t_s: np.ndarray, watts: np.ndarray) -> float:
    if len(t_s) < 2:
        return float("nan")
    return float(np.sum(0.5 * (watts[1:] + watts[:-1]) * np.diff(t_s)))


class IntegratingMeter:
    """Turns a ``read_watts()`` gauge into an energy meter by sampling it on a thread."""

    def __init__(self, source: str, scope: str, read_watts: Callable[[], float], period_s: float = 0.01):
        self.source = source
        self.scope = scope
        self._read_watts = read_watts
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t: list[float] = []
        self._w: list[float] = []

    def _loop(self) -> None:
        next_t = time.perf_counter()
        while True:
            self._t.append(time.perf_counter())
            self._w.append(self._read_watts())
            if self._stop.is_set():
                return
            next_t += self._period_s  # absolute schedule: no drift from accumulated sleeps
            self._stop.wait(max(0.0, next_t - time.perf_counter()))

    def start(self) -> None:
        self._t, self._w = [], []
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"power-{self.source}", daemon=True)
        self._thread.start()

    def stop(self) -> EnergyInterval:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        t, w = np.asarray(self._t), np.asarray(self._w)
        seconds = float(t[-1] - t[0]) if len(t) > 1 else 0.0
        return EnergyInterval(joules=trapezoid_joules(t, w), seconds=seconds, samples=len(t))
