"""Recordings written by ``bridge-edge record`` (DESIGN §4) and read back by ``replay://DIR``.

A recording directory holds:

- ``signal.hea`` + ``signal.dat``: WFDB, format 32 (int32 LE, channels interleaved), readable by
  ``wfdb.rdrecord`` and every PhysioNet tool. The ADC gain is 1 / the sensor's resolution, so
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

import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bridge_edge.devices.base import Chunk, SourceStats, StreamInfo
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

    def write(self, chunk: Chunk, stats: SourceStats | None = None) -> None:
        if stats is not None:
            self._write_events(stats)
        if self._scale is None:
            self._scale, self._exact = _choose_scale(chunk.samples, self.info.resolution)
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
        off_grid = np.count_nonzero(np.abs(digital - scaled) > 1e-3)  # beyond float noise: really off-grid
        if off_grid and not self.requantised:
            log.warning(
                "recording: %d samples are not multiples of the declared resolution; rounded", off_grid
            )
        self.requantised += off_grid
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
        import wfdb

        if stats is not None:
            self._write_events(stats)
        self._dat.close()
        self._events.close()
        n_channels = len(self.info.channels)
        scale = self._scale if self._scale is not None else np.ones(n_channels)
        first = self._first_values if self._first_values is not None else np.zeros(n_channels, np.int64)
        checksum = [int(((c + 32768) % 65536) - 32768) for c in self._checksum]
        wfdb.Record(
            record_name=RECORD_NAME,
            n_sig=n_channels,
            fs=self.info.fs,
            sig_len=self.n_samples,
            file_name=[f"{RECORD_NAME}.dat"] * n_channels,
            fmt=["32"] * n_channels,
            adc_gain=[float(f"{1.0 / s:.12g}") for s in scale],
            baseline=[0] * n_channels,
            units=[_wfdb_unit(u) for u in self.info.units],
            sig_name=list(self.info.channels),
            adc_zero=[0] * n_channels,
            adc_res=[32] * n_channels,
            init_value=[int(v) for v in first],
            checksum=checksum,
            block_size=[0] * n_channels,
        ).wrheader(write_dir=str(self.dir))
        meta = RecordingMeta(
            FORMAT_VERSION,
            self.info.name,
            self.info.fs,
            tuple(self.info.channels),
            tuple(self.info.units),
            tuple(float(s) for s in scale),
            self._exact,
        )
        counts = {} if stats is None else {k: v for k, v in asdict(stats).items() if k != "events"}
        document = {
            **asdict(meta),
            "samples": self.n_samples,
            "clipped": self.clipped,
            "requantised": self.requantised,
            "stats": counts,
            "stream_meta": self.info.meta,
        }
        (self.dir / "recording.json").write_text(json.dumps(document, indent=2, default=str))
        return meta


def _choose_scale(samples: np.ndarray, resolution: tuple[float, ...] | None) -> tuple[np.ndarray, bool]:
    """The sensor's resolution when the data sits on its grid (exact), else a power-of-two step."""
    if resolution is not None:
        step = np.array(resolution, float)
        scaled = np.asarray(samples, np.float64) / step
        if np.all(~np.isfinite(scaled) | (np.abs(scaled - np.round(scaled)) <= 1e-3)):
            return step, True
        log.warning(
            "recording: samples are not multiples of the declared resolution %s; storing them as float data",
            resolution,
        )
    return _power_of_two_scale(samples), False


def _power_of_two_scale(samples: np.ndarray) -> np.ndarray:
    """Float data without a declared resolution: a power-of-two step leaving 2^16 headroom over the
    first chunk's peak in int32 (about 15 significant bits at that peak; values beyond are clipped
    and counted)."""
    finite = np.where(np.isfinite(samples), samples, 0.0)  # NaN/inf are stored as invalid samples
    peak = np.max(np.abs(finite), axis=0) if len(samples) else np.ones(samples.shape[1])
    peak = np.where(peak > 0, peak, 1.0)
    return np.exp2(np.ceil(np.log2(peak)) + 16 - 31)


def _wfdb_unit(unit: str) -> str:
    """WFDB header units are one token without dots; dimensionless is NU (normalised units)."""
    return unit if re.fullmatch(r"[A-Za-z%/^*0-9-]+", unit) else "NU"


@dataclass(frozen=True)
class Recording:
    meta: RecordingMeta
    samples: np.ndarray  # (n, channels) float32, exactly as the source produced them
    chunks: list[dict]  # the chunk lines of events.jsonl, in order
    events: list[dict]  # the other lines


def is_recording(path: Path) -> bool:
    return (path / "recording.json").is_file() and (path / f"{RECORD_NAME}.hea").is_file()


def read_recording(path: str | Path) -> Recording:
    import wfdb

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
    record = wfdb.rdrecord(str(path / RECORD_NAME), physical=False, return_res=32)
    digital = np.asarray(record.d_signal, np.int64).reshape(-1, len(meta.channels))
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
