"""Slow sinus with premature beats against slow AF, on real pulses: what the encoder holds and
what the bridged model keeps (docs/method.md, "Slow ectopy: the encoder tells it from AF, the
bridge does not").

Each development recording's clean cycles are laid (signals.resequence, the rhythm suite's own
cutting) at sinus-with-ectopy and AF intervals at 45-60 bpm, six seeds each, and cut into the
runtime's scored windows. Per fit, printed:

- the bundle's AF calls and the AUROC of its P(afib), AF against windows with 2 or more premature
  beats (and with 1): how well the bridged model ranks them, whatever its threshold;
- the AUROC of a 5-fold logistic regression on the frozen encoder's pooled block-``k_in`` output,
  the vector the bridge reads (how much of the difference the encoder holds), and on the
  bridge's rank-r code ``A z`` (how much of it the bridge's first map keeps);
- what a bedside monitor does with those calls: each 90-s sequence's hops through the runtime's
  smoothing (``ProbabilitySmoother`` at ``PipelineConfig``'s alpha) and the monitor's alarm onset
  (``AlarmRules.onset_s`` of an unbroken smoothed ``afib`` label), and the share of AF and of
  ectopy sequences that raise an AF alarm;
- the same calls and alarms after the runtime's regular-rhythm rule (signals.regular_rhythm).

The rhythms (simulated intervals, not a real recording's label) are read here for this
measurement only; nothing here reaches a model or a threshold.

    PYTHONPATH=. python3 scripts/slow_rhythm_probe.py [--bpm LO:HI] [RUN_DIR:]BUNDLE [[RUN_DIR:]BUNDLE ...]

(a bundle alone: its calls and alarms only; ``--bpm`` lays the sequences at other rates than
45-60 bpm, e.g. 60:90 for the false alarms on sinus with ectopy at resting rates).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from bridge_edge.bridge.rundir import RunDir
from bridge_edge.bridge.stages import Run
from bridge_edge.bridge.train import bridge_inputs
from bridge_edge.checks.rhythm_suite import Case, case_windows, first_window_end_s
from bridge_edge.export.bundle import load_bundle
from bridge_edge.monitor.alarms import rhythm_alarm_onsets
from bridge_edge.runtime.engines import select_engine
from bridge_edge.runtime.stream import ModelInput
from bridge_edge.signals import resequence
from bridge_edge.signals.dev_recordings import available_dev_recordings
from bridge_edge.signals.preprocess import normalise_windows, window_beats
from bridge_edge.signals.regular_rhythm import RegularRhythmRule

SECONDS = 90.0
SEEDS = range(6)
RATE_BPM = (45.0, 60.0)
WINDOW_S, HOP_S = 10.0, 5.0


def first_window_start_s(spec, fs: float) -> float:
    """Where ``case_windows`` starts its first window: the first hop after the filter warm-up."""
    return first_window_end_s(fs, spec, WINDOW_S, HOP_S) - WINDOW_S


def probe_windows(spec, rate_bpm: tuple[float, float] = RATE_BPM):
    """(model inputs, is AF, premature beats per window from the laid intervals, the laid sequence
    each window was cut from, its end in seconds into the sequence, the beats the runtime detects
    in it)."""
    windows, is_af, premature, sequence, end_s = [], [], [], [], []
    n_laid = 0
    for k, rec in enumerate(available_dev_recordings()):
        pulses = resequence.RealPulses.of(rec.source, rec.ppg, rec.fs_ppg)
        if pulses is None:
            continue
        for seed in SEEDS:
            rng = np.random.default_rng([100 + seed, k])
            for af, make in ((False, resequence.ectopic_intervals), (True, resequence.af_intervals)):
                rr = make(SECONDS, 60.0 / rng.uniform(*rate_bpm), rng)
                signal = resequence.place_cycles(pulses.cycles, rr, rec.fs_ppg)
                case = Case("resequenced", "probe", "as_recorded", rec.source, signal, rec.fs_ppg)
                raw, gated = case_windows(case, spec, WINDOW_S, HOP_S)
                beats = np.cumsum(rr)
                first = first_window_start_s(spec, rec.fs_ppg)
                for i in np.flatnonzero(~gated):
                    start = first + HOP_S * i
                    laid = np.diff(beats[(beats >= start) & (beats < start + WINDOW_S)])
                    windows.append(raw[i])
                    is_af.append(af)
                    premature.append(int((laid < 0.8 * np.median(laid)).sum()) if len(laid) > 2 else -1)
                    sequence.append(n_laid)
                    end_s.append(start + WINDOW_S)
                n_laid += 1
    x = normalise_windows(np.stack(windows), spec).astype(np.float32)
    detected = window_beats(np.stack(windows), spec)
    return x, np.array(is_af), np.array(premature), np.array(sequence), np.array(end_s), detected


def auroc(scores: np.ndarray, is_af: np.ndarray, keep: np.ndarray) -> float:
    return float(roc_auc_score(is_af[keep], scores[keep]))


def linear_auroc(features: np.ndarray, is_af: np.ndarray, sequence: np.ndarray) -> float:
    """5-fold logistic regression, fitted on these windows' rhythms (this measurement only). Folds
    by laid sequence: a sequence's windows overlap by half, so none sits on both sides of a fold."""
    predicted = cross_val_predict(
        LogisticRegression(max_iter=2000),
        features,
        is_af,
        groups=sequence,
        cv=GroupKFold(5),
        method="predict_proba",
    )[:, 1]
    return float(roc_auc_score(is_af, predicted))


def alarmed(probs: np.ndarray, end_s: np.ndarray, labels: list[str]) -> bool:
    """Whether one sequence's scored hops (in order) raise an AF alarm on the monitor."""
    return bool(rhythm_alarm_onsets(probs, end_s, labels))


def main(argv: list[str]) -> None:
    torch.set_num_threads(2)
    rate_bpm, pairs = RATE_BPM, list(argv)
    if pairs[:1] == ["--bpm"]:
        rate_bpm, pairs = tuple(float(v) for v in pairs[1].split(":")), pairs[2:]
    first_bundle = load_bundle(pairs[0].split(":")[-1])
    x, is_af, premature, sequence, end_s, detected = probe_windows(
        ModelInput.from_manifest(first_bundle.manifest).preprocess, rate_bpm
    )
    print(f"sequences laid at {rate_bpm[0]:g}-{rate_bpm[1]:g} bpm")
    double, single = is_af | (premature >= 2), is_af | (premature == 1)
    print(
        f"{len(x)} windows: AF {is_af.sum()}, not AF with >= 2 premature beats {(~is_af & (premature >= 2)).sum()}, 1: {(~is_af & (premature == 1)).sum()}"
    )
    for pair in pairs:
        run_dir, _, bundle_dir = pair.rpartition(":")
        bundle = load_bundle(bundle_dir)
        labels = ModelInput.from_manifest(bundle.manifest).labels
        out = select_engine("ort", bundle, precision="fp32").engine.infer(x)
        probs, calls = out[:, labels.index("afib")], out.argmax(axis=1) == labels.index("afib")
        line = (
            f"{Path(run_dir or bundle_dir).name}: AF called {calls[is_af].mean():.3f}; not AF called AF: >= 2 "
            f"premature {calls[~is_af & (premature >= 2)].mean():.3f}, 1 {calls[~is_af & (premature == 1)].mean():.3f}, "
            f"0 {calls[~is_af & (premature == 0)].mean():.3f} | P(afib) AUROC AF vs >= 2 premature "
            f"{auroc(probs, is_af, double):.3f}, vs 1 {auroc(probs, is_af, single):.3f}"
        )
        if run_dir:  # the encoder and the bridge code need the fit's run directory
            k_in = json.loads((Path(run_dir) / "selection.json").read_text())["k_in"]
            _, new = Run.open(run_dir).models()
            z = bridge_inputs(new, x, k_in).numpy()
            code = z @ load_file(str(RunDir(run_dir).bridge_weights))["A"].numpy().T  # the rank-r code
            encoder, bridge_code = (
                linear_auroc(v[double], is_af[double], sequence[double]) for v in (z, code)
            )
            line += (
                f" | linear AUROC AF vs >= 2 premature: encoder block {k_in} {encoder:.3f}, bridge code "
                f"(rank {code.shape[1]}) {bridge_code:.3f}"
            )
        print(line)
        firsts = np.unique(sequence, return_index=True)[1]
        rule = RegularRhythmRule()
        shown = rule.apply(out, labels, rule.fires(detected, ModelInput.from_manifest(bundle.manifest).fs))
        for what, p in (("model alone", out), ("with the regular-rhythm rule", shown)):
            alarms = np.array(
                [alarmed(p[sequence == s], end_s[sequence == s], labels) for s in sequence[firsts]]
            )
            af_seq, called = is_af[firsts], p.argmax(axis=1) == labels.index("afib")
            print(
                f"  {what}: windows called AF {called[is_af].mean():.3f} of AF, {called[~is_af & (premature >= 2)].mean():.3f} "
                f"of >= 2 premature, {called[~is_af & (premature == 1)].mean():.3f} of 1 | alarm level ({len(firsts)} "
                f"sequences of {SECONDS:g} s): AF alarm raised on {alarms[af_seq].mean():.3f} of AF sequences, on "
                f"{alarms[~af_seq].mean():.3f} of sinus-with-ectopy sequences"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
