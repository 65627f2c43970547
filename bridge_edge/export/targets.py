"""Per-target int8 (docs/bundles.md, "Targets"): one Q/DQ layout for TensorRT, one for ORT on CPUs.

TensorRT takes only symmetric int8 Q/DQ (zero point 0). On x86 ONNX Runtime that layout is
slow: a few convolutions stay DequantizeLinear + float Conv, GELU is five ops with Q/DQ round
trips, and LayerNorm + residual Add run apart. The ``ort-cpu`` file is made for ORT instead:

1. ORT's transformer fusions on the fp32 graph (``onnxruntime.transformers.optimizer``, python
   fusions only, so nothing hardware-specific is baked in): Gelu / BiasGelu, LayerNormalization,
   SkipLayerNormalization, and Attention where ORT recognises the pattern;
2. static Q/DQ with uint8 asymmetric activations and per-channel int8 weights
   (``ORT_CPU_SETTINGS`` = ``calibration/ort_cpu.toml``'s [quantization]), calibrated on the
   same windows as the TensorRT file, held to the same accuracy floor.

``int8_within_floor`` tries settings in order and keeps the first that meets the floor; every
attempt is recorded in the manifest.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
from pathlib import Path

from bridge_edge.errors import ModelError
from bridge_edge.export import accuracy
from bridge_edge.export.calibration import QuantSettings
from bridge_edge.export.manifest import QuantizationSection

log = logging.getLogger(__name__)

INT8_TARGETS = ("tensorrt", "ort-cpu")
# calibration/ort_cpu.toml's [quantization] (a test keeps the two in step)
ORT_CPU_SETTINGS = QuantSettings(
    activation_type="QUInt8",
    weight_type="QInt8",
    per_channel=True,
    activation_symmetric=False,
)


def target_of_settings(settings: QuantSettings) -> str:
    """Symmetric int8 activations are TensorRT's explicit-quantization layout; anything else
    (uint8 or asymmetric activations) is for ORT on CPUs only."""
    tensorrt = settings.activation_type == "QInt8" and settings.activation_symmetric
    return "tensorrt" if tensorrt else "ort-cpu"


def parse_int8_targets(text: str) -> tuple[str, ...]:
    from bridge_edge.errors import ConfigError

    wanted = tuple(t.strip() for t in text.split(",") if t.strip())
    if not wanted or any(t not in INT8_TARGETS for t in wanted):
        raise ConfigError(
            f"--int8-targets {text!r}: expected a comma list of {', '.join(INT8_TARGETS)}",
            key="int8-targets",
            value=text,
            expected=list(INT8_TARGETS),
        )
    return wanted


def fuse_transformer_ops(fp32_path: Path, out_path: Path) -> dict[str, int]:
    """ORT's transformer fusions on ``fp32_path`` -> ``out_path``; returns fused op -> count.

    ``opt_level=0``: only the optimizer's own pattern fusions, no ORT graph optimisation saved
    into the file (that would bake in this machine's kernels and layouts)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        model = optimize_model(
            str(fp32_path),
            model_type="bert",
            num_heads=0,  # 0: read from the graph
            hidden_size=0,
            opt_level=0,
            optimization_options=FusionOptions("bert"),
        )
        model.save_model_to_file(str(out_path))
    except Exception as err:  # noqa: BLE001 - any optimizer failure: quantize the unfused graph
        raise ModelError(
            f"ORT transformer fusions failed on {fp32_path.name} ({type(err).__name__}: {err})",
            model=str(fp32_path),
            reason=str(err),
        ) from err
    stats = model.get_fused_operator_statistics() or {}
    return {op: int(n) for op, n in sorted(stats.items()) if n}


def ort_cpu_attempts(recipe_settings: QuantSettings, fp32_path: Path, fused_path: Path | None):
    """(label, settings, source ONNX) for the ort-cpu file, in the order they are tried."""
    settings = dataclasses.replace(
        ORT_CPU_SETTINGS,
        calibrate_method=recipe_settings.calibrate_method,
        exclude_op_types=recipe_settings.exclude_op_types,
        exclude_activation_matmuls=recipe_settings.exclude_activation_matmuls,
        exclude_modules=recipe_settings.exclude_modules,
    )
    encoder_float = dataclasses.replace(
        settings, exclude_modules=tuple(dict.fromkeys(settings.exclude_modules + ("new_model",)))
    )
    attempts = []
    if fused_path is not None:
        attempts.append(("ort-cpu: fused, u8 activations, per-channel", settings, fused_path))
    attempts.append(("ort-cpu: unfused, u8 activations, per-channel", settings, fp32_path))
    if fused_path is not None:
        attempts.append(("ort-cpu: fused, new-model encoder in float", encoder_float, fused_path))
    return attempts


def int8_within_floor(
    attempts, int8_path: Path, calib, held_out, fp32: dict, fp32_metrics, floor, recipe_source, metrics_of
):
    """Quantize with each (label, settings, source) in turn; the first that meets ``floor``
    against fp32 on the held-out windows is kept at ``int8_path``.

    ``metrics_of(outputs, path)`` -> PrecisionMetrics. Returns (QuantizationSection, outputs,
    metrics); raises ModelError naming every attempt when none holds."""
    from bridge_edge.export.int8 import quantize_int8
    from bridge_edge.export.onnx_export import ort_outputs

    tried = []
    for label, settings, source in attempts:
        try:
            result = quantize_int8(source, int8_path, calib, settings)
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
        metrics = metrics_of(outputs, int8_path)
        failures = accuracy.floor_failures(metrics, fp32_metrics, floor)
        tried.append(
            {
                "attempt": label,
                "per_channel": settings.per_channel,
                "calibrate_method": settings.calibrate_method,
                "op_types_quantized": result.op_types_quantized,
                "agreement_with_fp32": metrics.agreement_with_fp32,
                "macro_f1": metrics.macro_f1,
                "positive_auroc": metrics.positive_auroc,
                "macro_auroc": metrics.macro_auroc,
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
                calibration_recipe=recipe_source,
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
