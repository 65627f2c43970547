"""Scoring probabilities on windows of held-out subjects: metrics, the pulse-timing baseline,
subject-bootstrap intervals. numpy only at import; a fit run's models load torch lazily
(``evaluate_run``), a bundle's go through a runtime engine (``checks.bundle_eval``).

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

import math
from pathlib import Path

import numpy as np

from bridge_edge.bridge.metrics import Metrics, compute_metrics, subject_bootstrap
from bridge_edge.bridge.rundir import RunDir
from bridge_edge.bridge.shards import fill_in_passes
from bridge_edge.errors import ConfigError, DataError

TIMING = "timing"  # the pulse-timing baseline's name in reports and bootstrap intervals
TIMING_METHOD = (
    "pulse-interval irregularity (normalised RMSSD, median |dRR|/RR, turning-point ratio) after "
    "excluding isolated premature beats (rules v2), on the runtime's beat detector, read where the SQI "
    "passes or the beats are one pulse shape; threshold from simulated train subjects (signals/rr_timing.py)"
)
# Windows the pulse-timing baseline scores at a time: its float64 copies (about 24 KB a window)
# are of a chunk, not of the whole test split (docs/scale.md). Each window's score is its own.
TIMING_CHUNK = 256


def evaluate_probs(probs: np.ndarray, truth: np.ndarray, labels, positive_label: str) -> Metrics:
    return compute_metrics(probs, truth, tuple(labels), positive_label)


def timing_scores(ppg: np.ndarray, fs: float) -> np.ndarray:
    """``rr_af_scores`` of every window (N,), read and scored ``TIMING_CHUNK`` windows at a time."""
    from bridge_edge.signals.rr_timing import rr_af_scores

    run_pass = lambda rows: rr_af_scores(np.asarray(ppg[rows]), fs)  # noqa: E731
    return fill_in_passes(len(ppg), TIMING_CHUNK, run_pass, np.zeros(0))


def timing_probs(
    ppg: np.ndarray, fs: float, labels, positive_label: str, sqi: np.ndarray | None = None
) -> tuple[np.ndarray, dict]:
    """The timing baseline on preprocessed PPG windows as (N, len(labels)) probabilities, and
    what a report says about it (method, threshold, unscored windows). ``sqi``: each window's
    quality as recorded (``WindowSet.sqi``); needed when the model input no longer shows it
    (ppg-v3 draws the beats, so a noisy window looks clean): windows under ``LOW_SQI`` go unscored."""
    from dataclasses import asdict

    from bridge_edge.signals.quality import LOW_SQI
    from bridge_edge.signals.rr_timing import RR_AF_THRESHOLD, rr_af_probability

    labels = list(labels)
    scores = timing_scores(ppg, fs)
    if sqi is not None:
        scores = np.where(np.isfinite(sqi) & (sqi < LOW_SQI), np.nan, scores)
    probs = np.zeros((len(scores), len(labels)), np.float32)
    others = [i for i, name in enumerate(labels) if name != positive_label]
    negative = labels.index("sinus") if "sinus" in labels else (others[0] if others else None)
    p = rr_af_probability(scores)
    if positive_label in labels:
        probs[:, labels.index(positive_label)] = p
    if negative is not None:
        probs[:, negative] = 1.0 - p
    info = {
        "method": TIMING_METHOD,
        "threshold": asdict(RR_AF_THRESHOLD),
        "unscored_windows": int(np.isnan(scores).sum()),
    }
    return probs, info


def json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# --- `bridge-edge evaluate RUN_DIR|BUNDLE --data DIR` -----------------------------------------


def dataset_ppg_windows(data: str | list[str], split: str, window_s: float, hop_s: float, preprocess: dict):
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
        "macro_auroc": m.macro_auroc,
    }
    if intervals is not None:
        row["ci95"] = intervals["models"][name]
    return row


def score_windows(
    probs: dict[str, np.ndarray],
    windows,
    labels,
    positive_label: str,
    preprocess: dict,
    where: str = "the split",
) -> dict:
    """``evaluate``'s result for models' probabilities on ``windows`` (the first model leads):
    metrics beside the pulse-timing baseline on the same windows, every model with
    subject-bootstrap 95 % intervals over the same resamples. The top-level metrics are the
    first model's; ``models`` holds every row."""
    from bridge_edge.signals.preprocess import PreprocessSpec

    if len(windows.ppg) == 0:
        raise DataError(
            f"no windows to score: {where} is empty (a simulation gives every split a subject from 4 "
            "subjects on); expected data whose split has subjects, or another --split",
            path=where,
            reason="empty split",
        )
    labels = list(labels)
    probs = dict(probs)
    probs[TIMING], timing_info = timing_probs(
        windows.ppg, PreprocessSpec.from_dict(preprocess).fs_out, labels, positive_label, windows.sqi
    )
    truth = windows.head_truth(tuple(labels))
    metrics = {name: evaluate_probs(p, truth, labels, positive_label) for name, p in probs.items()}
    intervals = None
    if (truth >= 0).any():
        intervals = subject_bootstrap(
            probs, truth, windows.subject, labels, positive_label, EVALUATE_RESAMPLES, seed=0
        )
    models = {name: _summary_row(m, intervals, name) for name, m in metrics.items()}
    models[TIMING] |= timing_info
    first = next(iter(models.values()))
    out = {k: v for k, v in first.items() if k != "ci95"}
    out["models"] = models
    if intervals is not None:
        out["intervals"] = {
            "resamples": intervals["resamples"],
            "subjects": intervals["subjects"],
            "resamples_without_auroc": intervals["resamples_without_auroc"],
            "differences": intervals["differences"],
        }
    return json_safe(out)


def evaluate_run(
    run_dir: str | Path, data: str | list[str], split: str = "test", device: str = "cpu"
) -> dict:
    """A fit run's bridge (and KD student, when it trained one) on a dataset split (the same split
    of several datasets, pooled, when ``data`` is a list); torch."""
    from bridge_edge.bridge.compose import load_composed

    model, spec = load_composed(run_dir, device=device)
    windows = dataset_ppg_windows(data, split, spec.window_s, spec.hop_s, spec.preprocess)
    probs = {"bridge": model.predict_proba(windows.ppg)}
    kd = _run_kd_probs(RunDir(run_dir), windows.ppg, len(spec.labels), device)
    if kd is not None:
        probs["kd"] = kd
    where = f"split {split!r} of {data}"
    out = score_windows(probs, windows, spec.labels, spec.positive_label, spec.preprocess, where)
    return {
        "path": str(run_dir),
        "data": [data] if isinstance(data, str) else list(data),
        "split": split,
    } | out


def _run_kd_probs(rd: RunDir, ppg: np.ndarray, n_labels: int, device: str) -> np.ndarray | None:
    """The run's KD student on these windows, or None when the run has none."""
    if not rd.kd_student.exists():
        return None
    from safetensors.torch import load_file

    from bridge_edge.bridge.compose import build_models
    from bridge_edge.bridge.kd import make_student
    from bridge_edge.bridge.recipe import load_recipe

    recipe = load_recipe(rd.recipe)
    _, new = build_models(recipe.old_model, recipe.new_model, rd.root, device)
    student = make_student(new, n_labels, ppg[:2])
    student.load_state_dict(load_file(str(rd.kd_student)))
    return student.predict_proba(ppg)
