"""Export as a table of rerunnable steps (docs/architecture.md, "The export").

    onnx -> fp16 -> int8 -> int8-ort-cpu -> torch -> golden   (then the manifest: seal, verify)

Each ``Step`` writes its files into the bundle being built and a record (its reuse key, the
sha256 of each file it wrote, and what the manifest needs from it: metrics, the quantization
section, ...) into ``STEPS_DIR``. A step whose record has the key it would have now and whose
files still hash as recorded is not run again: after a failed int8 step, the same export
command resumes at int8 without exporting or converting anything it already has. A step's key
is the hash of the inputs every step shares (the model's weights, the held-out, golden and
calibration windows, the opset), of its own parameters and of the keys of the steps it
follows. A disabled step (fp16 not asked for, no TensorRT-layout int8, no composition spec)
removes its files and record. The manifest is always written afresh: it is cheap and carries
the creation time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bridge_edge.export.bundle import sha256_file
from bridge_edge.export.calibration import CalibrationRecipe
from bridge_edge.export.source import ExportSource, SplitWindows

log = logging.getLogger(__name__)

STEPS_DIR = "steps"  # records, beside the bundle directory being built (never inside it)
BUNDLE_DIR = "bundle"
_RECORD_FORMAT = 1


@dataclass
class ExportRun:
    """What every step reads: the source, the windows, the recipe, the work directories."""

    source: ExportSource
    held_out: SplitWindows  # labelled held-out windows (metrics)
    golden: SplitWindows
    calib_x: np.ndarray
    calib_y: np.ndarray
    recipe: CalibrationRecipe
    precisions: tuple[str, ...]
    int8_targets: tuple[str, ...]
    opset: int
    work: Path  # holds BUNDLE_DIR and STEPS_DIR
    records: dict[str, dict] = field(default_factory=dict)  # step name -> its record
    _outputs: dict[str, dict] = field(default_factory=dict, repr=False)

    @property
    def bundle(self) -> Path:
        return self.work / BUNDLE_DIR

    @property
    def steps(self) -> Path:
        return self.work / STEPS_DIR

    def outputs(self, file: str) -> dict:
        """ONNX Runtime outputs of a bundle file on the held-out windows (computed once per run)."""
        from bridge_edge.export.onnx_export import ort_outputs

        if file not in self._outputs:
            self._outputs[file] = ort_outputs(self.bundle / file, self.held_out.x)
        return self._outputs[file]

    @cached_property
    def shared_key(self) -> str:
        """Hash of what every step depends on: weights, windows, opset, the source's identity."""
        h = hashlib.sha256()
        h.update(json.dumps([_RECORD_FORMAT, self.opset, self.source.name, self.source.recipe_hash]).encode())
        state = getattr(self.source.module, "state_dict", None)
        if state is not None:
            for name, tensor in state().items():
                t = tensor.detach().cpu().contiguous()
                h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.reshape(-1).view(_uint8()).numpy().tobytes())
        for a in (self.held_out.x, self.held_out.y, self.golden.x, self.golden.y, self.calib_x, self.calib_y):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def _uint8():
    import torch

    return torch.uint8


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[ExportRun], dict]  # writes its files into run.bundle; returns its record
    files: Callable[[ExportRun, dict], list[str]]  # bundle files it wrote, from its record
    params: Callable[[ExportRun], Any] = lambda run: None  # JSON-able: its own settings
    after: tuple[str, ...] = ()
    enabled: Callable[[ExportRun], bool] = lambda run: True


def step_key(step: Step, run: ExportRun) -> str:
    upstream = {name: run.records.get(name, {}).get("key", "disabled") for name in step.after}
    text = json.dumps([step.name, run.shared_key, step.params(run), upstream], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_steps(steps: list[Step], run: ExportRun) -> dict[str, str]:
    """Run the table in order, reusing what a previous run of the same export left; returns
    step name -> "ran" | "reused" | "disabled"."""
    run.bundle.mkdir(parents=True, exist_ok=True)
    run.steps.mkdir(parents=True, exist_ok=True)
    done: dict[str, str] = {}
    for step in steps:
        record_path = run.steps / f"{step.name}.json"
        old = _read_record(record_path)
        if not step.enabled(run):
            for file in step.files(run, old.get("record", {})) if old else []:
                (run.bundle / file).unlink(missing_ok=True)
            record_path.unlink(missing_ok=True)
            done[step.name] = "disabled"
            continue
        key = step_key(step, run)
        if old.get("key") == key and _files_intact(run.bundle, old.get("sha256", {})):
            run.records[step.name] = old
            done[step.name] = "reused"
            log.info("export step %s: reused (same key, files intact)", step.name)
            continue
        record_path.unlink(missing_ok=True)  # a failure below leaves no stale record
        result = step.run(run)
        files = step.files(run, result)
        entry = {"key": key, "record": result, "sha256": {f: sha256_file(run.bundle / f) for f in files}}
        record_path.write_text(json.dumps(entry, indent=1, default=_jsonable) + "\n")
        run.records[step.name] = json.loads(record_path.read_text())  # as a rerun will read it
        done[step.name] = "ran"
        log.info("export step %s: ran", step.name)
    _prune(run.bundle, {f for entry in run.records.values() for f in entry["sha256"]})
    return done


def _prune(bundle: Path, keep: set[str]) -> None:
    """Remove what no enabled step wrote (a failed attempt's file, a step disabled since): the
    bundle is sealed over every file in it."""
    for path in sorted(bundle.rglob("*"), reverse=True):
        name = str(path.relative_to(bundle))
        if path.is_file() and name not in keep:
            log.info("export: removing %s (no step wrote it in this export)", name)
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _read_record(path: Path) -> dict:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entry if isinstance(entry, dict) and isinstance(entry.get("record"), dict) else {}


def _files_intact(bundle: Path, hashes: dict) -> bool:
    return all((bundle / f).is_file() and sha256_file(bundle / f) == h for f, h in hashes.items())


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-able: {type(value).__name__}")
