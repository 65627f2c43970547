"""Evaluation on held-out test subjects, and the run report.

Label mapping (docs/method.md): the dataset's truth (sinus / afib / ectopy) is mapped by name
onto the old head's vocabulary (openecg: sinus, avb, paced, afib, bbb, ventricular); windows
whose truth has no counterpart (ectopy) or that are mixed are excluded and counted
(``n_excluded``). Predictions are the argmax over all head classes.

Every report and ``evaluate`` output also scores the **pulse-timing baseline**
(``signals.rr_timing``, numpy only) on the same windows, with the same subject-bootstrap
resamples: its score becomes a pseudo-probability of the positive class (0.5 at its
threshold), the rest of the mass goes to ``sinus`` (or the first other head label), so argmax
metrics are its AF / not-AF call. Windows it cannot score (low SQI, too few beats) count as not
AF and are counted (``unscored_windows``). docs/method.md ("Pulse-timing baseline").
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bridge_edge.bridge.compose import POSITIVE_LABEL
from bridge_edge.bridge.metrics import Metrics, compute_metrics, per_subject_scores, subject_bootstrap
from bridge_edge.errors import ConfigError, DataError

TIMING = "timing"  # the pulse-timing baseline's name in reports and bootstrap intervals
TIMING_METHOD = (
    "pulse-interval irregularity (normalised RMSSD, median |dRR|/RR, turning-point ratio) after "
    "excluding isolated premature beats, on the runtime's beat detector; threshold from simulated "
    "train subjects (bridge_edge/signals/rr_timing.py)"
)


def evaluate_probs(probs: np.ndarray, truth: np.ndarray, labels) -> Metrics:
    return compute_metrics(probs, truth, tuple(labels), POSITIVE_LABEL)


def timing_probs(ppg: np.ndarray, fs: float, labels, sqi: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """The timing baseline on preprocessed PPG windows as (N, len(labels)) probabilities, and
    what a report says about it (method, threshold, unscored windows). ``sqi``: each window's
    quality as recorded (``WindowSet.sqi``); needed when the model input no longer shows it
    (ppg-v3 draws the beats, so a noisy window looks clean): windows under ``LOW_SQI`` go unscored."""
    from dataclasses import asdict

    from bridge_edge.signals.quality import LOW_SQI
    from bridge_edge.signals.rr_timing import RR_AF_THRESHOLD, rr_af_probability, rr_af_scores

    labels = list(labels)
    scores = rr_af_scores(ppg, fs)
    if sqi is not None:
        scores = np.where(np.isfinite(sqi) & (sqi < LOW_SQI), np.nan, scores)
    probs = np.zeros((len(scores), len(labels)), np.float32)
    others = [i for i, name in enumerate(labels) if name != POSITIVE_LABEL]
    negative = labels.index("sinus") if "sinus" in labels else (others[0] if others else None)
    p = rr_af_probability(scores)
    if POSITIVE_LABEL in labels:
        probs[:, labels.index(POSITIVE_LABEL)] = p
    if negative is not None:
        probs[:, negative] = 1.0 - p
    info = {
        "method": TIMING_METHOD,
        "threshold": asdict(RR_AF_THRESHOLD),
        "unscored_windows": int(np.isnan(scores).sum()),
    }
    return probs, info


def _difference(first: Metrics, other: Metrics, intervals: dict, name: str) -> dict:
    """Positive-AUROC difference bridge - ``name`` with its paired subject-bootstrap interval."""
    return {
        "estimate": None
        if first.positive_auroc is None or other.positive_auroc is None
        else first.positive_auroc - other.positive_auroc,
        "ci95": intervals["differences"][f"bridge - {name}"]["positive_auroc"],
        "resamples_without_auroc": intervals["resamples_without_auroc"],
    }


def _test_block(m: Metrics, intervals: dict | None = None, name: str = "") -> dict:
    test = m.as_dict()
    if intervals is not None:
        test["ci95"] = intervals["models"][name] | {"resamples": intervals["resamples"]}
    return {"test": test}


def describe_test_set(test, held_out_subjects: set[str]) -> dict:
    """Which subjects the test windows come from: the dataset's test split and [held_out] extras."""
    subjects = sorted(set(test.subject.tolist()))
    return {
        "subjects": len(subjects),
        "dataset_test_subjects": [s for s in subjects if s not in held_out_subjects],
        "held_out_extra_subjects": sorted(held_out_subjects),
        "windows": len(test),
    }


@np.errstate(all="ignore")
def old_model_probs(old, ecg: np.ndarray, batch_size: int = 16) -> np.ndarray:
    import torch

    with torch.no_grad():
        parts = [
            old.forward(old.prepare(ecg[i : i + batch_size])).float().cpu().numpy()
            for i in range(0, len(ecg), batch_size)
        ]
    return np.concatenate(parts) if parts else np.zeros((0, len(old.labels)), np.float32)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def target_checks(report: dict) -> dict:
    """The issue's acceptance targets, evaluated on this report (None: not measurable here)."""
    bridge, ceiling = report["bridge"]["test"], report["old_model_on_old_modality"]["test"]
    auroc = bridge.get("positive_auroc")
    checks = {
        "bridge_af_auroc_ge_0.90": None if auroc is None else auroc >= 0.90,
        "bridge_macro_f1_within_0.10_of_ceiling": bridge["macro_f1"] >= ceiling["macro_f1"] - 0.10,
    }
    if "kd" in report:
        kd_auroc = report["kd"]["test"].get("positive_auroc")
        ratios = report["bridge_vs_kd"]
        checks["bridge_af_auroc_ge_kd"] = None if auroc is None or kd_auroc is None else auroc >= kd_auroc
        checks["bridge_params_le_12pct_of_kd"] = ratios["trainable_params_ratio"] <= 0.12
        checks["bridge_peak_memory_le_50pct_of_kd"] = ratios["peak_memory_ratio"] <= 0.50
    return checks


def monitor_scored(probs: dict[str, np.ndarray], truth: np.ndarray, sqi: np.ndarray, labels) -> dict:
    """Every model on the windows a monitor labels: those the runtime's SQI gate passes
    (``sqi >= LOW_SQI``); the headline metrics count every window, gated or not."""
    from bridge_edge.signals.quality import LOW_SQI

    passed = np.isfinite(sqi) & (sqi >= LOW_SQI)
    out: dict = {"min_sqi": LOW_SQI, "windows": int(passed.sum()), "of": len(sqi)}
    if not passed.any():
        return out
    for name, p in probs.items():
        m = evaluate_probs(p[passed], truth[passed], labels)
        out[name] = {"positive_auroc": m.positive_auroc, "macro_f1": m.macro_f1, "n_windows": m.n_windows}
    return out


def write_report(run, position_check: list[dict]) -> dict:
    """Evaluate bridge, KD and the ceiling on the test split; write report.json and figures."""
    from safetensors.torch import load_file

    from bridge_edge.bridge.compose import load_composed
    from bridge_edge.bridge.kd import make_student
    from bridge_edge.bridge.pipeline import RunWindows
    from bridge_edge.bridge.plots import plot_confusions, plot_test_subjects, plot_training_curves
    from bridge_edge.bridge.selection import read_selection
    from bridge_edge.signals.preprocess import PreprocessSpec

    run_dir = run.run_dir
    old, new = run.models()
    test = run.windows("test")
    truth = test.head_truth(old.labels)
    composed, spec = load_composed(run_dir, device=run.device)
    probs = {
        "bridge": composed.predict_proba(test.ppg),
        "old_model_on_old_modality": old_model_probs(old, test.ecg),
    }
    kd_path = run_dir / "kd_student.safetensors"
    if kd_path.exists():
        student = make_student(new, len(old.labels), test.ppg[:2])
        student.load_state_dict(load_file(str(kd_path)))
        probs["kd"] = student.predict_proba(test.ppg)
    fs_ppg = PreprocessSpec.from_dict(spec.preprocess).fs_out
    probs[TIMING], timing_info = timing_probs(test.ppg, fs_ppg, old.labels, test.sqi)
    metrics = {name: evaluate_probs(p, truth, old.labels) for name, p in probs.items()}
    bridge_m, ceiling_m = metrics["bridge"], metrics["old_model_on_old_modality"]
    n_resamples = run.recipe.held_out.bootstrap_resamples
    intervals = None
    if n_resamples:
        # bridge first: the paired differences are bridge minus each other model
        intervals = subject_bootstrap(
            probs, truth, test.subject, old.labels, POSITIVE_LABEL, n_resamples, seed=run.recipe.seed
        )
    bridge_train = json.loads((run_dir / "bridge_training.json").read_text())
    report = {
        "recipe": {"name": run.recipe.name, "sha256": run.recipe.sha256},
        "positions": {
            "k_in": spec.k_in,
            "k_out": spec.k_out,
            "new_block": new.block_paths[spec.k_in],
            "old_block": old.block_paths[spec.k_out],
        },
        "selection": read_selection(run_dir).as_dict(),
        "labels": {
            "head": list(old.labels),
            "dataset": list(test.labels),
            "positive": POSITIVE_LABEL,
            "scored": "windows whose truth name exists in the head vocabulary; argmax over all head classes",
        },
        "models": {
            "old": old.describe() | {"parameters": old.parameter_count()},
            "new": {"name": new.name, "parameters": new.parameter_count()},
        },
        "bridge": bridge_train | {"params_formula": spec.bridge} | _test_block(bridge_m, intervals, "bridge"),
        "old_model_on_old_modality": _test_block(ceiling_m, intervals, "old_model_on_old_modality"),
        "position_check": position_check,
        "n_windows": {s: len(run.windows(s)) for s in ("train", "val", "pair", "test")},
        "test_set": describe_test_set(test, RunWindows.open(run_dir).held_out_subjects())
        | {"by_subject": per_subject_scores(probs, truth, test.subject, old.labels, POSITIVE_LABEL)},
    }
    results = {"bridge (PPG)": bridge_m.as_dict(), "old model on ECG": ceiling_m.as_dict()}
    curves = {"bridge": bridge_train}
    if "kd" in metrics:
        kd_m = metrics["kd"]
        kd_train = json.loads((run_dir / "kd_training.json").read_text())
        report["kd"] = kd_train | _test_block(kd_m, intervals, "kd")
        results["KD student (PPG)"] = kd_m.as_dict()
        curves["KD"] = kd_train
        report["bridge_vs_kd"] = {
            "trainable_params_ratio": bridge_train["trainable_params"] / kd_train["trainable_params"],
            "peak_memory_ratio": bridge_train["peak_memory_bytes"] / max(1, kd_train["peak_memory_bytes"]),
            "seconds_per_epoch_ratio": bridge_train["seconds_per_epoch"]
            / max(1e-9, kd_train["seconds_per_epoch"]),
        }
        if intervals is not None:
            report["bridge_vs_kd"]["positive_auroc_difference"] = _difference(bridge_m, kd_m, intervals, "kd")
    report[TIMING] = timing_info | _test_block(metrics[TIMING], intervals, TIMING)
    results["pulse timing (PPG)"] = metrics[TIMING].as_dict()
    if intervals is not None:
        report["bridge_vs_timing"] = {
            "positive_auroc_difference": _difference(bridge_m, metrics[TIMING], intervals, TIMING)
        }
    report["monitor_scored"] = monitor_scored(probs, truth, test.sqi, old.labels)
    report["targets"] = target_checks(report)
    report["timings_s"] = dict(run.timings)
    report = _json_safe(report)
    plot_training_curves(curves, run_dir / "training_curves.png")
    plot_confusions(results, run_dir / "confusions.png")
    plot_test_subjects(
        report["test_set"]["by_subject"], intervals, run_dir / "test_subjects.png", POSITIVE_LABEL
    )
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


# --- `bridge-edge evaluate RUN_DIR|BUNDLE --data DIR` -----------------------------------------


def _dataset_ppg_windows(data: str | list[str], split: str, window_s: float, hop_s: float, preprocess: dict):
    """PPG-only windows of one split of any dataset ``load_dataset`` understands (several: pooled)."""
    from bridge_edge.bridge.data import WindowSet, split_windows
    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.preprocess import PreprocessSpec
    from bridge_edge.signals.types import SPLIT_NAMES

    if split not in SPLIT_NAMES:
        raise ConfigError(
            f"unknown split {split!r}; expected one of {list(SPLIT_NAMES)}",
            key="split",
            value=split,
            expected=list(SPLIT_NAMES),
        )
    specs = [data] if isinstance(data, str) else list(data)
    parts = [
        split_windows(
            load_dataset(spec),
            split,
            window_s=window_s,
            hop_s=hop_s,
            fs_ecg=None,
            ppg_spec=PreprocessSpec.from_dict(preprocess),
        )
        for spec in specs
    ]
    return WindowSet.concat(parts)


EVALUATE_RESAMPLES = 1000  # subject-bootstrap resamples of `evaluate` (a fit uses its recipe's)


def _summary_row(m: Metrics, intervals: dict | None, name: str) -> dict:
    row = {
        "n_windows": m.n_windows,
        "n_excluded": m.n_excluded,
        "macro_f1": m.macro_f1,
        "accuracy": m.accuracy,
        "balanced_accuracy": m.balanced_accuracy,
        "kappa": m.kappa,
        "auroc": m.auroc,
        "positive_label": m.positive_label,
        "positive_auroc": m.positive_auroc,
    }
    if intervals is not None:
        row["ci95"] = intervals["models"][name]
    return row


def evaluate_path(path: str | Path, data: str | list[str], split: str = "test", device: str = "cpu") -> dict:
    """Metrics of a run directory (torch: bridge, and KD when the run trained one) or a bundle
    (ONNX Runtime, fp32) on a dataset split (the same split of several datasets, pooled, when
    ``data`` is a list), beside the pulse-timing baseline on the same windows, every model with
    subject-bootstrap 95 % intervals over the same resamples. The top-level metrics are the
    bridge's (run) or the bundle's; ``models`` holds every row."""
    from bridge_edge.signals.preprocess import PreprocessSpec

    probs = {}
    if (Path(path) / "composed.json").exists():
        from bridge_edge.bridge.compose import load_composed

        model, spec = load_composed(path, device=device)
        windows = _dataset_ppg_windows(data, split, spec.window_s, spec.hop_s, spec.preprocess)
        labels, preprocess = list(spec.labels), spec.preprocess
        probs["bridge"] = model.predict_proba(windows.ppg)
        kd = _run_kd_probs(path, windows.ppg, len(labels), device)
        if kd is not None:
            probs["kd"] = kd
    else:
        probs["bridge"], labels, windows, preprocess = _bundle_probs(path, data, split)
    if len(windows.ppg) == 0:
        raise DataError(
            f"no windows to score: split {split!r} of {data} is empty (a simulation gives every split a "
            f"subject from 4 subjects on); expected data whose {split} split has subjects, or another --split",
            path=str(data),
            reason=f"empty split {split}",
        )
    probs[TIMING], timing_info = timing_probs(
        windows.ppg, PreprocessSpec.from_dict(preprocess).fs_out, labels, windows.sqi
    )
    truth = windows.head_truth(tuple(labels))
    metrics = {name: evaluate_probs(p, truth, labels) for name, p in probs.items()}
    intervals = None
    if (truth >= 0).any():
        intervals = subject_bootstrap(
            probs, truth, windows.subject, labels, POSITIVE_LABEL, EVALUATE_RESAMPLES, seed=0
        )
    models = {name: _summary_row(m, intervals, name) for name, m in metrics.items()}
    models[TIMING] |= timing_info
    out = {"path": str(path), "data": [data] if isinstance(data, str) else list(data), "split": split}
    out |= {k: v for k, v in models["bridge"].items() if k != "ci95"}
    out["models"] = models
    if intervals is not None:
        out["intervals"] = {
            "resamples": intervals["resamples"],
            "subjects": intervals["subjects"],
            "resamples_without_auroc": intervals["resamples_without_auroc"],
            "differences": intervals["differences"],
        }
    return _json_safe(out)


def _run_kd_probs(run_dir: str | Path, ppg: np.ndarray, n_labels: int, device: str) -> np.ndarray | None:
    """The run's KD student on these windows, or None when the run has none."""
    kd_path = Path(run_dir) / "kd_student.safetensors"
    if not kd_path.exists():
        return None
    from safetensors.torch import load_file

    from bridge_edge.bridge.kd import make_student
    from bridge_edge.bridge.pipeline import Run

    _, new = Run.open(run_dir, device=device).models()
    student = make_student(new, n_labels, ppg[:2])
    student.load_state_dict(load_file(str(kd_path)))
    return student.predict_proba(ppg)


def _bundle_probs(path: str | Path, data: str | list[str], split: str):
    """fp32 ONNX of a bundle (verified on load) under ONNX Runtime."""
    import onnxruntime as ort

    from bridge_edge.export.bundle import load_bundle

    bundle = load_bundle(path)
    inp = bundle.manifest.input
    windows = _dataset_ppg_windows(data, split, inp.window_s, inp.hop_s, inp.preprocess)
    session = ort.InferenceSession(str(bundle.onnx_path("fp32")), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    labels = list(bundle.manifest.output.labels)
    parts = [session.run(None, {name: windows.ppg[i : i + 64]})[0] for i in range(0, len(windows.ppg), 64)]
    probs = np.concatenate(parts) if parts else np.zeros((0, len(labels)), np.float32)
    return probs, labels, windows, inp.preprocess
