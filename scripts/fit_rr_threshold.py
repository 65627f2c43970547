"""Choose the pulse-timing AF threshold (``signals.rr_timing.RR_AF_THRESHOLD``) on training data.

Data: the *train* split of the default recipe's simulated dataset (30 subjects, seed 0, 6 min
each: random sinus, brady, tachy, AF and ectopy episodes), plus scripted sinus / ectopy / AF
episodes of the same training subjects' seeds so each class has enough windows. Never the
val/pair/test subjects, the held-out stream or any real recording. Windows: 10 s, hop 5 s,
preprocessed with ``PreprocessSpec()``'s defaults (band-pass, 125 Hz), pure-label windows only.

    PYTHONPATH=. python3 scripts/fit_rr_threshold.py [--subjects 30 --minutes 6 --seed 0]

Prints the fitted threshold and the training numbers to paste beside the constant.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bridge_edge.signals.datasets.splits import split_subjects
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample
from bridge_edge.signals.rr_timing import fit_threshold, rr_af_scores
from bridge_edge.signals.simulator import (
    DATASET_VERSION,
    LABELS,
    PatientSimulator,
    simulate_subject,
    subject_seed,
)

SCRIPT = [("sinus", 120.0), ("ectopy", 120.0), ("afib", 120.0)]


def window_scores(rec, spec: PreprocessSpec, window_s: float = 10.0, hop_s: float = 5.0):
    y = filter_and_resample(rec.ppg, rec.fs_ppg, spec)
    label = rec.rhythm_at_ppg_rate()
    label = label[np.round(np.arange(len(y)) * rec.fs_ppg / spec.fs_out).astype(int).clip(0, len(label) - 1)]
    w, h = round(window_s * spec.fs_out), round(hop_s * spec.fs_out)
    starts = np.arange(w, len(y) - w + 1, h)  # the first window_s: filter warm-up
    pure = np.array([np.all(label[a : a + w] == label[a]) for a in starts])
    starts = starts[pure]
    windows = np.stack([y[a : a + w] for a in starts]) if len(starts) else np.zeros((0, w))
    return rr_af_scores(windows, spec.fs_out), label[starts]


def training_scores(subjects: int, minutes: float, seed: int):
    spec = PreprocessSpec()
    ids = [f"sim{i:03d}" for i in range(subjects)]
    train = split_subjects(ids, seed).train
    scores, labels = [], []
    for sid in train:
        s = subject_seed(seed, ids.index(sid))
        for rec in (
            simulate_subject(sid, minutes, s),
            PatientSimulator(s, script=SCRIPT, subject_id=sid).generate(sum(t for _, t in SCRIPT)),
        ):
            sc, lab = window_scores(rec, spec)
            scores.append(sc)
            labels.append(lab)
    return np.concatenate(scores), np.concatenate(labels), list(train)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    scores, labels, train = training_scores(args.subjects, args.minutes, args.seed)
    fitted_on = (
        f"scripts/fit_rr_threshold.py: simulated train split ({len(train)} of {args.subjects} subjects, "
        f"seed {args.seed}, {args.minutes:g} min, dataset version {DATASET_VERSION}), random + scripted episodes"
    )
    fit = fit_threshold(scores, labels == LABELS.index("afib"), fitted_on)
    by_class = {
        name: {
            "windows": int((labels == k).sum()),
            "unscored": int(np.isnan(scores[labels == k]).sum()),
            "called_af": float(np.mean(scores[labels == k] >= fit.value)) if (labels == k).any() else None,
        }
        for k, name in enumerate(LABELS)
    }
    print(json.dumps({"threshold": fit.__dict__, "train_subjects": train, "by_class": by_class}, indent=2))


if __name__ == "__main__":
    main()
