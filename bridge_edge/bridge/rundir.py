"""The fit run directory: every artifact's path, and typed load/save for the plain-data ones.

No other module spells a run-directory file name; no torch at import (the device side reads a
run's spec and windows). Layout::

    recipe.toml              the recipe as given (its sha256 is in the report)
    data/                    simulated dataset (when data.source = "simulate")
    held_out_data/           extra simulated test subjects ([held_out]), in the dataset format
    pair_cohort_data/        extra simulated pair subjects ([pair_cohort]), in the dataset format
    windows/windows.json     labels, preprocessing, window counts per split
    windows/<split>/         model-ready windows, one .npy per field (memory-mapped on load):
                             ecg, ppg, label, start_s, sqi, subject (codes into subjects.json)
    windows/held_out/        the [held_out] subjects' windows; "test" is test/ plus these
    windows/pair_cohort/     the [pair_cohort] subjects' windows; "pair" is pair/ plus these
    windows/gaps.json        non-finite spans the loader cut out (PairedDataset.gaps_summary)
    windows/pretrain_ppg.npy unlabelled train-split PPG, 2x the window, for pretraining
    probe.safetensors/.json  the old model's linear probe head ([probe] enabled only)
    new_model.safetensors    the pretrained new-modality encoder; pretrain.json its history
    features_pair/           pooled features of every block, old targets/probs (pair split),
                             one .npy per array + store.json (memory-mapped on load)
    targets_val/             old targets/probs of the validation split (best-epoch choice)
    memory/rank<r>.json      each stage's peak memory in that process (bridge.memory)
    selection.json/.png      position selection
    composed.json            ComposedSpec; bridge.safetensors, bridge_training.json
    operating_point.json     how the positive label's weight was chosen ([operating_point])
    kd_student.safetensors   the KD baseline ([kd] enabled); kd_training.json
    position_check.json      bridges trained briefly at other positions ([position_check])
    stages.json, timings.json  each stage's key and seconds (what a rerun may reuse)
    report.json, training_curves.png, confusions.png, test_subjects.png

Run directories written before the memory-mapped layout (windows/<split>.npz,
features_pair.npz, targets_val.npz) still load, eagerly, as they did (docs/scale.md).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bridge_edge.bridge.data import ARRAY_FIELDS, WindowSet
from bridge_edge.bridge.shards import JoinedRows, NpyAppender, load_mapped
from bridge_edge.errors import BundleError, DataError, RunDirFormatError


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
    # The operating point (bridge.operating_point): one weight per label; the window
    # probabilities are multiplied by them and renormalised. None: as trained.
    class_weights: list[float] | None = None

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


STORE_META = "store.json"


def feature_store_files(store: FeatureStore) -> dict[str, np.ndarray]:
    """A store's arrays by file stem: new_<k>, old_<k>, old_probs[, old_target]."""
    arrays = {f"new_{k}": a for k, a in enumerate(store.new_pooled)}
    arrays |= {f"old_{k}": a for k, a in enumerate(store.old_pooled)}
    arrays["old_probs"] = store.old_probs
    if store.old_target is not None:
        arrays["old_target"] = store.old_target
    return arrays


def write_feature_store_meta(
    directory: Path, n_new: int, n_old: int, has_target: bool, seconds: float
) -> None:
    doc = {"n_new": n_new, "n_old": n_old, "old_target": has_target, "seconds": seconds}
    (directory / STORE_META).write_text(json.dumps(doc, indent=2))


def save_feature_store(store: FeatureStore, path: Path) -> None:
    """``store`` as ``path/<array>.npy`` (what ``bridge.features.write_features`` writes batch by batch)."""
    if path.exists():
        shutil.rmtree(path)
    path.with_suffix(".npz").unlink(missing_ok=True)  # the store as older run directories kept it
    path.mkdir(parents=True)
    for stem, a in feature_store_files(store).items():
        np.save(path / f"{stem}.npy", a)
    write_feature_store_meta(
        path, len(store.new_pooled), len(store.old_pooled), store.old_target is not None, store.seconds
    )


def load_feature_store(path: Path) -> FeatureStore:
    """The store at ``path``, its arrays memory-mapped (an older run directory's ``path.npz`` loads eagerly)."""
    legacy = path.with_suffix(".npz")
    if not path.is_dir() and legacy.is_file():
        return _load_legacy_feature_store(legacy)
    meta_path = path / STORE_META
    if not meta_path.is_file():
        raise RunDirFormatError(
            f"{path} holds no feature store ({STORE_META} is missing); re-run the features stage "
            "(`bridge-edge fit RECIPE --out RUN_DIR`)",
            path=str(path),
            stage="features",
            expected=f"{path.name}/{STORE_META} and its .npy files",
        )
    meta = json.loads(meta_path.read_text())
    load = lambda stem: load_mapped(path / f"{stem}.npy", "features")  # noqa: E731
    return FeatureStore(
        new_pooled=[load(f"new_{k}") for k in range(meta["n_new"])],
        old_pooled=[load(f"old_{k}") for k in range(meta["n_old"])],
        old_target=load("old_target") if meta["old_target"] else None,
        old_probs=load("old_probs"),
        seconds=float(meta["seconds"]),
    )


def _load_legacy_feature_store(path: Path) -> FeatureStore:
    with np.load(path, allow_pickle=False) as z:
        n_new = sum(1 for k in z.files if k.startswith("new_"))
        n_old = sum(1 for k in z.files if k.startswith("old_") and k[4:].isdigit())
        return FeatureStore(
            new_pooled=[z[f"new_{k}"] for k in range(n_new)],
            old_pooled=[z[f"old_{k}"] for k in range(n_old)],
            old_target=z["old_target"] if "old_target" in z.files else None,
            old_probs=z["old_probs"],
            seconds=float(z["seconds"]),
        )


WINDOW_DTYPES = {
    "ecg": np.float32,
    "ppg": np.float32,
    "label": np.int64,
    "start_s": np.float64,
    "sqi": np.float32,
}
PAIR_COHORT_SPLIT = "pair_cohort"
# Window sets stored apart but read as part of a split: split -> the extra set joined after it.
EXTRA_SPLITS = {"test": "held_out", "pair": PAIR_COHORT_SPLIT}
SUBJECTS_FILE = "subjects.json"  # subject ids; windows/<split>/subject.npy holds int32 codes into it
MAPPED_FIELDS = ("ecg", "ppg")  # a window set's arrays kept memory-mapped when parts are joined


def joined_windows(parts: list[WindowSet]) -> WindowSet:
    """``WindowSet.concat(parts)`` with the ECG and PPG read from the parts as one
    (``shards.JoinedRows``: they stay memory-mapped); the per-window numbers are joined in RAM.
    The parts are one run directory's, read with one vocabulary (windows.json)."""
    joined = {f: JoinedRows([getattr(p, f) for p in parts]) for f in MAPPED_FIELDS}
    joined |= {f: np.concatenate([getattr(p, f) for p in parts]) for f in ARRAY_FIELDS if f not in joined}
    return WindowSet(**joined, labels=parts[0].labels)


class WindowWriter:
    """One split's windows written recording by recording (``append``), never all in RAM.

    The files are what ``RunDir.windows`` maps back; ``counts`` is the split's windows.json entry."""

    def __init__(self, directory: Path, labels: tuple[str, ...], n_ecg: int, n_ppg: int) -> None:
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        self.directory, self.labels = directory, tuple(labels)
        widths = {"ecg": (n_ecg,), "ppg": (n_ppg,)}
        self._files = {
            f: NpyAppender(directory / f"{f}.npy", dtype, widths.get(f, ()))
            for f, dtype in WINDOW_DTYPES.items()
        }
        self._subject = NpyAppender(directory / "subject.npy", np.int32, ())
        self._codes: dict[str, int] = {}
        self.mixed = 0

    def append(self, w: WindowSet) -> None:
        if w.labels != self.labels:
            raise DataError(
                f"cannot pool windows of datasets with different label vocabularies: "
                f"{[list(self.labels), list(w.labels)]}; expected one vocabulary",
                reason="label vocabularies differ",
            )
        for f, out in self._files.items():
            out.append(getattr(w, f))
        names, inverse = np.unique(w.subject, return_inverse=True)
        codes = np.array([self._codes.setdefault(str(n), len(self._codes)) for n in names], np.int32)
        self._subject.append(codes[inverse] if len(names) else np.zeros(0, np.int32))
        self.mixed += int((w.label < 0).sum())

    @property
    def counts(self) -> dict[str, int]:
        return {"windows": self._subject.rows, "mixed": self.mixed}

    def close(self) -> None:
        for out in (*self._files.values(), self._subject):
            out.close()
        (self.directory / SUBJECTS_FILE).write_text(json.dumps(list(self._codes)))

    def __enter__(self) -> WindowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    recipe = _file("recipe.toml")
    data = _file("data")
    held_out_data = _file("held_out_data")
    pair_cohort_data = _file("pair_cohort_data")
    windows_dir = _file("windows")
    windows_meta = _file("windows/windows.json")
    data_gaps = _file("windows/gaps.json")
    pretrain_ppg = _file("windows/pretrain_ppg.npy")
    probe_weights = _file("probe.safetensors")
    probe_report = _file("probe.json")
    new_model_weights = _file("new_model.safetensors")
    pretrain_history = _file("pretrain.json")
    features_pair = _file("features_pair")
    targets_val = _file("targets_val")
    selection = _file("selection.json")
    selection_plot = _file("selection.png")
    composed_spec = _file("composed.json")
    bridge_weights = _file("bridge.safetensors")
    bridge_training = _file("bridge_training.json")
    operating_point = _file("operating_point.json")
    kd_student = _file("kd_student.safetensors")
    kd_training = _file("kd_training.json")
    position_check = _file("position_check.json")
    stages = _file("stages.json")
    timings = _file("timings.json")
    report = _file("report.json")
    training_curves_plot = _file("training_curves.png")
    confusions_plot = _file("confusions.png")
    test_subjects_plot = _file("test_subjects.png")

    memory_dir = _file("memory")

    def windows_split(self, split: str) -> Path:
        return self.windows_dir / split

    def legacy_windows_file(self, split: str) -> Path:
        """A split's windows as run directories before the memory-mapped layout stored them."""
        return self.windows_dir / f"{split}.npz"

    def has_windows(self, split: str) -> bool:
        return self.windows_split(split).is_dir() or self.legacy_windows_file(split).is_file()

    def is_fit_run(self) -> bool:
        return self.composed_spec.exists()

    # --- windows ---------------------------------------------------------------------------

    def window_writer(self, split: str, labels: tuple[str, ...], n_ecg: int, n_ppg: int) -> WindowWriter:
        """A writer for one split's windows (replacing what was there, the old .npz included)."""
        self.legacy_windows_file(split).unlink(missing_ok=True)
        return WindowWriter(self.windows_split(split), labels, n_ecg, n_ppg)

    def write_windows_meta(self, labels: tuple[str, ...], preprocess: dict, counts: dict[str, dict]) -> None:
        meta = {"labels": list(labels), "preprocess": preprocess, "counts": counts}
        self.windows_meta.write_text(json.dumps(meta, indent=2))

    def windows(self, split: str) -> WindowSet:
        """One split's windows, memory-mapped; "test" includes the [held_out] extra subjects and
        "pair" the [pair_cohort] ones, after the split's own, when there are any: its ECG and PPG
        are then ``shards.JoinedRows`` over both files (``joined_windows``), still mapped."""
        windows = self._load_windows(split)
        extra = EXTRA_SPLITS.get(split)
        if extra and self.has_windows(extra):
            windows = joined_windows([windows, self._load_windows(extra)])
        return windows

    def held_out_subjects(self) -> set[str]:
        if not self.has_windows("held_out"):
            return set()
        return set(self._load_windows("held_out").subject.tolist())

    def _load_windows(self, name: str) -> WindowSet:
        labels = tuple(json.loads(self.windows_meta.read_text())["labels"])
        directory = self.windows_split(name)
        if not directory.is_dir() and self.legacy_windows_file(name).is_file():
            return self._load_legacy_windows(name, labels)
        arrays = {f: load_mapped(directory / f"{f}.npy", "data") for f in WINDOW_DTYPES}
        codes = load_mapped(directory / "subject.npy", "data")
        names = np.asarray(json.loads((directory / SUBJECTS_FILE).read_text()), dtype=str)
        subject = names[np.asarray(codes)] if len(names) else np.zeros(0, str)
        return WindowSet(subject=subject, labels=labels, **arrays)

    def _load_legacy_windows(self, name: str, labels: tuple[str, ...]) -> WindowSet:
        with np.load(self.legacy_windows_file(name), allow_pickle=False) as z:
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
