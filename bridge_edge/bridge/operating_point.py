"""The operating point: where the bundle calls the positive label, chosen without a label.

The bridge learns the old model's outputs, not where its argmax falls between classes, and a
bridged model can call the positive label (AF) on more or fewer windows than the old model
does on the same patients. With ``[operating_point] method = "old_model_calls"`` the positive
class's probability is multiplied by one weight ``w`` (each row renormalised), ``w`` chosen so
that the bridged model calls the positive label on exactly as many validation pair windows
(their PPG) as the old model calls it on the same windows' ECG. Only the two models' outputs
are read, never a label (docs/method.md, "Operating point").

A weight on one class is monotone in that class's probability, so the positive AUROC is the
same at every weight; what moves is which windows are called, i.e. recall against false alarms.
The weights travel in ``ComposedSpec.class_weights`` and so into the exported graph.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

import numpy as np

from bridge_edge.bridge.stages import Run

WEIGHT_RANGE = (1e-4, 1e4)  # a weight past these says the bridge and the old model disagree, not a threshold
PLAUSIBLE_WEIGHTS = (0.1, 10.0)  # past these the fit log warns: the calls differ by more than a threshold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatingPoint:
    """What ``operating_point.json`` records, whichever method the recipe chose."""

    method: str
    label: str
    weight: float  # 1.0 as trained
    n_windows: int  # validation pair windows
    old_model_calls: int  # windows the old model calls ``label`` on their ECG
    bridged_calls_as_trained: int  # windows the bridged model calls it on their PPG, weight 1
    bridged_calls: int  # ... at ``weight``

    def as_dict(self) -> dict:
        return asdict(self)


def calls(probs: np.ndarray, positive: int, weight: float = 1.0) -> int:
    """Rows of ``probs`` whose argmax is ``positive`` once that column is multiplied by ``weight``."""
    p = np.asarray(probs, np.float64).copy()
    p[:, positive] *= weight
    return int(np.sum(p.argmax(axis=1) == positive))


def weight_matching_calls(probs: np.ndarray, positive: int, target_calls: int) -> float:
    """The weight of column ``positive`` at which ``target_calls`` rows of ``probs`` call it.

    Row i is called positive exactly when w > t_i = max(other columns) / p_positive, so the
    answer lies between the target_calls-th and the next smallest t_i (their geometric mean;
    half the smallest or twice the largest at the ends). Rows with equal t_i across the target
    are called together or not at all; then fewer rows are called. Rows without any positive
    probability are never called. Clipped to ``WEIGHT_RANGE``.
    """
    p = np.asarray(probs, np.float64)
    n = len(p)
    if n == 0:
        return 1.0
    others = np.delete(p, positive, axis=1).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.sort(np.where(p[:, positive] > 0, others / p[:, positive], np.inf))
    k = int(np.clip(target_calls, 0, n))
    lo = t[k - 1] if k > 0 else 0.0
    hi = t[k] if k < n else np.inf
    if k == 0:
        w = hi / 2
    elif not np.isfinite(hi):
        w = lo * 2
    elif lo > 0:
        w = float(np.sqrt(lo * hi))
    else:
        w = hi / 2
    return float(np.clip(w, *WEIGHT_RANGE))


def choose(
    method: str, label: str, labels: list[str], bridged: np.ndarray, old: np.ndarray
) -> OperatingPoint:
    """The operating point for ``method`` from the bridged and old models' probabilities (N, K)
    on the same validation pair windows (PPG and ECG)."""
    positive = labels.index(label)
    target = int(np.sum(np.asarray(old).argmax(axis=1) == positive))
    weight = weight_matching_calls(bridged, positive, target) if method == "old_model_calls" else 1.0
    if not PLAUSIBLE_WEIGHTS[0] <= weight <= PLAUSIBLE_WEIGHTS[1]:
        log.warning(
            "operating point: %s's probability weighed x%.3g to match the old model's %d calls of %d "
            "windows (the bridged model makes %d as trained); a weight this far from 1 says the bridge "
            "reads %s differently from the old model, not that a threshold is off (undertrained?)",
            label, weight, target, len(bridged), calls(bridged, positive), label,
        )  # fmt: skip
    return OperatingPoint(
        method=method,
        label=label,
        weight=weight,
        n_windows=len(bridged),
        old_model_calls=target,
        bridged_calls_as_trained=calls(bridged, positive),
        bridged_calls=calls(bridged, positive, weight),
    )


def class_weights(point: OperatingPoint, labels: list[str]) -> list[float] | None:
    """``ComposedSpec.class_weights`` for ``point``: None as trained."""
    if point.method == "as_trained":
        return None
    return [point.weight if lab == point.label else 1.0 for lab in labels]


def stage_operating_point(run: Run) -> None:
    """Choose the operating point on the validation pairs; write it into composed.json."""
    from bridge_edge.bridge.compose import load_composed
    from bridge_edge.bridge.rundir import load_feature_store

    rd = run.dir
    model, spec = load_composed(rd.root, device=run.device, at_operating_point=False)
    val = run.windows("val").batched()
    bridged = model.predict_proba(val.ppg)
    old = np.asarray(load_feature_store(rd.targets_val).old_probs)
    point = choose(run.recipe.operating_point.method, spec.positive_label, list(spec.labels), bridged, old)
    rd.save_spec(replace(spec, class_weights=class_weights(point, list(spec.labels))))
    rd.save_json(rd.operating_point, point.as_dict())
