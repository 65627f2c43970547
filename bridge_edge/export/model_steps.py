"""The export's step table (``STEPS``) and what its model steps do: ONNX + parity, fp16, int8
within the accuracy floor, the ORT-on-CPU int8 variant, the torch reference, golden outputs.
``export.steps`` runs the table; ``export.pipeline.export_bundle`` writes the manifest from the
steps' records (docs/architecture.md, "The export")."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bridge_edge.errors import ModelError
from bridge_edge.export import accuracy
from bridge_edge.export.bundle import CALIBRATION_NAME, GOLDEN_NAME
from bridge_edge.export.calibration import CalibrationRecipe, QuantSettings
from bridge_edge.export.manifest import PrecisionMetrics, QuantizationSection, VariantSection, onnx_file_name
from bridge_edge.export.source import ExportSource, SplitWindows
from bridge_edge.export.steps import ExportRun, Step
from bridge_edge.export.targets import target_of_settings

log = logging.getLogger(__name__)

INT8_CORE_OPS = ("Conv", "MatMul", "Gemm")


def recipe_settings(q: QuantizationSection | None):
    """The settings a quantization section records (activation type and symmetry decide the target)."""
    from bridge_edge.export.calibration import QuantSettings

    if q is None:
        return QuantSettings()
    return QuantSettings(activation_type=q.activation_type, activation_symmetric=q.activation_symmetric)


def precision_metrics_of(
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


def int8_within_floor_of(
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
        lambda outputs, path: precision_metrics_of(source, held_out, outputs, fp32, path),
    )


def ort_cpu_variant(
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
                lambda outputs, p: precision_metrics_of(source, held_out, outputs, fp32, p),
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


def _metrics_of(run: ExportRun, file: str) -> dict:
    fp32 = onnx_file_name("fp32")
    return dataclasses.asdict(
        precision_metrics_of(
            run.source, run.held_out, run.outputs(file), run.outputs(fp32), run.bundle / file
        )
    )


def _onnx_step(run: ExportRun) -> dict:
    from bridge_edge.export.onnx_export import check_parity, export_onnx, ort_outputs, torch_outputs

    path = run.bundle / onnx_file_name("fp32")
    exported = export_onnx(run.source.module, run.golden.x, path, opset=run.opset)
    log.info("exported %s with the %s exporter (opset %d)", path.name, exported.exporter, run.opset)
    reference = torch_outputs(run.source.module, run.golden.x)
    parity = check_parity(reference["probs"], ort_outputs(path, run.golden.x)["probs"])
    parity["exporter_fallback_reason"] = exported.fallback_reason
    run._outputs.pop(path.name, None)
    return {"exporter": exported.exporter, "parity": parity, "metrics": _metrics_of(run, path.name)}


def _fp16_step(run: ExportRun) -> dict:
    from bridge_edge.export.fp16 import convert_fp16

    kept = convert_fp16(run.bundle / onnx_file_name("fp32"), run.bundle / onnx_file_name("fp16"))
    log.info("fp16: kept in fp32: %s", ", ".join(kept) or "nothing")
    run._outputs.pop(onnx_file_name("fp16"), None)
    return {"kept_in_fp32": list(kept), "metrics": _metrics_of(run, onnx_file_name("fp16"))}


def _fp32_reference(run: ExportRun):
    return run.outputs(onnx_file_name("fp32")), PrecisionMetrics.from_dict(
        run.records["onnx"]["record"]["metrics"]
    )


def _int8_step(run: ExportRun) -> dict:
    fp32, fp32_metrics = _fp32_reference(run)
    quantization, _, metrics = int8_within_floor_of(
        run.source, run.held_out, run.calib_x, run.recipe, run.bundle, fp32, fp32_metrics
    )
    return {
        "quantization": dataclasses.asdict(quantization),
        "metrics": dataclasses.asdict(metrics),
        "target": target_of_settings(recipe_settings(quantization)),
    }


def _int8_ort_cpu_step(run: ExportRun) -> dict:
    fp32, fp32_metrics = _fp32_reference(run)
    variant, _ = ort_cpu_variant(
        run.source, run.held_out, run.calib_x, run.recipe, run.bundle, fp32, fp32_metrics
    )
    return {"variant": None if variant is None else dataclasses.asdict(variant)}


def _torch_step(run: ExportRun) -> dict:
    from bridge_edge.export.torch_reference import write_torch_reference

    section = write_torch_reference(run.source.module, run.source.composed_spec, run.bundle, run.golden.x)
    return dataclasses.asdict(section)


def _model_files(run: ExportRun) -> dict[str, str]:
    """Golden key -> ONNX file of every model the steps so far wrote."""
    files = {p: onnx_file_name(p) for p in run.precisions}
    variant = run.records.get("int8-ort-cpu", {}).get("record", {}).get("variant")
    if variant:
        files[f"{variant['precision']}-{variant['target']}"] = variant["file"]
    return files


def _golden_step(run: ExportRun) -> dict:
    from bridge_edge.export.onnx_export import ort_outputs

    files = _model_files(run)
    golden_out = {f"output_{k}": ort_outputs(run.bundle / f, run.golden.x)["probs"] for k, f in files.items()}
    np.savez(run.bundle / GOLDEN_NAME, input=run.golden.x, labels=run.golden.y, **golden_out)
    np.savez(run.bundle / CALIBRATION_NAME, input=run.calib_x, labels=run.calib_y)
    for name, text in run.source.licenses.items():
        (run.bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (run.bundle / name).write_text(text)
    return {"golden_keys": sorted(golden_out), "licenses": sorted(run.source.licenses)}


def _int8_is_tensorrt_layout(run: ExportRun) -> bool:
    int8 = run.records.get("int8", {}).get("record", {})
    return "ort-cpu" in run.int8_targets and int8.get("target") == "tensorrt"


PRECISION_STEP = {"fp32": "onnx", "fp16": "fp16", "int8": "int8"}
STEPS = [
    Step("onnx", _onnx_step, lambda run, rec: [onnx_file_name("fp32")]),
    Step(
        "fp16",
        _fp16_step,
        lambda run, rec: [onnx_file_name("fp16")],
        after=("onnx",),
        enabled=lambda run: "fp16" in run.precisions,
    ),
    Step(
        "int8",
        _int8_step,
        lambda run, rec: [onnx_file_name("int8")],
        params=lambda run: [repr(run.recipe.quantization), repr(run.recipe.floor), run.recipe.source],
        after=("onnx",),
        enabled=lambda run: "int8" in run.precisions,
    ),
    Step(
        "int8-ort-cpu",
        _int8_ort_cpu_step,
        lambda run, rec: [rec["variant"]["file"]] if rec.get("variant") else [],
        params=lambda run: [repr(run.recipe.quantization), repr(run.recipe.floor), run.recipe.source],
        after=("onnx", "int8"),
        enabled=_int8_is_tensorrt_layout,
    ),
    Step(
        "torch",
        _torch_step,
        lambda run, rec: [rec["weights"], rec["spec"]] if rec else [],
        params=lambda run: run.source.composed_spec,
        enabled=lambda run: run.source.composed_spec is not None,
    ),
    Step(
        "golden",
        _golden_step,
        lambda run, rec: [GOLDEN_NAME, CALIBRATION_NAME, *sorted(run.source.licenses)],
        params=lambda run: [sorted(_model_files(run).items()), sorted(run.source.licenses.items())],
        after=("onnx", "fp16", "int8", "int8-ort-cpu"),
    ),
]
