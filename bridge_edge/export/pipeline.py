"""RUN_DIR -> bundle: compose, export ONNX, check parity, make fp16 / int8, measure, package.

    source = source_from_run_dir("runs/default")
    manifest = export_bundle(source, Path("bundle"), ("fp32", "fp16", "int8"), load_recipe(None))

(``source_from_run_dir`` is in ``bridge_edge.export.source``.)

The export is the step table ``STEPS`` (onnx -> fp16 -> int8 -> int8-ort-cpu -> torch ->
golden, then the manifest), run by ``export.steps``: each step is skipped when a previous run
of the same export left its files with a matching key. The bundle is built in a hidden sibling
directory and moved into place only when every step (parity, accuracy floor, sealing,
verification) has passed, so a failed export never leaves a half bundle where a good one was;
its steps stay beside it for the rerun.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bridge_edge.errors import BundleError, ConfigError
from bridge_edge.export.bundle import (
    load_bundle,
    read_onnx_io,
    seal,
)
from bridge_edge.export.calibration import CalibrationRecipe, stratified_indices
from bridge_edge.export.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    Manifest,
    OnnxSection,
    PrecisionMetrics,
    QuantizationSection,
    onnx_file_name,
)
from bridge_edge.export.model_steps import PRECISION_STEP, STEPS
from bridge_edge.export.source import ExportSource, SplitWindows
from bridge_edge.export.steps import ExportRun, run_steps
from bridge_edge.runtime.engines.names import PRECISIONS

log = logging.getLogger(__name__)

# Stratified so every held-out class is in it; 64 since 0.9.0 (96 before): 160 KB less in the
# packaged default bundle, whose device install sits near its 300 MiB limit (docs/bundles.md).
GOLDEN_WINDOWS = 64
GOLDEN_MIN = 64  # docs/bundles.md; a small test split is topped up from the validation split
# Stored outputs are re-run by the self-test on the target; int8/fp16 kernels differ by CPU.
GOLDEN_ATOL = {"fp32": 1e-4, "fp16": 5e-3, "int8": 5e-2}


# --- the export ------------------------------------------------------------------------------


def parse_precisions(text: str) -> tuple[str, ...]:
    wanted = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in wanted if p not in PRECISIONS]
    if bad or "fp32" not in wanted:
        raise ConfigError(
            f"--precision {text!r}: expected a comma list of {', '.join(PRECISIONS)} that includes fp32 "
            f"(the reference every other precision is measured against)",
            key="precision",
            value=text,
            expected=list(PRECISIONS),
        )
    return tuple(p for p in PRECISIONS if p in wanted)


def export_bundle(
    source: ExportSource,
    out: Path,
    precisions: tuple[str, ...],
    recipe: CalibrationRecipe,
    *,
    version: str | None = None,
    opset: int = 18,
    int8_targets: tuple[str, ...] = ("tensorrt", "ort-cpu"),
    work_dir: Path | None = None,
) -> Manifest:
    """``int8_targets``: with "ort-cpu", a TensorRT-layout int8 gets a second int8 file for ORT
    on CPUs beside it (export.targets); the torch reference is written when the source has a
    composition spec (``ExportSource.composed_spec``).

    The steps (``STEPS``, export.steps) build the bundle in ``work_dir`` (default: the hidden
    sibling ``.<out name>.export``), which is removed once the bundle is in place. After a
    failure it stays, and running the same export again reuses every step whose inputs did not
    change (a failed int8 step reruns alone)."""
    out = Path(out)
    _check_out(out)
    held_out, n_unlabelled = source.held_out.labelled()
    if len(held_out.y) == 0:
        raise ConfigError(
            "no labelled held-out windows to measure the bundle on; expected a non-empty test split",
            key="test split",
            value=0,
            expected="> 0 labelled windows",
        )
    golden = golden_windows(held_out, source.golden_reserve)
    calib_idx = stratified_indices(
        source.calibration_pool.y, recipe.windows.count, recipe.windows.seed, recipe.windows.stratify
    )
    work = Path(work_dir) if work_dir is not None else out.with_name(f".{out.name}.export")
    run = ExportRun(
        source,
        held_out,
        golden,
        source.calibration_pool.x[calib_idx],
        source.calibration_pool.y[calib_idx],
        recipe,
        tuple(precisions),
        tuple(int8_targets),
        opset,
        work,
    )
    try:
        statuses = run_steps(STEPS, run)
        log.info("export steps: %s", ", ".join(f"{k} {v}" for k, v in statuses.items()))
        manifest = _manifest(run, version, n_unlabelled)
        seal(run.bundle, manifest)
        load_bundle(run.bundle, verify=True)
        run.bundle.chmod(0o755)  # a bundle is meant to be read by its users
        _move_into_place(run.bundle, out)
    except BaseException:
        if (run.steps).is_dir():
            log.warning(
                "export failed; the steps done so far are kept in %s: the same export resumes there", work
            )
        raise
    shutil.rmtree(work, ignore_errors=True)
    return manifest


def _manifest(run: ExportRun, version: str | None, n_unlabelled: int) -> Manifest:
    """The manifest from the steps' records (each step's record is what a rerun reads back)."""
    from bridge_edge.export.manifest import TorchSection, _variant

    r = {name: entry["record"] for name, entry in run.records.items()}
    source, precisions = run.source, run.precisions
    metrics = {p: PrecisionMetrics.from_dict(r[PRECISION_STEP[p]]["metrics"]) for p in precisions}
    variant = r.get("int8-ort-cpu", {}).get("variant")
    variants = [_variant(variant)] if variant else []
    targets = {onnx_file_name(p): "any" for p in precisions}
    if "int8" in r:
        targets[onnx_file_name("int8")] = r["int8"]["target"]
    targets.update({v.file: v.target for v in variants})
    inputs, onnx_outputs = read_onnx_io(run.bundle / onnx_file_name("fp32"))
    return Manifest(
        schema_version=SCHEMA_VERSION,
        name=source.name,
        version=version or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        recipe_hash=source.recipe_hash,
        input=source.input,
        output=source.output,
        models=source.models,
        onnx=OnnxSection(
            opset=run.opset, exporter=r["onnx"]["exporter"], inputs=inputs, outputs=onnx_outputs
        ),
        precisions=list(precisions),
        files={},
        sizes={},
        metrics=metrics,
        parity=r["onnx"]["parity"],
        golden={
            "n_windows": len(run.golden.y),
            "labels_present": sorted({source.output.labels[i] for i in run.golden.y}),
            "atol": {p: GOLDEN_ATOL[p] for p in precisions}
            | {v.key: GOLDEN_ATOL[v.precision] for v in variants},
            "held_out_windows": len(run.held_out.y),
            "held_out_unlabelled_excluded": n_unlabelled,
        },
        quantization=QuantizationSection(**r["int8"]["quantization"]) if "int8" in r else None,
        licenses=sorted(source.licenses),
        targets=targets,
        variants=variants,
        torch=TorchSection(**r["torch"]) if "torch" in r else None,
    )


def golden_windows(held_out: SplitWindows, reserve: SplitWindows | None) -> SplitWindows:
    """Up to GOLDEN_WINDOWS test windows covering every class; topped up from ``reserve``
    (also never trained on) when the test split has fewer than GOLDEN_MIN labelled windows."""
    idx = stratified_indices(held_out.y, GOLDEN_WINDOWS, seed=0)
    x, y = held_out.x[idx], held_out.y[idx]
    if len(y) < GOLDEN_MIN and reserve is not None:
        extra, _ = reserve.labelled()
        more = stratified_indices(extra.y, GOLDEN_MIN - len(y), seed=0)
        x, y = np.concatenate([x, extra.x[more]]), np.concatenate([y, extra.y[more]])
    return SplitWindows(x, y)


def _check_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_NAME).exists():
        raise BundleError(
            f"{out} exists and is not a bundle; expected a new path or an existing bundle to replace",
            path=str(out),
            file=str(out),
            problems=["output exists"],
        )


def _move_into_place(work: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    work.rename(out)
    shutil.rmtree(old, ignore_errors=True)
