"""The monitor's wire format: binary waveform frames, JSON for everything low-rate.

Waveforms travel as binary WebSocket messages, one per (bed, channel) block, never as JSON per
sample (docs/monitor.md). All fields little-endian; the float32 payload starts at byte 24, so the
page reads it in place with ``new Float32Array(buffer, 24, count)``:

    offset size  field
    0      1     magic 0xBE
    1      1     version = 1
    2      2     bed (u16)        index of the source on the page
    4      2     channel (u16)    index into that source's channels
    6      2     reserved = 0
    8      8     t0 (f64)         time of the first sample, seconds on the server's monotonic clock
    16     4     fs (f32)         sampling rate, Hz
    20     4     count (u32)      number of float32 samples that follow
    24     4n    samples (f32)    physical units (mV for ECG, arbitrary units for PPG)

Predictions, events, alarms and stats are JSON text messages with a ``type`` field; they come
at most a few times a second.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from bridge_edge.errors import FrameError

MAGIC = 0xBE
VERSION = 1
HEADER = struct.Struct("<BBHHHdfI")
HEADER_SIZE = HEADER.size  # 24
assert HEADER_SIZE == 24  # the page's Float32Array view depends on it


@dataclass(frozen=True)
class WaveformBlock:
    """Consecutive samples of one channel of one bed."""

    bed: int
    channel: int
    t0: float  # seconds, time of samples[0]
    fs: float
    samples: np.ndarray  # (n,) float32


def encode_block(bed: int, channel: int, t0: float, fs: float, samples: np.ndarray) -> bytes:
    """One binary frame for a block of one channel (copies the samples once, as float32 LE)."""
    payload = np.ascontiguousarray(samples, dtype="<f4")
    if payload.ndim != 1:
        raise FrameError(
            f"a waveform block is one channel, got an array of shape {payload.shape}",
            reason="shape",
            data=payload.shape,
        )
    header = HEADER.pack(MAGIC, VERSION, bed, channel, 0, t0, fs, payload.size)
    return header + payload.tobytes()


def decode_block(frame: bytes) -> WaveformBlock:
    """Parse one binary frame (used by tests and tools; the page has its own reader)."""
    if len(frame) < HEADER_SIZE:
        raise FrameError(
            f"waveform frame is {len(frame)} bytes, shorter than its {HEADER_SIZE}-byte header",
            reason="short",
            data=bytes(frame[:HEADER_SIZE]),
        )
    magic, version, bed, channel, _reserved, t0, fs, count = HEADER.unpack_from(frame)
    if magic != MAGIC or version != VERSION:
        raise FrameError(
            f"waveform frame starts {magic:#04x} v{version}, expected {MAGIC:#04x} v{VERSION}",
            reason="magic",
            data=bytes(frame[:2]),
        )
    expected = HEADER_SIZE + 4 * count
    if len(frame) != expected:
        raise FrameError(
            f"waveform frame declares {count} samples ({expected} bytes) but has {len(frame)} bytes",
            reason="length",
            data=len(frame),
        )
    samples = np.frombuffer(frame, dtype="<f4", count=count, offset=HEADER_SIZE)
    return WaveformBlock(bed, channel, t0, float(fs), samples)
