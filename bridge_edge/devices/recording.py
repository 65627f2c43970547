"""Recordings written by ``bridge-edge record`` (docs/sources.md) and read back by ``replay://DIR``.

A recording directory holds:

- ``signal.hea`` + ``signal.dat``: WFDB, format 32 (int32 LE, channels interleaved), readable by
  ``wfdb.rdrecord`` and every PhysioNet tool; the header is written (and read back) by
  ``wfdb_header`` so the device needs no ``wfdb`` package. Its base time/date is the first
  sample's wall-clock time in UTC. The ADC gain is 1 / the sensor's resolution, so
  integer sensors are stored exactly; float data (no declared resolution, or samples off its
  grid such as float32 frames) gets a power-of-two gain.
- ``events.jsonl``: one line per chunk (``kind: "chunk"``, seq, t_device_ns of its first sample,
  t_device_last_ns, t_host_ns, n, gap_before, first sample index) and one per source event
  (disconnect, reconnect, corrupt_frames, lead_off, clock_jump, rate_mismatch).
- ``recording.json``: stream info (fs, channels, units, exact resolution or gain) and final counts.

The ``.dat`` and ``events.jsonl`` are appended as chunks arrive (a crash loses at most the
header, which ``close()`` writes); nothing is held in memory.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bridge_edge.devices.base import Chunk, SourceStats, StreamInfo
from bridge_edge.devices.wfdb_header import (
    Header,
    SignalSpec,
    checksum16,
    format_number,
    read_format32,
    read_header,
    write_header,
)
from bridge_edge.errors import DataError, DatasetNotFoundError

log = logging.getLogger(__name__)

RECORD_NAME = "signal"
FORMAT_VERSION = 1
INT32_MAX = 2**31 - 1
WFDB_INVALID = -(2**31)  # format 32's invalid-sample value: a NaN/inf sample, read back as NaN


@dataclass(frozen=True)
class RecordingMeta:
    version: int
    name: str
    fs: float
    channels: tuple[str, ...]
    units: tuple[str, ...]
    scale: tuple[float, ...]  # physical units per stored integer (exact; the .hea gain is its inverse)
    exact: bool  # True when scale is the sensor's own resolution


class RecordingWriter:
    """Appends chunks of one stream to a recording directory."""

    def __init__(self, out_dir: str | Path, info: StreamInfo):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.info = info
        self.n_samples = 0
        self.clipped = 0
        self.requantised = 0
        self._scale: np.ndarray | None = None  # decided by the first chunk
        self._exact = False
        self._first_values: np.ndarray | None = None
        self._checksum = np.zeros(len(info.channels), np.int64)
        self._dat = open(self.dir / f"{RECORD_NAME}.dat", "wb")  # noqa: SIM115 - open until close()
        self._events = open(self.dir / "events.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self._events_written = 0
        self.base_datetime: dt.datetime | None = None  # wall-clock (UTC) time of the first sample

    def write(self, chunk: Chunk, stats: SourceStats | None = None) -> None:
        if stats is not None:
            self._write_events(stats)
        if self._scale is None:
            self._scale, self._exact = _choose_scale(chunk.samples, self.info.resolution)
            self.base_datetime = _wall_clock_of_first_sample(chunk, self.info.fs)
        digital = self._digitise(chunk.samples)
        bad = int(np.count_nonzero(digital == WFDB_INVALID))
        if bad:  # kept as invalid samples and said so: never written as a number
            self._events.write(
                json.dumps({"kind": "nonfinite", "count": bad, "sample_index": self.n_samples}) + "\n"
            )
        if self._first_values is None:
            self._first_values = digital[0].copy()
        self._checksum += digital.sum(axis=0, dtype=np.int64)
        digital.astype("<i4").tofile(self._dat)
        t_dev = chunk.t_device_ns
        line = {
            "kind": "chunk",
            "seq": chunk.seq,
            "t_device_ns": None if t_dev is None else int(t_dev[0]),
            "t_device_last_ns": None if t_dev is None else int(t_dev[-1]),
            "t_host_ns": chunk.t_host_ns,
            "n": chunk.n,
            "gap_before": chunk.gap_before,
            "sample_index": self.n_samples,
        }
        self._events.write(json.dumps(line) + "\n")
        self.n_samples += chunk.n

    def _digitise(self, samples: np.ndarray) -> np.ndarray:
        scaled = np.asarray(samples, np.float64) / self._scale
        invalid = ~np.isfinite(scaled)
        scaled[invalid] = 0.0
        digital = np.round(scaled)
        off_grid = np.count_nonzero(_off_grid(samples, self._scale))
        if off_grid and not self.requantised:
            log.warning(
                "recording: %d samples are not multiples of the declared resolution; rounded", off_grid
            )
        self.requantised += int(off_grid)  # a numpy integer would reach recording.json as a string
        out_of_range = np.abs(digital) > INT32_MAX
        if out_of_range.any():
            self.clipped += int(out_of_range.sum())
            digital = np.clip(digital, -INT32_MAX, INT32_MAX)
        digital[invalid] = WFDB_INVALID
        return digital.astype(np.int64)

    def _write_events(self, stats: SourceStats) -> None:
        for event in stats.events[self._events_written :]:
            self._events.write(json.dumps(event, default=str) + "\n")
        self._events_written = len(stats.events)

    def close(self, stats: SourceStats | None = None) -> RecordingMeta:
        if stats is not None:
            self._write_events(stats)
        self._dat.close()
        self._events.close()
        n_channels = len(self.info.channels)
        scale = self._scale if self._scale is not None else np.ones(n_channels)
        first = self._first_values if self._first_values is not None else np.zeros(n_channels, np.int64)
        signals = tuple(
            SignalSpec(
                f"{RECORD_NAME}.dat",
                float(format_number(1.0 / s)),
                unit,
                int(v),
                checksum16(int(c)),
                name,
            )
            for s, unit, v, c, name in zip(scale, self.info.units, first, self._checksum, self.info.channels)
        )
        write_header(self.dir, Header(RECORD_NAME, self.info.fs, self.n_samples, signals, self.base_datetime))
        meta = RecordingMeta(
            FORMAT_VERSION,
            self.info.name,
            self.info.fs,
            tuple(self.info.channels),
            tuple(self.info.units),
            tuple(float(s) for s in scale),
            # exact only when every sample sat on the sensor's grid and nothing was clipped
            bool(self._exact and self.requantised == 0 and self.clipped == 0),
        )
        counts = {} if stats is None else {k: v for k, v in asdict(stats).items() if k != "events"}
        document = {
            **asdict(meta),
            "samples": self.n_samples,
            "clipped": self.clipped,
            "requantised": self.requantised,
            "base_datetime_utc": None if self.base_datetime is None else self.base_datetime.isoformat(),
            "stats": counts,
            "stream_meta": self.info.meta,
        }
        (self.dir / "recording.json").write_text(json.dumps(document, indent=2, default=str))
        return meta


def _choose_scale(samples: np.ndarray, resolution: tuple[float, ...] | None) -> tuple[np.ndarray, bool]:
    """The sensor's resolution when the data sits on its grid (exact), else a power-of-two step."""
    if resolution is not None:
        step = np.array(resolution, float)
        if not np.any(_off_grid(samples, step) & np.isfinite(samples)):  # non-finite: gaps, not data
            return step, True
        log.warning(
            "recording: samples are not multiples of the declared resolution %s; storing them as float data",
            resolution,
        )
    return _power_of_two_scale(samples), False


def _off_grid(samples: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Samples that are not a multiple of ``step``, beyond the rounding of their own float type
    (a float32 holds k x 1e-5 only to within half an ulp, which at 100 is 0.4 of that step)."""
    scaled = np.asarray(samples, np.float64) / step
    eps = np.finfo(samples.dtype).eps if np.issubdtype(samples.dtype, np.floating) else 0.0
    tolerance = 1e-3 + np.abs(np.asarray(samples, np.float64)) * eps / step
    return np.abs(scaled - np.round(scaled)) > tolerance


def _power_of_two_scale(samples: np.ndarray) -> np.ndarray:
    """Float data without a declared resolution: a power-of-two step leaving 2^16 headroom over the
    first chunk's peak in int32 (about 15 significant bits at that peak; values beyond are clipped
    and counted)."""
    finite = np.where(np.isfinite(samples), samples, 0.0)  # NaN/inf are stored as invalid samples
    peak = np.max(np.abs(finite), axis=0) if len(samples) else np.ones(samples.shape[1])
    peak = np.where(peak > 0, peak, 1.0)
    return np.exp2(np.ceil(np.log2(peak)) + 16 - 31)


def _wall_clock_of_first_sample(chunk: Chunk, fs: float) -> dt.datetime:
    """UTC time of the chunk's first sample: its host arrival moved onto the wall clock, less the
    chunk's own duration (the header's base time; millisecond resolution in the .hea)."""
    arrival_wall_ns = time.time_ns() - (time.monotonic_ns() - chunk.t_host_ns)
    first_ns = arrival_wall_ns - round((chunk.n - 1) * 1e9 / fs)
    first = dt.datetime.fromtimestamp(first_ns / 1e9, tz=dt.timezone.utc).replace(tzinfo=None)
    return first.replace(microsecond=first.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Recording:
    meta: RecordingMeta
    samples: np.ndarray  # (n, channels) float32, exactly as the source produced them
    chunks: list[dict]  # the chunk lines of events.jsonl, in order
    events: list[dict]  # the other lines


def is_recording(path: Path) -> bool:
    return (path / "recording.json").is_file() and (path / f"{RECORD_NAME}.hea").is_file()


def read_recording(path: str | Path) -> Recording:
    path = Path(path)
    if not is_recording(path):
        raise DatasetNotFoundError(
            f"{path} is not a recording (expected recording.json + {RECORD_NAME}.hea)",
            path=str(path),
            expected=["recording.json", f"{RECORD_NAME}.hea"],
        )
    document = json.loads((path / "recording.json").read_text())
    fields = {k: document[k] for k in RecordingMeta.__dataclass_fields__}
    meta = RecordingMeta(
        **{
            **fields,
            "channels": tuple(fields["channels"]),
            "units": tuple(fields["units"]),
            "scale": tuple(fields["scale"]),
        }
    )
    digital = read_format32(path, read_header(path / f"{RECORD_NAME}.hea")).reshape(-1, len(meta.channels))
    samples = (digital * np.array(meta.scale, np.float64)).astype(np.float32)
    samples[digital == WFDB_INVALID] = np.nan  # recorded as invalid: NaN/inf from the source
    lines = [json.loads(line) for line in (path / "events.jsonl").read_text().splitlines() if line.strip()]
    chunks = [line for line in lines if line["kind"] == "chunk"]
    if sum(c["n"] for c in chunks) != len(samples):
        raise DataError(
            f"{path}: events.jsonl lists {sum(c['n'] for c in chunks)} samples but the WFDB file "
            f"holds {len(samples)}",
            path=str(path),
            reason="sample count mismatch",
        )
    if not all(math.isfinite(s) and s > 0 for s in meta.scale):
        raise DataError(f"{path}: bad scale {meta.scale}", path=str(path), reason="scale")
    return Recording(meta, samples, chunks, [line for line in lines if line["kind"] != "chunk"])


def record_source(source, out_dir: str | Path, seconds: float | None = None, on_chunk=None) -> RecordingMeta:
    """Record `source` into `out_dir` until it ends, `seconds` of samples are in, or it is closed."""
    writer = RecordingWriter(out_dir, source.info)
    limit = None if seconds is None else round(seconds * source.info.fs)
    try:
        for chunk in source:
            if limit is not None and writer.n_samples + chunk.n > limit:
                chunk = Chunk(
                    chunk.samples[: limit - writer.n_samples],
                    chunk.t_host_ns,
                    None if chunk.t_device_ns is None else chunk.t_device_ns[: limit - writer.n_samples],
                    chunk.seq,
                    chunk.gap_before,
                )
            if chunk.n:
                writer.write(chunk, source.stats)
            if on_chunk is not None:
                on_chunk(chunk)
            if limit is not None and writer.n_samples >= limit:
                break
    finally:
        source.close()
        meta = writer.close(source.stats)
    return meta
