"""Loader for WFDB records (PhysioNet format: ``<record>.hea`` + signal files) holding ECG and PPG.

The ECG channel is the first whose name contains ``ecg``, ``ii`` or ``mlii``; the PPG channel the
first whose name contains ``ppg``, ``pleth`` or ``bvp`` (case-insensitive). Both are read at the
record's sampling rate (one ``fs`` per record, as ``record`` writes). Rhythm labels come from a
``<record>.atr`` annotation file when present, using the MIT-BIH rhythm notes in ``aux_note``:
``(N`` / ``(SBR`` -> sinus, ``(AFIB`` -> afib, ``(B`` / ``(T`` (bigeminy, trigeminy) -> ectopy,
anything else -> unlabelled; a note holds until the next one. A spec may be one record (path with
or without ``.hea``) or a directory of records. ``wfdb`` is imported lazily.

Non-finite samples (a PPG dropout, a lead-off: NaN in the record) do not abort the load: the
record is split at them (datasets.gaps), the pieces load as the same subject, and every cut span
is in ``PairedDataset.gaps`` (the fit report lists them, docs/scale.md).

MIMIC-style trees (docs/scale.md, "MIMIC-style record trees"): a directory is searched
recursively; a multi-segment record (``name/N`` on its header's first line) loads as one record,
its segment and layout headers are not loaded again, and segments that lack a channel or the
``~`` gap segments between them read as NaN, which becomes counted gaps. A record under a
patient folder (``p`` + 6 or more digits, as MIMIC-III and MIMIC-IV name them) belongs to that
patient, so all of a patient's records land in one split. In a directory, a record without an
ECG or a PPG channel is not loaded and its whole length is reported as a gap of the missing
channel; given alone, it is an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge_edge.errors import DataError, DatasetNotFoundError, DependencyMissingError
from bridge_edge.signals.datasets.common import dataset_from_pieces, validate_recording
from bridge_edge.signals.datasets.gaps import piece_key, split_at_gaps
from bridge_edge.signals.simulator import LABELS
from bridge_edge.signals.types import Gap, PairedDataset, PairedRecording

log = logging.getLogger(__name__)

ECG_NAMES = ("ecg", "mlii", "ii")
PPG_NAMES = ("ppg", "pleth", "bvp")
RHYTHM_NOTES = {"(N": "sinus", "(SBR": "sinus", "(AFIB": "afib", "(B": "ectopy", "(T": "ectopy"}
PATIENT_FOLDER = re.compile(r"p\d{6,}")  # MIMIC-III p000020, MIMIC-IV p10014354


def is_wfdb(path: Path) -> bool:
    return path.with_suffix(".hea").is_file() or (
        path.is_dir() and next(path.rglob("*.hea"), None) is not None
    )


def load_wfdb_dataset(path: Path, seed: int = 0) -> PairedDataset:
    """The records ``path`` names, scanned once for their pieces and gaps and then read again
    one record at a time as the dataset is iterated (``RecordPieces``)."""
    records = find_records(path)
    if not records:
        raise DatasetNotFoundError(
            f"no WFDB header at {path}; expected <record>.hea (+ its signal file) or a directory of them",
            path=str(path),
            expected="<record>.hea",
        )
    in_tree = path.is_dir()
    where, subjects, gaps = {}, {}, []
    for r in records:
        source = RecordSource(
            r,
            subject_of(r, path) if in_tree else r.name,
            r.relative_to(path).as_posix() if in_tree else r.name,
            skip_partial=in_tree,
        )
        pieces, g = source.load()
        for k, piece in enumerate(pieces):
            where[piece_key(piece)] = (source, k)
            subjects[piece_key(piece)] = piece.subject_id
        gaps += g
    return dataset_from_pieces(subjects, RecordPieces(where), LABELS, seed, str(path), gaps)


@dataclass(frozen=True)
class RecordSource:
    """One WFDB record and how the dataset names it (``load_wfdb_record``'s arguments)."""

    record: Path
    subject: str
    key: str
    skip_partial: bool = False

    def load(self) -> tuple[list[PairedRecording], list[Gap]]:
        return load_wfdb_record(
            self.record, subject=self.subject, key=self.key, skip_partial=self.skip_partial
        )


class RecordPieces(Mapping):
    """Piece key -> that piece of its WFDB record, read from the record when asked for. The last
    record's pieces are kept, so iterating a split (its keys in sorted order, where a record's
    pieces ``rec``, ``rec~1``, ... follow each other unless another record's name sorts between
    them) reads each record once and holds one record in RAM, whatever the corpus' size
    (docs/scale.md)."""

    def __init__(self, where: dict[str, tuple[RecordSource, int]]) -> None:
        self._where = where
        self._last: tuple[RecordSource | None, list[PairedRecording]] = (None, [])

    def __getitem__(self, piece: str) -> PairedRecording:
        source, k = self._where[piece]
        if self._last[0] != source:
            self._last = (source, source.load()[0])
        return self._last[1][k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def find_records(path: Path) -> list[Path]:
    """The records (paths without ``.hea``) that ``path`` names: itself, or every record in the
    tree under it except the segments and layouts of its multi-segment records."""
    if not path.is_dir():
        return [path.with_suffix("")] if path.with_suffix(".hea").is_file() else []
    headers = sorted(path.rglob("*.hea"))
    parts = {h.parent / name for h in headers for name in _segment_names(h)}
    return [h.with_suffix("") for h in headers if h.with_suffix("") not in parts]


def _segment_names(header: Path) -> list[str]:
    """The segment records a multi-segment header lists (``~`` gap segments left out); [] for a
    single-segment header. WFDB's first non-comment line is ``name[/segments] signals ...``."""
    lines = [ln.split() for ln in header.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln[0].startswith("#")]
    if not lines or "/" not in lines[0][0]:
        return []
    return [ln[0] for ln in lines[1:] if ln[0] != "~"]


def subject_of(record: Path, root: Path) -> str:
    """The nearest enclosing patient folder (MIMIC: ``p`` + 6 or more digits) below ``root``,
    else the record's own name: each record is then a subject of its own."""
    for folder in reversed(record.relative_to(root).parts[:-1]):
        if PATIENT_FOLDER.fullmatch(folder):
            return folder
    return record.name


def _find_channel(names: list[str], wanted: tuple[str, ...]) -> int | None:
    lower = [n.lower() for n in names]
    for key in wanted:
        for i, n in enumerate(lower):
            if key in n:
                return i
    return None


def load_wfdb_record(
    record: Path, *, subject: str | None = None, key: str | None = None, skip_partial: bool = False
) -> tuple[list[PairedRecording], list[Gap]]:
    """(finite pieces of the record, the gaps cut out of it); one piece when there is no gap.

    ``subject`` (default: the record's name) is who the record belongs to; ``key`` (default: the
    record's name) names it and its pieces in the dataset. ``skip_partial``: a record without an
    ECG or a PPG channel loads as no piece and one gap of its length, instead of an error."""
    try:
        import wfdb
    except ImportError as err:
        raise DependencyMissingError(
            "reading WFDB records needs the wfdb package", package="wfdb", install_hint="pip install wfdb"
        ) from err
    key = key or record.name
    try:
        names, n, fs = _channels(wfdb, record)
        found = {
            what: _find_channel(names, wanted) for what, wanted in (("ecg", ECG_NAMES), ("ppg", PPG_NAMES))
        }
        missing = tuple(what for what, i in found.items() if i is None)
        if missing and skip_partial:
            log.warning(
                "%s.hea has no %s channel (channels %s); its %d samples are counted as a gap",
                record,
                "/".join(missing),
                names,
                n,
            )
            return [], [Gap(key, 0.0, n / fs, missing)]
        if missing:
            raise DataError(
                f"{record}.hea has channels {names}; expected an ECG channel named like one of {ECG_NAMES} "
                f"and a PPG channel named like one of {PPG_NAMES}",
                path=str(record),
                reason=f"no {'/'.join(missing)} channel",
            )
        # by name: a multi-segment record's segments may order their channels differently
        rec = wfdb.rdrecord(str(record), channel_names=[names[found["ecg"]], names[found["ppg"]]])
    except (OSError, ValueError) as err:
        raise DataError(
            f"cannot read WFDB record {record}: {err}", path=str(record), reason=str(err)
        ) from err
    signals = rec.p_signal
    rhythm = _rhythm_from_annotations(record, signals.shape[0])
    out = PairedRecording(
        subject_id=subject or record.name,
        ecg=signals[:, 0].astype(np.float32),
        ppg=signals[:, 1].astype(np.float32),
        fs_ecg=fs,
        fs_ppg=fs,
        rhythm=rhythm,
        r_peaks=np.zeros(0, np.int64),
        labels=LABELS,
        meta={"source": "wfdb", "record": str(record), "units": list(rec.units), "piece": key},
    )
    pieces, gaps = split_at_gaps(out)
    return [validate_recording(p, f"{record}.hea") for p in pieces], gaps


def _channels(wfdb, record: Path) -> tuple[list[str], int, float]:
    """(channel names, samples, fs) from the headers alone. A variable-layout multi-segment
    record names its channels in its layout segment (the first, of length 0)."""
    head = wfdb.rdheader(str(record))
    names = head.sig_name
    if names is None:  # multi-segment with a layout header
        first = record.parent / head.seg_name[0]
        names = wfdb.rdheader(str(first)).sig_name
    return list(names), int(head.sig_len), float(head.fs)


def _rhythm_from_annotations(record: Path, n: int) -> np.ndarray:
    rhythm = np.full(n, -1, np.int8)
    if not record.with_suffix(".atr").is_file():
        return rhythm
    import wfdb

    ann = wfdb.rdann(str(record), "atr")
    notes = [(s, str(a).strip("\x00 ")) for s, a in zip(ann.sample, ann.aux_note) if str(a).startswith("(")]
    if not notes:
        return rhythm
    starts = np.array([s for s, _ in notes], dtype=np.int64)
    codes = np.array([LABELS.index(RHYTHM_NOTES[a]) if a in RHYTHM_NOTES else -1 for _, a in notes], np.int8)
    which = np.searchsorted(starts, np.arange(n), side="right") - 1
    return np.where(which >= 0, codes[np.clip(which, 0, None)], -1).astype(np.int8)
