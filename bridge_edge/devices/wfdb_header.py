"""WFDB headers (``.hea``) written and read without the ``wfdb`` package (docs/sources.md).

The device writes format-32 records (int32 little-endian, channels interleaved, one ``.dat``),
so it needs only the header: a record line and one signal line per channel, as specified by
PhysioNet's header(5) page::

    <record> <n_sig> <fs> <sig_len> <HH:MM:SS.mmm> <DD/MM/YYYY>
    <file> 32 <gain>(<baseline>)/<units> 32 <adc_zero> <init_value> <checksum> 0 <description>

``wfdb.rdrecord`` reads these (the dev extra keeps ``wfdb`` and the tests check every recording
the device writes with it). ``read_header``/``read_format32`` read back only what
``write_header`` writes; other WFDB records go through ``wfdb`` (``replay://record.hea``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge_edge.errors import DataError

UNIT_PATTERN = r"[A-Za-z0-9%/^?_-]+"  # one token; wfdb's reader takes word characters, ^ - ? % /
_NAME = re.compile(r"[-\w]+")


@dataclass(frozen=True)
class SignalSpec:
    file_name: str
    gain: float  # integer steps per physical unit
    units: str
    init_value: int
    checksum: int  # 16-bit signed sum of all stored samples
    description: str
    baseline: int = 0


@dataclass(frozen=True)
class Header:
    record_name: str
    fs: float
    sig_len: int
    signals: tuple[SignalSpec, ...]
    base_datetime: dt.datetime | None = None  # time of the first sample (UTC, docs/sources.md)


def wfdb_unit(unit: str) -> str:
    """Header units are one token; anything else (``a.u.``, ``µV`` …) is NU (normalised units)."""
    return unit if re.fullmatch(UNIT_PATTERN, unit) else "NU"


def checksum16(total: int) -> int:
    """WFDB checksum: the sum of the samples as a 16-bit two's complement number."""
    return int(((total + 32768) % 65536) - 32768)


def format_number(value: float) -> str:
    """Plain decimal with at most 12 significant digits (1e6 -> ``1000000``, 0.5 -> ``0.5``)."""
    return np.format_float_positional(float(f"{value:.12g}"), trim="-")


def format_header(header: Header) -> str:
    if not _NAME.fullmatch(header.record_name):
        raise DataError(
            f"WFDB record name {header.record_name!r} must be letters, digits, _ or -",
            path=header.record_name,
            reason="record name",
        )
    record = [header.record_name, str(len(header.signals)), format_number(header.fs), str(header.sig_len)]
    if header.base_datetime is not None:
        t = header.base_datetime
        record += [f"{t:%H:%M:%S}.{t.microsecond // 1000:03d}", f"{t:%d/%m/%Y}"]
    lines = [" ".join(record)]
    for s in header.signals:
        description = " ".join(s.description.split()) or "signal"  # one line, no tabs
        lines.append(
            f"{s.file_name} 32 {format_number(s.gain)}({s.baseline})/{wfdb_unit(s.units)} 32 0 "
            f"{s.init_value} {s.checksum} 0 {description}"
        )
    return "\n".join(lines) + "\n"


def write_header(directory: str | Path, header: Header) -> Path:
    path = Path(directory) / f"{header.record_name}.hea"
    path.write_text(format_header(header), encoding="ascii", errors="replace")
    return path


def read_header(path: str | Path) -> Header:
    """Parse a header that ``write_header`` wrote (single-segment, format 32)."""
    path = Path(path)
    lines = [
        line.split("#", 1)[0].strip()
        for line in path.read_text(encoding="ascii", errors="replace").splitlines()
    ]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{path}: empty WFDB header", path=str(path), reason="empty header")
    fields = lines[0].split()
    try:
        name, n_sig, fs, sig_len = fields[0], int(fields[1]), float(fields[2]), int(fields[3])
        base = None
        if len(fields) >= 6:
            base = dt.datetime.strptime(f"{fields[4]} {fields[5]}", "%H:%M:%S.%f %d/%m/%Y")
        signals = tuple(_signal(line) for line in lines[1 : 1 + n_sig])
    except (IndexError, ValueError) as err:
        raise DataError(
            f"{path}: not a bridge-edge WFDB header ({err}); expected `<record> <n_sig> <fs> <sig_len> "
            "[time date]` and format-32 signal lines",
            path=str(path),
            reason="header syntax",
        ) from err
    if len(signals) != n_sig:
        raise DataError(
            f"{path}: {n_sig} signals declared, {len(signals)} signal lines", path=str(path), reason="n_sig"
        )
    return Header(name, fs, sig_len, signals, base)


def _signal(line: str) -> SignalSpec:
    parts = line.split(maxsplit=8)
    file_name, fmt, gain_field = parts[0], parts[1], parts[2]
    if fmt != "32":
        raise ValueError(f"format {fmt} (only format 32 is read without wfdb)")
    match = re.fullmatch(r"([-+0-9.eE]+)(?:\((-?\d+)\))?(?:/(\S+))?", gain_field)
    if match is None:
        raise ValueError(f"gain field {gain_field!r}")
    return SignalSpec(
        file_name,
        float(match.group(1)),
        match.group(3) or "mV",
        int(parts[5]),
        int(parts[6]),
        parts[8] if len(parts) > 8 else "",
        int(match.group(2) or 0),
    )


def read_format32(directory: str | Path, header: Header) -> np.ndarray:
    """The stored integers, (sig_len, n_sig) int64, from the header's one ``.dat`` file."""
    files = {s.file_name for s in header.signals}
    if len(files) != 1:
        raise DataError(
            f"{directory}: signals in {sorted(files)}; expected one interleaved .dat",
            path=str(directory),
            reason="files",
        )
    dat = Path(directory) / files.pop()
    n_sig = len(header.signals)
    raw = np.fromfile(dat, dtype="<i4")
    if raw.size != header.sig_len * n_sig:
        raise DataError(
            f"{dat}: holds {raw.size} int32 values; the header declares {header.sig_len} x {n_sig}",
            path=str(dat),
            reason="sample count mismatch",
        )
    digital = raw.reshape(header.sig_len, n_sig).astype(np.int64)
    sums = [checksum16(int(total)) for total in digital.sum(axis=0)]
    bad = [s.description for s, c in zip(header.signals, sums) if s.checksum != c]
    if bad:
        raise DataError(f"{dat}: checksum mismatch in {bad}", path=str(dat), reason="checksum")
    return digital
