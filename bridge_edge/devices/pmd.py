"""Polar Measurement Data (PMD) frame decoding, pure: bytes in, samples and timestamps out.

Layout (docs/sources.md, Polar PMD; conformance vectors from Polar's SDK tests in
``tests/fixtures/polar_pmd.json``)::

    byte 0      measurement type (& 0x3F): 0 ECG, 1 PPG, 2 ACC, 3 PPI, 5 gyro, 6 magnetometer, ...
    bytes 1-8   u64 LE timestamp, ns since 2000-01-01, of the LAST sample in the frame
    byte 9      bit 7 = delta compressed, bits 0-6 = frame type
    bytes 10..  payload

Raw payloads are fixed-size records decoded with numpy views. Compressed payloads are a
reference sample followed by [bit width][count] blocks of LSB-first, channel-interleaved,
two's-complement deltas; each block is unpacked with ``np.unpackbits`` and summed with
``np.cumsum``. Sample times follow Polar's rule (``sample_timestamps``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from bridge_edge.errors import FrameError

POLAR_EPOCH_OFFSET_NS = 946_684_800_000_000_000  # 2000-01-01 minus 1970-01-01, for Unix time
MEASUREMENTS = {
    0: "ecg",
    1: "ppg",
    2: "acc",
    3: "ppi",
    5: "gyro",
    6: "magnetometer",
    7: "skin_temp",
    9: "sdk_mode",
    10: "location",
    11: "pressure",
    12: "temperature",
    13: "offline_recording",
    14: "offline_hr",
}
MEASUREMENT_TYPES = {name: code for code, name in MEASUREMENTS.items()}
KNOWN_FRAME_TYPES = frozenset(range(11)) | {13, 14}
HEADER_LEN = 10
# Timestamps are u64 on the wire; sample times are int64. 2^62 ns after 2000 is the year 2146, so
# parse_frame rejects a frame stamped at or above it before its sample times can overflow int64.
MAX_TIMESTAMP_NS = 1 << 62
# Deltas are added as int32 (Polar's Kotlin/Swift code), so a wider delta block is corrupt.
MAX_DELTA_WIDTH = 32


@dataclass(frozen=True)
class PmdHeader:
    measurement_type: int  # byte 0 & 0x3F
    timestamp_ns: int  # device time of the last sample, ns since 2000-01-01
    frame_type: int
    compressed: bool
    payload: bytes

    @property
    def measurement(self) -> str:
        return MEASUREMENTS.get(self.measurement_type, f"type{self.measurement_type}")


@dataclass(frozen=True)
class PmdFrame:
    measurement: str  # "ecg", "ppg", "acc"
    frame_type: int
    compressed: bool
    timestamp_ns: int  # frame timestamp (last sample), device epoch 2000-01-01
    samples: np.ndarray  # (n, channels) int64 in the sensor's unit (µV, counts, mG)
    timestamps_ns: np.ndarray  # (n,) int64 per sample, device epoch
    channel_names: tuple[str, ...]
    other_fields: dict[str, np.ndarray] = field(default_factory=dict)  # status/flag fields per sample


def _reject(reason: str, message: str, data: bytes) -> FrameError:
    return FrameError(f"PMD frame rejected: {message}", reason=reason, data=data.hex())


def parse_header(data: bytes) -> PmdHeader:
    if len(data) < HEADER_LEN:
        raise _reject("too_short", f"{len(data)} bytes, a PMD frame has at least {HEADER_LEN}", data)
    (timestamp,) = struct.unpack_from("<Q", data, 1)
    frame_type = data[9] & 0x7F
    if frame_type not in KNOWN_FRAME_TYPES:
        raise _reject("unknown_frame_type", f"frame type {frame_type} (known: 0-10, 13, 14)", data)
    return PmdHeader(data[0] & 0x3F, timestamp, frame_type, bool(data[9] & 0x80), bytes(data[HEADER_LEN:]))


# -- integer helpers -----------------------------------------------------------------------------


def _records(payload: bytes, size: int, data: bytes) -> np.ndarray:
    if len(payload) % size:
        raise _reject("bad_length", f"payload of {len(payload)} bytes is not a multiple of {size}", data)
    return np.frombuffer(payload, np.uint8).reshape(-1, size).astype(np.int64)


def _le(columns: np.ndarray, signed: bool) -> np.ndarray:
    """Little-endian integers from byte columns (..., width); signed = two's complement over width."""
    width = columns.shape[-1]
    value = (columns << (8 * np.arange(width))).sum(axis=-1)
    if signed:
        value = np.where(value >= 1 << (8 * width - 1), value - (1 << (8 * width)), value)
    return value


def _wrap_int32(values: np.ndarray) -> np.ndarray:
    return ((values + (1 << 31)) % (1 << 32)) - (1 << 31)


# -- delta compression ---------------------------------------------------------------------------


def decode_delta(payload: bytes, channels: int, resolution_bits: int) -> np.ndarray:
    """Reference sample + [width][count] delta blocks -> (n, channels) int64 raw values."""
    ref_bytes = math.ceil(resolution_bits / 8)
    if len(payload) < channels * ref_bytes:
        raise _reject("bad_length", "compressed payload shorter than its reference sample", payload)
    ref = _le(
        np.frombuffer(payload[: channels * ref_bytes], np.uint8)
        .reshape(channels, ref_bytes)
        .astype(np.int64),
        signed=False,
    )
    sign = 1 << (resolution_bits - 1)
    ref = np.where(ref & sign, ref - (1 << resolution_bits), ref)  # sign-extend from the resolution's top bit
    blocks = [ref[None, :]]
    offset = channels * ref_bytes
    while offset < len(payload):
        if offset + 2 > len(payload):
            raise _reject("bad_length", f"truncated delta block header at byte {offset}", payload)
        width, count = payload[offset], payload[offset + 1]
        if width > MAX_DELTA_WIDTH:
            raise _reject(
                "bad_delta_width", f"delta block width {width} bits at byte {offset}; at most 32", payload
            )
        nbytes = math.ceil(width * count * channels / 8)
        packed = payload[offset + 2 : offset + 2 + nbytes]
        if len(packed) < nbytes:
            raise _reject("bad_length", f"delta block needs {nbytes} bytes, {len(packed)} left", payload)
        offset += 2 + nbytes
        if width == 0:
            blocks.append(np.zeros((count, channels), np.int64))
            continue
        bits = np.unpackbits(np.frombuffer(packed, np.uint8), bitorder="little")[: width * count * channels]
        deltas = bits.reshape(-1, width).astype(np.int64) @ (np.int64(1) << np.arange(width, dtype=np.int64))
        deltas = np.where(deltas >= 1 << (width - 1), deltas - (1 << width), deltas)
        blocks.append(deltas.reshape(count, channels))
    return _wrap_int32(np.cumsum(np.concatenate(blocks), axis=0))


def _scale(raw: np.ndarray, factor: float) -> np.ndarray:
    """trunc(float32(raw) * float32(factor)), in float32 as Polar's Kotlin/Swift code does."""
    product = raw.astype(np.float32) * np.float32(factor)
    return np.trunc(product).astype(np.int64)


# -- per measurement ------------------------------------------------------------------------------

Decoded = tuple[np.ndarray, tuple[str, ...], dict[str, np.ndarray]]


def _ecg(h: PmdHeader, data: bytes, factor: float) -> Decoded:
    if h.compressed:
        raise _reject("unsupported_frame_type", "compressed ECG is not defined", data)
    if h.frame_type == 0:  # H10: 3-byte signed µV
        return _le(_records(h.payload, 3, data), True)[:, None], ("microvolts",), {}
    if h.frame_type == 1:
        b = _records(h.payload, 3, data)
        flags = {
            "over_sampling": (b[:, 2] & 1).astype(bool),
            "skin_contact": (b[:, 2] >> 1) & 3,
            "contact_impedance": (b[:, 2] >> 3) & 3,
        }
        return (b[:, 0] | (b[:, 1] & 0x3F) << 8)[:, None], ("microvolts",), flags
    if h.frame_type == 2:
        b = _records(h.payload, 3, data)
        tags = {"ecg_data_tag": (b[:, 2] >> 2) & 7, "pace_data_tag": (b[:, 2] >> 5) & 7}
        return (b[:, 0] | b[:, 1] << 8 | (b[:, 2] & 3) << 16)[:, None], ("microvolts",), tags
    if h.frame_type == 3:
        b = _records(h.payload, 7, data)
        values = np.stack([_le(b[:, 0:3], True), _le(b[:, 3:6], True)], axis=1)
        return values, ("data0", "data1"), {"status": b[:, 6]}
    raise _reject("unsupported_frame_type", f"ECG frame type {h.frame_type}", data)


_PPG_COMPRESSED = {  # frame type -> (optical channel names, has status channel)
    0: (("ppg0", "ppg1", "ppg2", "ambient"), False),
    7: (tuple(f"ch{i}" for i in range(16)), True),
    8: (tuple(f"ch{i}" for i in range(24)), True),
    10: (tuple(f"ch{i}" for i in range(20)), True),
    13: (("ppg0", "ppg1"), True),
}


def _gain_record(b: np.ndarray, slots: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """num-int bytes, then interleaved channel-1/channel-2 gains (& 0x07), flattened per record."""
    num_int = b[:, :slots]
    gains = b[:, slots : 3 * slots] & 0x07
    names = tuple(f"num_int_ts{i + 1}" for i in range(slots)) + tuple(
        f"channel{c}_gain_ts{i + 1}" for c in (1, 2) for i in range(slots)
    )
    return np.concatenate([num_int, gains[:, 0::2], gains[:, 1::2]], axis=1), names


def _ppg(h: PmdHeader, data: bytes, factor: float) -> Decoded:
    if h.compressed:
        if h.frame_type not in _PPG_COMPRESSED:
            raise _reject("unsupported_frame_type", f"compressed PPG frame type {h.frame_type}", data)
        names, has_status = _PPG_COMPRESSED[h.frame_type]
        raw = decode_delta(h.payload, len(names) + has_status, 24)
        optical = raw[:, : len(names)]
        if h.frame_type == 0 or factor != 1.0:
            optical = _scale(optical, factor)
        other = {"status": raw[:, -1] & 0xFFFFFF} if has_status else {}
        return optical, names, other
    if h.frame_type == 0:  # OH1: ppg0, ppg1, ppg2, ambient as 3-byte signed
        b = _records(h.payload, 12, data).reshape(-1, 4, 3)
        return _le(b, True), ("ppg0", "ppg1", "ppg2", "ambient"), {}
    if h.frame_type in (4, 9):
        return (*_gain_record(_records(h.payload, 36, data), 12), {})
    if h.frame_type == 14:
        return (*_gain_record(_records(h.payload, 3, data), 1), {})
    if h.frame_type == 5:
        return _le(_records(h.payload, 4, data), False)[:, None], ("operation_mode",), {}
    if h.frame_type == 6:
        return _le(_records(h.payload, 8, data), False)[:, None], ("sport_id",), {}
    raise _reject("unsupported_frame_type", f"raw PPG frame type {h.frame_type}", data)


def _acc(h: PmdHeader, data: bytes, factor: float) -> Decoded:
    names = ("x", "y", "z")
    if h.compressed:
        if h.frame_type == 0:  # factor in G per LSB -> mG
            raw = decode_delta(h.payload, 3, 16)
            return _scale(raw, float(np.float32(factor) * np.float32(1000))), names, {}
        if h.frame_type == 1:
            raw = decode_delta(h.payload, 3, 16)
            return (raw if factor == 1.0 else _scale(raw, factor)), names, {}
        raise _reject("unsupported_frame_type", f"compressed ACC frame type {h.frame_type}", data)
    if h.frame_type in (0, 1, 2):  # 1, 2 or 3 signed bytes per axis, mG
        width = h.frame_type + 1
        return _le(_records(h.payload, 3 * width, data).reshape(-1, 3, width), True), names, {}
    raise _reject("unsupported_frame_type", f"raw ACC frame type {h.frame_type}", data)


_DECODERS = {"ecg": _ecg, "ppg": _ppg, "acc": _acc}


# -- timestamps -------------------------------------------------------------------------------------


def sample_timestamps(
    frame_ts: int, n: int, previous_ts: int | None, sample_rate_hz: float | None
) -> np.ndarray:
    """Polar's rule: the last sample is frame_ts; earlier ones step back evenly (IEEE double,
    round half to even). Step = (frame_ts - previous)/n, or 1e9/fs for a first frame."""
    if previous_ts:
        if frame_ts <= previous_ts:
            raise FrameError(
                f"PMD timestamp {frame_ts} is not after the previous {previous_ts}",
                reason="non_increasing_timestamp",
                data=None,
            )
        step = float(frame_ts - previous_ts) / n
        first = float(previous_ts) + step
    elif sample_rate_hz:
        step = (1.0 / sample_rate_hz) * 1000 * 1000 * 1000
        first = float(frame_ts) - step * (n - 1)
        if first < 0 or frame_ts < step * n:  # Polar's two checks
            raise FrameError(
                f"{n} samples at {sample_rate_hz} Hz cannot end at {frame_ts} ns",
                reason="negative_timestamp",
                data=None,
            )
    else:
        raise FrameError(
            "PMD sample times need a previous frame timestamp or a sample rate",
            reason="no_previous_timestamp_and_no_sample_rate",
            data=None,
        )
    times = np.empty(n, np.int64)
    times[:-1] = np.rint(first + step * np.arange(n - 1, dtype=np.float64)).astype(np.int64)
    times[-1] = frame_ts
    return times


def parse_frame(
    data: bytes,
    *,
    previous_timestamp_ns: int | None = None,
    sample_rate_hz: float | None = None,
    factor: float = 1.0,
    measurement: str | None = None,
) -> PmdFrame:
    """Decode one PMD data notification.

    previous_timestamp_ns: timestamp of the previous frame of the same (measurement, frame type);
    None (or 0) for the first frame, which then needs sample_rate_hz. factor: the FACTOR the
    start response reported (compressed PPG/ACC). measurement overrides byte 0 (for callers
    that know what they subscribed to). Raises FrameError(reason=...) for rejected frames.
    """
    header = parse_header(data)
    if header.timestamp_ns >= MAX_TIMESTAMP_NS:  # the header keeps the u64; sample times are int64
        raise _reject(
            "timestamp_out_of_range",
            f"timestamp {header.timestamp_ns} ns is not below 2^62 (year 2146)",
            data,
        )
    kind = measurement or header.measurement
    if kind not in _DECODERS:
        raise _reject("unsupported_measurement", f"measurement {kind!r} (decoded: ecg, ppg, acc)", data)
    samples, names, other = _DECODERS[kind](header, bytes(data), factor)
    if len(samples) == 0:
        raise _reject("empty", "frame holds no samples", data)
    times = sample_timestamps(header.timestamp_ns, len(samples), previous_timestamp_ns, sample_rate_hz)
    return PmdFrame(
        kind, header.frame_type, header.compressed, header.timestamp_ns, samples, times, names, other
    )


class PreviousTimestamps:
    """Previous-frame timestamp per (measurement type, frame type), as Polar's client tracks it.

    Interleaved streams do not disturb each other's chain; a smaller timestamp is handed on as
    is (parse_frame then flags it; the client turns that into a clock event).
    """

    def __init__(self) -> None:
        self._last: dict[tuple[int, int], int] = {}

    def swap(self, header: PmdHeader) -> int | None:
        """The previous timestamp for this frame's chain (None for the first), then remember this one."""
        key = (header.measurement_type, header.frame_type)
        previous = self._last.get(key)
        self._last[key] = header.timestamp_ns
        return previous

    def restore(self, header: PmdHeader, previous: int | None) -> None:
        """Undo ``swap`` for a frame that failed to decode: its samples are lost, and the next
        good frame's timestamp then shows them as a gap."""
        key = (header.measurement_type, header.frame_type)
        if previous is None:
            self._last.pop(key, None)
        else:
            self._last[key] = previous

    def forget(self) -> None:
        """After a reconnect the chain restarts from the sample rate."""
        self._last.clear()
