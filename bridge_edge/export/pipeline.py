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
    VariantSection,
    onnx_file_name,
)
from bridge_edge.export.source import ExportSource, SplitWindows
from bridge_edge.export.targets import target_of_settings
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
    int8_targets: tuple[str, ...] = ("tensorrt", "ort-cpu"),
) -> Manifest:
    """``int8_targets``: with "ort-cpu", a TensorRT-layout int8 gets a second int8 file for ORT
    on CPUs beside it (export.targets); the torch reference is written when the source has a
    composition spec (``ExportSource.composed_spec``)."""
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
        targets = {onnx_file_name(p): "any" for p in precisions}
        variants: list[VariantSection] = []
        if "int8" in precisions:
            quantization, outputs["int8"], metrics["int8"] = _int8_within_floor(
                source, held_out, calib, recipe, work, outputs["fp32"], metrics["fp32"]
            )
            targets[onnx_file_name("int8")] = target_of_settings(recipe_settings(quantization))
            if targets[onnx_file_name("int8")] == "tensorrt" and "ort-cpu" in int8_targets:
                variant, _ = _ort_cpu_variant(
                    source, held_out, calib, recipe, work, outputs["fp32"], metrics["fp32"]
                )
                if variant is not None:
                    variants.append(variant)
                    targets[variant.file] = variant.target
        torch_section = None
        if source.composed_spec is not None:
            from bridge_edge.export.torch_reference import write_torch_reference

            torch_section = write_torch_reference(source.module, source.composed_spec, work, golden.x)

        model_files = {p: onnx_file_name(p) for p in precisions} | {v.key: v.file for v in variants}
        golden_out = {f"output_{k}": ort_outputs(work / f, golden.x)["probs"] for k, f in model_files.items()}
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
                "atol": {p: GOLDEN_ATOL[p] for p in precisions}
                | {v.key: GOLDEN_ATOL[v.precision] for v in variants},
                "held_out_windows": len(held_out.y),
                "held_out_unlabelled_excluded": n_unlabelled,
            },
            quantization=quantization,
            licenses=sorted(source.licenses),
            targets=targets,
            variants=variants,
            torch=torch_section,
        )
        seal(work, manifest)
        load_bundle(work, verify=True)
        _move_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def recipe_settings(q: QuantizationSection | None):
    """The settings a quantization section records (activation type and symmetry decide the target)."""
    from bridge_edge.export.calibration import QuantSettings

    if q is None:
        return QuantSettings()
    return QuantSettings(activation_type=q.activation_type, activation_symmetric=q.activation_symmetric)


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

    from bridge_edge.export.targets import int8_within_floor

    fp32_path = work / onnx_file_name("fp32")
    present = {n.op_type for n in onnx.load(str(fp32_path), load_external_data=False).graph.node}
    floor = accuracy.floor_for_size(recipe.floor, held_out.y)
    if floor != recipe.floor:
        log.info("int8 floor for %d held-out windows (one window's resolution): %s", len(held_out.y), floor)
    attempts = [(label, s, fp32_path) for label, s in int8_attempts(recipe.quantization, present)]
    return int8_within_floor(
        attempts,
        work / onnx_file_name("int8"),
        calib,
        held_out,
        fp32,
        fp32_metrics,
        floor,
        recipe.source,
        lambda outputs, path: _metrics(source, held_out, outputs, fp32, path),
    )


def _ort_cpu_variant(
    source, held_out, calib, recipe: CalibrationRecipe, work: Path, fp32: dict, fp32_metrics: PrecisionMetrics
):
    """The int8 file for ORT on CPUs (export.targets): fused, u8 activations, per-channel.
    Returns (VariantSection, outputs), or (None, None) with a warning when no setting holds the
    floor (the TensorRT-layout file still serves ORT then)."""
    from bridge_edge.export.targets import fuse_transformer_ops, int8_within_floor, ort_cpu_attempts

    fp32_path = work / onnx_file_name("fp32")
    tmp = Path(tempfile.mkdtemp(prefix="bridge-edge-fused-"))
    fused_path: Path | None = tmp / "fused.onnx"
    try:
        try:
            fusions = fuse_transformer_ops(fp32_path, fused_path)
            log.info("ORT transformer fusions: %s", fusions or "none matched")
        except ModelError as err:
            log.warning("%s; quantizing the unfused graph for ort-cpu", err)
            fusions, fused_path = {}, None
        path = work / onnx_file_name("int8", "ort-cpu")
        try:
            section, outputs, metrics = int8_within_floor(
                ort_cpu_attempts(recipe.quantization, fp32_path, fused_path),
                path,
                calib,
                held_out,
                fp32,
                fp32_metrics,
                accuracy.floor_for_size(recipe.floor, held_out.y),
                recipe.source,
                lambda outputs, p: _metrics(source, held_out, outputs, fp32, p),
            )
        except ModelError as err:
            log.warning("no ort-cpu int8 file: %s", err)
            path.unlink(missing_ok=True)
            return None, None
        if section.attempts and "unfused" in section.attempts[-1]["attempt"]:
            fusions = {}
        variant = VariantSection(
            precision="int8",
            target="ort-cpu",
            file=path.name,
            metrics=metrics,
            quantization=section,
            fusions=fusions,
        )
        return variant, outputs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
