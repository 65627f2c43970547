"""What export reads from a trained run: the composed module, its facts, and its windows.

``source_from_run_dir`` is the one place that knows the bridge area's run-directory API
(``bridge.compose``); tests build an ``ExportSource`` directly around a stand-in module.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bridge_edge.export.bundle import sha256_file
from bridge_edge.export.manifest import BridgeSection, InputSection, ModelsSection, OutputSection


@dataclass(frozen=True)
class SplitWindows:
    """Model-ready windows and truths as indices into the head's labels (-1 = no counterpart)."""

    x: np.ndarray  # (N, L) float32
    y: np.ndarray  # (N,) int64

    def labelled(self) -> tuple[SplitWindows, int]:
        keep = self.y >= 0
        return SplitWindows(self.x[keep], self.y[keep]), int((~keep).sum())


@dataclass
class ExportSource:
    """Everything export needs from a trained run (see ``source_from_run_dir``)."""

    module: Any  # torch.nn.Module: (B, L) preprocessed PPG -> (B, K) probabilities
    input: InputSection
    output: OutputSection
    models: ModelsSection
    held_out: SplitWindows  # test split: metrics and golden windows
    calibration_pool: SplitWindows  # pair split: int8 calibration windows
    golden_reserve: SplitWindows | None = None  # val split: tops golden up to GOLDEN_MIN windows
    name: str = "default"
    recipe_hash: str = ""
    licenses: dict[str, str] = field(default_factory=dict)  # notice file name -> text
    # bridge.compose.ComposedSpec as a dict: with it the bundle carries the torch reference
    # (export.torch_reference); None for a stand-in module that cannot be rebuilt from weights
    composed_spec: dict | None = None


def source_from_run_dir(run_dir: str | Path, calibration_split: str = "pair") -> ExportSource:
    """Read a trained run through the bridge area's composition API (bridge.compose)."""
    from bridge_edge.bridge.compose import load_composed, load_split_windows
    from bridge_edge.bridge.rundir import RunDir

    run_dir = Path(run_dir)
    module, spec = load_composed(run_dir)

    def split(name: str) -> SplitWindows:
        x, y, _labels = load_split_windows(run_dir, name)  # y already indexes spec.labels (-1: none)
        return SplitWindows(np.asarray(x, np.float32), np.asarray(y, np.int64))

    recipe_file = RunDir(run_dir).recipe
    recipe_hash = sha256_file(recipe_file) if recipe_file.exists() else ""
    name = _recipe_name(recipe_file)
    old_name, new_name = spec.old_model.get("name", "old"), spec.new_model.get("name", "new")
    return ExportSource(
        module=module,
        input=InputSection(
            modality=spec.input.get("modality", "ppg"),
            fs=float(spec.input["fs"]),
            window_s=float(spec.window_s),
            hop_s=float(spec.hop_s),
            channels=[spec.input.get("modality", "ppg")] * int(spec.input.get("channels", 1)),
            units="preprocessed (z-score per window)",
            preprocess=dict(spec.preprocess),
        ),
        output=OutputSection(
            kind="class_probabilities",
            labels=list(spec.labels),
            positive_label=spec.positive_label,
            window_reduction=spec.window_prediction,
            class_weights=spec.class_weights,
        ),
        models=ModelsSection(
            old=old_name,
            new=new_name,
            k_in=spec.k_in,
            k_out=spec.k_out,
            bridge=BridgeSection(
                rank=int(spec.bridge["rank"]),
                prototypes=int(spec.bridge["prototypes"]),
                params=int(spec.bridge["params"]),
            ),
        ),
        held_out=split("test"),
        calibration_pool=split(calibration_split),
        golden_reserve=split("val"),
        name=name,
        recipe_hash=recipe_hash,
        licenses=license_notices([old_name, new_name]),
        composed_spec=spec.as_dict(),
    )


def _recipe_name(recipe_file: Path) -> str:
    if not recipe_file.exists():
        return "bundle"
    from bridge_edge.bridge.recipe import load_recipe as load_fit_recipe

    return load_fit_recipe(recipe_file).name


def license_notices(model_names: list[str]) -> dict[str, str]:
    """Licence files of installed distributions whose weights a bundle carries.

    A model named ``openecg-codec-v6`` is looked up as distribution ``openecg-codec-v6``, then
    ``openecg``; models the project trains itself match no distribution and need no notice.
    """
    notices = {}
    for model in model_names:
        for dist_name in dict.fromkeys([str(model), str(model).split("-")[0]]):
            try:
                dist = importlib.metadata.distribution(dist_name)
            except importlib.metadata.PackageNotFoundError:
                continue
            for f in dist.files or []:
                if Path(str(f)).name.upper().startswith(("LICENSE", "NOTICE")):
                    notices[f"licenses/{dist_name}-{Path(str(f)).name}"] = Path(f.locate()).read_text()
            break
    return notices
