"""Typed recipes: the TOML file `bridge-edge fit` runs, parsed into dataclasses.

Every section maps onto one dataclass; an unknown key or a value of the wrong type is a
``ConfigError`` naming the key. ``recipes/default.toml`` is the embedded default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

from bridge_edge.errors import ConfigError
from bridge_edge.resources import data_dir
from bridge_edge.signals.ppg_targets import DEFAULT_TARGETS, check_target_names
from bridge_edge.signals.simulator import EpisodeMix

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RECIPES_DIR = data_dir("recipes")  # the repo's recipes/, or the packaged copy (bridge_edge.resources)


@dataclass(frozen=True)
class DataConfig:
    source: str = "simulate"  # "simulate" -> written into RUN_DIR/data; "dir" -> load `path`
    path: str = ""
    subjects: int = 24
    minutes: float = 6.0
    seed: int = 0
    window_s: float = 10.0
    hop_s: float = 5.0
    label_purity: float = 0.8  # a window takes a label when >= this fraction of it carries it
    # PPG preprocessing version (signals.preprocess.PREPROCESS_VERSIONS), written into the bundle
    preprocess: str = "ppg-v3"
    # The pair split is also played at these speeds, ECG and PPG together (a recording read as if
    # sampled at speed x its rate): the old model's outputs on the played ECG are the bridge's
    # targets, so the heart rates it learns from widen without any label (docs/method.md).
    pair_speeds: tuple[float, ...] = ()
    # How the stages that train on the pair split (bridge, trials, position check, KD) draw its
    # windows: "none" (each once per epoch), "rate" (weighted so that the old model's AF share is
    # the same at every heart rate) or "rate_irregularity" (the same in every heart rate x R-R
    # interval CV cell; bridge.balance, docs/method.md).
    pair_balance: str = "none"


@dataclass(frozen=True)
class ProbeConfig:
    """A linear probe as the old model's head (models.probe; docs/method.md), for old models without one."""

    enabled: bool = False  # train it on the labelled old-modality windows of the train split
    epochs: int = 50
    lr: float = 1e-5
    batch_size: int = 32
    class_weighted: bool = True  # cross-entropy weighted by inverse class counts
    # The probe's classes, a subset of the dataset's labels (empty: all). Windows of other labels
    # are not trained on, and in evaluation have no head counterpart (excluded and counted).
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class PretrainConfig:
    enabled: bool = True
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    max_windows: int = 0  # 0 = all unlabelled PPG windows of the train split
    # Extra unlabelled PPG: this many more simulated subjects (seeds after the dataset's own, so
    # never a subject of any split; only their PPG is read). Only with [data] source = "simulate".
    simulated_subjects: int = 0
    contrastive_weight: float = 1.0  # weight of the SimCLR loss; 0 = signal-derived targets only
    aux_weight: float = 0.0  # weight of the signal-derived targets (signals.ppg_targets)
    aux_min_sqi: float = 0.0  # learn those targets only from windows with at least this PPG SQI
    # Which signal-derived targets (signals.ppg_targets.SIGNAL_TARGETS); default: the beat targets.
    targets: tuple[str, ...] = DEFAULT_TARGETS
    motion_prob: float = 0.0  # share of views given a motion burst (models.ppg_augment.motion_burst)
    # Rhythm, not sensor (docs/method.md, "Real PPG"): the development real recordings join the pool
    # (unlabelled; also played x0.8 and x1.25), extra simulated subjects are played at a random
    # speed in `time_stretch` (half of them), and this share of source windows is seen through a
    # random sensor front end (signals.sensor) while its targets come from the window as recorded.
    dev_recordings: bool = False
    time_stretch: tuple[float, float] = (1.0, 1.0)
    sensor_prob: float = 0.0


@dataclass(frozen=True)
class SelectionConfig:
    k_in: int = -1  # -1 = chosen by position selection; >= 0 pins the position
    k_out: int = -1
    cv_folds: int = 5
    # bridge-edge options (bridge.selection): 0 keeps docs/method.md's plain argmax.
    trial_epochs: int = 0  # > 0: input blocks within one standard error are tried for this many epochs
    trial_max_windows: int = 0  # trial bridges train on the first N pair windows (0 = all)
    cka_tolerance: float = 0.0  # > 0: the deepest old block whose CKA is within this of the best
    max_windows: int = 8192  # LR and CKA scores on at most this many pair windows, evenly spaced (0 = all)


@dataclass(frozen=True)
class BridgeConfig:
    rank: int = 8
    init: str = "rand_150"
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 16
    # Which validation score picks the epoch (bridge.loop): "val_loss" = the cosine training
    # loss (METHOD); "val_head_kl" = KL of the bridged head's output to the old model's on the
    # paired ECG. Both label-free; both recorded.
    best_epoch_by: str = "val_loss"
    # Each pair window is also seen through this many random sensor front ends (signals.sensor;
    # same ECG target): every step draws one version per window. 0 = as recorded only.
    sensor_variants: int = 0
    # Validate, pick and keep an exponential moving average of the weights, updated after every
    # step with this decay (torch.optim.swa_utils); 0 = the raw weights (bridge.loop).
    ema_decay: float = 0.0
    # Adds this weight x KL(old head on the paired ECG || old head on the bridged PPG) to the
    # cosine loss: label-free (the old model's outputs), as KD's loss. 0 = METHOD's loss alone.
    head_kl_weight: float = 0.0
    # What the bridge reads of the new model's block k_in: "pooled" = its time mean (METHOD);
    # "tokens" = that plus a time-local term from its token sequence (bridge.prototype).
    input: str = "pooled"
    # The rank of that time-local term; 0 = ``rank`` (0.9.x). Only with input = "tokens".
    local_rank: int = 0


@dataclass(frozen=True)
class OperatingPointConfig:
    """Where the bundle calls the positive label (bridge.operating_point, docs/method.md).

    "as_trained": the bridged head's probabilities as they come. "old_model_calls": the positive
    class's probability is reweighted (and the row renormalised) so that the bridged model calls
    it on the validation pairs' PPG exactly as often as the old model calls it on their ECG. No
    label is read: only the two models' outputs on the same paired windows.
    """

    method: str = "as_trained"


@dataclass(frozen=True)
class KDConfig:
    enabled: bool = True
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 16
    loss: str = "kl"  # "kl" (soft targets) | "ce" (CE on probabilities as soft labels)
    ema_decay: float = 0.0  # as [bridge] ema_decay


@dataclass(frozen=True)
class PositionCheckConfig:
    pairs: list = field(default_factory=list)  # [[k_in, k_out], ...]; empty = 3 spread pairs
    epochs: int = 2  # 0 skips the check
    max_windows: int = 0  # train each check bridge on the first N pair windows (0 = all)


@dataclass(frozen=True)
class HeldOutConfig:
    """The test set: the dataset's test split, plus optional extra simulated subjects."""

    # Extra test subjects simulated from their own seed stream (simulator.HELD_OUT_STREAM), so
    # they are in no split and not in the pretraining pool. Only with [data] source = "simulate".
    extra_simulated_subjects: int = 0
    # Subject-level bootstrap: resample whole test subjects this many times for the report's
    # 95 % intervals (0 = no intervals). Windows of one subject are not independent.
    bootstrap_resamples: int = 1000


COHORT_PULSES = ("simulated", "dev_recordings")  # [pair_cohort] pulses


@dataclass(frozen=True)
class PairCohortConfig:
    """Extra simulated pair subjects whose AF rate comes from one range (bridge.inputs).

    A pair corpus is whoever was recorded with both sensors; this adds a cohort to it, e.g.
    rate-controlled AF (the default fit's pairs held too little slow AF; docs/method.md). The
    subjects come from a seed stream of their own (simulator.PAIR_COHORT_STREAM), join the pair
    split as recorded (not played at pair_speeds), and, like every pair, train on the old
    model's outputs only. Only with [data] source = "simulate". ``[pair_cohort.episodes]``
    weighs their random episodes (simulator.EpisodeMix), e.g. more ectopy and bigeminy.
    ``pulses = "dev_recordings"``: their PPG is made of the development recordings' real beat
    cycles, one at each simulated heartbeat (signals.resequence.with_real_pulses), so the pairs
    carry real pulse trains and the old model's output on the simulated ECG; "simulated" (the
    default): the simulator's own PPG. ``sinus_hr_bpm``: their resting sinus rate (which their
    sinus, ectopy and bigeminy episodes beat at) drawn from this range, e.g. [50, 65] for slow
    sinus with premature beats beside slow AF; [0, 0] (the default) keeps the physiology's draw.
    """

    subjects: int = 0
    af_hr_bpm: tuple[float, float] = (45.0, 75.0)
    sinus_hr_bpm: tuple[float, float] = (0.0, 0.0)  # (0, 0): as the physiology draws it
    episodes: EpisodeMix = field(default_factory=EpisodeMix)
    pulses: str = "simulated"


@dataclass(frozen=True)
class Recipe:
    name: str = "default"
    seed: int = 0
    # The dataset label whose AUROC the report leads with (also the bundle's positive label and
    # the pulse-timing baseline's call); must be a label of the old model's head.
    positive_label: str = "afib"
    data: DataConfig = field(default_factory=DataConfig)
    # Model tables go to bridge_edge.models.registry.build_adapter, which validates their keys.
    old_model: dict = field(default_factory=lambda: {"kind": "openecg"})
    new_model: dict = field(default_factory=lambda: {"kind": "papagei", "size": "small"})
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    operating_point: OperatingPointConfig = field(default_factory=OperatingPointConfig)
    position_check: PositionCheckConfig = field(default_factory=PositionCheckConfig)
    held_out: HeldOutConfig = field(default_factory=HeldOutConfig)
    pair_cohort: PairCohortConfig = field(default_factory=PairCohortConfig)
    source_path: str = ""
    sha256: str = ""


def _type_ok(value, origin) -> bool:
    if origin in (int, float) and isinstance(value, bool):
        return False
    if origin is float:
        return isinstance(value, (int, float))
    return isinstance(value, origin)


def _coerce(value, tp, key: str):
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"recipe section [{key}] must be a table", key=key, expected="table")
        return _build(tp, value, key)
    origin = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if args == (float, float):  # a [low, high] range
        return _array(value, key, lambda v: _type_ok(v, float), float, "[low, high] numbers", length=2)
    if args == (float, ...):  # a TOML array of numbers
        return _array(value, key, lambda v: _type_ok(v, float), float, "an array of numbers")
    if origin is tuple:  # tuple[str, ...]: a TOML array of strings
        return _array(value, key, lambda v: isinstance(v, str), str, "an array of strings")
    if not _type_ok(value, origin):
        raise ConfigError(
            f"recipe key {key!r} = {value!r} has the wrong type; expected {origin.__name__}",
            key=key,
            value=value,
            expected=origin.__name__,
        )
    return float(value) if origin is float else value


def _array(value, key: str, item_ok, convert, expected: str, length: int | None = None) -> tuple:
    """A TOML array as a tuple, every item checked by ``item_ok`` and passed through ``convert``."""
    if not (
        isinstance(value, list) and (length is None or len(value) == length) and all(map(item_ok, value))
    ):
        raise ConfigError(
            f"recipe key {key!r} = {value!r} has the wrong type; expected {expected}",
            key=key,
            value=value,
            expected=expected,
        )
    return tuple(convert(v) for v in value)


def _build(cls, table: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name not in ("source_path", "sha256")}
    unknown = sorted(set(table) - names)
    if unknown:
        where = f"[{prefix}]" if prefix else "top level"
        raise ConfigError(
            f"unknown recipe key(s) {unknown} in {where}; expected some of {sorted(names)}",
            key=f"{prefix}.{unknown[0]}" if prefix else unknown[0],
            expected=sorted(names),
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in table.items()}
    return cls(**kwargs)


# Keys whose value is one of a few names: checked when the recipe loads, not deep inside a stage.
CHOICES = {
    ("data", "pair_balance"): ("none", "rate", "rate_irregularity"),
    ("bridge", "best_epoch_by"): ("val_loss", "val_head_kl"),
    ("bridge", "input"): ("pooled", "tokens"),
    ("kd", "loss"): ("kl", "ce"),
    ("operating_point", "method"): ("as_trained", "old_model_calls"),
}


def _check_choices(recipe: Recipe) -> None:
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(recipe, section), key)
        if value not in allowed:
            raise ConfigError(
                f"recipe key '{section}.{key}' = {value!r}; expected one of {list(allowed)}",
                key=f"{section}.{key}",
                value=value,
                expected=list(allowed),
            )


def _check_selection(recipe: Recipe) -> None:
    s = recipe.selection
    least = 10 * s.cv_folds  # every fold can still hold every common pseudo-label
    if s.max_windows < 0 or 0 < s.max_windows < least:
        raise ConfigError(
            f"[selection] max_windows = {s.max_windows}; expected 0 (all pair windows) or at least {least} "
            f"(10 per fold of cv_folds = {s.cv_folds})",
            key="selection.max_windows",
            value=s.max_windows,
            expected=f"0 or >= {least}",
        )


def _check_bridge(recipe: Recipe) -> None:
    b = recipe.bridge
    if b.local_rank < 0 or (b.local_rank and b.input != "tokens"):
        raise ConfigError(
            f'[bridge] local_rank = {b.local_rank} with input = "{b.input}"; expected 0, or a rank >= 1 '
            'with input = "tokens" (the pooled bridge has no local term)',
            key="bridge.local_rank",
            value=b.local_rank,
            expected='0, or >= 1 with input = "tokens"',
        )


def _check_held_out(recipe: Recipe) -> None:
    h = recipe.held_out
    if h.extra_simulated_subjects < 0 or h.bootstrap_resamples < 0:
        raise ConfigError(
            f"[held_out] extra_simulated_subjects = {h.extra_simulated_subjects}, bootstrap_resamples = "
            f"{h.bootstrap_resamples}; expected counts >= 0",
            key="held_out",
            value=[h.extra_simulated_subjects, h.bootstrap_resamples],
            expected=">= 0",
        )
    if h.extra_simulated_subjects and recipe.data.source != "simulate":
        raise ConfigError(
            f'[held_out] extra_simulated_subjects needs [data] source = "simulate"; got source = '
            f"{recipe.data.source!r}",
            key="held_out.extra_simulated_subjects",
            value=h.extra_simulated_subjects,
            expected='[data] source = "simulate"',
        )


def _check_pair_cohort(recipe: Recipe) -> None:
    c = recipe.pair_cohort
    low, high = c.af_hr_bpm
    if c.subjects < 0 or not 30.0 <= low < high <= 220.0:
        raise ConfigError(
            f"[pair_cohort] subjects = {c.subjects}, af_hr_bpm = {list(c.af_hr_bpm)}; expected subjects >= 0 "
            "and 30 <= low < high <= 220 bpm",
            key="pair_cohort",
            value=[c.subjects, list(c.af_hr_bpm)],
            expected="subjects >= 0, 30 <= low < high <= 220",
        )
    low, high = c.sinus_hr_bpm
    if (low, high) != (0.0, 0.0) and not 30.0 <= low < high <= 220.0:
        raise ConfigError(
            f"[pair_cohort] sinus_hr_bpm = {list(c.sinus_hr_bpm)}; expected [0, 0] (the physiology's "
            "draw) or 30 <= low < high <= 220 bpm",
            key="pair_cohort.sinus_hr_bpm",
            value=list(c.sinus_hr_bpm),
            expected="[0, 0] or 30 <= low < high <= 220",
        )
    if c.pulses not in COHORT_PULSES:
        raise ConfigError(
            f"[pair_cohort] pulses = {c.pulses!r}; expected one of {list(COHORT_PULSES)}",
            key="pair_cohort.pulses",
            value=c.pulses,
            expected=" | ".join(COHORT_PULSES),
        )
    if c.subjects and recipe.data.source != "simulate":
        raise ConfigError(
            f'[pair_cohort] subjects needs [data] source = "simulate"; got source = {recipe.data.source!r}',
            key="pair_cohort.subjects",
            value=c.subjects,
            expected='[data] source = "simulate"',
        )


def _check_ema(recipe: Recipe) -> None:
    for section in ("bridge", "kd"):
        decay = getattr(recipe, section).ema_decay
        if not 0.0 <= decay < 1.0:
            raise ConfigError(
                f"[{section}] ema_decay = {decay}; expected 0 (off) or a decay in (0, 1), e.g. 0.998",
                key=f"{section}.ema_decay",
                value=decay,
                expected="0 <= ema_decay < 1",
            )


def _check_head_kl_weight(recipe: Recipe) -> None:
    weight = recipe.bridge.head_kl_weight
    if not (math.isfinite(weight) and weight >= 0.0):
        raise ConfigError(
            f"[bridge] head_kl_weight = {weight}; expected 0 (the cosine loss alone) or a positive weight",
            key="bridge.head_kl_weight",
            value=weight,
            expected="finite, >= 0",
        )


def _check_pair_speeds(recipe: Recipe) -> None:
    speeds = recipe.data.pair_speeds
    if any(not 0.25 <= v <= 4.0 for v in speeds):
        raise ConfigError(
            f"[data] pair_speeds = {list(speeds)}; expected speeds between 0.25 and 4 (1 = as recorded)",
            key="data.pair_speeds",
            value=list(speeds),
            expected="0.25 <= speed <= 4",
        )


def parse_recipe(text: str, source_path: str = "") -> Recipe:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"recipe {source_path or '<text>'} is not valid TOML: {err}", key="") from err
    recipe = _build(Recipe, table)
    _check_choices(recipe)
    _check_selection(recipe)
    _check_held_out(recipe)
    _check_bridge(recipe)
    _check_pair_speeds(recipe)
    _check_pair_cohort(recipe)
    _check_ema(recipe)
    _check_head_kl_weight(recipe)
    check_target_names(recipe.pretrain.targets)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return dataclasses.replace(recipe, source_path=source_path, sha256=digest)


def load_recipe(path: str | Path) -> Recipe:
    """Load a recipe file; a bare name (``default``, ``smoke``) resolves to ``recipes/<name>.toml``
    (the repo's, or the copy packaged in the wheel)."""
    p = Path(path)
    if not p.exists() and (RECIPES_DIR / f"{path}.toml").exists():
        p = RECIPES_DIR / f"{path}.toml"
    if not p.exists():
        raise ConfigError(
            f"recipe {str(path)!r} not found; expected a TOML file", key="recipe", value=str(path)
        )
    return parse_recipe(p.read_text(), source_path=str(p))


def recipe_as_dict(recipe: Recipe) -> dict:
    return dataclasses.asdict(recipe)
