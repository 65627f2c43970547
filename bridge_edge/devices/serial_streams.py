"""Bytes from a serial port -> chunks, with loss accounting. Pure (no I/O): tested with bytes.

``FrameStream`` decodes the binary frame (frame.py) and turns sequence-number and device-time
jumps into ``gap_before``; ``TextStream`` parses line formats (serial_formats.py), stamps chunks
with host time and estimates outages from elapsed time × fs. Both count what they discard
into the shared ``SourceStats``.
"""

from __future__ import annotations

import logging

import numpy as np

from bridge_edge.devices.base import Chunk, SourceStats
from bridge_edge.devices.frame import FMT_FLOAT32, Frame, FrameDecoder
from bridge_edge.devices.serial_formats import (
    MAX_LINE_BYTES,
    cut_long_lines,
    parse_ad8232,
    parse_csv,
    parse_sparkfun,
    split_lines,
)

log = logging.getLogger(__name__)

U32 = 1 << 32
# A u32 microsecond clock wraps after 71.6 min: a drop from the top of its range to the bottom is a
# wrap only if the step across the wrap is short; any other backward step is a sensor reboot.
WRAP_MAX_STEP_US = 60_000_000


class FrameStream:
    """Binary frames (docs/sources.md) -> chunks; one chunk per frame so every chunk keeps its device seq."""

    def __init__(self, fs: float, channels: int, scale: np.ndarray, stats: SourceStats):
        self.fs = fs
        self.channels = channels
        self.scale = scale  # physical units per LSB, per channel (float64)
        self.stats = stats
        self.decoder = FrameDecoder()
        self._prev: tuple[int, int, int] | None = None  # (seq, unwrapped t_us, n) of the last frame
        self._wraps = 0
        self._warned_channels = False
        self._t_host_ns = 0
        self._prev_host_ns: int | None = None  # arrival of the last frame

    def feed(self, data: bytes, t_host_ns: int) -> list[Chunk]:
        self._t_host_ns = t_host_ns  # a reboot's outage is estimated from host time (_gap)
        corrupt_before = self.decoder.counts.corrupt_frames
        frames = self.decoder.feed(data)
        self._count_corrupt(corrupt_before)
        return self._chunks(frames, t_host_ns)

    def _chunks(self, frames: list[Frame], t_host_ns: int) -> list[Chunk]:
        chunks = []
        for frame in frames:  # one iteration per frame, never per sample
            n, channels = frame.samples.shape
            if channels != self.channels:
                self._skip_foreign(frame.seq, n, channels)
                continue
            t_us = self._unwrap(frame.t_device_us)
            gap = self._gap(frame.seq, t_us, n)
            self._prev = (frame.seq, t_us, n)
            values = frame.samples if frame.fmt == FMT_FLOAT32 else frame.samples * self.scale
            t_device = t_us * 1000 + np.round(np.arange(n) * (1e9 / self.fs)).astype(np.int64)
            chunks.append(Chunk(np.asarray(values, np.float32), t_host_ns, t_device, frame.seq, gap))
        return chunks

    def _skip_foreign(self, seq: int, n: int, channels: int) -> None:
        """A CRC-valid frame of another shape: skipped and counted. It does not become the
        previous frame, so the next good frame's seq and device time count its samples as a gap."""
        self.stats.corrupt_frames += 1
        self.stats.event(
            "corrupt_frames",
            count=1,
            samples=n,
            reason=f"frame seq {seq} has {channels} channels but the URL declares {self.channels}",
        )
        if not self._warned_channels:
            log.warning("serial frame seq %d has %d channels, not %d: skipped", seq, channels, self.channels)
            self._warned_channels = True

    def on_disconnect(self) -> None:
        before = self.decoder.counts.corrupt_frames
        self.decoder.flush()  # a frame cut by the unplug is lost: count it
        self._count_corrupt(before, reason="partial frame at disconnect")

    def on_reconnect(self, outage_ns: int) -> None:
        pass  # the next frame's device time tells the gap exactly

    def _count_corrupt(self, before: int, reason: str = "bad CRC or header") -> None:
        new = self.decoder.counts.corrupt_frames - before
        if new:
            self.stats.corrupt_frames += new
            self.stats.event("corrupt_frames", count=new, reason=reason)

    def _unwrap(self, t_us: int) -> int:
        if self._prev is not None:
            last = self._prev[1] % U32
            if t_us < last and (U32 - last) + t_us <= WRAP_MAX_STEP_US:
                self._wraps += 1  # u32 microseconds wrap every 71.6 minutes
        return self._wraps * U32 + t_us

    def _gap(self, seq: int, t_us: int, n: int) -> int:
        prev_host_ns, self._prev_host_ns = self._prev_host_ns, self._t_host_ns
        if self._prev is None:
            return 0
        prev_seq, prev_t_us, prev_n = self._prev
        by_time = round((t_us - prev_t_us) * self.fs / 1e6) - prev_n
        by_seq = ((seq - prev_seq - 1) & 0xFFFF) * n
        if by_time < 0:
            return self._reset(seq, prev_seq, t_us, prev_t_us, prev_n, prev_host_ns)
        # seq is exact for short gaps; device time also covers seq wraps and long outages
        return by_seq if abs(by_time - by_seq) <= max(1, n // 2) else by_time

    def _reset(self, seq: int, prev_seq: int, t_us: int, prev_t_us: int, prev_n: int, prev_host_ns) -> int:
        """The device clock went back: the sensor rebooted (its seq restarts too).

        Neither counter can say how long it was away (the old ``by_seq`` read a restart at 0 as
        up to 65,535 lost frames: a phantom gap of ~10^6 samples), so the outage is what host
        time says elapsed beyond the last frame's samples; a ``clock_reset`` event says so."""
        missing = 0
        if prev_host_ns is not None:
            missing = max(0, round((self._t_host_ns - prev_host_ns) * self.fs / 1e9) - prev_n)
            missing = missing if missing > n_tolerance(prev_n) else 0  # arrival jitter is no gap
        self.stats.event(
            "clock_reset",
            seq=seq,
            previous_seq=prev_seq,
            t_device_us=t_us,
            previous_t_device_us=prev_t_us,
            missing_samples=missing,
            estimated_from="host time",
        )
        log.warning(
            "device clock went back by %d us at seq %d (sensor reboot); %d samples missing by host time",
            prev_t_us - t_us,
            seq,
            missing,
        )
        return missing


def n_tolerance(n: int) -> int:
    """Host arrival jitter allowance, in samples, for a frame of ``n`` samples."""
    return max(1, n)


class TextStream:
    """Line formats -> chunks stamped with host arrival time (the sketches send no device time)."""

    def __init__(self, fmt: str, fs: float, channels: tuple[str, ...], stats: SourceStats):
        self.fmt = fmt
        self.fs = fs
        self.channels = channels
        self.stats = stats
        self._rest = b""
        self._carry_gap = 0  # lead-off markers or outage not yet attached to a chunk
        self._last_host_ns: int | None = None
        self._outage = False
        self._dropping = False  # inside an over-long line: drop bytes up to its newline
        self._cut_lines = self._cut_bytes = 0  # cut so far, counted when the cut line ends
        self._line_bytes = self._lines = 0  # kept lines so far, for the length of a typical line

    def feed(self, data: bytes, t_host_ns: int) -> list[Chunk]:
        block = self._bounded(data)
        if not block:
            return []
        parsed = self._parse(block)
        if parsed.skipped:
            self.stats.skipped_lines += parsed.skipped
            self.stats.corrupt_frames += parsed.skipped
            self.stats.event("corrupt_frames", count=parsed.skipped, reason="unparsed lines")
        if parsed.lead_off:
            self.stats.lead_off += parsed.lead_off
            self.stats.event("lead_off", count=parsed.lead_off)
        if self._outage and len(parsed.samples):
            self._carry_gap += self._outage_gap(t_host_ns, len(parsed.samples))
            self._outage = False
        chunks = []
        for start, stop, gap in parsed.segments:  # one per lead-off run, not per sample
            self._carry_gap += gap
            if stop > start:
                samples = parsed.samples[start:stop].astype(np.float32)
                chunks.append(Chunk(samples, t_host_ns, None, None, self._carry_gap))
                self._carry_gap = 0
        if len(parsed.samples):
            self._last_host_ns = t_host_ns
        return chunks

    def _bounded(self, data: bytes) -> bytes:
        """Complete lines of at most MAX_LINE_BYTES; longer lines (finished or not) are cut, so
        the buffer never grows past one line. Cut lines and bytes are counted once the cut line
        ends; the samples they held are estimated from the typical line length so far and
        become the next chunk's gap."""
        data = self._rest + data
        if self._dropping:
            newline = data.find(b"\n")
            self._cut_bytes += len(data) if newline < 0 else newline + 1
            data = b"" if newline < 0 else data[newline + 1 :]
            self._dropping = newline < 0
        block, self._rest = split_lines(data)
        cut = cut_long_lines(block)
        self._line_bytes += len(cut.block)
        self._lines += cut.block.count(b"\n")
        self._cut_lines += cut.lines
        self._cut_bytes += cut.bytes
        if len(self._rest) > MAX_LINE_BYTES:
            self._cut_lines += 1
            self._cut_bytes += len(self._rest)
            self._rest, self._dropping = b"", True
        if not self._dropping:
            self._count_cut()
        return cut.block

    def _count_cut(self) -> None:
        if not self._cut_bytes:
            return
        typical = self._line_bytes / self._lines if self._lines else MAX_LINE_BYTES
        lost = max(self._cut_lines, round(self._cut_bytes / typical))
        self._carry_gap += lost
        self.stats.skipped_lines += self._cut_lines
        self.stats.corrupt_frames += self._cut_lines
        self.stats.event(
            "corrupt_frames",
            count=self._cut_lines,
            bytes=self._cut_bytes,
            samples_lost_estimate=lost,
            reason=f"line longer than {MAX_LINE_BYTES} bytes cut",
        )
        self._cut_lines = self._cut_bytes = 0

    def on_disconnect(self) -> None:
        self._dropping = False
        self._count_cut()
        if self._rest:
            self.stats.corrupt_frames += 1
            self.stats.event("corrupt_frames", count=1, reason="partial line at disconnect")
        self._rest = b""

    def on_reconnect(self, outage_ns: int) -> None:
        self._outage = True

    def _outage_gap(self, t_host_ns: int, arrived: int) -> int:
        # No device clock: samples missed ≈ elapsed time × fs minus what just arrived (an estimate).
        if self._last_host_ns is None:
            return 0
        return max(0, round((t_host_ns - self._last_host_ns) / 1e9 * self.fs) - arrived)

    def _parse(self, block: bytes):
        if self.fmt == "csv":
            return parse_csv(block, len(self.channels))
        if self.fmt == "sparkfun":
            return parse_sparkfun(block, self.channels)
        return parse_ad8232(block)
