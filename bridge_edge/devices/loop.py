"""loop:// — an in-memory source for tests: another thread pushes chunks, the consumer iterates.

Grammar::

    loop://[<name>]?fs=<Hz>[&channels=<name,...>][&units=<unit,...>][&resolution=<step,...>]

``push(samples, ...)`` stamps host time and queues a chunk; ``end()`` finishes the stream.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import numpy as np

from bridge_edge.devices.base import Chunk, SourceStats, StreamInfo
from bridge_edge.devices.urls import SourceURL

GRAMMAR = "loop://[<name>]?fs=<Hz>[&channels=<name,...>][&units=<unit,...>][&resolution=<step,...>]"
OPTIONS = ("fs", "channels", "units", "resolution")
_END = object()


class LoopSource:
    def __init__(self, info: StreamInfo):
        self.info = info
        self.stats = SourceStats()
        self._queue: queue.Queue = queue.Queue()
        self._closed = False

    def push(
        self,
        samples: np.ndarray,
        *,
        t_device_ns: np.ndarray | None = None,
        seq: int | None = None,
        gap_before: int = 0,
    ) -> Chunk:
        samples = np.asarray(samples, np.float32).reshape(len(samples), len(self.info.channels))
        chunk = Chunk(samples, time.monotonic_ns(), t_device_ns, seq, gap_before)
        self._queue.put(chunk)
        return chunk

    def event(self, kind: str, **fields) -> None:
        self.stats.event(kind, **fields)

    def end(self) -> None:
        self._queue.put(_END)

    def __iter__(self) -> Iterator[Chunk]:
        while not self._closed:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            self.stats.count_chunk(item)
            yield item

    def close(self) -> None:
        self._closed = True


def open(url: str) -> LoopSource:
    parsed = SourceURL.parse(url, "loop", GRAMMAR, OPTIONS)
    fs = parsed.positive("fs", None)
    if fs is None:
        raise parsed.fail("missing fs=")
    channels = tuple(parsed.query.get("channels", "x").split(","))
    units = tuple(parsed.query.get("units", ",".join(["a.u."] * len(channels))).split(","))
    resolution = parsed.get("resolution", lambda v: tuple(float(x) for x in v.split(",")), None)
    if len(units) != len(channels) or (resolution is not None and len(resolution) != len(channels)):
        raise parsed.fail("units and resolution need one entry per channel")
    return LoopSource(
        StreamInfo(f"loop {parsed.target or 'memory'}", fs, channels, units, resolution=resolution)
    )
