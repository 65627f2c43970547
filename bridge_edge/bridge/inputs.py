"""Fit stages up to the frozen models' inputs: data, held-out subjects, the probe, pretraining.

    data      the dataset (simulated into RUN_DIR/data, or loaded), windowed per split, and the
              unlabelled 2x-window PPG pretraining pool of the train split
    held_out  extra simulated test subjects ([held_out]), windowed into the test split only
    pair_cohort  extra simulated pair subjects ([pair_cohort]), read as part of the pair split
    probe     a linear head for an old model without one ([probe] enabled)
    pretrain  self-supervised pretraining of the new-modality encoder (PPG only, no labels)

Each stage is ``fn(run)`` over a ``stages.Run``; the stage table is in ``bridge.fit``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import tempfile
from pathlib import Path

import numpy as np

from bridge_edge.bridge.data import recording_windows
from bridge_edge.bridge.recipe import Recipe
from bridge_edge.bridge.rundir import PAIR_COHORT_SPLIT, RunDir
from bridge_edge.bridge.shards import JoinedRows, NpyAppender, RowReader, load_mapped, release_pages
from bridge_edge.bridge.stages import Run
from bridge_edge.errors import ConfigError, DataError
from bridge_edge.models.checkpoints import save_module_state
from bridge_edge.signals.types import SPLIT_NAMES

log = logging.getLogger(__name__)


def ppg_preprocess_spec(recipe: Recipe, new_fs: float):
    """The PPG preprocessing the recipe's ``[data] preprocess`` version names, at the new model's rate."""
    from bridge_edge.signals.preprocess import preprocess_spec

    return preprocess_spec(recipe.data.preprocess, new_fs)


def write_split(
    run_dir: RunDir, name: str, recordings, labels, recipe: Recipe, old_fs: float, new_fs: float
) -> dict[str, int]:
    """The windows of ``recordings`` (an iterable, read one at a time) written as split ``name``,
    in the order given; returns the split's counts. Only one recording's windows are in RAM."""
    d, spec = recipe.data, ppg_preprocess_spec(recipe, new_fs)
    n_ecg, n_ppg = round(d.window_s * old_fs), round(d.window_s * spec.fs_out)
    with run_dir.window_writer(name, tuple(labels), n_ecg, n_ppg) as out:
        for rec in recordings:
            out.append(
                recording_windows(
                    rec,
                    window_s=d.window_s,
                    hop_s=d.hop_s,
                    fs_ecg=old_fs,
                    ppg_spec=spec,
                    purity=d.label_purity,
                )
            )
    return out.counts


def stage_data(run: Run) -> None:
    from bridge_edge.signals.datasets import load_dataset
    from bridge_edge.signals.simulator import write_dataset

    d = run.recipe.data
    if d.source == "simulate":
        data_dir = run.dir.data
        if not (data_dir / "dataset.json").exists():
            write_dataset(data_dir, d.subjects, d.minutes, d.seed, progress=True)
        spec = str(data_dir)
    else:
        spec = d.path
    dataset = load_dataset(spec)  # recordings are read when iterated (iter_subjects), one at a time
    old, new = run.models()
    old_fs, new_fs = old.input_spec.fs, new.input_spec.fs
    counts = {}
    for split in SPLIT_NAMES:
        recordings = dataset.iter_subjects(split)
        if split == "pair" and d.pair_speeds:  # the pair split, then its recordings played faster/slower
            recordings = itertools.chain(recordings, played_pair_recordings(dataset, d.pair_speeds))
        counts[split] = write_split(run.dir, split, recordings, dataset.labels, run.recipe, old_fs, new_fs)
    preprocess = ppg_preprocess_spec(run.recipe, new_fs)
    run.dir.write_windows_meta(dataset.labels, preprocess.as_dict(), counts)
    run.dir.save_json(run.dir.data_gaps, dataset.gaps_summary())  # spans cut at non-finite samples
    # Pretraining views are crops of longer unlabelled train-split PPG windows (2x the model window).
    w = d.window_s
    with NpyAppender(run.dir.pretrain_ppg, np.float32, (round(2 * w * preprocess.fs_out),)) as out:
        for rec in dataset.iter_subjects("train"):
            long = recording_windows(rec, window_s=2 * w, hop_s=w, fs_ecg=None, ppg_spec=preprocess)
            out.append(long.ppg)


def played_pair_recordings(dataset, speeds):
    """The pair split's recordings played at each of ``[data] pair_speeds``, ECG and PPG together.

    A recording read as if sampled at ``speed`` x its rate: rhythm, intervals and their
    irregularity keep their shape at ``speed`` x the heart rate. Subject ids become
    ``<id>@x<speed>``. The window labels follow the played rhythm track and are only counted;
    the bridge learns from the old model's outputs on the played ECG. Yielded one at a time.
    """
    for speed in speeds:
        for rec in dataset.iter_subjects("pair"):
            yield dataclasses.replace(
                rec,
                subject_id=f"{rec.subject_id}@x{speed:g}",
                fs_ecg=rec.fs_ecg * speed,
                fs_ppg=rec.fs_ppg * speed,
            )


def stage_held_out(run: Run) -> None:
    """Extra test subjects ([held_out] extra_simulated_subjects), simulated and windowed.

    They join the test split only: no stage before evaluation reads them, and their seeds come
    from a stream of their own (simulator.HELD_OUT_STREAM), so no train, val, pair or
    pretraining subject can coincide with one of them.
    """
    from bridge_edge.signals.simulator import write_held_out_dataset

    n, d = run.recipe.held_out.extra_simulated_subjects, run.recipe.data
    run.dir.remove(held_out_outputs(run.dir))
    write_held_out_dataset(run.dir.held_out_data, n, d.minutes, d.seed, progress=True)
    _write_extra_split(run, run.dir.held_out_data, "test", "held_out")


def _write_extra_split(run: Run, data_dir: Path, dataset_split: str, split: str) -> None:
    """The ``dataset_split`` recordings of the simulated dataset at ``data_dir``, windowed as the
    run's ``split`` (the extra subjects of [held_out] and [pair_cohort])."""
    from bridge_edge.signals.datasets import load_dataset

    old, new = run.models()
    dataset = load_dataset(str(data_dir))
    recordings = dataset.iter_subjects(dataset_split)
    write_split(run.dir, split, recordings, dataset.labels, run.recipe, old.input_spec.fs, new.input_spec.fs)


def held_out_outputs(run_dir: RunDir) -> tuple[Path, ...]:
    return (run_dir.held_out_data, run_dir.windows_split("held_out"), run_dir.legacy_windows_file("held_out"))


def stage_pair_cohort(run: Run) -> None:
    """Extra pair subjects ([pair_cohort]), simulated and windowed; the pair split reads them after
    its own windows (RunDir.windows), so the first pair windows stay the dataset's."""
    from bridge_edge.signals.simulator import write_pair_cohort_dataset

    cohort, d = run.recipe.pair_cohort, run.recipe.data
    run.dir.remove(pair_cohort_outputs(run.dir))
    write_pair_cohort_dataset(
        run.dir.pair_cohort_data,
        cohort.subjects,
        d.minutes,
        d.seed,
        cohort.af_hr_bpm,
        cohort.episodes,
        sinus_hr_bpm=cohort.sinus_hr_bpm if any(cohort.sinus_hr_bpm) else None,
        progress=True,
        pulses=cohort_pulses(cohort.pulses),
    )
    _write_extra_split(run, run.dir.pair_cohort_data, "pair", PAIR_COHORT_SPLIT)


def cohort_pulses(kind: str) -> list:
    """[pair_cohort] pulses: nothing for "simulated"; for "dev_recordings", the clean beat cycles
    of every installed development recording that has enough (``RealPulses.of``, as the rhythm suite
    cuts them)."""
    if kind == "simulated":
        return []
    from bridge_edge.signals.dev_recordings import available_dev_recordings
    from bridge_edge.signals.resequence import RealPulses

    cut = (RealPulses.of(rec.source, rec.ppg, rec.fs_ppg) for rec in available_dev_recordings())
    pulses = [p for p in cut if p is not None]
    if not pulses:
        raise DataError(
            '[pair_cohort] pulses = "dev_recordings" found no development recording with clean pulses; '
            "expected heartpy or biosignalsnotebooks installed (docs/method.md, 'Real PPG')",
            reason="no development recordings",
        )
    return pulses


def pair_cohort_outputs(run_dir: RunDir) -> tuple[Path, ...]:
    return (run_dir.pair_cohort_data, run_dir.windows_split(PAIR_COHORT_SPLIT))


def extra_simulated_ppg(recipe: Recipe, fs: float) -> np.ndarray:
    """Pretraining windows (2 x window, hop = window) from ``[pretrain] simulated_subjects`` extra subjects.

    Their seeds continue the dataset's subject seeds past its last subject, so none of them is in
    any split. Only the PPG windows are kept: the window labels ``recording_windows`` derives are
    dropped here, so nothing about rhythm reaches pretraining.
    """
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
    from bridge_edge.models.probe import last_block_features, train_probe
    from bridge_edge.models.registry import build_adapter

    run.dir.remove(probe_outputs(run.dir))
    run.forget_models()  # the old head changes with the probe
    cfg = run.recipe.probe
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
    save_module_state(probe, run.dir.probe_weights)
    run.dir.save_json(run.dir.probe_report, result.as_dict())
    log.info(
        "probe: epoch %d of %d, val accuracy %.3f",
        result.best_epoch,
        cfg.epochs,
        result.val_accuracy[result.best_epoch - 1],
    )


def probe_outputs(run_dir: RunDir) -> tuple[Path, ...]:
    return (run_dir.probe_weights, run_dir.probe_report)


def stage_pretrain(run: Run) -> None:
    """Self-supervised pretraining of the new-modality encoder on unlabelled train-split PPG."""
    from bridge_edge.models.ppg_augment import AugmentSpec
    from bridge_edge.models.pretrain import pretrain_ppg_encoder
    from bridge_edge.models.registry import build_adapter

    cfg = run.recipe.pretrain
    new = build_adapter(
        dict(run.recipe.new_model), device=run.device
    )  # from scratch (or the recipe's checkpoint)
    if cfg.enabled:
        with tempfile.TemporaryDirectory(prefix=".pretrain-", dir=run.dir.root) as tmp:
            pool = pretraining_pool(run, new.input_spec.fs, Path(tmp))
            history = pretrain_ppg_encoder(
                RowReader(pool.views),
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
                target_windows=RowReader(pool.windows),
                dist=run.dist if run.dist.active else None,
                progress=run.dist.is_main,
            )
        history |= pool.counts | {"sensor_prob": cfg.sensor_prob}
        if run.dist.is_main:
            run.dir.save_json(run.dir.pretrain_history, history)
    if run.dist.is_main:  # every rank holds the same weights; rank 0 writes them
        save_module_state(new.module, run.dir.new_model_weights)
    run.forget_models()  # later stages load the pretrained weights


@dataclasses.dataclass(frozen=True)
class PretrainingPool:
    windows: object  # rows of every source window (np.ndarray, memmap or shards.JoinedRows)
    views: object  # what the encoder sees: the windows, some through another sensor
    counts: dict[str, int]  # windows per source, for pretrain.json


def pretraining_pool(run: Run, fs: float, tmp: Path) -> PretrainingPool:
    """The unlabelled pretraining windows: the train split's, memory-mapped, then the extra
    simulated subjects' and the development recordings' (each of a fixed size), read as one
    (``shards.JoinedRows``) without joining them in memory (docs/scale.md). Sensor views, when
    the recipe asks for them, are written to ``tmp`` chunk by chunk and mapped back."""
    cfg = run.recipe.pretrain
    split = load_mapped(run.dir.pretrain_ppg, "pretrain")  # PPG only: no label exists here
    if cfg.max_windows:
        split = split[np.random.default_rng(run.recipe.seed).permutation(len(split))[: cfg.max_windows]]
    simulated = extra_simulated_ppg(run.recipe, fs) if cfg.simulated_subjects else split[:0]
    dev = dev_recording_ppg(run.recipe, fs) if cfg.dev_recordings else split[:0]
    windows = JoinedRows([part for part in (split, simulated, dev) if len(part)] or [split])
    views = windows
    if cfg.sensor_prob > 0:
        spec = ppg_preprocess_spec(run.recipe, fs)
        views = seen_through_sensors(
            windows, spec, cfg.sensor_prob, run.recipe.seed, tmp / "sensor_views.npy"
        )
    counts = {
        "n_train_split_windows": len(split),
        "n_simulated_windows": len(simulated),
        "n_dev_recording_windows": len(dev),
    }
    return PretrainingPool(windows, views, counts)


SENSOR_VIEW_CHUNK = 256  # windows re-recorded at a time by ``seen_through_sensors``


def seen_through_sensors(windows, spec, share: float, seed: int, path: Path) -> np.ndarray:
    """``share`` of the windows (chosen by ``seed``) re-recorded by random sensors (signals.sensor),
    written to ``path`` ``SENSOR_VIEW_CHUNK`` windows at a time and returned memory-mapped. Each
    chosen window draws its sensor in window order, so the chunks give what one pass would."""
    from bridge_edge.signals.preprocess import normalise_windows
    from bridge_edge.signals.sensor import resensor_windows

    rng = np.random.default_rng([seed, 31])
    chosen = rng.random(len(windows)) < share
    with NpyAppender(path, np.float32, tuple(windows.shape[1:])) as out:
        for i in range(0, len(windows), SENSOR_VIEW_CHUNK):
            rows = slice(i, min(i + SENSOR_VIEW_CHUNK, len(windows)))
            chunk, picked = np.array(windows[rows], np.float32), chosen[rows]
            if picked.any():
                chunk[picked] = normalise_windows(resensor_windows(chunk[picked], spec.fs_out, rng), spec)
            out.append(chunk)
            release_pages(windows)
    return load_mapped(path, "pretrain")
