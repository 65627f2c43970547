"""tegrastats: the Jetson fallback when hwmon cannot be read (coarser, needs the binary).

Rails print as ``NAME <now>mW/<avg>mW`` on JetPack 5/6 and ``NAME <now>mW/<avg>mW/<max>mW`` on
JetPack 7 (the first value is the instantaneous reading; the others are tegrastats' own running
statistics and are not used). Older releases print ``NAME <now>/<avg>`` without units
(``POM_5V_IN 4520/4680``). Real sample lines: tests/fixtures/tegrastats/.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

import numpy as np

from bridge_edge.bench.power.base import EnergyInterval, Unmeasured, trapezoid_joules
from bridge_edge.bench.power.rails import ModuleTotal, module_total

# NAME now[mW]/avg[mW][/max[mW]], followed by whitespace or the end (so "RAM 4722/7844MB" and
# "SWAP 0/3810MB (cached 0MB)" never match: their second number runs into "MB").
RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)")
NOT_RAILS = {"RAM", "SWAP", "IRAM"}


@dataclass(frozen=True)
class TegrastatsSample:
    rails_mw: dict[str, float]  # instantaneous mW per rail, NC channels included as printed
    total: ModuleTotal | None


def parse_line(line: str) -> TegrastatsSample:
    rails = {name: float(now) for name, now, _avg, _max in RAIL.findall(line) if name not in NOT_RAILS}
    return TegrastatsSample(rails_mw=rails, total=module_total(rails))


class TegrastatsMeter:
    """Runs ``tegrastats --interval <ms>`` and integrates the module total it prints."""

    source = "tegrastats"

    def __init__(self, binary: str, interval_ms: int = 100):
        self.binary = binary
        self.interval_ms = interval_ms
        self.scope = "Jetson module (tegrastats)"
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._t: list[float] = []
        self._w: list[float] = []

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            sample = parse_line(line)
            if sample.total is not None:
                self._t.append(time.perf_counter())
                self._w.append(sample.total.milliwatts / 1000.0)
                self.scope = f"Jetson module ({'+'.join(sample.total.rails)}, tegrastats)"

    def start(self) -> None:
        self._t, self._w = [], []
        cmd = [self.binary, "--interval", str(self.interval_ms)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, name="power-tegrastats", daemon=True)
        self._thread.start()

    def stop(self) -> EnergyInterval:
        assert self._proc is not None and self._thread is not None
        self._proc.terminate()
        self._proc.wait(timeout=5)
        self._thread.join(timeout=5)
        t, w = np.asarray(self._t), np.asarray(self._w)
        seconds = float(t[-1] - t[0]) if len(t) > 1 else 0.0
        return EnergyInterval(joules=trapezoid_joules(t, w), seconds=seconds, samples=len(t))


def probe(interval_ms: int = 100) -> TegrastatsMeter | Unmeasured:
    binary = shutil.which("tegrastats")
    if binary is None:
        return Unmeasured("tegrastats", "tegrastats not on PATH (not a Jetson)")
    try:
        out = subprocess.run(
            [binary, "--interval", "100"], capture_output=True, text=True, timeout=1.5, check=False
        )
        first = out.stdout
    except subprocess.TimeoutExpired as err:  # tegrastats runs until stopped: a timeout is normal
        first = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
    except OSError as err:
        return Unmeasured("tegrastats", f"cannot run {binary}: {err}")
    if not any(parse_line(line).total for line in first.splitlines()):
        return Unmeasured("tegrastats", "tegrastats printed no power rails (needs root on some images)")
    return TegrastatsMeter(binary, interval_ms)
