"""`bridge-edge evaluate BUNDLE --data DIR`: a bundle's metrics on a dataset split, torch-free.

The bundle's model runs on a runtime engine (ONNX Runtime by default, fp32: the model its
accuracy table is measured against); windows, metrics, the pulse-timing baseline and the
subject bootstrap are bridge.evaluate's, numpy only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge_edge.bridge.evaluate import dataset_ppg_windows, score_windows

BATCH = 64


def bundle_probs(bundle, data: str | list[str], split: str, engine: str = "ort", precision: str = "fp32"):
    """A loaded bundle's probabilities on ``split`` of ``data``: (probs, labels, windows, preprocess)."""
    from bridge_edge.runtime.engines import select_engine

    inp = bundle.manifest.input
    windows = dataset_ppg_windows(data, split, inp.window_s, inp.hop_s, inp.preprocess)
    labels = list(bundle.manifest.output.labels)
    runner = select_engine(engine, bundle, precision=precision).engine
    try:
        ppg = np.ascontiguousarray(windows.ppg, np.float32)
        parts = [runner.infer(ppg[i : i + BATCH]) for i in range(0, len(ppg), BATCH)]
    finally:
        runner.close()
    probs = np.concatenate(parts) if parts else np.zeros((0, len(labels)), np.float32)
    return probs, labels, windows, inp.preprocess


def positive_label_of(manifest) -> str:
    """The bundle's positive label (its manifest's; bundles before the field: the run default)."""
    from bridge_edge.bridge.recipe import Recipe

    return manifest.output.positive_label or Recipe.positive_label


def evaluate_bundle(
    path: str | Path, data: str | list[str], split: str = "test", engine: str = "ort", precision: str = "fp32"
) -> dict:
    from bridge_edge.export.bundle import load_bundle

    bundle = load_bundle(path)  # verified on load
    probs, labels, windows, preprocess = bundle_probs(bundle, data, split, engine, precision)
    positive = positive_label_of(bundle.manifest)
    where = f"split {split!r} of {data}"
    out = score_windows({"bridge": probs}, windows, labels, positive, preprocess, where)
    return {"path": str(path), "data": [data] if isinstance(data, str) else list(data), "split": split} | out
