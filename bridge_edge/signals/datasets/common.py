"""Checks and helpers every dataset loader shares, so bad input fails the same clear way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bridge_edge.errors import DataError, SampleRateError
from bridge_edge.signals.datasets.splits import split_subjects
from bridge_edge.signals.preprocess import check_finite
from bridge_edge.signals.types import Gap, PairedDataset, PairedRecording, Splits

MIN_FS_ECG = 100.0  # below this a QRS complex is a sample or two wide
MIN_FS_PPG = 20.0  # the ppg-v1 band-pass needs more than 16 Hz
DURATION_TOLERANCE_S = 1.0  # ECG and PPG of one recording must cover the same time


def validate_recording(rec: PairedRecording, where: str | Path) -> PairedRecording:
    """Raise a typed error naming ``where`` if the recording cannot be used as is."""
    where = str(where)
    for name, fs, minimum in (("ECG", rec.fs_ecg, MIN_FS_ECG), ("PPG", rec.fs_ppg, MIN_FS_PPG)):
        if not np.isfinite(fs) or fs < minimum:
            raise SampleRateError(
                f"{where}: {name} sampling rate {fs} Hz is invalid; expected at least {minimum} Hz",
                expected_hz=minimum,
                got_hz=fs,
                where=where,
            )
    dur_ecg, dur_ppg = len(rec.ecg) / rec.fs_ecg, len(rec.ppg) / rec.fs_ppg
    if abs(dur_ecg - dur_ppg) > max(DURATION_TOLERANCE_S, 0.01 * max(dur_ecg, dur_ppg)):
        raise SampleRateError(
            f"{where}: ECG covers {dur_ecg:.1f} s at {rec.fs_ecg:g} Hz but PPG covers {dur_ppg:.1f} s at "
            f"{rec.fs_ppg:g} Hz; expected the same duration (is a sampling rate wrong?)",
            expected_hz=len(rec.ppg) / dur_ecg,
            got_hz=rec.fs_ppg,
            where=where,
        )
    if len(rec.rhythm) != len(rec.ecg):
        raise DataError(
            f"{where}: {len(rec.rhythm)} rhythm labels for {len(rec.ecg)} ECG samples; expected one per sample",
            path=where,
            reason="label length",
        )
    check_finite(rec.ecg, f"{where} ECG")
    check_finite(rec.ppg, f"{where} PPG")
    return rec


def labels_by_index(labels: np.ndarray, n_out: int, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample a label track by index (nearest earlier sample), never by FFT."""
    idx = np.floor(np.arange(n_out) * (fs_in / fs_out)).astype(np.int64)
    return np.asarray(labels)[np.clip(idx, 0, len(labels) - 1)]


def dataset_from_recordings(
    recordings: Sequence[PairedRecording],
    labels: Sequence[str],
    seed: int,
    source: str,
    gaps: Sequence[Gap] = (),
) -> PairedDataset:
    """Recordings (or pieces of them, datasets.gaps) keyed by piece; split by subject, so every
    piece of a subject lands in the subject's split."""
    from bridge_edge.signals.datasets.gaps import piece_key

    by_key = {piece_key(r): r for r in recordings}
    if len(by_key) != len(recordings):
        raise DataError(f"{source}: duplicate subject ids", path=source, reason="duplicate subject ids")
    return dataset_from_pieces(
        {k: r.subject_id for k, r in by_key.items()}, by_key, labels, seed, source, gaps
    )


def dataset_from_pieces(
    subject_of: Mapping[str, str],
    recordings: Mapping[str, PairedRecording],
    labels: Sequence[str],
    seed: int,
    source: str,
    gaps: Sequence[Gap] = (),
) -> PairedDataset:
    """``recordings`` (piece key -> recording, possibly read only when asked for) split by the
    subject each piece belongs to (``subject_of``)."""
    by_subject = split_subjects(set(subject_of.values()), seed)
    splits = Splits(
        **{
            name: tuple(sorted(k for k, subject in subject_of.items() if subject in ids))
            for name, ids in by_subject.as_dict().items()
        }
    )
    return PairedDataset(
        labels=tuple(labels), splits=splits, recordings=recordings, source=source, gaps=tuple(gaps)
    )
