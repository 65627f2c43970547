"""Split a recording at its runs of non-finite samples instead of refusing the whole recording.

A PPG dropout or an ECG lead-off in a clinical record (MIMIC-style WFDB) is stored as NaN. Those
spans are cut out of both channels (the pair stays aligned) and each is reported as a ``Gap``;
the finite pieces between them load as pieces of the same subject (``types.PairedDataset``).
A piece shorter than ``MIN_PIECE_S`` is dropped and its span counted in the gap that follows
it, so every lost sample is in a reported gap. Vectorised: no per-sample Python loop.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bridge_edge.errors import SampleRateError
from bridge_edge.signals.types import Gap, PairedRecording

MIN_PIECE_S = 2.0  # shorter finite stretches between gaps hold no window and are not worth a filter pass


def _runs(mask: np.ndarray) -> np.ndarray:
    """(k, 2) [start, stop) sample ranges where ``mask`` is true."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def split_at_gaps(
    rec: PairedRecording, min_piece_s: float = MIN_PIECE_S
) -> tuple[list[PairedRecording], list[Gap]]:
    """(finite pieces, gaps) of a recording whose ECG and PPG share one sampling rate (WFDB)."""
    if rec.fs_ecg != rec.fs_ppg or len(rec.ecg) != len(rec.ppg):
        raise SampleRateError(
            f"{rec.subject_id}: splitting at gaps needs ECG and PPG on one clock; got {len(rec.ecg)} samples "
            f"at {rec.fs_ecg:g} Hz and {len(rec.ppg)} at {rec.fs_ppg:g} Hz",
            expected_hz=rec.fs_ecg,
            got_hz=rec.fs_ppg,
            where=rec.subject_id,
        )
    bad_ecg, bad_ppg = ~np.isfinite(rec.ecg), ~np.isfinite(rec.ppg)
    bad = bad_ecg | bad_ppg
    if not bad.any():
        return [rec], []
    fs, n, name = rec.fs_ecg, len(rec.ecg), piece_key(rec)
    good = _runs(~bad)
    keep = good[(good[:, 1] - good[:, 0]) >= min_piece_s * fs]
    lost = _runs(np.ones(n, bool) if not len(keep) else _outside(keep, n))
    gaps = []
    for start, stop in lost:
        channels = tuple(
            name for name, mask in (("ecg", bad_ecg), ("ppg", bad_ppg)) if mask[start:stop].any()
        ) or ("ecg", "ppg")  # only a too-short finite piece: both channels were finite there
        gaps.append(Gap(name, float(start / fs), float((stop - start) / fs), channels))
    pieces = [
        dataclasses.replace(
            rec,
            ecg=rec.ecg[a:b],
            ppg=rec.ppg[a:b],
            rhythm=rec.rhythm[a:b],
            r_peaks=rec.r_peaks[(rec.r_peaks >= a) & (rec.r_peaks < b)] - a,
            meta=rec.meta | {"piece": _piece_key(name, k), "start_s": float(a / fs)},
        )
        for k, (a, b) in enumerate(keep)
    ]
    return pieces, gaps


def _outside(ranges: np.ndarray, n: int) -> np.ndarray:
    inside = np.zeros(n + 1, np.int64)
    np.add.at(inside, ranges[:, 0], 1)
    np.add.at(inside, ranges[:, 1], -1)
    return np.cumsum(inside)[:n] == 0


def _piece_key(name: str, k: int) -> str:
    return name if k == 0 else f"{name}~{k}"


def piece_key(rec: PairedRecording) -> str:
    """The key a recording (or a piece of one) has in ``PairedDataset.recordings``: its subject,
    unless its loader named it (a subject with several records: datasets.wfdb_record)."""
    return str(rec.meta.get("piece", rec.subject_id))
