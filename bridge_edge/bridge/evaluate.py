"""Evaluation on held-out test subjects, and the run report.

Label mapping (docs/method.md): the dataset's truth (sinus / afib / ectopy) is mapped by name
onto the old head's vocabulary (openecg: sinus, avb, paced, afib, bbb, ventricular); windows
whose truth has no counterpart (ectopy) or that are mixed are excluded and counted
(``n_excluded``). Predictions are the argmax over all head classes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bridge_edge.bridge.compose import POSITIVE_LABEL
from bridge_edge.bridge.metrics import Metrics, compute_metrics, per_subject_scores, subject_bootstrap
from bridge_edge.errors import ConfigError, DataError


def evaluate_probs(probs: np.ndarray, truth: np.ndarray, labels) -> Metrics:
    return compute_metrics(probs, truth, tuple(labels), POSITIVE_LABEL)


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


def write_report(run, position_check: list[dict]) -> dict:
    """Evaluate bridge, KD and the ceiling on the test split; write report.json and figures."""
    from safetensors.torch import load_file

    from bridge_edge.bridge.compose import load_composed
    from bridge_edge.bridge.kd import make_student
    from bridge_edge.bridge.pipeline import RunWindows
    from bridge_edge.bridge.plots import plot_confusions, plot_test_subjects, plot_training_curves
    from bridge_edge.bridge.selection import read_selection

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
            report["bridge_vs_kd"]["positive_auroc_difference"] = {
                "estimate": None
                if bridge_m.positive_auroc is None or kd_m.positive_auroc is None
                else bridge_m.positive_auroc - kd_m.positive_auroc,
                "ci95": intervals["differences"]["bridge - kd"]["positive_auroc"],
                "resamples_without_auroc": intervals["resamples_without_auroc"],
            }
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


def evaluate_path(path: str | Path, data: str | list[str], split: str = "test", device: str = "cpu") -> dict:
    """Metrics of a run directory (torch) or a bundle (ONNX Runtime, fp32) on a dataset split
    (the same split of several datasets, pooled, when ``data`` is a list)."""
    if (Path(path) / "composed.json").exists():
        from bridge_edge.bridge.compose import load_composed

        model, spec = load_composed(path, device=device)
        windows = _dataset_ppg_windows(data, split, spec.window_s, spec.hop_s, spec.preprocess)
        probs, labels = model.predict_proba(windows.ppg), spec.labels
    else:
        probs, labels, windows = _bundle_probs(path, data, split)
    if len(probs) == 0:
        raise DataError(
            f"no windows to score: split {split!r} of {data} is empty (a simulation gives every split a "
            f"subject from 4 subjects on); expected data whose {split} split has subjects, or another --split",
            path=str(data),
            reason=f"empty split {split}",
        )
    m = evaluate_probs(probs, windows.head_truth(tuple(labels)), labels)
    return _json_safe(
        {
            "path": str(path),
            "data": [data] if isinstance(data, str) else list(data),
            "split": split,
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
    )


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
    return probs, labels, windows
