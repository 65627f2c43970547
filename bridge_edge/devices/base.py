"""The one source protocol and the URL scheme -> handler registry.

Every input is a URL (docs/sources.md). A handler module per scheme opens with its URL grammar and
registers itself in ``SCHEMES``; ``open_source(url)`` is the one place a backend is chosen.
Handlers import their heavy dependency (pyserial, bleak, pylsl, wfdb) lazily.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from bridge_edge.errors import SourceURLError

log = logging.getLogger(__name__)

# scheme -> module that defines `open(url: str) -> Source` and `GRAMMAR: str`
SCHEMES: dict[str, str] = {
    "serial": "bridge_edge.devices.serial_source",
    "ble": "bridge_edge.devices.ble",
    "replay": "bridge_edge.devices.replay",
    "sim": "bridge_edge.devices.sim",
    "loop": "bridge_edge.devices.loop",
    "lsl": "bridge_edge.devices.lsl",
}


@dataclass(frozen=True)
class Chunk:
    """A block of consecutive samples from one stream."""

    samples: np.ndarray  # (n, channels) float32, physical units
    t_host_ns: int  # time.monotonic_ns() at arrival of this chunk
    t_device_ns: np.ndarray | None = None  # (n,) int64 device time per sample, if the device gives one
    seq: int | None = None  # device sequence number of the chunk, if the device gives one
    gap_before: int = 0  # samples known missing right before this chunk

    @property
    def n(self) -> int:
        return int(self.samples.shape[0])


# Every event kind: what a source reports in SourceStats.events (and `record` writes to
# events.jsonl), then what the clock model and the streaming pipeline add to the same stream.
# SourceStats.event refuses any other; tests/unit/test_devices_sources.py checks every literal
# kind in devices/ and runtime/ is listed.
EVENT_KINDS = (
    "connect",
    "disconnect",
    "reconnect",
    "corrupt_frames",
    "lead_off",
    "clock_jump",
    "clock_reset",  # the sensor rebooted: device time (and seq) restarted; no phantom gap
    "rate_mismatch",
    "fallback",  # BLE: PMD lacks the measurement, streaming the Heart Rate Service instead
    "session_error",  # BLE: a session failed (e.g. a named control-point status); a retry follows
    "stop_failed",  # BLE: the stop command could not be delivered
    "gap",  # pipeline: samples known missing before a chunk
    "nonfinite",  # NaN/Inf samples, replaced (pipeline) or counted (record)
    "stale",  # pipeline: no samples from a stream for longer than its hop
    "low_sqi",  # pipeline: a window below the quality gate
    "source_error",  # pipeline: the source raised; the stream ends
    "end",  # pipeline: the source is exhausted
)


@dataclass
class SourceStats:
    """Everything lost or repaired is counted here and reported, never dropped silently."""

    samples: int = 0
    chunks: int = 0
    gaps: int = 0
    gap_samples: int = 0
    corrupt_frames: int = 0
    disconnects: int = 0
    reconnects: int = 0
    skipped_lines: int = 0  # text formats: banners and lines that are not samples
    lead_off: int = 0  # AD8232 `!` markers
    nonfinite: int = 0  # NaN/±inf values delivered (the pipeline turns them into gaps)
    events: list[dict] = field(default_factory=list)  # disconnect/reconnect/corrupt/clock events

    def count_chunk(self, chunk: Chunk) -> None:
        self.samples += chunk.n
        self.chunks += 1
        if chunk.samples.dtype.kind == "f":
            self.nonfinite += int(chunk.samples.size - np.count_nonzero(np.isfinite(chunk.samples)))
        if chunk.gap_before:
            self.gaps += 1
            self.gap_samples += chunk.gap_before

    def event(self, kind: str, **fields: Any) -> dict:
        """Append an event stamped with the host monotonic clock; returns it."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown source event kind {kind!r}; expected one of {EVENT_KINDS}")
        record = {"kind": kind, "t_host_ns": time.monotonic_ns(), **fields}
        self.events.append(record)
        log.debug("source event %s", record)
        return record


@dataclass(frozen=True)
class StreamInfo:
    """What a source declares about its stream before the first chunk."""

    name: str  # e.g. "polar-h10 ecg" or "sim ppg"
    fs: float  # nominal sampling rate (Hz), from the URL or device
    channels: tuple[str, ...]  # e.g. ("ppg",) or ("ecg", "ppg")
    units: tuple[str, ...]  # per channel, e.g. ("mV",) or ("a.u.",)
    # Physical size of one sensor step per channel (e.g. 1.0 µV for an H10); None = float data.
    # `record` picks the WFDB gain from it so the sensor's resolution is kept exactly.
    resolution: tuple[float, ...] | None = None
    # True for files and simulations: sample k is at (first arrival + k / fs), so a replay at any
    # speed keeps the file's time axis. False for live sensors: their clock is fitted to arrivals.
    sample_clock: bool = False
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # e.g. measured fs


class Source(Protocol):
    """A live or replayed stream. Iterating yields chunks until the stream ends or close()."""

    info: StreamInfo
    stats: SourceStats

    def __iter__(self) -> Iterator[Chunk]: ...

    def close(self) -> None: ...


def open_source(url: str) -> Source:
    """Open a source from its URL; unknown schemes are refused with the list of known ones."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise SourceURLError(
            f"unknown source URL scheme {scheme!r} in {url!r}; expected one of "
            + ", ".join(f"{s}://" for s in SCHEMES),
            url=url,
            grammar=sorted(SCHEMES),
        )
    module = importlib.import_module(SCHEMES[scheme])
    return module.open(url)
