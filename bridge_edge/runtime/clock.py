"""Map a stream's sample clock onto host monotonic time, online.

Each chunk gives one observation: the clock value of its last sample ``x`` (device time in ns,
or, for streams without device time, ``sample_index * 1e9 / fs_nominal``) and its host arrival
time ``y`` (``time.monotonic_ns()``). A least-squares line ``y = offset + (1 + drift) * x`` over
a sliding window of recent observations gives every sample its fitted time ``t_est``; the
residual standard deviation is reported as jitter. Arrival delays only add noise, so the fit
never re-stamps samples with arrival or wall time.

A device clock that jumps is detected as an observation far off the line or a clock going
backwards: the fit is re-anchored at the new observation and an event is returned to the
caller. Going backwards is a sensor reboot (a Polar H10 resetting to 2019-01-01, a framed
sensor's counter restarting at 0): ``clock_reset``; a forward jump off the line: ``clock_jump``.
Either way no time is invented: the new epoch is mapped onto the arrivals it comes with. For host-stamped streams
the fitted slope gives the true sampling rate; a mismatch with the nominal rate beyond
``fs_tolerance`` is reported once as a ``rate_mismatch`` event with numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClockStats:
    offset_ns: float
    drift_ppm: float
    jitter_ms: float  # residual std of arrival times around the fitted line
    observations: int
    jumps: int
    resets: int  # jumps backwards (sensor reboots)
    fs_estimated: float | None  # host-stamped streams: rate implied by the fit


class ClockMapper:
    def __init__(
        self,
        fs_nominal: float,
        device_clock: bool,
        window: int = 512,
        jump_threshold_s: float = 2.0,
        fs_tolerance: float = 0.01,
    ) -> None:
        self.fs_nominal = float(fs_nominal)
        self.device_clock = device_clock
        self.jump_threshold_ns = jump_threshold_s * 1e9
        self.fs_tolerance = fs_tolerance
        self.window = window
        # observations in seconds relative to the anchor, with running least-squares sums
        self._x: deque[float] = deque()
        self._y: deque[float] = deque()
        self._sums = [0.0, 0.0, 0.0, 0.0]  # sum x, sum y, sum xx, sum xy (Python floats: cheap)
        self._updates = 0
        self._x0 = 0.0  # anchor (ns) keeps the numbers small
        self._y0 = 0.0
        self._last_x_ns = 0.0
        self._slope = 1.0
        self._intercept = 0.0  # seconds
        self.jumps = 0
        self.resets = 0
        self._fs_warned = False

    def observe(self, x_ns: float, host_ns: int) -> list[dict]:
        """Add one (clock, arrival) observation; returns events (clock_jump, clock_reset, rate_mismatch)."""
        events: list[dict] = []
        if self._x:
            predicted = self._predict_ns(x_ns)
            went_back = x_ns < self._last_x_ns
            if went_back or abs(host_ns - predicted) > self.jump_threshold_ns:
                last_y_ns = self._y0 + self._y[-1] * 1e9
                events.append(
                    {
                        "kind": "clock_reset" if went_back else "clock_jump",
                        "jump_s": (x_ns - self._last_x_ns - (host_ns - last_y_ns)) / 1e9,
                        "backwards": bool(went_back),
                    }
                )
                self.jumps += 1
                self.resets += int(went_back)
                self._x.clear()
                self._y.clear()
        if not self._x:  # (re-)anchor at this observation
            self._x0, self._y0 = float(x_ns), float(host_ns)
            self._sums = [0.0, 0.0, 0.0, 0.0]
        self._add((x_ns - self._x0) / 1e9, (host_ns - self._y0) / 1e9)
        self._last_x_ns = float(x_ns)
        self._fit()
        events.extend(self._check_rate())
        return events

    def _add(self, x: float, y: float) -> None:
        self._x.append(x)
        self._y.append(y)
        s = self._sums
        s[0] += x
        s[1] += y
        s[2] += x * x
        s[3] += x * y
        if len(self._x) > self.window:
            ox, oy = self._x.popleft(), self._y.popleft()
            s[0] -= ox
            s[1] -= oy
            s[2] -= ox * ox
            s[3] -= ox * oy
        self._updates += 1
        if self._updates % 1024 == 0:  # recompute now and then: no slow rounding creep
            xa, ya = np.asarray(self._x), np.asarray(self._y)
            self._sums = [float(xa.sum()), float(ya.sum()), float((xa * xa).sum()), float((xa * ya).sum())]

    def _fit(self) -> None:
        n = len(self._x)
        sx, sy, sxx, sxy = self._sums
        var_x = sxx - sx * sx / n
        if n >= 8 and var_x > 1e-9 * n:
            slope = (sxy - sx * sy / n) / var_x
            intercept = (sy - slope * sx) / n
        else:  # too few points for a drift estimate: offset only, nominal rate
            slope, intercept = 1.0, (sy - sx) / n
        self._slope, self._intercept = float(slope), float(intercept)

    def _predict_ns(self, x_ns: float) -> float:
        return self._y0 + 1e9 * self._intercept + self._slope * (x_ns - self._x0)

    def map(self, x_ns: np.ndarray) -> np.ndarray:
        """Fitted host time (int64 ns) for clock values ``x_ns``."""
        x = np.asarray(x_ns, dtype=np.float64) - self._x0
        return (self._y0 + 1e9 * self._intercept + self._slope * x).astype(np.int64)

    def jitter_ms(self) -> float:
        """Residual std of the observations around the fitted line (computed on demand)."""
        if len(self._x) < 3:
            return 0.0
        x, y = np.asarray(self._x), np.asarray(self._y)
        return float(np.std(y - (self._intercept + self._slope * x)) * 1e3)

    def _check_rate(self) -> list[dict]:
        if self.device_clock or self._fs_warned or len(self._x) < 64:
            return []
        fs_est = self.fs_nominal / self._slope
        if abs(fs_est / self.fs_nominal - 1) > self.fs_tolerance:
            self._fs_warned = True
            return [{"kind": "rate_mismatch", "fs_nominal": self.fs_nominal, "fs_estimated": fs_est}]
        return []

    def stats(self) -> ClockStats:
        return ClockStats(
            offset_ns=self._y0 + 1e9 * self._intercept - self._slope * self._x0,
            drift_ppm=(self._slope - 1.0) * 1e6,
            jitter_ms=self.jitter_ms(),
            observations=len(self._x),
            jumps=self.jumps,
            resets=self.resets,
            fs_estimated=None if self.device_clock else self.fs_nominal / self._slope,
        )
