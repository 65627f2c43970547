"""Where the bridged model beats the pulse-timing baseline and where it does not (docs/method.md).

Scores a bundle (ONNX Runtime, fp32) and ``signals.rr_timing`` on the same preprocessed windows:

- a simulated test set (``--data DIR``, repeatable: e.g. the default dataset's test split plus
  the held-out subjects), pooled and by stratum: SQI (clean / noisy), AF heart rate;
- constructed cases neither rhythm label nor pulse shape changes, only timing: "AF with a regular
  ventricular response" (AF-conducted beats at a constant rate, as in flutter with fixed 2:1
  block), rendered by the simulator's own PPG renderer (``signals.waveforms``) for a few
  simulated patients;
- the development real recordings (heartpy data.csv, data2.csv, data3.csv): false-AF per
  recording of both (all windows are sinus: they are healthy volunteers' recordings).

    PYTHONPATH=. python3 scripts/timing_vs_bridge.py default --data DIR [--data DIR2] [--json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bridge_edge.bridge.metrics import _auroc
from bridge_edge.checks.bundle_eval import bundle_probs
from bridge_edge.export.bundle import load_bundle
from bridge_edge.signals.preprocess import PreprocessSpec, filter_and_resample, normalise_windows
from bridge_edge.signals.quality import LOW_SQI, ppg_sqi
from bridge_edge.signals.rr_timing import RR_AF_THRESHOLD, rr_af_scores


def _rates(p_af: np.ndarray, score: np.ndarray, is_af: np.ndarray) -> dict:
    thr = RR_AF_THRESHOLD.value
    out = {"windows": int(len(is_af)), "af_windows": int(is_af.sum())}
    for name, called, rank in (
        ("bridge", p_af >= 0.5, p_af),
        ("timing", score >= thr, np.where(np.isfinite(score), score, -1.0)),
    ):
        out[name] = {
            "af_recall": float(called[is_af].mean()) if is_af.any() else None,
            "false_af": float(called[~is_af].mean()) if (~is_af).any() else None,
            "auroc": None if is_af.all() or not is_af.any() else _auroc(is_af, rank),
        }
    out["timing_unscored"] = int(np.isnan(score).sum())
    return out


def _session(bundle_path: str):
    import onnxruntime as ort

    from bridge_edge.export.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    sess = ort.InferenceSession(str(bundle.onnx_path("fp32")), providers=["CPUExecutionProvider"])
    labels = list(bundle.manifest.output.labels)
    name = sess.get_inputs()[0].name

    def p_af(x: np.ndarray) -> np.ndarray:
        parts = [sess.run(None, {name: x[i : i + 64]})[0] for i in range(0, len(x), 64)]
        return np.concatenate(parts)[:, labels.index("afib")] if parts else np.zeros(0)

    return bundle, p_af


def simulated(bundle_path: str, data: list[str]) -> dict:
    probs, labels, windows, preprocess = bundle_probs(load_bundle(bundle_path), data, "test")
    fs = PreprocessSpec.from_dict(preprocess).fs_out
    truth = windows.head_truth(tuple(labels))
    keep = truth >= 0
    p_af = probs[keep][:, labels.index("afib")]
    x = windows.ppg[keep]
    is_af = truth[keep] == labels.index("afib")
    score = rr_af_scores(x, fs)
    sqi = ppg_sqi(x, fs)
    from bridge_edge.signals.beats import detect_ppg_beats, heart_rate_bpm

    hr = np.array([heart_rate_bpm(detect_ppg_beats(w, fs), fs) or np.nan for w in x])
    from bridge_edge.bridge.evaluate import TIMING, timing_probs
    from bridge_edge.bridge.metrics import subject_bootstrap

    both = {"bridge": probs, TIMING: timing_probs(windows.ppg, fs, labels, "afib")[0]}
    ci = subject_bootstrap(both, truth, windows.subject, labels, "afib", 1000, seed=0)
    strata = {
        "all": np.ones(len(x), bool),
        "sqi_ge_0.5": sqi >= LOW_SQI,
        "sqi_lt_0.5": sqi < LOW_SQI,
        "hr_lt_90": hr < 90,
        "hr_ge_90": hr >= 90,
    }
    out = {name: _rates(p_af[m], score[m], is_af[m]) for name, m in strata.items() if m.any()}
    return out | {"ci95": ci}


def regular_af(bundle_path: str, seeds=range(700, 706), rates_bpm=(75.0, 100.0, 150.0)) -> dict:
    """AF-conducted beats at a constant rate (regular ventricular response / 2:1 flutter)."""
    from bridge_edge.signals import waveforms
    from bridge_edge.signals.physiology import draw_physiology
    from bridge_edge.signals.rhythms import AF_CONDUCTED, BeatTrain

    bundle, p_af = _session(bundle_path)
    spec = PreprocessSpec.from_dict(bundle.manifest.input.preprocess)
    fs, seconds = spec.fs_out, 70.0
    out = {}
    for bpm in rates_bpm:
        p, s = [], []
        for seed in seeds:
            phys = draw_physiology(np.random.default_rng(seed), motion_level=0.0)
            times = np.arange(0.5, seconds + 1.0, 60.0 / bpm)
            beats = BeatTrain(
                times, np.full(len(times), AF_CONDUCTED, np.int8), np.full(len(times), 60.0 / bpm)
            )
            ppg = waveforms.render_ppg(beats, phys, 0, int(seconds * fs), fs)
            y = filter_and_resample(ppg, fs, spec)
            w = np.stack(
                [y[a : a + int(10 * fs)] for a in range(int(10 * fs), len(y) - int(10 * fs) + 1, int(5 * fs))]
            )
            p.append(p_af(normalise_windows(w, spec)))
            s.append(rr_af_scores(w, fs))
        p, s = np.concatenate(p), np.concatenate(s)
        out[f"{bpm:g}_bpm"] = _rates(p, s, np.ones(len(p), bool))
    return out


def real(bundle_path: str) -> dict:
    from bridge_edge.checks.known_answers import load_heartpy_ppg

    bundle, p_af = _session(bundle_path)
    spec = PreprocessSpec.from_dict(bundle.manifest.input.preprocess)
    fs, w_len, hop = spec.fs_out, int(10 * spec.fs_out), int(5 * spec.fs_out)
    out = {}
    for name in ("data.csv", "data2.csv", "data3.csv"):
        x, fs_in = load_heartpy_ppg(name)
        y = filter_and_resample(x, fs_in, spec)
        w = np.stack([y[a : a + w_len] for a in range(int(5 * fs), len(y) - w_len + 1, hop)])
        p, s, sqi = p_af(normalise_windows(w, spec)), rr_af_scores(w, fs), ppg_sqi(w, fs)
        ok = sqi >= LOW_SQI  # what the runtime's SQI gate would score
        out[name] = {
            "windows": int(len(w)),
            "sqi_ok": int(ok.sum()),
            "bridge_false_af": float((p[ok] >= 0.5).mean()) if ok.any() else None,
            "timing_false_af": float((s[ok] >= RR_AF_THRESHOLD.value).mean()) if ok.any() else None,
            "timing_unscored": int(np.isnan(s[ok]).sum()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--data", action="append", default=[])
    args = ap.parse_args()
    from bridge_edge.export.bundle import load_bundle

    m = load_bundle(args.bundle).manifest
    result = {"bundle": f"{m.name} {m.version}", "threshold": RR_AF_THRESHOLD.value}
    if args.data:
        result["simulated_test"] = simulated(args.bundle, args.data)
    result["regular_af"] = regular_af(args.bundle)
    result["real"] = real(args.bundle)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
