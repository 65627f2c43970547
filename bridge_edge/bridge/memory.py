"""Each fit stage's peak memory in this process (RUN_DIR/memory/rank<r>.json; docs/scale.md).

Two numbers per stage, from Linux's /proc/self/status:

- ``peak_rss_bytes``: the kernel's resident-set high-water mark (VmHWM) over the stage, reset
  at its start by writing 5 to /proc/self/clear_refs (exact; where the reset is refused, the
  largest VmRSS sampled instead). It counts file pages the process has mapped, so reading a
  memory-mapped shard adds to it although the kernel may drop those pages at any time.
- ``peak_anon_bytes``: the largest RssAnon sampled every ``INTERVAL_S`` (and at the stage's
  start and end): memory only the process holds (heaps, tensors), which is what runs a machine
  out of memory. A spike shorter than the interval can be missed.

Without /proc (not Linux) both are None. No torch here.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path

INTERVAL_S = 0.05
# Windows per pass of the old model where it is only evaluated (its blocks and head after the
# bridge: bridge.compose.old_head_in_passes; the report's old-model probabilities): at 8 windows
# its per-sample head (openecg: ~10 MB a window) is a small buffer, full-sized on even the
# smallest corpus, so a stage's peak does not grow with the corpus (docs/scale.md). The old
# model gives each window the same numbers at any batch size (checked bit for bit).
EVAL_BATCH = 8
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def read_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process in bytes ({} without /proc)."""
    try:
        lines = _STATUS.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024  # kB
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel refuses (or there is no /proc)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


@dataclass
class StageMemory:
    peak_rss_bytes: int | None
    peak_anon_bytes: int | None
    peak_rss_method: str  # "VmHWM" (exact) | "sampled VmRSS" | "unavailable"

    def as_dict(self) -> dict:
        return asdict(self)


class PeakMemory:
    """``with PeakMemory() as m: ...`` then ``m.result``: the block's peak memory."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.result: StageMemory | None = None
        self._max = {"VmRSS": 0, "RssAnon": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        status = read_status()
        for key in self._max:
            self._max[key] = max(self._max[key], status.get(key, 0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._exact = reset_peak_rss()
        self._available = bool(read_status())
        self._sample()
        if self._available:
            self._thread = threading.Thread(target=self._loop, name="peak-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if not self._available:
            self.result = StageMemory(None, None, "unavailable")
        elif self._exact:
            self.result = StageMemory(read_status()["VmHWM"], self._max["RssAnon"], "VmHWM")
        else:
            self.result = StageMemory(self._max["VmRSS"], self._max["RssAnon"], "sampled VmRSS")
