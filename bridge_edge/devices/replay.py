"""replay:// — play a file back as a live stream: recordings made by ``bridge-edge record``, plain
CSV, WFDB records and WESAD subject pickles.

Grammar::

    replay://<path>?[speed=1.0][&loop=0|1][&fs=<Hz>][&channels=<name,...>][&column=<name|index,...>]
        [&units=<unit,...>][&stream=ecg|ppg][&chunk=<seconds>]

- a recording directory (``recording.json`` + WFDB + ``events.jsonl``): the original chunks
  (sizes, seq, gap marks, device time) at the original pace; the samples are bit-exact.
- ``*.csv``/``*.txt``: ``fs`` required; ``column`` picks columns by header name or 0-based
  index (default: every column); a non-numeric first row is the header.
- ``*.hea`` (or a record path without extension): any WFDB record via the ``wfdb`` package (dev extra); ``channels``
  picks signals by name; fs comes from the header (a different ``fs=`` is an error).
- ``*.pkl``: a WESAD subject (``S2.pkl``), read without executing pickled code;
  ``stream=ppg`` (wrist BVP, 64 Hz, default) or ``stream=ecg`` (chest ECG, 700 Hz).

Pacing is an absolute schedule at ``speed`` × the original rate (``speed=0``: as fast as
possible); ``loop=1`` repeats forever with device time continuing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge_edge.devices.base import Chunk, SourceStats, StreamInfo
from bridge_edge.devices.pacing import Pacer
from bridge_edge.devices.recording import is_recording, read_recording
from bridge_edge.devices.urls import SourceURL, flag
from bridge_edge.errors import DataError, DatasetNotFoundError, DependencyMissingError

GRAMMAR = (
    "replay://<path>?[speed=1.0][&loop=0|1][&fs=<Hz>][&channels=<name,...>][&column=<name|index,...>]"
    "[&units=<unit,...>][&stream=ecg|ppg][&chunk=<seconds>]"
)
OPTIONS = ("speed", "loop", "fs", "channels", "column", "units", "stream", "chunk")


@dataclass(frozen=True)
class ChunkPlan:
    """Where each chunk starts, and what it carried when it was recorded (arrays: evenly cut)."""

    starts: np.ndarray  # first sample index per chunk
    offsets_s: np.ndarray  # when each chunk is due, relative to the first, at speed 1
    seq: list[int | None]
    gap_before: np.ndarray
    t_device_first: np.ndarray | None  # int64 per chunk, or None
    t_device_last: np.ndarray | None

    @classmethod
    def even(cls, n_samples: int, fs: float, chunk_n: int) -> ChunkPlan:
        starts = np.arange(0, n_samples, chunk_n)
        ends = np.minimum(starts + chunk_n, n_samples)
        step = 1e9 / fs
        return cls(
            starts,
            ends / fs,
            [None] * len(starts),
            np.zeros(len(starts), int),
            np.round(starts * step).astype(np.int64),
            np.round((ends - 1) * step).astype(np.int64),
        )

    @classmethod
    def cut(
        cls, n_samples: int, fs: float, chunk_sizes: Sequence[int], gaps: dict[int, int] | None = None
    ) -> ChunkPlan:
        """Chunks of ``chunk_sizes`` in turn; ``gaps`` maps a chunk number to the samples missing
        before it (counted as the stream's loss and skipped on its time axis and schedule)."""
        sizes = np.asarray(chunk_sizes, int)
        if len(sizes) == 0 or (sizes < 1).any():
            raise ValueError(f"chunk sizes must be >= 1, got {list(chunk_sizes)}")
        sizes = np.tile(sizes, -(-n_samples // int(sizes.sum())))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        starts = starts[starts < n_samples]
        ends = np.minimum(np.append(starts[1:], n_samples), n_samples)
        gap_before = np.zeros(len(starts), int)
        for k, missing in (gaps or {}).items():
            if 0 <= k < len(starts):
                gap_before[k] = missing
        timeline = starts + np.cumsum(gap_before)  # stream-time index of each chunk's first sample
        return cls(
            starts,
            (timeline + ends - starts) / fs,
            list(range(len(starts))),
            gap_before,
            None,
            None,
        )


class PlaybackSource:
    """Chunks of ``samples`` as ``plan`` cut them, paced at ``speed`` (0: as fast as possible).

    ``sample_clock`` (files: True) keeps the file's own time axis; False stamps the samples as a
    live sensor's are (host arrivals fitted by the stream's clock), which is what
    ``from_array`` streams for tests and benches. ``start_delay_s`` holds the first chunk back
    (paced sources only), so paced streams need not all complete a window at the same instant.
    """

    def __init__(
        self,
        samples: np.ndarray,
        info: StreamInfo,
        plan: ChunkPlan,
        speed: float = 1.0,
        loop: bool = False,
        *,
        sample_clock: bool = True,
        start_delay_s: float = 0.0,
    ):
        self.samples = samples
        self.info = dataclasses.replace(info, sample_clock=sample_clock)
        self.plan = plan
        self.loop = loop
        self.stats = SourceStats()
        self.pacer = Pacer(speed, start_delay_s=start_delay_s)
        self._closed = False

    def __iter__(self) -> Iterator[Chunk]:
        plan, n_total = self.plan, len(self.samples)
        ends = np.append(plan.starts[1:], n_total)
        period_s = (plan.offsets_s[-1] - plan.offsets_s[0]) + (ends[-1] - plan.starts[-1]) / self.info.fs
        device_span = None
        if plan.t_device_first is not None:
            device_span = int(plan.t_device_last[-1] - plan.t_device_first[0] + round(1e9 / self.info.fs))
        repetition = 0
        while not self._closed:
            for i, (start, end) in enumerate(zip(plan.starts, ends)):  # one iteration per chunk
                due = repetition * period_s + plan.offsets_s[i] - plan.offsets_s[0]
                self.pacer.wait_until(due, stop=lambda: self._closed)
                if self._closed:
                    return
                t_device = None
                if plan.t_device_first is not None:
                    shift = repetition * device_span
                    t_device = (
                        np.round(
                            np.linspace(plan.t_device_first[i], plan.t_device_last[i], end - start)
                        ).astype(np.int64)
                        + shift
                    )
                chunk = Chunk(
                    self.samples[start:end],
                    time.monotonic_ns(),
                    t_device,
                    plan.seq[i],
                    int(plan.gap_before[i]),
                )
                self.stats.count_chunk(chunk)
                yield chunk
            if not self.loop:
                return
            repetition += 1

    def close(self) -> None:
        self._closed = True


# -- file kinds -------------------------------------------------------------------------------------


def _recording(path: Path, parsed: SourceURL) -> tuple[np.ndarray, StreamInfo, ChunkPlan]:
    rec = read_recording(path)
    chunks = rec.chunks
    t_host = np.array([c["t_host_ns"] for c in chunks], np.int64)
    has_device = all(c["t_device_ns"] is not None for c in chunks)
    plan = ChunkPlan(
        np.array([c["sample_index"] for c in chunks], int),
        (t_host - t_host[0]) / 1e9,
        [c["seq"] for c in chunks],
        np.array([c["gap_before"] for c in chunks], int),
        np.array([c["t_device_ns"] for c in chunks], np.int64) if has_device else None,
        np.array([c["t_device_last_ns"] for c in chunks], np.int64) if has_device else None,
    )
    meta = rec.meta
    info = StreamInfo(
        f"replay {meta.name}",
        meta.fs,
        meta.channels,
        meta.units,
        resolution=meta.scale if meta.exact else None,
        meta={"path": str(path)},
    )
    return rec.samples, info, plan


def _pick_columns(parsed: SourceURL, header: list[str] | None, n_columns: int) -> list[int]:
    if "column" not in parsed.query:
        return list(range(n_columns))
    picked = []
    for item in parsed.query["column"].split(","):
        if item.isdigit() and int(item) < n_columns:
            picked.append(int(item))
        elif header is not None and item in header:
            picked.append(header.index(item))
        else:
            raise parsed.fail(f"column {item!r} not found (columns: {header or list(range(n_columns))})")
    return picked


def _csv(path: Path, parsed: SourceURL) -> tuple[np.ndarray, StreamInfo, ChunkPlan]:
    fs = parsed.positive("fs", None)
    if fs is None:
        raise parsed.fail("a CSV needs fs=")
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    delimiter = "\t" if "\t" in first else ","
    cells = [c.strip() for c in first.split(delimiter)]
    try:
        [float(c) for c in cells]
        header = None
    except ValueError:
        header = cells
    try:
        table = np.loadtxt(path, delimiter=delimiter, skiprows=1 if header else 0, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{path}: not a numeric CSV ({err})", path=str(path), reason=str(err)) from err
    columns = _pick_columns(parsed, header, table.shape[1])
    names = (
        tuple(parsed.query["channels"].split(","))
        if "channels" in parsed.query
        else tuple(header[c] if header else f"ch{c}" for c in columns)
    )
    if len(names) != len(columns):
        raise parsed.fail(f"{len(names)} channel names for {len(columns)} columns")
    samples = table[:, columns].astype(np.float32)
    units = _units(parsed, len(names))
    return (
        samples,
        StreamInfo(f"replay {path.name}", fs, names, units, meta={"path": str(path)}),
        _even(parsed, samples, fs),
    )


def _units(parsed: SourceURL, n: int) -> tuple[str, ...]:
    units = tuple(parsed.query.get("units", ",".join(["a.u."] * n)).split(","))
    if len(units) != n:
        raise parsed.fail(f"{len(units)} units for {n} channels")
    return units


def _even(parsed: SourceURL, samples: np.ndarray, fs: float) -> ChunkPlan:
    chunk_n = max(1, round(parsed.positive("chunk", 0.04) * fs))
    return ChunkPlan.even(len(samples), fs, chunk_n)


def _wfdb(record: Path, parsed: SourceURL) -> tuple[np.ndarray, StreamInfo, ChunkPlan]:
    try:
        import wfdb  # any WFDB record; the device's own recordings are read without it (wfdb_header)
    except ImportError as err:
        raise DependencyMissingError(
            f"replaying the WFDB record {record} needs the wfdb package (not part of the device extra)",
            package="wfdb",
            install_hint="pip install 'wfdb>=4.1'",
        ) from err

    header = wfdb.rdheader(str(record))
    names = list(header.sig_name)
    wanted = parsed.query["channels"].split(",") if "channels" in parsed.query else names
    missing = [w for w in wanted if w not in names]
    if missing:
        raise parsed.fail(f"WFDB record has no signal {missing} (signals: {names})")
    fs = parsed.positive("fs", float(header.fs))
    if abs(fs - header.fs) > 1e-9:
        raise parsed.fail(f"fs={fs:g} contradicts the WFDB header ({header.fs:g} Hz)")
    rec = wfdb.rdrecord(str(record), channel_names=wanted)
    samples = np.asarray(rec.p_signal, np.float32)
    info = StreamInfo(
        f"replay {record.name}", fs, tuple(wanted), tuple(rec.units), meta={"path": str(record)}
    )
    return samples, info, _even(parsed, samples, fs)


def _wesad(path: Path, parsed: SourceURL) -> tuple[np.ndarray, StreamInfo, ChunkPlan]:
    from bridge_edge.signals.datasets.wesad import load_wesad_subject

    stream = parsed.choice("stream", ("ecg", "ppg"), "ppg")
    subject = load_wesad_subject(path)
    signal, fs, unit = (
        (subject.ecg, subject.fs_ecg, "mV") if stream == "ecg" else (subject.ppg, subject.fs_ppg, "a.u.")
    )
    samples = np.asarray(signal, np.float32).reshape(-1, 1)
    info = StreamInfo(f"replay WESAD {path.stem} {stream}", fs, (stream,), (unit,), meta={"path": str(path)})
    return samples, info, _even(parsed, samples, fs)


def open(url: str) -> PlaybackSource:
    parsed = SourceURL.parse(url, "replay", GRAMMAR, OPTIONS)
    if not parsed.target:
        raise parsed.fail("missing path")
    path = Path(parsed.target)
    if path.is_dir() and is_recording(path):
        samples, info, plan = _recording(path, parsed)
    elif path.suffix.lower() in (".csv", ".txt") and path.is_file():
        samples, info, plan = _csv(path, parsed)
    elif path.suffix.lower() == ".pkl" and path.is_file():
        samples, info, plan = _wesad(path, parsed)
    elif path.suffix == ".hea" and path.is_file():
        samples, info, plan = _wfdb(path.with_suffix(""), parsed)
    elif path.with_name(path.name + ".hea").is_file():
        samples, info, plan = _wfdb(path, parsed)
    else:
        raise DatasetNotFoundError(
            f"nothing to replay at {path}: expected a recording directory, a .csv, a WFDB record or a WESAD .pkl; "
            f"URL grammar: {GRAMMAR}",
            path=str(path),
            expected=["recording dir", ".csv", ".hea", ".pkl"],
        )
    if len(samples) == 0:
        raise DataError(f"{path} holds no samples", path=str(path), reason="empty")
    return PlaybackSource(samples, info, plan, parsed.speed(), parsed.get("loop", flag, False))


def from_array(
    samples: np.ndarray,
    fs: float,
    *,
    chunk_sizes: Sequence[int] = (25,),
    channels: tuple[str, ...] = ("ppg",),
    gaps: dict[int, int] | None = None,
    speed: float = 0.0,
    name: str = "array",
    start_delay_s: float = 0.0,
) -> PlaybackSource:
    """The replay source over samples already in memory, stamped as a live sensor's are: chunks
    of ``chunk_sizes`` in turn (``gaps``: chunk number -> samples missing before it), paced at
    ``speed`` x real time (0: as fast as possible). Tests and the pipeline benches stream with it."""
    samples = np.asarray(samples, np.float32)
    if len(samples) == 0:
        raise DataError(f"{name}: no samples to stream", path=name, reason="empty")
    samples = samples.reshape(len(samples), -1)
    if samples.shape[1] != len(channels):
        raise DataError(
            f"{name}: {samples.shape[1]} columns for channels {list(channels)}; expected one per channel",
            path=name,
            reason="channels",
        )
    info = StreamInfo(name, float(fs), tuple(channels), ("a.u.",) * len(channels))
    plan = ChunkPlan.cut(len(samples), float(fs), chunk_sizes, gaps)
    return PlaybackSource(samples, info, plan, speed, sample_clock=False, start_delay_s=start_delay_s)
