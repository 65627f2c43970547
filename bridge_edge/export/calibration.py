"""Calibration recipes (``calibration/*.toml``) and stratified window selection. numpy only.

The dataclass defaults equal ``calibration/default.toml`` (a test keeps them in step), so an
installed package without the repo's ``calibration/`` folder still calibrates the same way.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bridge_edge.errors import ConfigError
from bridge_edge.resources import named_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_EXCLUDED_OP_TYPES = (
    "LayerNormalization",
    "BatchNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "Softmax",
    "Add",
)
METHODS = ("MinMax", "Entropy", "Percentile")
QUANT_TYPES = ("QInt8", "QUInt8")


@dataclass(frozen=True)
class WindowSelection:
    split: str = "pair"
    count: int = 256
    stratify: bool = True
    seed: int = 0


@dataclass(frozen=True)
class QuantSettings:
    quant_format: str = "QDQ"
    activation_type: str = "QInt8"
    weight_type: str = "QInt8"
    calibrate_method: str = "MinMax"
    per_channel: bool = False
    activation_symmetric: bool = True
    exclude_op_types: tuple[str, ...] = DEFAULT_EXCLUDED_OP_TYPES
    # MatMuls of two activations (attention scores and attention x values) stay in float: their
    # Q/DQ would wrap the Softmax between them, which ORT then fuses into a slow, lossy
    # QLinearSoftmax. Weight MatMuls and convolutions (the bulk of the FLOPs) are still int8.
    exclude_activation_matmuls: bool = True
    # Module paths of the composed model (e.g. "new_model", "old_model.refine") kept in float.
    exclude_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccuracyFloor:
    min_agreement: float = 0.98
    max_macro_f1_drop: float = 0.01
    max_auroc_drop: float = 0.01


@dataclass(frozen=True)
class CalibrationRecipe:
    windows: WindowSelection = field(default_factory=WindowSelection)
    quantization: QuantSettings = field(default_factory=QuantSettings)
    floor: AccuracyFloor = field(default_factory=AccuracyFloor)
    source: str = "built-in default"

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        d = self.as_dict()
        d.pop("source")
        return hashlib.sha256(repr(sorted(d.items())).encode()).hexdigest()[:16]


def load_recipe(path: str | Path | None) -> CalibrationRecipe:
    """Parse a calibration recipe; None -> the built-in default; a bare name (``default``,
    ``ort_cpu``) -> ``calibration/<name>.toml`` (the repo's, or the copy packaged in the wheel)."""
    if path is None:
        return CalibrationRecipe()
    path = named_toml("calibration", path) or Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(
            f"{path}: cannot read calibration recipe ({err}); expected a TOML file",
            key=str(path),
            value=None,
            expected="TOML",
        ) from err
    sections = {"windows": WindowSelection, "quantization": QuantSettings, "floor": AccuracyFloor}
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(
            f"{path}: unknown sections {sorted(unknown)}; expected {sorted(sections)}",
            key=sorted(unknown)[0],
            value=None,
            expected=sorted(sections),
        )
    parts = {}
    for name, cls in sections.items():
        values = dict(raw.get(name, {}))
        known = set(cls.__dataclass_fields__)
        bad = set(values) - known
        if bad:
            raise ConfigError(
                f"{path}: unknown keys {sorted(bad)} in [{name}]; expected some of {sorted(known)}",
                key=f"{name}.{sorted(bad)[0]}",
                value=None,
                expected=sorted(known),
            )
        for key in ("exclude_op_types", "exclude_modules"):
            if key in values:
                values[key] = tuple(values[key])
        parts[name] = cls(**values)
    recipe = CalibrationRecipe(**parts, source=str(path))
    _validate(recipe, path)
    return recipe


def _validate(recipe: CalibrationRecipe, path: Path) -> None:
    q = recipe.quantization
    checks = [
        ("quantization.quant_format", q.quant_format, ("QDQ",)),
        ("quantization.calibrate_method", q.calibrate_method, METHODS),
        ("quantization.activation_type", q.activation_type, QUANT_TYPES),
        ("quantization.weight_type", q.weight_type, QUANT_TYPES),
    ]
    for key, value, allowed in checks:
        if value not in allowed:
            raise ConfigError(
                f"{path}: {key} = {value!r}; expected one of {list(allowed)}",
                key=key,
                value=value,
                expected=list(allowed),
            )
    if recipe.windows.count < 1:
        raise ConfigError(
            f"{path}: windows.count = {recipe.windows.count}; expected >= 1",
            key="windows.count",
            value=recipe.windows.count,
            expected=">= 1",
        )


def stratified_indices(labels: np.ndarray, count: int, seed: int = 0, stratify: bool = True) -> np.ndarray:
    """Pick ``count`` indices: an equal share per label (capped by availability), rest at random.

    Returns sorted indices; all of them if ``count >= len(labels)``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if count >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if not stratify:
        return np.sort(rng.choice(n, size=count, replace=False))
    classes = np.unique(labels)
    share = count // len(classes)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:share] for c in classes]
    chosen = np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)
    rest = np.setdiff1d(np.arange(n), chosen)
    fill = rng.choice(rest, size=count - len(chosen), replace=False)
    return np.sort(np.concatenate([chosen, fill]).astype(np.int64))
