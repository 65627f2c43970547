"""The fit run directory: every artifact's path, and typed load/save for the plain-data ones.

No other module spells a run-directory file name; no torch at import (the device side reads a
run's spec and windows). Layout::

    recipe.toml              the recipe as given (its sha256 is in the report)
    data/                    simulated dataset (when data.source = "simulate")
    held_out_data/           extra simulated test subjects ([held_out]), in the dataset format
    windows/windows.json     labels, preprocessing, window counts per split
    windows/<split>.npz      model-ready windows: ecg, ppg, label, subject, start_s
    windows/held_out.npz     the [held_out] subjects' windows; "test" is test.npz plus these
    windows/gaps.json        non-finite spans the loader cut out (PairedDataset.gaps_summary)
    windows/pretrain_ppg.npy unlabelled train-split PPG, 2x the window, for pretraining
    probe.safetensors/.json  the old model's linear probe head ([probe] enabled only)
    new_model.safetensors    the pretrained new-modality encoder; pretrain.json its history
    features_pair.npz        pooled features of every block, old targets/probs (pair split)
    targets_val.npz          old targets/probs of the validation split (best-epoch choice)
    selection.json/.png      position selection
    composed.json            ComposedSpec; bridge.safetensors, bridge_training.json
    kd_student.safetensors   the KD baseline ([kd] enabled); kd_training.json
    position_check.json      bridges trained briefly at other positions ([position_check])
    stages.json, timings.json  each stage's key and seconds (what a rerun may reuse)
    report.json, training_curves.png, confusions.png, test_subjects.png
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bridge_edge.bridge.data import ARRAY_FIELDS, WindowSet
from bridge_edge.errors import BundleError


def _file(name: str) -> property:
    return property(lambda self: self.root / name, doc=f"RUN_DIR/{name}")


@dataclass
class ComposedSpec:
    """How the composed model is put together (composed.json): plain data, no torch."""

    input: dict  # InputSpec of the new model as plain data (modality, fs, window_s, channels, ...)
    preprocess: dict  # PreprocessSpec.as_dict() the input windows went through
    labels: list[str]  # head vocabulary (output columns)
    positive_label: str
    k_in: int
    k_out: int
    bridge: dict  # {rank, prototypes, params, d_in, d_out, n_tokens}
    old_model: dict  # recipe model table (kind, ...) + name
    new_model: dict
    window_s: float
    hop_s: float
    window_prediction: str = "mean of per-sample probabilities over the window (openecg)"
    dataset_labels: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FeatureStore:
    """Pooled block features of one pass over paired windows (bridge.features)."""

    new_pooled: list[np.ndarray]  # per new block k: (N, C_k) pooled output of block k
    old_pooled: list[np.ndarray]  # per old block k: (N, D_k) pooled input of block k
    old_target: np.ndarray | None  # (N, T*D) float16, old last-block output flattened
    old_probs: np.ndarray  # (N, K) old head window probabilities on the paired ECG
    seconds: float

    @property
    def pseudo_labels(self) -> np.ndarray:
        return self.old_probs.argmax(axis=1)


def save_feature_store(store: FeatureStore, path: Path) -> None:
    arrays = {f"new_{k}": a for k, a in enumerate(store.new_pooled)}
    arrays |= {f"old_{k}": a for k, a in enumerate(store.old_pooled)}
    arrays["old_probs"] = store.old_probs
    arrays["seconds"] = np.float64(store.seconds)
    if store.old_target is not None:
        arrays["old_target"] = store.old_target
    np.savez(path, **arrays)


def load_feature_store(path: Path) -> FeatureStore:
    with np.load(path) as z:
        n_new = sum(1 for k in z.files if k.startswith("new_"))
        n_old = sum(1 for k in z.files if k.startswith("old_") and k[4:].isdigit())
        return FeatureStore(
            new_pooled=[z[f"new_{k}"] for k in range(n_new)],
            old_pooled=[z[f"old_{k}"] for k in range(n_old)],
            old_target=z["old_target"] if "old_target" in z.files else None,
            old_probs=z["old_probs"],
            seconds=float(z["seconds"]),
        )


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    recipe = _file("recipe.toml")
    data = _file("data")
    held_out_data = _file("held_out_data")
    windows_dir = _file("windows")
    windows_meta = _file("windows/windows.json")
    data_gaps = _file("windows/gaps.json")
    pretrain_ppg = _file("windows/pretrain_ppg.npy")
    probe_weights = _file("probe.safetensors")
    probe_report = _file("probe.json")
    new_model_weights = _file("new_model.safetensors")
    pretrain_history = _file("pretrain.json")
    features_pair = _file("features_pair.npz")
    targets_val = _file("targets_val.npz")
    selection = _file("selection.json")
    selection_plot = _file("selection.png")
    composed_spec = _file("composed.json")
    bridge_weights = _file("bridge.safetensors")
    bridge_training = _file("bridge_training.json")
    kd_student = _file("kd_student.safetensors")
    kd_training = _file("kd_training.json")
    position_check = _file("position_check.json")
    stages = _file("stages.json")
    timings = _file("timings.json")
    report = _file("report.json")
    training_curves_plot = _file("training_curves.png")
    confusions_plot = _file("confusions.png")
    test_subjects_plot = _file("test_subjects.png")

    def windows_file(self, split: str) -> Path:
        return self.windows_dir / f"{split}.npz"

    def is_fit_run(self) -> bool:
        return self.composed_spec.exists()

    # --- windows ---------------------------------------------------------------------------

    def write_windows(self, splits: dict[str, WindowSet], preprocess: dict) -> None:
        self.windows_dir.mkdir(parents=True, exist_ok=True)
        labels = next(iter(splits.values())).labels
        for name, w in splits.items():
            self.save_windows(name, w)
        counts = {n: {"windows": len(w), "mixed": int((w.label < 0).sum())} for n, w in splits.items()}
        meta = {"labels": list(labels), "preprocess": preprocess, "counts": counts}
        self.windows_meta.write_text(json.dumps(meta, indent=2))

    def save_windows(self, name: str, w: WindowSet) -> None:
        np.savez(self.windows_file(name), **{f: getattr(w, f) for f in ARRAY_FIELDS})

    def windows(self, split: str) -> WindowSet:
        """One split's windows; "test" includes the [held_out] extra subjects when there are any."""
        windows = self._load_windows(split)
        if split == "test" and self.windows_file("held_out").exists():
            windows = WindowSet.concat([windows, self._load_windows("held_out")])
        return windows

    def held_out_subjects(self) -> set[str]:
        if not self.windows_file("held_out").exists():
            return set()
        return set(self._load_windows("held_out").subject.tolist())

    def _load_windows(self, name: str) -> WindowSet:
        labels = tuple(json.loads(self.windows_meta.read_text())["labels"])
        with np.load(self.windows_file(name)) as z:
            sqi = z["sqi"] if "sqi" in z.files else None  # run directories before the SQI was stored
            return WindowSet(z["ecg"], z["ppg"], z["label"], z["subject"], z["start_s"], labels, sqi)

    # --- composed spec ---------------------------------------------------------------------

    def save_spec(self, spec: ComposedSpec) -> None:
        self.composed_spec.write_text(json.dumps(spec.as_dict(), indent=2))

    def spec(self) -> ComposedSpec:
        if not self.is_fit_run():
            name = self.composed_spec.name
            raise BundleError(
                f"{self.root} is not a fit run directory: {name} is missing (run `bridge-edge fit` first)",
                path=str(self.root),
                file=name,
            )
        return ComposedSpec(**json.loads(self.composed_spec.read_text()))

    # --- JSON documents (training results, position check, stage bookkeeping, report) -------

    @staticmethod
    def save_json(path: Path, doc) -> None:
        path.write_text(json.dumps(doc, indent=2))

    @staticmethod
    def load_json(path: Path, default=None):
        """The document at ``path``; ``default`` when it does not exist (None: it must exist)."""
        if default is not None and not path.exists():
            return default
        return json.loads(path.read_text())

    @staticmethod
    def remove(paths) -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
