"""`bridge-edge fit`: the offline chain as rerunnable stages over one run directory.

    data -> windows -> [probe: linear head for an old model without one] -> pretrain new model
         (self-supervised, PPG only) -> features (one pass)
         -> select positions -> bridge -> KD baseline -> held-out test subjects -> position check
         -> evaluate -> report

Run directory::

    recipe.toml            the recipe as given (its sha256 is in the report)
    data/                  simulated dataset (when data.source = "simulate")
    windows/<split>.npz    model-ready windows: ecg, ppg, label, subject, start_s
    probe.safetensors/.json  the old model's linear probe head ([probe] enabled only)
    new_model.safetensors  the pretrained new-modality encoder
    features_pair.npz      pooled features of every block, old targets/probs (pair split)
    held_out_data/         extra simulated test subjects ([held_out]), in the dataset format
    windows/held_out.npz   their windows; the test split is windows/test.npz plus these
    targets_val.npz        old targets/probs of the validation split (best-epoch choice)
    selection.json/.png    position selection
    composed.json, bridge.safetensors, kd_student.safetensors
    report.json, training_curves.png, confusions.png, test_subjects.png
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge_edge.bridge.data import ARRAY_FIELDS, WindowSet, split_windows
from bridge_edge.bridge.recipe import Recipe, load_recipe
from bridge_edge.errors import ConfigError
from bridge_edge.models.checkpoints import save_module_state
from bridge_edge.signals.types import SPLIT_NAMES

log = logging.getLogger(__name__)


# --- windows -------------------------------------------------------------------------------


@dataclass
class RunWindows:
    root: Path
    labels: tuple[str, ...]

    @classmethod
    def open(cls, run_dir: Path) -> RunWindows:
        meta = json.loads((Path(run_dir) / "windows" / "windows.json").read_text())
        return cls(Path(run_dir) / "windows", tuple(meta["labels"]))

    def split(self, name: str) -> WindowSet:
        """One split's windows; "test" includes the [held_out] extra subjects when there are any."""
        windows = self._load(name)
        if name == "test" and (self.root / "held_out.npz").exists():
            windows = WindowSet.concat([windows, self._load("held_out")])
        return windows

    def held_out_subjects(self) -> set[str]:
        if not (self.root / "held_out.npz").exists():
            return set()
        return set(self._load("held_out").subject.tolist())

    def _load(self, name: str) -> WindowSet:
        with np.load(self.root / f"{name}.npz") as z:
            sqi = z["sqi"] if "sqi" in z.files else None  # run directories before the SQI was stored
            return WindowSet(z["ecg"], z["ppg"], z["label"], z["subject"], z["start_s"], self.labels, sqi)

    @staticmethod
    def write(run_dir: Path, splits: dict[str, WindowSet], preprocess: dict) -> None:
        root = Path(run_dir) / "windows"
        root.mkdir(parents=True, exist_ok=True)
        labels = next(iter(splits.values())).labels
        for name, w in splits.items():
            RunWindows.save(root / f"{name}.npz", w)
        counts = {n: {"windows": len(w), "mixed": int((w.label < 0).sum())} for n, w in splits.items()}
        meta = {"labels": list(labels), "preprocess": preprocess, "counts": counts}
        (root / "windows.json").write_text(json.dumps(meta, indent=2))

    @staticmethod
    def save(path: Path, w: WindowSet) -> None:
        np.savez(path, **{f: getattr(w, f) for f in ARRAY_FIELDS})


def ppg_preprocess_spec(recipe: Recipe, new_fs: float):
    from bridge_edge.signals.preprocess import preprocess_spec

    return preprocess_spec(recipe.data.preprocess, new_fs)


def dataset_windows(
    dataset, recipe: Recipe, old_fs: float, new_fs: float, splits=SPLIT_NAMES
) -> dict[str, WindowSet]:
    spec = ppg_preprocess_spec(recipe, new_fs)
    d = recipe.data
    return {
        s: split_windows(
            dataset,
            s,
            window_s=d.window_s,
            hop_s=d.hop_s,
            fs_ecg=old_fs,
            ppg_spec=spec,
            purity=d.label_purity,
        )
        for s in splits
    }


# --- run context ---------------------------------------------------------------------------


@dataclass
class Run:
    run_dir: Path
    recipe: Recipe
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict)
    _models: tuple | None = None

    @classmethod
    def open(cls, run_dir: str | Path, device: str = "cpu") -> Run:
        run_dir = Path(run_dir)
        return cls(run_dir, load_recipe(run_dir / "recipe.toml"), device)

    def models(self):
        """(old, new) frozen adapters; the new one with the run's pretrained weights once they exist."""
        if self._models is None:
            from bridge_edge.bridge.compose import build_models

            self._models = build_models(
                self.recipe.old_model, self.recipe.new_model, self.run_dir, self.device
            )
        return self._models

    def windows(self, split: str) -> WindowSet:
        return RunWindows.open(self.run_dir).split(split)

    @contextlib.contextmanager
    def stage(self, name: str):
        log.info("stage %s ...", name)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 2)
        log.info("stage %s done in %.1f s", name, self.timings[name])


# --- stages --------------------------------------------------------------------------------


def stage_data(run: Run) -> None:
    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.simulator import write_dataset

    d = run.recipe.data
    if d.source == "simulate":
        data_dir = run.run_dir / "data"
        if not (data_dir / "dataset.json").exists():
            write_dataset(data_dir, d.subjects, d.minutes, d.seed, progress=True)
        spec = str(data_dir)
    else:
        spec = d.path
    dataset = load_dataset(spec)
    old, new = run.models()
    splits = dataset_windows(dataset, run.recipe, old.input_spec.fs, new.input_spec.fs)
    RunWindows.write(run.run_dir, splits, ppg_preprocess_spec(run.recipe, new.input_spec.fs).as_dict())
    # Pretraining views are crops of longer unlabelled train-split PPG windows (2x the model window).
    w = run.recipe.data.window_s
    long = split_windows(
        dataset,
        "train",
        window_s=2 * w,
        hop_s=w,
        fs_ecg=None,
        ppg_spec=ppg_preprocess_spec(run.recipe, new.input_spec.fs),
    )
    np.save(run.run_dir / "windows" / "pretrain_ppg.npy", long.ppg)


def stage_held_out(run: Run) -> None:
    """Extra test subjects ([held_out] extra_simulated_subjects), simulated and windowed.

    They join the test split only: no stage before evaluation reads them, and their seeds come
    from a stream of their own (simulator.HELD_OUT_STREAM), so no train, val, pair or
    pretraining subject can coincide with one of them.
    """
    import shutil

    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.simulator import write_held_out_dataset

    n, d = run.recipe.held_out.extra_simulated_subjects, run.recipe.data
    data_dir, windows_path = run.run_dir / "held_out_data", run.run_dir / "windows" / "held_out.npz"
    shutil.rmtree(data_dir, ignore_errors=True)
    windows_path.unlink(missing_ok=True)
    if n == 0:
        return
    write_held_out_dataset(data_dir, n, d.minutes, d.seed, progress=True)
    old, new = run.models()
    test = dataset_windows(
        load_dataset(str(data_dir)), run.recipe, old.input_spec.fs, new.input_spec.fs, ("test",)
    )
    RunWindows.save(windows_path, test["test"])


def extra_simulated_ppg(recipe: Recipe, fs: float) -> np.ndarray:
    """Pretraining windows (2 x window, hop = window) from ``[pretrain] simulated_subjects`` extra subjects.

    Their seeds continue the dataset's subject seeds past its last subject, so none of them is in
    any split. Only the PPG windows are kept: the window labels ``recording_windows`` derives are
    dropped here, so nothing about rhythm reaches pretraining.
    """
    from bridge_edge.bridge.data import recording_windows
    from bridge_edge.signals.simulator import simulate_subject, subject_seed

    d, n = recipe.data, recipe.pretrain.simulated_subjects
    if d.source != "simulate":
        raise ConfigError(
            f'[pretrain] simulated_subjects needs [data] source = "simulate"; got source = {d.source!r}',
            key="pretrain.simulated_subjects",
            value=n,
        )
    low, high = recipe.pretrain.time_stretch
    windows = []
    for i in range(n):
        rec = simulate_subject(f"pre{i:04d}", d.minutes, subject_seed(d.seed, d.subjects + i))
        # half of them played faster or slower: the same rhythm at another rate (targets follow)
        speed = np.random.default_rng([d.seed, i, 9]).uniform(low, high) if i % 2 else 1.0
        windows.append(
            recording_windows(
                dataclasses.replace(rec, fs_ppg=rec.fs_ppg * speed),
                window_s=2 * d.window_s,
                hop_s=d.window_s,
                fs_ecg=None,
                ppg_spec=ppg_preprocess_spec(recipe, fs),
            ).ppg
        )
    return np.concatenate(windows)


DEV_RECORDING_SPEEDS = (1.0, 0.8, 1.25)


def dev_recording_ppg(recipe: Recipe, fs: float) -> np.ndarray:
    """Pretraining windows (2 x window, hop 4 s) of the development real PPG recordings
    (signals.dev_recordings; unlabelled), each also played x0.8 and x1.25."""
    from bridge_edge.models.pretrain import unlabelled_ppg_windows
    from bridge_edge.signals.dev_recordings import available_dev_recordings

    recordings = available_dev_recordings()
    if not recordings:
        raise ConfigError(
            "[pretrain] dev_recordings = true, but no development recording is installed; expected "
            "the heartpy and biosignalsnotebooks data files (scripts/setup-tests.sh installs them)",
            key="pretrain.dev_recordings",
            value=True,
        )
    played = [dataclasses.replace(r, fs_ppg=r.fs_ppg * v) for r in recordings for v in DEV_RECORDING_SPEEDS]
    return unlabelled_ppg_windows(
        played, ppg_preprocess_spec(recipe, fs), window_s=2 * recipe.data.window_s, hop_s=4.0
    )


def stage_probe(run: Run) -> None:
    """Linear probe on the frozen old model's pooled last block, from labelled old-modality
    (train split) windows; epoch by the lowest validation loss (models.probe, docs/method.md)."""
    from bridge_edge.models.probe import PROBE_REPORT, PROBE_WEIGHTS, last_block_features, train_probe
    from bridge_edge.models.registry import build_adapter

    for name in (PROBE_WEIGHTS, PROBE_REPORT):
        (run.run_dir / name).unlink(missing_ok=True)
    run._models = None  # the old head changes with the probe
    cfg = run.recipe.probe
    if not cfg.enabled:
        return
    train, val = run.windows("train"), run.windows("val")
    labels = tuple(cfg.labels) or train.labels
    unknown = sorted(set(labels) - set(train.labels))
    if unknown:
        raise ConfigError(
            f"[probe] labels {unknown} are not dataset labels; expected some of {list(train.labels)}",
            key="probe.labels",
            value=list(cfg.labels),
            expected=list(train.labels),
        )
    old = build_adapter(dict(run.recipe.old_model), device=run.device).freeze()
    probe, result = train_probe(
        last_block_features(old, train.ecg, cfg.batch_size),
        train.head_truth(labels),  # dataset label -> probe class by name; others -1 (skipped)
        last_block_features(old, val.ecg, cfg.batch_size),
        val.head_truth(labels),
        labels,
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        class_weighted=cfg.class_weighted,
        seed=run.recipe.seed,
    )
    save_module_state(probe, run.run_dir / PROBE_WEIGHTS)
    (run.run_dir / PROBE_REPORT).write_text(json.dumps(result.as_dict(), indent=2))
    log.info(
        "probe: epoch %d of %d, val accuracy %.3f",
        result.best_epoch,
        cfg.epochs,
        result.val_accuracy[result.best_epoch - 1],
    )


def stage_pretrain(run: Run) -> None:
    """Self-supervised pretraining of the new-modality encoder on unlabelled train-split PPG."""
    from bridge_edge.bridge.compose import NEW_MODEL_WEIGHTS
    from bridge_edge.models.ppg_augment import AugmentSpec
    from bridge_edge.models.pretrain import pretrain_ppg_encoder
    from bridge_edge.models.registry import build_adapter

    cfg = run.recipe.pretrain
    new = build_adapter(
        dict(run.recipe.new_model), device=run.device
    )  # from scratch (or the recipe's checkpoint)
    if cfg.enabled:
        ppg = np.load(run.run_dir / "windows" / "pretrain_ppg.npy")  # PPG only: no label exists here
        if cfg.max_windows:
            ppg = ppg[np.random.default_rng(run.recipe.seed).permutation(len(ppg))[: cfg.max_windows]]
        n_split = len(ppg)
        if cfg.simulated_subjects:
            ppg = np.concatenate([ppg, extra_simulated_ppg(run.recipe, new.input_spec.fs)])
        n_simulated = len(ppg) - n_split
        if cfg.dev_recordings:
            ppg = np.concatenate([ppg, dev_recording_ppg(run.recipe, new.input_spec.fs)])
        views = ppg
        if cfg.sensor_prob > 0:
            views = seen_through_sensors(
                ppg, ppg_preprocess_spec(run.recipe, new.input_spec.fs), cfg.sensor_prob, run.recipe.seed
            )
        history = pretrain_ppg_encoder(
            views,
            new,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=run.recipe.seed,
            contrastive_weight=cfg.contrastive_weight,
            aux_weight=cfg.aux_weight,
            aux_min_sqi=cfg.aux_min_sqi,
            target_names=cfg.targets,
            augment_spec=AugmentSpec(motion_prob=cfg.motion_prob),
            target_windows=ppg,
        )
        history["n_train_split_windows"] = n_split
        history["n_simulated_windows"] = n_simulated
        history["n_dev_recording_windows"] = len(ppg) - n_split - n_simulated
        history["sensor_prob"] = cfg.sensor_prob
        (run.run_dir / "pretrain.json").write_text(json.dumps(history, indent=2))
    save_module_state(new.module, run.run_dir / NEW_MODEL_WEIGHTS)
    run._models = None  # later stages load the pretrained weights


def seen_through_sensors(windows: np.ndarray, spec, share: float, seed: int) -> np.ndarray:
    """``share`` of the windows (chosen by ``seed``) re-recorded by random sensors (signals.sensor)."""
    from bridge_edge.signals.preprocess import normalise_windows
    from bridge_edge.signals.sensor import resensor_windows

    rng = np.random.default_rng([seed, 31])
    chosen = rng.random(len(windows)) < share
    out = windows.copy()
    out[chosen] = normalise_windows(resensor_windows(windows[chosen], spec.fs_out, rng), spec)
    return out


def stage_features(run: Run) -> None:
    from bridge_edge.bridge.features import collect_features, save_feature_store

    old, new = run.models()
    if not old.labels:
        raise ConfigError(
            f"old model {old.name} has no task head (it returns embeddings, not class probabilities); "
            "expected one: set [probe] enabled = true to train a linear probe on labelled old-modality windows",
            key="probe.enabled",
            value=False,
            expected=True,
        )
    bs = run.recipe.bridge.batch_size
    pair, val = run.windows("pair"), run.windows("val")
    save_feature_store(
        collect_features(old, new, pair.ecg, pair.ppg, batch_size=bs, desc="features pair"),
        run.run_dir / "features_pair.npz",
    )
    save_feature_store(
        collect_features(old, None, val.ecg, None, batch_size=bs, desc="targets val"),
        run.run_dir / "targets_val.npz",
    )


def stage_select(run: Run) -> None:
    from bridge_edge.bridge.features import load_feature_store
    from bridge_edge.bridge.selection import select_positions, write_selection

    old, new = run.models()
    s = run.recipe.selection
    store = load_feature_store(run.run_dir / "features_pair.npz")
    trial = None
    if s.trial_epochs > 0:
        data = _pair_data(run)

        def trial(k_in: int, k_out: int) -> dict:
            _, res, _ = _train_bridge_at(
                run,
                data,
                k_in,
                k_out,
                epochs=s.trial_epochs,
                max_windows=s.trial_max_windows,
                desc=f"trial {k_in}->{k_out}",
            )
            return {
                **_best_epoch_scores(res),
                "epochs": s.trial_epochs,
                "pair_windows": s.trial_max_windows or len(data[0].ppg),
                "peak_memory_bytes": res.peak_memory_bytes,
            }

    sel = select_positions(
        store,
        old.labels,
        k_in=s.k_in,
        k_out=s.k_out,
        folds=s.cv_folds,
        cka_tolerance=s.cka_tolerance,
        trial=trial,
        trial_score=run.recipe.bridge.best_epoch_by,
    )
    write_selection(sel, run.run_dir, new.block_paths, old.block_paths)
    log.info(
        "selected k_in=%d (%s) k_out=%d (%s) in %.1f s",
        sel.k_in,
        new.block_paths[sel.k_in],
        sel.k_out,
        old.block_paths[sel.k_out],
        sel.seconds,
    )


def _pair_data(run: Run):
    """Pair and validation windows with their cached old-model outputs."""
    from bridge_edge.bridge.features import load_feature_store

    pair_store = load_feature_store(run.run_dir / "features_pair.npz")
    val_store = load_feature_store(run.run_dir / "targets_val.npz")
    return run.windows("pair"), run.windows("val"), pair_store, val_store


def _sensor_variants(run: Run, pair_ppg: np.ndarray) -> list[np.ndarray]:
    """``[bridge] sensor_variants`` versions of the pair PPG windows, each window re-recorded by a
    random sensor (signals.sensor); drawn from the recipe's seed, so trials and the final bridge
    see the same ones."""
    n = run.recipe.bridge.sensor_variants
    if not n:
        return []
    rng = np.random.default_rng([run.recipe.seed, 47])
    spec = ppg_preprocess_spec(run.recipe, run.models()[1].input_spec.fs)
    from bridge_edge.signals.preprocess import normalise_windows
    from bridge_edge.signals.sensor import resensor_windows

    return [normalise_windows(resensor_windows(pair_ppg, spec.fs_out, rng), spec) for _ in range(n)]


def _train_bridge_at(run: Run, data, k_in: int, k_out: int, *, epochs: int, desc: str, max_windows: int = 0):
    """A fresh bridge for positions (k_in, k_out) with the recipe's [bridge] settings, trained.

    ``data`` is ``_pair_data(run)``; the bridge trains on the first ``max_windows`` pair windows
    (0 = all) and picks its epoch on all validation windows. Returns (bridge, TrainResult,
    prototype count). Used by the bridge stage, the selection trials and the position check.
    """
    from bridge_edge.bridge.prototype import parse_proto_init
    from bridge_edge.bridge.train import PairData, make_bridge, train_bridge

    pair, val, pair_store, val_store = data
    n = max_windows or len(pair.ppg)
    probe = (pair.ppg[:4], pair.ecg[:4])  # shape discovery

    old, new = run.models()
    cfg = run.recipe.bridge
    init, prototypes = parse_proto_init(cfg.init)
    bridge = make_bridge(new, old, k_in, k_out, cfg.rank, prototypes, probe, init=init, seed=run.recipe.seed)
    result = train_bridge(
        old,
        new,
        bridge,
        k_in,
        k_out,
        PairData(pair.ppg[:n], pair_store.old_target[:n]),
        PairData(val.ppg, val_store.old_target),
        pair_variants=[v[:n] for v in _sensor_variants(run, pair.ppg)],
        epochs=epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=run.recipe.seed,
        desc=desc,
        best_epoch_by=cfg.best_epoch_by,
        val_old_probs=val_store.old_probs,
    )
    return bridge, result, prototypes


def _best_epoch_scores(res) -> dict:
    """Validation scores of a trained bridge at its chosen epoch (trials, position check)."""
    scores = {"val_loss": res.val_loss[res.best_epoch - 1]}
    if res.val_head_kl:
        scores["val_head_kl"] = res.val_head_kl[res.best_epoch - 1]
    return scores


def stage_bridge(run: Run) -> None:
    from bridge_edge.bridge.compose import ComposedSpec, save_composed
    from bridge_edge.bridge.selection import read_selection

    old, new = run.models()
    cfg = run.recipe.bridge
    sel = read_selection(run.run_dir)
    data = _pair_data(run)
    pair = data[0]
    bridge, result, prototypes = _train_bridge_at(
        run, data, sel.k_in, sel.k_out, epochs=cfg.epochs, desc="bridge"
    )
    spec = ComposedSpec(
        input=new.input_spec.as_dict(),
        preprocess=ppg_preprocess_spec(run.recipe, new.input_spec.fs).as_dict(),
        labels=list(old.labels),
        positive_label="afib",
        k_in=sel.k_in,
        k_out=sel.k_out,
        bridge={
            "rank": cfg.rank,
            "prototypes": prototypes,
            "init": cfg.init,
            "params": bridge.n_params,
            "d_in": bridge.d_in,
            "d_out": bridge.d_out,
            "n_tokens": bridge.n_tokens,
        },
        old_model=dict(run.recipe.old_model) | {"name": old.name},
        new_model=dict(run.recipe.new_model) | {"name": new.name},
        window_s=run.recipe.data.window_s,
        hop_s=run.recipe.data.hop_s,
        dataset_labels=list(pair.labels),
    )
    save_composed(run.run_dir, spec, bridge)
    (run.run_dir / "bridge_training.json").write_text(json.dumps(result.as_dict(), indent=2))


def stage_kd(run: Run) -> None:
    from bridge_edge.bridge.kd import make_student, train_kd
    from bridge_edge.bridge.train import PairData

    old, new = run.models()
    cfg = run.recipe.kd
    pair, val, pair_store, val_store = _pair_data(run)
    student = make_student(new, len(old.labels), pair.ppg[:4], seed=run.recipe.seed)
    result = train_kd(
        student,
        PairData(pair.ppg, pair_store.old_probs),
        PairData(val.ppg, val_store.old_probs),
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        loss=cfg.loss,
        seed=run.recipe.seed,
        pair_variants=_sensor_variants(run, pair.ppg),  # the bridge's augmentation, for a fair baseline
    )
    save_module_state(student, run.run_dir / "kd_student.safetensors")
    (run.run_dir / "kd_training.json").write_text(json.dumps(result.as_dict(), indent=2))


def check_pairs(k_in: int, k_out: int, n_new: int, n_old: int, pinned: list) -> list[tuple[int, int]]:
    """The chosen pair plus 3 others: its neighbours, then pairs spread over both models (or the
    recipe's list)."""
    if pinned:
        others = [tuple(p) for p in pinned]
    else:
        others = [
            (k_in - 1, k_out),
            (k_in, k_out - 1),
            (n_new // 2, n_old // 2),
            (k_in, n_old - 1),
            (n_new - 1, k_out),
            (n_new - 1, n_old - 1),
            (0, 0),
        ]
    out = [(k_in, k_out)]
    for p in others:
        if p not in out and 0 <= p[0] < n_new and 0 <= p[1] < n_old:
            out.append(p)
    return out[: 1 + max(3, len(pinned))]


def stage_position_check(run: Run) -> list[dict]:
    """Briefly train a bridge at the chosen and >= 3 other positions; test AUROC of each."""
    from bridge_edge.bridge.compose import compose
    from bridge_edge.bridge.evaluate import evaluate_probs
    from bridge_edge.bridge.selection import read_selection

    old, new = run.models()
    check = run.recipe.position_check
    if check.epochs <= 0:
        return []
    sel = read_selection(run.run_dir)
    data = _pair_data(run)
    n = check.max_windows or len(data[0].ppg)
    test = run.windows("test")
    truth = test.head_truth(old.labels)
    rows = []
    for k_in, k_out in check_pairs(sel.k_in, sel.k_out, new.n_blocks, old.n_blocks, check.pairs):
        bridge, res, _ = _train_bridge_at(
            run, data, k_in, k_out, epochs=check.epochs, max_windows=n, desc=f"check {k_in}->{k_out}"
        )
        m = evaluate_probs(compose(new, old, bridge, k_in, k_out).predict_proba(test.ppg), truth, old.labels)
        rows.append(
            {
                "k_in": k_in,
                "k_out": k_out,
                "chosen": (k_in, k_out) == (sel.k_in, sel.k_out),
                "epochs": check.epochs,
                "pair_windows": n,
                **_best_epoch_scores(res),
                "test_auroc": m.positive_auroc,
                "test_macro_f1": m.macro_f1,
                "trainable_params": res.trainable_params,
                "peak_memory_bytes": res.peak_memory_bytes,
            }
        )
    return rows


# Stage graph: (name, function, recipe sections or "section.key"s it reads, upstream stages).
# A stage whose key (hash of what it reads and its upstream keys) is unchanged since the last
# fit of this run directory is reused, so tuning the bridge does not redo data, pretraining
# and features, and adding test subjects redoes only what reads the test split.
STAGES = (
    ("data", stage_data, ("data", "old_model", "new_model"), ()),
    ("probe", stage_probe, ("probe",), ("data",)),
    ("pretrain", stage_pretrain, ("pretrain",), ("data",)),
    ("features", stage_features, (), ("pretrain", "probe")),  # the probe is the old head
    ("select", stage_select, ("selection", "bridge"), ("features",)),  # trials train bridges
    ("bridge", stage_bridge, ("bridge",), ("select",)),
    ("kd", stage_kd, ("kd", "bridge.sensor_variants"), ("features",)),
    ("held_out", stage_held_out, ("held_out.extra_simulated_subjects",), ("data",)),
    ("position_check", None, ("position_check",), ("bridge", "held_out")),  # scored on the test split
)


def _stage_keys(recipe: Recipe) -> dict[str, str]:
    keys: dict[str, str] = {}
    table = dataclasses.asdict(recipe)

    def read(ref: str):
        section, _, key = ref.partition(".")
        return table[section][key] if key else table[section]

    for name, _, sections, upstream in STAGES:
        if name == "select" and recipe.selection.trial_epochs <= 0:
            sections = ("selection",)  # without trials, selection reads no [bridge] setting
        if not recipe.probe.enabled:
            upstream = tuple(u for u in upstream if u != "probe")  # the old model's own head
        doc = {"sections": {s: read(s) for s in sections}, "upstream": [keys[u] for u in upstream]}
        keys[name] = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    return keys


def fit(recipe_path: str | Path, run_dir: str | Path, device: str = "cpu", fresh: bool = False) -> dict:
    """The whole chain; returns the report (also written to RUN_DIR/report.json)."""
    from bridge_edge.bridge.evaluate import write_report

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe(recipe_path)
    (run_dir / "recipe.toml").write_text(Path(recipe.source_path).read_text())
    run = Run(run_dir, dataclasses.replace(recipe, source_path=str(run_dir / "recipe.toml")), device)
    keys, done_path = _stage_keys(recipe), run_dir / "stages.json"
    done = {} if fresh or not done_path.exists() else json.loads(done_path.read_text())
    # A reused stage keeps the time it took when it ran, so the report's stage times stay whole.
    timings_path = run_dir / "timings.json"
    ran_before = {} if fresh or not timings_path.exists() else json.loads(timings_path.read_text())
    for name, fn, _, _ in STAGES:
        if done.get(name) == keys[name]:
            log.info("stage %s: unchanged since the last fit, reused", name)
            if name in ran_before:
                run.timings[name] = ran_before[name]
            continue
        with run.stage(name):
            if fn is None:  # position check: its rows are stored for the report
                (run_dir / "position_check.json").write_text(json.dumps(stage_position_check(run), indent=2))
            else:
                fn(run)
        done[name] = keys[name]
        done_path.write_text(json.dumps(done, indent=2))
        timings_path.write_text(json.dumps(run.timings, indent=2))
    with run.stage("evaluate"):
        check = json.loads((run_dir / "position_check.json").read_text())
        return write_report(run, position_check=check)
