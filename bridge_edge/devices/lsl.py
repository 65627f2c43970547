"""lsl:// — a Lab Streaming Layer stream, found by name (OpenBCI, BrainFlow, Muse/Polar bridges …).

Grammar::

    lsl://<stream name>?[type=<LSL type>][&channels=<name,...>][&timeout=<s>][&watchdog=<s>]
        [&chunk=<s>][&gap=<s>]

The stream is resolved by name (and ``type`` when given) within ``timeout`` seconds (default
10). Sample rate, channel names and units come from the stream info (``desc/channels/channel``
``label``/``unit``; unnamed channels are ``ch<i>``); ``channels`` picks a subset by name.
Irregular-rate streams are refused. Each sample's LSL timestamp (the sender's
``local_clock``) is the chunk's device time, so the pipeline's clock module maps it onto host
time like any device clock. LSL's transport is lossless (TCP), so inside a connection a jump in
the timestamps is either the sender's own loss or a sender that stamps at push time having
stalled (its backlog then arrives with compressed stamps); jumps of more than ``gap`` seconds
(default 1, at least 1.5 sample periods) are counted as missing samples (``gap_before``), so
push-time jitter and short stalls on a loaded host are not read as loss. Across an outage every
missing sample is counted. When the stream is lost, or
silent for ``watchdog`` seconds (default 3), a ``disconnect`` event is recorded and the
stream is resolved by name again until it comes back (``reconnect``); the outage is counted
as a gap from the timestamps on both sides. ``pylsl`` (the ``lsl`` extra, whose wheel carries
liblsl) is imported lazily. See docs/sources.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bridge_edge.devices.base import Chunk, SourceStats, StreamInfo
from bridge_edge.devices.urls import SourceURL
from bridge_edge.errors import BridgeEdgeError, DependencyMissingError, DeviceError, DeviceTimeoutError

log = logging.getLogger(__name__)

GRAMMAR = (
    "lsl://<stream name>?[type=<LSL type>][&channels=<name,...>][&timeout=<s>][&watchdog=<s>]"
    "[&chunk=<s>][&gap=<s>]"
)
OPTIONS = ("type", "channels", "timeout", "watchdog", "chunk", "gap")
INSTALL_HINT = "pip install 'bridge-edge[lsl]'"


def import_pylsl():
    try:
        import pylsl
    except ImportError as err:
        raise DependencyMissingError(
            f"lsl:// sources and --lsl-out need pylsl (its wheel carries liblsl): {INSTALL_HINT}",
            package="pylsl",
            install_hint=INSTALL_HINT,
        ) from err
    except RuntimeError as err:  # pylsl raises RuntimeError when it cannot load liblsl
        raise DependencyMissingError(
            f"pylsl cannot load liblsl ({err}); install a pylsl wheel that bundles it or set PYLSL_LIB",
            package="liblsl",
            install_hint=INSTALL_HINT,
        ) from err
    return pylsl


def lost_error(pylsl) -> type[Exception]:
    """pylsl's LostError (top level in older releases, ``pylsl.util`` in 1.17+)."""
    found = getattr(pylsl, "LostError", None)
    if found is None:
        import importlib

        found = importlib.import_module("pylsl.util").LostError
    return found


@dataclass(frozen=True)
class Segment:
    start: int
    stop: int
    gap_before: int


def split_at_gaps(
    timestamps: np.ndarray, previous: float | None, fs: float, tolerance_s: float
) -> list[Segment]:
    """Cut a chunk where consecutive timestamps are more than ``tolerance_s`` (and 1.5 periods)
    apart; each piece carries the number of samples missing right before it. Pure; loops over
    gaps only."""
    tolerance = max(1.5, tolerance_s * fs)
    ts = np.asarray(timestamps, np.float64)
    if ts.size == 0:
        return []
    before = ts[0] - 1.0 / fs if previous is None else previous
    periods = np.diff(np.concatenate([[before], ts])) * fs
    missing = np.where(periods > tolerance, np.round(periods) - 1, 0).astype(np.int64)
    cuts = np.flatnonzero(missing)
    starts = np.concatenate([[0], cuts[cuts > 0]])
    stops = np.concatenate([starts[1:], [ts.size]])
    return [Segment(int(a), int(b), int(missing[a])) for a, b in zip(starts, stops)]


def channel_names(info, n: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Channel labels and units from an LSL stream info's ``desc/channels``; ``ch<i>``/``a.u.`` else."""
    names, units = [], []
    channel = info.desc().child("channels").child("channel")
    while not channel.empty() and len(names) < n:
        names.append(channel.child_value("label") or channel.child_value("name") or f"ch{len(names)}")
        units.append(channel.child_value("unit") or "a.u.")
        channel = channel.next_sibling()
    names += [f"ch{i}" for i in range(len(names), n)]
    units += ["a.u."] * (n - len(units))
    return tuple(names), tuple(units)


class LslSource:
    def __init__(self, parsed: SourceURL, pylsl) -> None:
        self._lsl = pylsl
        self._lost_error = lost_error(pylsl)
        self.name = parsed.target
        self.type = parsed.query.get("type")
        self.timeout = parsed.positive("timeout", 10.0)
        self.watchdog = parsed.positive("watchdog", 3.0)
        self.gap_tolerance_s = parsed.positive("gap", 1.0)
        self._reconnected = False
        self.stats = SourceStats()
        self._closed = False
        self._inlet = self._connect(self.timeout)
        if self._inlet is None:
            visible = sorted({s.name() for s in pylsl.resolve_streams(1.0)})
            raise DeviceTimeoutError(
                f"no LSL stream named {self.name!r}{self._type_text()} within {self.timeout:g} s "
                f"(visible: {', '.join(visible) or 'none'}); expected {GRAMMAR}",
                device=f"lsl://{self.name}",
                operation="resolve",
                timeout_s=self.timeout,
            )
        full = self._inlet.info(self.timeout)
        fs = float(full.nominal_srate())
        if not fs > 0:
            raise parsed.fail(
                f"stream {self.name!r} has an irregular rate; lsl:// needs a regular sample rate"
            )
        names, units = channel_names(full, full.channel_count())
        wanted = parsed.query["channels"].split(",") if "channels" in parsed.query else list(names)
        missing = [w for w in wanted if w not in names]
        if missing:
            raise parsed.fail(f"stream {self.name!r} has no channel {missing} (channels: {list(names)})")
        self._columns = np.array([names.index(w) for w in wanted])
        self.info = StreamInfo(
            f"lsl {self.name}",
            fs,
            tuple(wanted),
            tuple(units[i] for i in self._columns),
            meta={"lsl_type": full.type(), "source_id": full.source_id(), "hostname": full.hostname()},
        )
        self.chunk_n = max(1, round(parsed.positive("chunk", 0.04) * fs))

    def _type_text(self) -> str:
        return f" of type {self.type!r}" if self.type else ""

    def _connect(self, timeout: float):
        """An open inlet on the first stream with our name (and type), or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._closed and time.monotonic() < deadline:
            found = self._lsl.resolve_byprop("name", self.name, 1, min(1.0, timeout))
            found = [s for s in found if self.type is None or s.type() == self.type]
            if found:
                inlet = self._lsl.StreamInlet(found[0], max_buflen=60, recover=False)
                try:
                    inlet.open_stream(timeout)
                except Exception as err:  # the outlet went away between resolve and open: retry
                    log.info("lsl://%s: could not open the stream (%s); resolving again", self.name, err)
                    continue
                return inlet
        return None

    def __iter__(self) -> Iterator[Chunk]:
        last_ts: float | None = None
        last_arrival = time.monotonic_ns()
        last_data = time.monotonic()
        seq = 0
        while not self._closed:
            try:
                samples, stamps = self._inlet.pull_chunk(timeout=0.2, max_samples=self.chunk_n)
            except self._lost_error:
                samples, stamps = [], []
                last_data = -np.inf  # lost: reconnect now
            arrival = time.monotonic_ns()
            if not stamps:
                if time.monotonic() - last_data > self.watchdog:
                    self._reconnect()
                    last_data = time.monotonic()
                continue
            last_data = time.monotonic()
            values = np.asarray(samples, np.float32)[:, self._columns]
            ts = np.asarray(stamps, np.float64)
            segments = split_at_gaps(ts, last_ts, self.info.fs, self.gap_tolerance_s)
            if self._reconnected and last_ts is not None:  # an outage: every missing sample counts
                if ts[0] > last_ts:
                    lost = round((ts[0] - last_ts) * self.info.fs) - 1
                else:  # the sender came back on another clock: host arrival times instead
                    lost = round((arrival - last_arrival) / 1e9 * self.info.fs) - len(ts)
                segments[0] = Segment(segments[0].start, segments[0].stop, max(0, lost))
            last_arrival, self._reconnected = arrival, False
            for seg in segments:
                chunk = Chunk(
                    values[seg.start : seg.stop],
                    arrival,
                    np.round(ts[seg.start : seg.stop] * 1e9).astype(np.int64),
                    seq,
                    seg.gap_before,
                )
                seq += 1
                self.stats.count_chunk(chunk)
                yield chunk
            last_ts = float(ts[-1])

    def _reconnect(self) -> None:
        self.stats.disconnects += 1
        self.stats.event("disconnect", stream=self.name, reason=f"no samples for {self.watchdog:g} s or lost")
        log.warning("lsl://%s: stream lost or silent; resolving it by name again", self.name)
        self._inlet.close_stream()
        while not self._closed:
            inlet = self._connect(self.watchdog)
            if inlet is not None:
                self._inlet = inlet
                self.stats.reconnects += 1
                self._reconnected = True
                self.stats.event("reconnect", stream=self.name)
                return

    def close(self) -> None:
        self._closed = True


def open(url: str) -> LslSource:
    parsed = SourceURL.parse(url, "lsl", GRAMMAR, OPTIONS)
    if not parsed.target:
        raise parsed.fail("missing stream name")
    pylsl = import_pylsl()
    try:
        return LslSource(parsed, pylsl)
    except BridgeEdgeError:
        raise
    except Exception as err:  # liblsl's errors are plain exceptions (RuntimeError, TimeoutError …)
        raise DeviceError(f"lsl://{parsed.target}: {err}", device=url, reason=str(err)) from err
