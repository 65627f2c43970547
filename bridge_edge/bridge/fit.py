"""`bridge-edge fit`: the offline chain as rerunnable stages over one run directory.

    data -> [probe: linear head for an old model without one] -> pretrain new model
         (self-supervised, PPG only) -> features (one pass) -> select positions -> bridge
         -> [KD baseline] -> [held-out test subjects] -> [position check] -> report

``STAGES`` is the one stage table: ``fit`` and ``bench training`` run it. A stage whose key
(bridge.stages: what it reads, and the keys of the stages before it) is unchanged since the
last fit of this run directory is reused, so tuning the bridge does not redo data, pretraining
and features, and adding test subjects redoes only what reads the test split.

Under ``torchrun`` (bridge.distributed, docs/scale.md) the stages in ``ON_ALL_RANKS`` run on
every rank: the training stages share each batch through DDP, the features stage shares the
windows (bridge.features.write_features). The others, every other run-directory write
and the report are rank 0's, while the other ranks wait at a barrier after each stage.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path

from bridge_edge.bridge.bridging import (
    kd_outputs,
    position_check_outputs,
    stage_bridge,
    stage_kd,
    stage_position_check,
    stage_select,
)
from bridge_edge.bridge.distributed import Dist
from bridge_edge.bridge.inputs import (
    held_out_outputs,
    pair_cohort_outputs,
    probe_outputs,
    stage_data,
    stage_held_out,
    stage_pair_cohort,
    stage_pretrain,
    stage_probe,
)
from bridge_edge.bridge.operating_point import stage_operating_point
from bridge_edge.bridge.recipe import DataConfig, Recipe, load_recipe
from bridge_edge.bridge.report import write_report
from bridge_edge.bridge.rundir import RunDir
from bridge_edge.bridge.stages import Run, Stage, plan
from bridge_edge.errors import ConfigError

log = logging.getLogger(__name__)


# What the data stage writes depends on every [data] field but pair_balance, which only says how
# the stages that train on the pair split draw its windows: they declare it (PAIR_DRAW), so
# changing it retrains, and does not re-simulate and re-pretrain.
PAIR_DRAW = "data.pair_balance"
DATA_READS = tuple(f"data.{f.name}" for f in dataclasses.fields(DataConfig) if f"data.{f.name}" != PAIR_DRAW)


def _select_reads(recipe: Recipe) -> tuple[str, ...]:
    # trials train short bridges: then selection reads the [bridge] settings and the seed too (and
    # the positive label, which rate-balanced sampling reads: bridge.balance). A pinned k_in leaves
    # one candidate, so no trial runs and [bridge] cannot change what selection writes.
    s = recipe.selection
    trials = s.trial_epochs > 0 and s.k_in < 0
    return ("selection", "bridge", "seed", "positive_label", PAIR_DRAW) if trials else ("selection",)


def _stage_features(run: Run) -> None:
    # bridge.features imports torch, which importing this module must not; it writes the store
    # batch by batch (docs/scale.md)
    from bridge_edge.bridge.features import stage_features

    stage_features(run)


STAGES: tuple[Stage, ...] = (
    Stage("data", stage_data, reads=(*DATA_READS, "old_model", "new_model")),
    Stage(
        "probe",
        stage_probe,
        reads=("probe", "seed"),
        after=("data",),
        enabled=lambda r: r.probe.enabled,
        disabled_by="[probe] enabled = false",
        outputs=probe_outputs,
    ),
    Stage("pretrain", stage_pretrain, reads=("pretrain", "seed"), after=("data",)),
    Stage(
        "pair_cohort",
        stage_pair_cohort,
        reads=("pair_cohort", "data.minutes", "data.seed"),
        after=("data",),
        enabled=lambda r: r.pair_cohort.subjects > 0,
        disabled_by="[pair_cohort] subjects = 0",
        outputs=pair_cohort_outputs,
    ),
    # the probe (when there is one) is the old head the features are read through
    Stage(
        "features", _stage_features, reads=("bridge.batch_size",), after=("pretrain", "probe", "pair_cohort")
    ),
    Stage("select", stage_select, reads=_select_reads, after=("features",)),
    Stage("bridge", stage_bridge, reads=("bridge", "seed", "positive_label", PAIR_DRAW), after=("select",)),
    Stage("operating_point", stage_operating_point, reads=("operating_point",), after=("bridge",)),
    Stage(
        "kd",
        stage_kd,
        reads=("kd", "bridge.sensor_variants", "seed", "positive_label", PAIR_DRAW),
        after=("features",),
        enabled=lambda r: r.kd.enabled,
        disabled_by="[kd] enabled = false",
        outputs=kd_outputs,
    ),
    Stage(
        "held_out",
        stage_held_out,
        reads=("held_out.extra_simulated_subjects",),
        after=("data",),
        enabled=lambda r: r.held_out.extra_simulated_subjects > 0,
        disabled_by="[held_out] extra_simulated_subjects = 0",
        outputs=held_out_outputs,
    ),
    Stage(
        "position_check",  # scored on the test split, so after held_out
        stage_position_check,
        reads=("position_check", PAIR_DRAW),
        after=("bridge", "held_out"),
        enabled=lambda r: r.position_check.epochs > 0,
        disabled_by="[position_check] epochs = 0",
        outputs=position_check_outputs,
    ),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
ON_ALL_RANKS = frozenset({"pretrain", "features", "bridge", "kd"})  # training, and the sharded feature pass


def _check_world(recipe: Recipe, dist: Dist) -> None:
    # pretraining drops a batch's ragged tail, so every batch has batch_size windows to share out
    if dist.active and recipe.pretrain.enabled and recipe.pretrain.batch_size < dist.world_size:
        raise ConfigError(
            f"[pretrain] batch_size = {recipe.pretrain.batch_size} cannot be shared by "
            f"{dist.world_size} processes; expected at least one window per process",
            key="pretrain.batch_size",
            value=recipe.pretrain.batch_size,
            expected=f">= {dist.world_size} (the torchrun world size)",
        )


def fit(
    recipe: str | Path,
    run_dir: str | Path,
    *,
    device: str = "cpu",
    fresh: bool = False,
    skip: Iterable[str] = (),
) -> dict:
    """The whole chain; returns the report (also written to RUN_DIR/report.json).

    ``skip``: stage names not to run this time (their outputs are removed, the report says so);
    ``fresh``: rerun every stage instead of reusing unchanged ones. Under torchrun every rank
    calls this; all return the report rank 0 wrote."""
    skip = tuple(skip)
    unknown = sorted(set(skip) - set(STAGE_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown stage(s) {unknown} to skip; expected some of {list(STAGE_NAMES)}",
            key="skip",
            value=unknown,
            expected=list(STAGE_NAMES),
        )
    dist = Dist.from_env(device)
    loaded = load_recipe(recipe)
    _check_world(loaded, dist)
    dist.start()
    try:
        return _run_stages(loaded, RunDir(run_dir), dist, dist.device(device), fresh=fresh, skip=skip)
    finally:
        dist.stop()


def _run_stages(
    loaded: Recipe, rd: RunDir, dist: Dist, device: str, *, fresh: bool, skip: tuple[str, ...]
) -> dict:
    if dist.is_main:
        rd.root.mkdir(parents=True, exist_ok=True)
        rd.recipe.write_text(Path(loaded.source_path).read_text())
    run = Run(rd, dataclasses.replace(loaded, source_path=str(rd.recipe)), device, dist=dist)
    p = plan(loaded, STAGES, skip)
    done = {} if fresh else rd.load_json(rd.stages, {})
    # A reused stage keeps the time it took when it ran, so the report's stage times stay whole.
    ran_before = {} if fresh else rd.load_json(rd.timings, {})
    dist.barrier()  # every rank has read what the last fit left before rank 0 changes it
    status: dict[str, str] = {}
    for stage in STAGES:
        name, key = stage.name, p.keys[stage.name]
        if not p.active[name]:
            status[name] = "skipped: " + ("asked by the caller" if name in skip else stage.disabled_by)
            if dist.is_main:
                rd.remove(stage.outputs(rd))
            run.forget_models()
        elif done.get(name) == key:
            log.info("stage %s: unchanged since the last fit, reused", name)
            status[name] = "reused"
            if name in ran_before:
                run.timings[name] = ran_before[name]
        else:
            if dist.is_main or name in ON_ALL_RANKS:
                with run.stage(name, p.allowed[name]):
                    stage.run(run)
            dist.barrier()  # rank 0's outputs of this stage are on disk
            if not dist.is_main:
                run.forget_models()  # pretrained weights (or a probe) may have changed
            status[name] = "ran"
        done[name] = key
        if dist.is_main:
            rd.save_json(rd.stages, done)
            rd.save_json(rd.timings, run.timings)
        _save_memory(rd, dist, run.memory)
    report = None
    if dist.is_main:
        with run.stage("evaluate"):
            report = write_report(run, stages=status)
        _save_memory(rd, dist, run.memory)
    dist.barrier()
    return report if report is not None else rd.load_json(rd.report, {})


def _save_memory(rd: RunDir, dist: Dist, memory: dict) -> None:
    """This rank's peak memory per stage run this time (bridge.memory); every rank its own file."""
    rd.memory_dir.mkdir(parents=True, exist_ok=True)
    rd.save_json(rd.memory_dir / f"rank{dist.rank}.json", memory)
