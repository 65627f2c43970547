"""Choose the regular-rhythm rule's threshold (``signals.regular_rhythm.REGULAR_NN_CV``).

Data: fresh simulated subjects from their own seed stream (default 31337; no fit trains, selects
or scores on it), 6 min each with the simulator's random episodes, sensors and motion. Windows of
10 s every 5 s at 125 Hz, preprocessed as the default bundle's ``ppg-v4`` (beats with search-back),
kept where the runtime's SQI gate passes them and at least 80 % of the window is one rhythm.
The threshold is the ``MAX_AF_SHARE`` quantile of the AF windows' ``nn_interval_cv``; the other
rhythms' shares under it are printed beside it. Simulated labels only; no real PPG.

    PYTHONPATH=. python3 scripts/fit_regular_rhythm_cv.py [--subjects 200 --seed 31337]

With ``--bundle B`` it measures instead: on subjects of another seed (say ``--seed 4242``), the
share of each rhythm's windows that bundle ``B`` calls AF, alone and after the rule.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bridge_edge.signals.ppg_targets import nn_interval_cv_from_beats
from bridge_edge.signals.preprocess import filter_and_resample, preprocess_spec, upright_windows, window_beats
from bridge_edge.signals.quality import LOW_SQI, window_sqi
from bridge_edge.signals.regular_rhythm import MAX_AF_SHARE, fit_max_nn_cv
from bridge_edge.signals.simulator import simulate_subject, subject_seed

WINDOW_S, HOP_S, PURITY = 10.0, 5.0, 0.8


def subject_windows(rec, spec):
    """(rhythm, nn_interval_cv, band-passed upright window, beats) of each kept window of one
    simulated subject."""
    y = filter_and_resample(rec.ppg, rec.fs_ppg, spec)
    rhythm = rec.rhythm_at_ppg_rate()
    rhythm = rhythm[
        np.round(np.arange(len(y)) * rec.fs_ppg / spec.fs_out).astype(int).clip(0, len(rhythm) - 1)
    ]
    width, hop = round(WINDOW_S * spec.fs_out), round(HOP_S * spec.fs_out)
    starts = np.arange(0, len(y) - width + 1, hop)
    windows = upright_windows(np.stack([y[s : s + width] for s in starts]), spec)
    beats = window_beats(windows, spec)
    passed = window_sqi(windows, spec.fs_out, "ppg", beats) >= LOW_SQI
    kept = []
    for s, ok, w, b in zip(starts, passed, windows, beats):  # per window
        counts = np.bincount(rhythm[s : s + width].clip(0), minlength=len(rec.labels))
        if ok and counts.max() >= PURITY * width and np.all(rhythm[s : s + width] >= 0):
            kept.append((rec.labels[int(counts.argmax())], nn_interval_cv_from_beats(b, spec.fs_out), w, b))
    return kept


def measure(bundle_name: str, subjects: int, minutes: float, seed: int) -> dict:
    """Share of each rhythm's windows the bundle calls AF, alone and after the rule."""
    from bridge_edge.export.bundle import load_bundle
    from bridge_edge.runtime.engines import select_engine
    from bridge_edge.runtime.stream import ModelInput
    from bridge_edge.signals.preprocess import normalise_windows
    from bridge_edge.signals.regular_rhythm import RegularRhythmRule

    bundle = load_bundle(bundle_name)
    model = ModelInput.from_manifest(bundle.manifest)
    engine = select_engine("ort", bundle).engine
    rule, positive = RegularRhythmRule(), model.labels.index(model.positive_label)
    calls: dict[str, list[tuple[bool, bool]]] = {}
    for i in range(subjects):
        kept = subject_windows(simulate_subject(f"rule{i}", minutes, subject_seed(seed, i)), model.preprocess)
        if not kept:
            continue
        names, _, windows, beats = zip(*kept)
        probs = engine.infer(normalise_windows(np.stack(windows), model.preprocess, list(beats)))
        ruled = rule.apply(probs, model.labels, rule.fires(list(beats), model.fs))
        for name, alone, shown in zip(names, probs.argmax(1) == positive, ruled.argmax(1) == positive):
            calls.setdefault(name, []).append((bool(alone), bool(shown)))
    return {
        name: {
            "windows": len(c),
            "called_af_model_alone": round(float(np.mean([a for a, _ in c])), 4),
            "called_af_with_rule": round(float(np.mean([s for _, s in c])), 4),
        }
        for name, c in sorted(calls.items())
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=31337)
    ap.add_argument("--bundle", help="measure this bundle with and without the rule instead of fitting")
    args = ap.parse_args()
    if args.bundle:
        print(json.dumps(measure(args.bundle, args.subjects, args.minutes, args.seed), indent=2))
        return
    spec = preprocess_spec("ppg-v4", 125.0)
    by_rhythm: dict[str, list[float]] = {}
    for i in range(args.subjects):
        rec = simulate_subject(f"rule{i}", args.minutes, subject_seed(args.seed, i))
        for name, value, _, _ in subject_windows(rec, spec):
            by_rhythm.setdefault(name, []).append(value)
    threshold = fit_max_nn_cv(np.array(by_rhythm["afib"]), MAX_AF_SHARE)
    report = {"threshold": round(threshold, 4), "max_af_share": MAX_AF_SHARE, "rhythms": {}}
    for name, values in sorted(by_rhythm.items()):
        v = np.array(values)
        report["rhythms"][name] = {
            "windows": len(v),
            "nan_share": round(float(np.mean(~np.isfinite(v))), 4),
            "share_under_threshold": round(float(np.mean(v[np.isfinite(v)] < threshold)), 4),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
