"""Bluetooth Heart Rate Service measurement (0x2A37) decoding, pure.

Flags byte (docs/sources.md): bit 0 HR format (0 = uint8, 1 = uint16 LE), bit 1 contact detected,
bit 2 contact detection supported, bit 3 energy expended present (uint16 kJ), bit 4 RR intervals
present. Then HR, [energy], then 0..n RR values as uint16 LE in 1/1024 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge_edge.errors import FrameError

HRS_SERVICE_UUID = "0000180d-0000-1000-8000-00805f9b34fb"
HRS_MEASUREMENT_UUID = "00002a37-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True)
class HeartRateMeasurement:
    heart_rate_bpm: int
    contact_detected: bool | None  # None when the sensor cannot detect contact
    energy_kj: int | None
    rr_ms: np.ndarray  # float64 milliseconds, possibly empty


def parse_heart_rate(data: bytes) -> HeartRateMeasurement:
    if len(data) < 2:
        raise FrameError(
            f"heart-rate measurement of {len(data)} bytes is too short",
            reason="too_short",
            data=bytes(data).hex(),
        )
    flags = data[0]
    offset = 1
    hr_width = 2 if flags & 0x01 else 1
    if len(data) < offset + hr_width:
        raise FrameError("heart-rate value truncated", reason="too_short", data=bytes(data).hex())
    heart_rate = int.from_bytes(data[offset : offset + hr_width], "little")
    offset += hr_width
    energy = None
    if flags & 0x08:
        if len(data) < offset + 2:
            raise FrameError("energy-expended field truncated", reason="too_short", data=bytes(data).hex())
        energy = int.from_bytes(data[offset : offset + 2], "little")
        offset += 2
    rr = np.empty(0)
    if flags & 0x10:
        tail = bytes(data[offset:])
        if len(tail) % 2:
            raise FrameError("odd number of RR bytes", reason="bad_length", data=bytes(data).hex())
        rr = np.frombuffer(tail, "<u2").astype(np.float64) * (1000.0 / 1024.0)
    contact = bool(flags & 0x02) if flags & 0x04 else None
    return HeartRateMeasurement(heart_rate, contact, energy, rr)
