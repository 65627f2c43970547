"""The project's binary serial frame (docs/sources.md): encoder, CRC and a resyncing stream decoder.

    0xA5 0x5A | version u8 = 1 | seq u16 LE | t_device_us u32 LE | n u8 | channels u8 |
    fmt u8 (1 = int16, 2 = int24, 3 = float32) | payload n × channels samples LE |
    CRC-16/CCITT-FALSE u16 LE over version..payload

``seq`` counts frames (mod 2^16); ``t_device_us`` is the device time of the frame's FIRST sample
(mod 2^32). The same layout is implemented in C by ``devices/firmware/frame.c``; both are tested
against the byte vectors in ``tests/fixtures/frames/``.

Pure: bytes in, frames and counts out. The decoder finds frame candidates with numpy, loops once
per frame (never per sample) and accounts for every byte it throws away.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"\xa5\x5a"
VERSION = 1
HEADER = struct.Struct("<BHIBBB")  # version, seq, t_device_us, n, channels, fmt
PREFIX_LEN = len(MAGIC) + HEADER.size  # 12 bytes before the payload
CRC_LEN = 2
FMT_INT16, FMT_INT24, FMT_FLOAT32 = 1, 2, 3
SAMPLE_BYTES = {FMT_INT16: 2, FMT_INT24: 3, FMT_FLOAT32: 4}
MAX_PAYLOAD = 1024  # larger claimed payloads are corrupt headers; keeps resync latency bounded


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0); check('123456789') = 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class Frame:
    seq: int
    t_device_us: int
    fmt: int
    samples: np.ndarray  # (n, channels) raw values: int32 for int16/int24, float32 for float32


def encode_frame(seq: int, t_device_us: int, samples: np.ndarray, fmt: int) -> bytes:
    """One frame for (n, channels) samples; ints must fit the format's width."""
    samples = np.atleast_2d(np.asarray(samples))
    n, channels = samples.shape
    if not (1 <= n <= 255 and 1 <= channels <= 255):
        raise ValueError(f"frame holds 1..255 samples of 1..255 channels, got {samples.shape}")
    if fmt == FMT_INT16:
        payload = samples.astype("<i2").tobytes()
    elif fmt == FMT_INT24:
        wide = samples.astype("<i4").reshape(-1, 1).view(np.uint8)  # 4 LE bytes per value
        payload = wide[:, :3].tobytes()
    elif fmt == FMT_FLOAT32:
        payload = samples.astype("<f4").tobytes()
    else:
        raise ValueError(f"unknown sample format {fmt}; expected 1 (int16), 2 (int24) or 3 (float32)")
    body = HEADER.pack(VERSION, seq & 0xFFFF, t_device_us & 0xFFFFFFFF, n, channels, fmt) + payload
    return MAGIC + body + struct.pack("<H", crc16_ccitt_false(body))


def decode_payload(payload: bytes, n: int, channels: int, fmt: int) -> np.ndarray:
    if fmt == FMT_INT16:
        values = np.frombuffer(payload, "<i2").astype(np.int32)
    elif fmt == FMT_INT24:
        raw = np.frombuffer(payload, np.uint8).reshape(-1, 3).astype(np.int32)
        values = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        values = np.where(values & 0x800000, values - (1 << 24), values)
    else:
        values = np.frombuffer(payload, "<f4").copy()
    return values.reshape(n, channels)


def _candidates(buf: np.ndarray) -> np.ndarray:
    """Offsets of the magic whose header could be valid (vectorised: version, n, channels, fmt),
    or is not complete yet; the rest can only be rejected, so they are never looked at one by one."""
    starts = np.flatnonzero((buf[:-1] == 0xA5) & (buf[1:] == 0x5A))
    head = starts[starts + PREFIX_LEN <= len(buf)]
    plausible = (
        (buf[head + 2] == VERSION)
        & (buf[head + 9] != 0)
        & (buf[head + 10] != 0)
        & np.isin(buf[head + 11], list(SAMPLE_BYTES))
    )
    return np.concatenate([head[plausible], starts[starts + PREFIX_LEN > len(buf)]])


@dataclass
class DecoderCounts:
    frames: int = 0
    corrupt_frames: int = 0  # frames lost to bad CRC/header, or frame-sized runs of unframed bytes
    discarded_bytes: int = 0  # all bytes thrown away while resyncing


class FrameDecoder:
    """Feed bytes as they arrive; get back whole, CRC-checked frames.

    Bytes between two good frames are a rejected region. It is charged as
    ceil(region / frame size) corrupt frames, so a flipped byte anywhere in a frame (magic,
    header, payload or CRC) counts exactly one frame, whatever spurious magic it contains.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._rejected = 0  # bytes of the current rejected region
        self.counts = DecoderCounts()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        return self._scan()

    def flush(self) -> None:
        """End of stream (or unplug): whatever is buffered is a lost, partial frame. (No good
        frame can be buffered here: ``feed`` accepts every one as soon as it is complete.)"""
        self._reject(len(self._buf))
        self._buf.clear()
        if self._rejected:
            self.counts.corrupt_frames += 1
            self._rejected = 0

    # -- internals -------------------------------------------------------------------------

    def _scan(self) -> list[Frame]:
        """Accept every good frame in the buffer; stop at an incomplete candidate only while no
        good frame follows it anywhere in the buffer (a header whose claimed length has not
        arrived may be a fake one: a good frame behind it proves it corrupt, so the scan resyncs
        at the next magic behind the stalled header). Each candidate is checked once."""
        buf = np.frombuffer(bytes(self._buf), np.uint8)
        starts = _candidates(buf)
        checks = [self._check(buf, int(start)) for start in starts]  # one check per candidate
        ok = np.array([status == "ok" for status, _ in checks] + [False])
        ok_later = np.flip(np.cumsum(np.flip(ok)) > 0)  # ok_later[i]: a good frame at i or after
        frames: list[Frame] = []
        pos = 0  # everything before pos is consumed (accepted or rejected)
        keep_from = None
        for i, start in enumerate(starts.tolist()):
            status, end = checks[i]
            if start < pos:
                continue
            if status == "incomplete" and not ok_later[i + 1]:
                keep_from = start  # wait for more bytes
                break
            if status == "ok":
                self._reject(start - pos)
                self._close_region(end - start)
                frames.append(self._decode(buf, start, end))
                pos = end
        if keep_from is None:  # no candidate is pending: keep only a possible half magic at the end
            keep_from = max(len(buf) - 1 if len(buf) and buf[-1] == 0xA5 else len(buf), pos)
        self._reject(keep_from - pos)
        del self._buf[:keep_from]
        self.counts.frames += len(frames)
        return frames

    @staticmethod
    def _check(buf: np.ndarray, start: int) -> tuple[str, int]:
        if len(buf) - start < PREFIX_LEN:
            return "incomplete", 0
        version, _, _, n, channels, fmt = HEADER.unpack_from(buf, start + 2)
        if version != VERSION or fmt not in SAMPLE_BYTES or n == 0 or channels == 0:
            return "bad", 0
        payload_len = n * channels * SAMPLE_BYTES[fmt]
        if payload_len > MAX_PAYLOAD:
            return "bad", 0
        end = start + PREFIX_LEN + payload_len + CRC_LEN
        if end > len(buf):
            return "incomplete", end
        body = buf[start + 2 : end - CRC_LEN].tobytes()
        (crc,) = struct.unpack_from("<H", buf, end - CRC_LEN)
        return ("ok" if crc == crc16_ccitt_false(body) else "bad"), end

    @staticmethod
    def _decode(buf: np.ndarray, start: int, end: int) -> Frame:
        _, seq, t_us, n, channels, fmt = HEADER.unpack_from(buf, start + 2)
        payload = buf[start + PREFIX_LEN : end - CRC_LEN].tobytes()
        return Frame(seq, t_us, fmt, decode_payload(payload, n, channels, fmt))

    def _reject(self, nbytes: int) -> None:
        self._rejected += nbytes
        self.counts.discarded_bytes += nbytes

    def _close_region(self, frame_len: int) -> None:
        if self._rejected:
            self.counts.corrupt_frames += -(-self._rejected // frame_len)
            self._rejected = 0
