"""RUN_DIR -> bundle: compose, export ONNX, check parity, make fp16 / int8, measure, package.

    source = source_from_run_dir("runs/default")
    manifest = export_bundle(source, Path("bundle"), ("fp32", "fp16", "int8"), load_recipe(None))

(``source_from_run_dir`` is in ``bridge_edge.export.source``.)

The bundle is written to a temporary sibling directory and moved into place only when every
step (parity, accuracy floor, sealing, verification) has passed, so a failed export never
leaves a half bundle where a good one was.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bridge_edge.errors import BundleError, ConfigError, ModelError
from bridge_edge.export import accuracy
from bridge_edge.export.bundle import (
    CALIBRATION_NAME,
    GOLDEN_NAME,
    load_bundle,
    read_onnx_io,
    seal,
)
from bridge_edge.export.calibration import CalibrationRecipe, QuantSettings, stratified_indices
from bridge_edge.export.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    Manifest,
    OnnxSection,
    PrecisionMetrics,
    QuantizationSection,
    onnx_file_name,
)
from bridge_edge.export.source import ExportSource, SplitWindows
from bridge_edge.runtime.engines.names import PRECISIONS

log = logging.getLogger(__name__)

GOLDEN_WINDOWS = 96  # stratified so every held-out class is in it
GOLDEN_MIN = 64  # docs/bundles.md; a small test split is topped up from the validation split
# Stored outputs are re-run by the self-test on the target; int8/fp16 kernels differ by CPU.
GOLDEN_ATOL = {"fp32": 1e-4, "fp16": 5e-3, "int8": 5e-2}
INT8_CORE_OPS = ("Conv", "MatMul", "Gemm")


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
) -> Manifest:
    from bridge_edge.export.onnx_export import check_parity, export_onnx, ort_outputs, torch_outputs

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
    calib = source.calibration_pool.x[calib_idx]
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    work.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be read by its users
    try:
        fp32_path = work / onnx_file_name("fp32")
        exported = export_onnx(source.module, golden.x, fp32_path, opset=opset)
        log.info("exported %s with the %s exporter (opset %d)", fp32_path.name, exported.exporter, opset)
        reference = torch_outputs(source.module, golden.x)
        outputs = {"fp32": ort_outputs(fp32_path, held_out.x)}
        parity = check_parity(reference["probs"], ort_outputs(fp32_path, golden.x)["probs"])
        parity["exporter_fallback_reason"] = exported.fallback_reason

        quantization = None
        if "fp16" in precisions:
            from bridge_edge.export.fp16 import convert_fp16

            kept = convert_fp16(fp32_path, work / onnx_file_name("fp16"))
            log.info("fp16: kept in fp32: %s", ", ".join(kept) or "nothing")
            outputs["fp16"] = ort_outputs(work / onnx_file_name("fp16"), held_out.x)
        metrics = {
            p: _metrics(source, held_out, outputs[p], outputs["fp32"], work / onnx_file_name(p))
            for p in outputs
        }
        if "int8" in precisions:
            quantization, outputs["int8"], metrics["int8"] = _int8_within_floor(
                source, held_out, calib, recipe, work, outputs["fp32"], metrics["fp32"]
            )

        golden_out = {
            f"output_{p}": ort_outputs(work / onnx_file_name(p), golden.x)["probs"] for p in precisions
        }
        np.savez(work / GOLDEN_NAME, input=golden.x, labels=golden.y, **golden_out)
        np.savez(work / CALIBRATION_NAME, input=calib, labels=source.calibration_pool.y[calib_idx])
        for name, text in source.licenses.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(text)

        inputs, onnx_outputs = read_onnx_io(fp32_path)
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name=source.name,
            version=version or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            recipe_hash=source.recipe_hash,
            input=source.input,
            output=source.output,
            models=source.models,
            onnx=OnnxSection(opset=opset, exporter=exported.exporter, inputs=inputs, outputs=onnx_outputs),
            precisions=list(precisions),
            files={},
            sizes={},
            metrics=metrics,
            parity=parity,
            golden={
                "n_windows": len(golden.y),
                "labels_present": sorted({source.output.labels[i] for i in golden.y}),
                "atol": {p: GOLDEN_ATOL[p] for p in precisions},
                "held_out_windows": len(held_out.y),
                "held_out_unlabelled_excluded": n_unlabelled,
            },
            quantization=quantization,
            licenses=sorted(source.licenses),
        )
        seal(work, manifest)
        load_bundle(work, verify=True)
        _move_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


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


def _metrics(
    source: ExportSource, held_out: SplitWindows, outputs: dict, fp32: dict, path: Path
) -> PrecisionMetrics:
    labels = source.output.labels
    positive = labels.index(source.output.positive_label) if source.output.positive_label in labels else None
    return accuracy.precision_metrics(
        outputs["probs"],
        held_out.y,
        fp32["probs"],
        positive_index=positive,
        bridge=outputs.get("bridge"),
        fp32_bridge=fp32.get("bridge"),
        size_bytes=path.stat().st_size,
    )


def int8_attempts(settings: QuantSettings, present_op_types: set[str]) -> list[tuple[str, QuantSettings]]:
    """The recipe's setting, then per-channel, then only Conv/MatMul/Gemm quantized, then other methods."""
    per_channel = dataclasses.replace(settings, per_channel=True)
    non_core = tuple(sorted(present_op_types - set(INT8_CORE_OPS)))
    excluded = tuple(dict.fromkeys(settings.exclude_op_types + non_core))
    core_only = dataclasses.replace(per_channel, exclude_op_types=excluded)
    # The new-modality encoder feeds the bridge one pooled vector, so its int8 error is carried
    # through the whole old model; keeping it in float is the next thing to give up.
    encoder_float = dataclasses.replace(
        per_channel, exclude_modules=tuple(dict.fromkeys(settings.exclude_modules + ("new_model",)))
    )
    attempts = [("recipe", settings)]
    if not settings.per_channel:
        attempts.append(("per-channel", per_channel))
    attempts.append(("per-channel, new-model encoder in float", encoder_float))
    attempts.append(("per-channel, only Conv/MatMul/Gemm quantized", core_only))
    for method in ("Percentile", "Entropy"):
        if method != settings.calibrate_method:
            attempts.append(
                (f"per-channel, core ops, {method}", dataclasses.replace(core_only, calibrate_method=method))
            )
    return attempts


def _int8_within_floor(
    source, held_out, calib, recipe: CalibrationRecipe, work: Path, fp32: dict, fp32_metrics: PrecisionMetrics
):
    import onnx

    from bridge_edge.export.int8 import quantize_int8
    from bridge_edge.export.onnx_export import ort_outputs

    fp32_path = work / onnx_file_name("fp32")
    int8_path = work / onnx_file_name("int8")
    present = {n.op_type for n in onnx.load(str(fp32_path), load_external_data=False).graph.node}
    tried = []
    floor = accuracy.floor_for_size(recipe.floor, held_out.y)
    if floor != recipe.floor:
        log.info("int8 floor for %d held-out windows (one window's resolution): %s", len(held_out.y), floor)
    for label, settings in int8_attempts(recipe.quantization, present):
        try:
            result = quantize_int8(fp32_path, int8_path, calib, settings)
        except ModelError as err:  # e.g. a calibration method ORT cannot run on this graph
            tried.append(
                {
                    "attempt": label,
                    "meets_floor": False,
                    "failures": [f"quantization failed: {str(err.fields.get('reason', err))[:200]}"],
                }
            )
            log.warning("int8 attempt %r failed: %s", label, err)
            continue
        outputs = ort_outputs(int8_path, held_out.x)
        metrics = _metrics(source, held_out, outputs, fp32, int8_path)
        failures = accuracy.floor_failures(metrics, fp32_metrics, floor)
        tried.append(
            {
                "attempt": label,
                "per_channel": settings.per_channel,
                "calibrate_method": settings.calibrate_method,
                "op_types_quantized": result.op_types_quantized,
                "agreement_with_fp32": metrics.agreement_with_fp32,
                "macro_f1": metrics.macro_f1,
                "auroc": metrics.auroc,
                "meets_floor": not failures,
                "failures": failures,
                "floor": dataclasses.asdict(floor),
            }
        )
        log.info(
            "int8 attempt %r: agreement %.4f, macro-F1 %.4f%s",
            label,
            metrics.agreement_with_fp32,
            metrics.macro_f1,
            "" if not failures else f" -- misses the floor: {'; '.join(failures)}",
        )
        if not failures:
            q = settings
            section = QuantizationSection(
                tool="onnxruntime.quantization.quantize_static " + importlib.metadata.version("onnxruntime"),
                quant_format=q.quant_format,
                activation_type=q.activation_type,
                weight_type=q.weight_type,
                calibrate_method=q.calibrate_method,
                per_channel=q.per_channel,
                activation_symmetric=q.activation_symmetric,
                calibration_windows=len(calib),
                calibration_recipe=recipe.source,
                pre_processed=result.pre_processed,
                op_types_quantized=result.op_types_quantized,
                op_types_excluded=result.op_types_excluded,
                nodes_excluded=result.nodes_excluded,
                activation_matmuls_excluded=result.activation_matmuls_excluded,
                modules_excluded=list(q.exclude_modules),
                attempts=tried,
            )
            return section, outputs, metrics
    raise ModelError(
        f"int8 misses the accuracy floor with every setting tried ({len(tried)}: "
        + "; ".join(f"{t['attempt']}: {', '.join(t['failures'])}" for t in tried)
        + "); export without int8 (--precision fp32,fp16) or change the calibration recipe",
        model="int8",
        reason="accuracy floor",
        attempts=tried,
    )
