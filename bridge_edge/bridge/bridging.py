"""Fit stages from the frozen models' features (bridge.features) to trained bridges.

    select          position selection (bridge.selection), optionally with short trial bridges
    bridge          the bridge at the chosen positions; composed.json describes the result
    kd              the KD baseline student on the same pair windows ([kd] enabled)
    position_check  bridges trained briefly at other positions, scored on the test split

Each stage is ``fn(run)`` over a ``stages.Run``; the stage table is in ``bridge.fit``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge_edge.bridge.balance import RateBalance, rate_balanced_weights, window_rhythm
from bridge_edge.bridge.data import WindowSet
from bridge_edge.bridge.distributed import SINGLE
from bridge_edge.bridge.inputs import ppg_preprocess_spec
from bridge_edge.bridge.rundir import ComposedSpec, FeatureStore, RunDir
from bridge_edge.bridge.shards import NpyAppender, first_rows, release_pages
from bridge_edge.bridge.stages import Run
from bridge_edge.errors import ConfigError
from bridge_edge.models.checkpoints import save_module_state

log = logging.getLogger(__name__)


def stage_select(run: Run) -> None:
    from bridge_edge.bridge.rundir import load_feature_store
    from bridge_edge.bridge.selection import select_positions, write_selection

    old, new = run.models()
    s = run.recipe.selection
    store = load_feature_store(run.dir.features_pair)
    trial = None
    if s.trial_epochs > 0 and s.k_in < 0:  # a pinned k_in leaves one candidate: nothing to try
        data = pair_data(run)

        def trial(k_in: int, k_out: int) -> dict:
            _, res, _ = train_bridge_at(
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
                "pair_windows": s.trial_max_windows or len(data.pair.ppg),
                "peak_memory_bytes": res.peak_memory_bytes,
            }

    sel = select_positions(
        store,
        old.labels,
        k_in=s.k_in,
        k_out=s.k_out,
        folds=s.cv_folds,
        cka_tolerance=s.cka_tolerance,
        max_windows=s.max_windows,
        trial=trial,
        trial_score=run.recipe.bridge.best_epoch_by if trial else "val_loss",
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


@dataclass(frozen=True)
class PairSplit:
    """What every stage that trains on the pair split reads."""

    pair: WindowSet
    val: WindowSet
    pair_store: FeatureStore
    val_store: FeatureStore
    sampling: RateBalance | None  # [data] pair_balance "rate" / "rate_irregularity": drawn by weight


def pair_data(run: Run) -> PairSplit:
    """Pair and validation windows with their cached old-model outputs (and sampling weights)."""
    from bridge_edge.bridge.rundir import load_feature_store

    pair_store = load_feature_store(run.dir.features_pair)
    val_store = load_feature_store(run.dir.targets_val)
    pair = run.windows("pair")
    sampling = None
    balance = run.recipe.data.pair_balance
    if balance != "none":
        old, _ = run.models()
        positive = (
            pair_store.old_probs[:, list(old.labels).index(positive_label(run.recipe, old.labels))] > 0.5
        )
        rhythm = window_rhythm(pair.ecg, old.input_spec.fs)
        irregularity = rhythm.interval_cv if balance == "rate_irregularity" else None
        sampling = rate_balanced_weights(rhythm.rates_bpm, positive, interval_cv=irregularity)
        log.info("pair windows drawn balanced (%s): %s", balance, sampling.summary())
    return PairSplit(pair, run.windows("val"), pair_store, val_store, sampling)


VARIANT_CHUNK = 256  # pair windows re-recorded at a time by ``_sensor_variants``


def _sensor_variants(run: Run, pair_ppg: np.ndarray, n: int = 0) -> list[np.ndarray]:
    """``[bridge] sensor_variants`` versions of the first ``n`` (0: all) pair PPG windows, each
    window re-recorded by a random sensor (signals.sensor); drawn from the recipe's seed, so
    trials and the final bridge see the same ones.

    Each version is made ``VARIANT_CHUNK`` windows at a time into a file in the run directory
    that is unlinked once written and read memory-mapped (docs/scale.md). A window's sensor is
    drawn in window order, so these are the windows a whole-split pass would give; the windows
    after ``n`` only draw their sensors, which keeps the next version's draws what they were."""
    count = run.recipe.bridge.sensor_variants
    if not count:
        return []
    rng = np.random.default_rng([run.recipe.seed, 47])
    spec = ppg_preprocess_spec(run.recipe, run.models()[1].input_spec.fs)
    from bridge_edge.signals.preprocess import normalise_windows
    from bridge_edge.signals.sensor import draw_front_end, resensor_windows

    total = len(pair_ppg)
    n = min(n or total, total)
    out = []
    with tempfile.TemporaryDirectory(prefix=".sensor_variants-", dir=run.dir.root) as tmp:
        for v in range(count):
            path = Path(tmp) / f"variant_{v}.npy"
            with NpyAppender(path, np.float32, tuple(pair_ppg.shape[1:])) as f:
                for i in range(0, n, VARIANT_CHUNK):
                    chunk = np.asarray(pair_ppg[i : min(i + VARIANT_CHUNK, n)])
                    f.append(normalise_windows(resensor_windows(chunk, spec.fs_out, rng), spec))
                    release_pages(pair_ppg)
            for _ in range(total - n):
                draw_front_end(rng)
            out.append(np.load(path, mmap_mode="r"))  # stays mapped after the file is unlinked
    return out


def train_bridge_at(
    run: Run, data, k_in: int, k_out: int, *, epochs: int, desc: str, max_windows: int = 0, on_all_ranks=False
):
    """A fresh bridge for positions (k_in, k_out) with the recipe's [bridge] settings, trained.

    ``data`` is ``pair_data(run)``; the bridge trains on the first ``max_windows`` pair windows
    (0 = all) and picks its epoch on all validation windows. Returns (bridge, TrainResult,
    prototype count). Used by the bridge stage, the selection trials and the position check;
    ``on_all_ranks``: the stage runs on every rank of a torchrun job, which share the batches.
    """
    from bridge_edge.bridge.loop import PairData
    from bridge_edge.bridge.prototype import parse_proto_init
    from bridge_edge.bridge.train import make_bridge, train_bridge

    pair, val, pair_store, val_store = data.pair, data.val, data.pair_store, data.val_store
    n = max_windows or len(pair.ppg)
    probe = (pair.ppg[:4], pair.ecg[:4])  # shape discovery

    old, new = run.models()
    cfg = run.recipe.bridge
    init, prototypes = parse_proto_init(cfg.init)
    bridge = make_bridge(
        new,
        old,
        k_in,
        k_out,
        cfg.rank,
        prototypes,
        probe,
        init=init,
        seed=run.recipe.seed,
        reads=cfg.input,
        local_rank=cfg.local_rank,
    )
    result = train_bridge(
        old,
        new,
        bridge,
        k_in,
        k_out,
        # still mapped (shards.JoinedRows)
        PairData(first_rows(pair.ppg, n), pair_store.old_target[:n], pair_store.old_probs[:n]),
        PairData(val.ppg, val_store.old_target, val_store.old_probs),
        pair_variants=_sensor_variants(run, pair.ppg, n),
        epochs=epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        seed=run.recipe.seed,
        desc=desc,
        best_epoch_by=cfg.best_epoch_by,
        val_old_probs=val_store.old_probs,
        dist=run.dist if on_all_ranks else SINGLE,
        sampling=data.sampling,
        ema_decay=cfg.ema_decay,
        head_kl_weight=cfg.head_kl_weight,
    )
    return bridge, result, prototypes


def _best_epoch_scores(res) -> dict:
    """Validation scores of a trained bridge at its chosen epoch (trials, position check)."""
    scores = {"val_loss": res.val_loss[res.best_epoch - 1]}
    if res.val_head_kl:
        scores["val_head_kl"] = res.val_head_kl[res.best_epoch - 1]
    return scores


def stage_bridge(run: Run) -> None:
    from bridge_edge.bridge.compose import save_composed
    from bridge_edge.bridge.selection import read_selection

    old, new = run.models()
    cfg = run.recipe.bridge
    sel = read_selection(run.run_dir)
    data = pair_data(run)
    pair = data.pair
    bridge, result, prototypes = train_bridge_at(
        run, data, sel.k_in, sel.k_out, epochs=cfg.epochs, desc="bridge", on_all_ranks=True
    )
    if not run.dist.is_main:
        return
    spec = ComposedSpec(
        input=new.input_spec.as_dict(),
        preprocess=ppg_preprocess_spec(run.recipe, new.input_spec.fs).as_dict(),
        labels=list(old.labels),
        positive_label=positive_label(run.recipe, old.labels),
        k_in=sel.k_in,
        k_out=sel.k_out,
        bridge=bridge.describe() | {"init": cfg.init},
        old_model=dict(run.recipe.old_model) | {"name": old.name},
        new_model=dict(run.recipe.new_model) | {"name": new.name},
        window_s=run.recipe.data.window_s,
        hop_s=run.recipe.data.hop_s,
        dataset_labels=list(pair.labels),
    )
    save_composed(run.run_dir, spec, bridge)
    run.dir.save_json(run.dir.bridge_training, result.as_dict())


def stage_kd(run: Run) -> None:
    student, result = train_student(run, pair_data(run), epochs=run.recipe.kd.epochs)
    if not run.dist.is_main:
        return
    save_module_state(student, run.dir.kd_student)
    run.dir.save_json(run.dir.kd_training, result.as_dict())


def train_student(run: Run, data, *, epochs: int, max_windows: int = 0):
    """A fresh KD student with the recipe's [kd] settings, trained on the first ``max_windows``
    pair windows (0 = all) of ``data`` (``pair_data(run)``). Returns (student, TrainResult)."""
    from bridge_edge.bridge.kd import make_student, train_kd
    from bridge_edge.bridge.loop import PairData

    old, new = run.models()
    cfg = run.recipe.kd
    pair, val, pair_store, val_store = data.pair, data.val, data.pair_store, data.val_store
    n = max_windows or len(pair.ppg)
    student = make_student(new, len(old.labels), pair.ppg[:4], seed=run.recipe.seed)
    result = train_kd(
        student,
        PairData(first_rows(pair.ppg, n), pair_store.old_probs[:n]),
        PairData(val.ppg, val_store.old_probs),
        epochs=epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        loss=cfg.loss,
        seed=run.recipe.seed,
        pair_variants=_sensor_variants(run, pair.ppg, n),  # the bridge's augmentation, for a fair baseline
        dist=run.dist,
        sampling=data.sampling,
        ema_decay=cfg.ema_decay,
    )
    return student, result


def kd_outputs(run_dir: RunDir) -> tuple[Path, ...]:
    return (run_dir.kd_student, run_dir.kd_training)


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


def stage_position_check(run: Run) -> None:
    """Briefly train a bridge at the chosen and >= 3 other positions; test AUROC of each
    (RUN_DIR/position_check.json, read by the report)."""
    from bridge_edge.bridge.compose import compose
    from bridge_edge.bridge.evaluate import evaluate_probs
    from bridge_edge.bridge.selection import read_selection

    old, new = run.models()
    check = run.recipe.position_check
    sel = read_selection(run.run_dir)
    data = pair_data(run)
    n = check.max_windows or len(data.pair.ppg)
    test = run.windows("test").batched()
    truth = test.head_truth(old.labels)
    rows = []
    for k_in, k_out in check_pairs(sel.k_in, sel.k_out, new.n_blocks, old.n_blocks, check.pairs):
        bridge, res, _ = train_bridge_at(
            run, data, k_in, k_out, epochs=check.epochs, max_windows=n, desc=f"check {k_in}->{k_out}"
        )
        probs = compose(new, old, bridge, k_in, k_out).predict_proba(test.ppg)
        m = evaluate_probs(probs, truth, old.labels, run.recipe.positive_label)
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
    run.dir.save_json(run.dir.position_check, rows)


def position_check_outputs(run_dir: RunDir) -> tuple[Path, ...]:
    return (run_dir.position_check,)


def positive_label(recipe, labels) -> str:
    """The recipe's positive label, checked against the old head's vocabulary."""
    if recipe.positive_label not in labels:
        raise ConfigError(
            f"positive_label = {recipe.positive_label!r} is not a label of the old model's head; "
            f"expected one of {list(labels)}",
            key="positive_label",
            value=recipe.positive_label,
            expected=list(labels),
        )
    return recipe.positive_label
