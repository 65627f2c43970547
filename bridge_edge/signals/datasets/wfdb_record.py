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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge_edge.errors import DataError, DatasetNotFoundError, DependencyMissingError
from bridge_edge.signals.datasets.common import dataset_from_recordings, validate_recording
from bridge_edge.signals.datasets.gaps import split_at_gaps
from bridge_edge.signals.simulator import LABELS
from bridge_edge.signals.types import PairedDataset, PairedRecording

ECG_NAMES = ("ecg", "mlii", "ii")
PPG_NAMES = ("ppg", "pleth", "bvp")
RHYTHM_NOTES = {"(N": "sinus", "(SBR": "sinus", "(AFIB": "afib", "(B": "ectopy", "(T": "ectopy"}


def is_wfdb(path: Path) -> bool:
    return path.with_suffix(".hea").is_file() or (path.is_dir() and any(path.glob("*.hea")))


def load_wfdb_dataset(path: Path, seed: int = 0) -> PairedDataset:
    if path.is_dir():
        records = sorted(p.with_suffix("") for p in path.glob("*.hea"))
    else:
        records = [path.with_suffix("")] if path.with_suffix(".hea").is_file() else []
    if not records:
        raise DatasetNotFoundError(
            f"no WFDB header at {path}; expected <record>.hea (+ its signal file) or a directory of them",
            path=str(path),
            expected="<record>.hea",
        )
    pieces, gaps = [], []
    for r in records:
        p, g = load_wfdb_record(r)
        pieces += p
        gaps += g
    return dataset_from_recordings(pieces, LABELS, seed, str(path), gaps)


def _find_channel(names: list[str], wanted: tuple[str, ...], record: Path, what: str) -> int:
    lower = [n.lower() for n in names]
    for key in wanted:
        for i, n in enumerate(lower):
            if key in n:
                return i
    raise DataError(
        f"{record}.hea has channels {names}; expected a {what} channel named like one of {wanted}",
        path=str(record),
        reason=f"no {what} channel",
    )


def load_wfdb_record(record: Path) -> tuple[list[PairedRecording], list]:
    """(finite pieces of the record, the gaps cut out of it); one piece when there is no gap."""
    try:
        import wfdb
    except ImportError as err:
        raise DependencyMissingError(
            "reading WFDB records needs the wfdb package", package="wfdb", install_hint="pip install wfdb"
        ) from err
    try:
        rec = wfdb.rdrecord(str(record))
    except (OSError, ValueError) as err:
        raise DataError(
            f"cannot read WFDB record {record}: {err}", path=str(record), reason=str(err)
        ) from err
    ecg_i = _find_channel(rec.sig_name, ECG_NAMES, record, "ECG")
    ppg_i = _find_channel(rec.sig_name, PPG_NAMES, record, "PPG")
    signals = rec.p_signal
    fs = float(rec.fs)
    rhythm = _rhythm_from_annotations(record, signals.shape[0])
    out = PairedRecording(
        subject_id=record.name,
        ecg=signals[:, ecg_i].astype(np.float32),
        ppg=signals[:, ppg_i].astype(np.float32),
        fs_ecg=fs,
        fs_ppg=fs,
        rhythm=rhythm,
        r_peaks=np.zeros(0, np.int64),
        labels=LABELS,
        meta={"source": "wfdb", "record": str(record), "units": [rec.units[ecg_i], rec.units[ppg_i]]},
    )
    pieces, gaps = split_at_gaps(out)
    return [validate_recording(p, f"{record}.hea") for p in pieces], gaps


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
