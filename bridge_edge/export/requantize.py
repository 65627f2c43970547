"""Add the per-target files to an existing bundle: ``bridge-edge requantize BUNDLE [--run-dir RUN]``.

For a bundle exported before the ``ort-cpu`` int8 file and the torch reference existed (or with
``--int8-targets tensorrt``), this makes them the way ``export`` does, without re-exporting:

- ``model.int8.ort-cpu.onnx`` from the bundle's own ``model.fp32.onnx`` and its
  ``calibration.npz`` windows (the windows the TensorRT int8 file was calibrated on), through
  ``model_steps.ort_cpu_variant`` — the code ``export`` runs; its accuracy is measured on the run's
  held-out windows with ``--run-dir`` (as at export), else on the bundle's golden windows (the
  floor widened to their resolution, ``accuracy.floor_for_size``), and recorded in the manifest;
- ``torch/composed.*`` from ``--run-dir``, only when that run's composed module reproduces the
  bundle's stored fp32 golden outputs (so weights of another fit never land in the bundle).

The bundle is rebuilt in a temporary sibling directory, sealed, verified with every golden
self-test, and moved into place (``--out`` or over itself); the model files already there are
byte-identical afterwards.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge_edge.errors import ConfigError, ModelError
from bridge_edge.export.bundle import GOLDEN_NAME, load_bundle, seal
from bridge_edge.export.calibration import CalibrationRecipe
from bridge_edge.export.manifest import TORCH_SPEC_NAME, Manifest, OutputSection, onnx_file_name
from bridge_edge.export.source import SplitWindows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Facts:
    """What the accuracy metrics need of an export source: the output labels."""

    output: OutputSection


def requantize_bundle(
    bundle_ref: str | Path,
    out: Path | None,
    recipe: CalibrationRecipe,
    run_dir: Path | None = None,
    version: str | None = None,
) -> Manifest:
    from bridge_edge.export.model_steps import ort_cpu_variant, precision_metrics_of
    from bridge_edge.export.onnx_export import ort_outputs
    from bridge_edge.export.pipeline import GOLDEN_ATOL, _move_into_place

    bundle = load_bundle(bundle_ref, selftest=None)
    m = bundle.manifest
    if "int8" not in m.precisions:
        raise ConfigError(
            f"{bundle.path}: the bundle has no int8 precision; expected one exported with int8",
            key="precisions",
            value=m.precisions,
            expected="int8 among them",
        )
    out = Path(out) if out is not None else bundle.path
    golden = bundle.golden()
    source = None
    if run_dir is not None:
        from bridge_edge.export.source import source_from_run_dir

        source = source_from_run_dir(run_dir, calibration_split=recipe.windows.split)
        held_out, _ = source.held_out.labelled()
        _check_same_model(source.module, golden.input, golden.outputs["fp32"], run_dir)
    else:
        held_out = SplitWindows(golden.input, np.asarray(golden.labels, np.int64))
    calib = bundle.calibration()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    work.chmod(0o755)
    try:
        shutil.copytree(bundle.path, work, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete"))
        for v in m.variants:
            (work / v.file).unlink(missing_ok=True)
        facts = _Facts(output=m.output)
        fp32 = ort_outputs(work / onnx_file_name("fp32"), held_out.x)
        fp32_metrics = precision_metrics_of(facts, held_out, fp32, fp32, work / onnx_file_name("fp32"))
        variant, _ = ort_cpu_variant(facts, held_out, calib, recipe, work, fp32, fp32_metrics)
        if variant is None:
            raise ModelError(
                "no ort-cpu int8 file met the accuracy floor (see the log); the bundle is unchanged",
                model=str(bundle.path),
                reason="accuracy floor",
            )
        m.variants = [variant]
        m.targets = {onnx_file_name(p): m.target_of(onnx_file_name(p)) for p in m.precisions}
        m.targets[variant.file] = variant.target
        m.golden = dict(m.golden) | {
            "atol": dict(m.golden["atol"]) | {variant.key: GOLDEN_ATOL[variant.precision]}
        }
        with np.load(work / GOLDEN_NAME, allow_pickle=False) as z:
            arrays = dict(z)
        arrays[f"output_{variant.key}"] = ort_outputs(work / variant.file, golden.input)["probs"]
        np.savez(work / GOLDEN_NAME, **arrays)
        if source is not None and source.composed_spec is not None:
            from bridge_edge.export.torch_reference import write_torch_reference

            shutil.rmtree(work / Path(TORCH_SPEC_NAME).parent, ignore_errors=True)
            m.torch = write_torch_reference(source.module, source.composed_spec, work, golden.input)
        if version:
            m.version = version
        seal(work, m)
        load_bundle(work, verify=True, selftest="all")
        _move_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return m


def _check_same_model(module, x: np.ndarray, fp32_golden: np.ndarray, run_dir: Path) -> None:
    import torch

    with torch.inference_mode():
        probs = module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()
    diff = float(np.max(np.abs(probs - fp32_golden)))
    if not diff <= GOLDEN_FP32_ATOL:
        raise ConfigError(
            f"{run_dir}: its composed module differs from the bundle's fp32 model by {diff:.3g} on the "
            f"golden windows; expected the run the bundle was exported from (<= {GOLDEN_FP32_ATOL:g})",
            key="run-dir",
            value=str(run_dir),
            expected="the bundle's own training run",
        )


GOLDEN_FP32_ATOL = 1e-4
