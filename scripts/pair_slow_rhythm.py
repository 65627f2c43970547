"""Slow AF against slow sinus with premature beats, in the pair corpus the bridge trains on
(docs/method.md, "A bridge that reads the beat sequence").

The windows: a fit's pair windows (played and cohort ones included) slower than 62 bpm by their
ECG's R peaks, that openecg calls AF on the ECG, or does not call AF and that hold 2 or more
premature beats (an interval under 0.8 x the window's median). Printed:

- how often the runtime's detector finds a pulse in the model-ready PPG 0.05-0.9 s after an R
  peak (premature R peaks, the others, AF's), and the median interval CV from each signal: does
  the PPG show the premature beats the teacher saw?;
- the AUROC of a 5-fold logistic regression on the frozen encoder's pooled block-``k_in`` output
  (the store the fit cached; folds by subject), all not-AF windows and split by the share of premature intervals;
- per run directory, the bridged model's AF calls on both groups and the AUROC of its P(afib):
  how well it ranks its own training windows.

Only the two frozen models' outputs on the pairs and the ECG's beat times are read: the same
label-free targets the bridge trains on.

    PYTHONPATH=. python3 scripts/pair_slow_rhythm.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bridge_edge.bridge.compose import load_composed
from bridge_edge.bridge.rundir import load_feature_store
from bridge_edge.bridge.stages import Run
from bridge_edge.signals.beats import detect_ecg_beats, detect_ppg_beats

SLOW_BPM = 62.0
PREMATURE = 0.8  # an interval under this x the window's median
BIGEMINY_SHARE = 0.35  # premature intervals from this share of the window's intervals on
PULSE_AFTER_R_S = (0.05, 0.9)  # pulse transit plus the causal band-pass's delay, under one slow RR


def pulses_after(r_s: np.ndarray, pulses_s: np.ndarray, window_s: float) -> np.ndarray:
    """For each R peak but the first (each interval's end) whose pulse can still fall in the window:
    is a detected pulse within ``PULSE_AFTER_R_S`` after it? -1 where it cannot."""
    lo, hi = PULSE_AFTER_R_S
    ends = r_s[1:, None]
    hit = ((pulses_s[None, :] > ends + lo) & (pulses_s[None, :] < ends + hi)).any(axis=1)
    return np.where(r_s[1:] < window_s - hi, hit.astype(int), -1)


def interval_stats(beats: np.ndarray, fs: float) -> tuple[float, int, int, float]:
    """(rate bpm from the median interval, premature intervals, intervals, interval CV); NaN rate
    when fewer than 4 intervals."""
    rr = np.diff(beats) / fs
    if len(rr) < 4:
        return np.nan, 0, len(rr), np.nan
    med = float(np.median(rr))
    return 60.0 / med, int((rr < PREMATURE * med).sum()), len(rr), float(rr.std() / rr.mean())


def main(run_dirs: list[str]) -> None:
    torch.set_num_threads(2)
    run = Run.open(run_dirs[0])
    old, new = run.models()
    pair = run.windows("pair")
    store = load_feature_store(run.dir.features_pair)
    teacher_af = store.old_probs[:, list(old.labels).index("afib")] > 0.5
    ecg_fs, ppg_fs = old.input_spec.fs, new.input_spec.fs
    ecg = np.array(
        [interval_stats(detect_ecg_beats(np.asarray(w, np.float64), ecg_fs), ecg_fs) for w in pair.ecg]
    )
    bpm, premature, intervals = ecg[:, 0], ecg[:, 1], ecg[:, 2]
    slow = bpm < SLOW_BPM
    is_af, ectopy = slow & teacher_af, slow & ~teacher_af & (premature >= 2)
    rows = np.flatnonzero(is_af | ectopy)
    y = is_af[rows]
    print(
        f"{run_dirs[0]}: {len(pair)} pair windows; slower than {SLOW_BPM:g} bpm: openecg AF {y.sum()}, not AF with >= 2 premature beats {(~y).sum()}"
    )
    window_s = pair.ppg.shape[1] / ppg_fs
    found = {"AF": [], "premature": [], "other": []}
    ppg_cv = []
    for i, af in zip(rows, y, strict=True):
        r_s = detect_ecg_beats(np.asarray(pair.ecg[i], np.float64), ecg_fs) / ecg_fs
        pulses = detect_ppg_beats(np.asarray(pair.ppg[i], np.float64), ppg_fs)
        pulses_s = pulses / ppg_fs
        ppg_cv.append(interval_stats(pulses, ppg_fs)[3])
        hit, rr = pulses_after(r_s, pulses_s, window_s), np.diff(r_s)
        early = rr < PREMATURE * np.median(rr)
        groups = (("AF", np.ones_like(early)),) if af else (("premature", early), ("other", ~early))
        for name, part in groups:
            found[name].extend(hit[part & (hit >= 0)])
    print(
        "  a pulse drawn after the R peak: "
        + ", ".join(f"{k} {np.mean(v):.3f} of {len(v)}" for k, v in found.items())
    )
    for name, group in (("AF", y), ("ectopy", ~y)):
        print(
            f"  {name}: median interval CV, ECG {np.nanmedian(ecg[rows][group, 3]):.3f}, "
            f"PPG {np.nanmedian(np.array(ppg_cv)[group]):.3f}"
        )
    k_in = run.dir.spec().k_in
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    # folds by subject: a subject's overlapping windows never sit on both sides of a fold
    linear = cross_val_predict(
        clf,
        store.new_pooled[k_in][rows],
        y,
        cv=GroupKFold(5),
        groups=pair.subject[rows],
        method="predict_proba",
    )[:, 1]
    share = premature[rows] / np.maximum(intervals[rows], 1)
    line = f"  encoder block {k_in} pooled, 5-fold linear AUROC, AF vs all {roc_auc_score(y, linear):.3f}"
    for name, part in (("isolated", share < BIGEMINY_SHARE), ("bigeminy-like", share >= BIGEMINY_SHARE)):
        keep = y | part
        line += f", vs {name} ({(~y & part).sum()}) {roc_auc_score(y[keep], linear[keep]):.3f}"
    print(line)
    x = np.asarray(pair.ppg[rows], np.float32)
    for run_dir in run_dirs:
        model, spec = load_composed(run_dir)
        probs = model.predict_proba(x)
        afib = spec.labels.index("afib")
        called = probs.argmax(axis=1) == afib
        print(
            f"  {run_dir}: calls AF on AF {called[y].mean():.3f}, on ectopy {called[~y].mean():.3f}; "
            f"P(afib) AUROC {roc_auc_score(y, probs[:, afib]):.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
