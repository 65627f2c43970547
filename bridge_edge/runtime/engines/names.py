"""The one vocabulary of inference engines and model precisions (CLI choices, manifests, benches).

A leaf module (no bridge_edge import but errors), so bundles, engines and commands share it
without importing each other.
"""

from __future__ import annotations

from enum import Enum

from bridge_edge.errors import ConfigError


class EngineName(str, Enum):
    TORCH = "torch"  # eager fp32 reference (a fit run directory; development only)
    ORT = "ort"  # ONNX Runtime
    TRT = "trt"  # TensorRT, engine built on the device

    def __str__(self) -> str:
        return self.value


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"

    def __str__(self) -> str:
        return self.value


AUTO = "auto"  # engine: TensorRT, else ONNX Runtime; precision: int8 where the bundle has it, else fp32
ENGINE_NAMES: tuple[str, ...] = tuple(e.value for e in EngineName)
PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision)
ENGINE_CHOICES: tuple[str, ...] = (AUTO, *ENGINE_NAMES)
PRECISION_CHOICES: tuple[str, ...] = (AUTO, *PRECISIONS)


def resolve_precision(precision: str, available: list[str]) -> str:
    if precision == AUTO:
        return Precision.INT8.value if Precision.INT8.value in available else Precision.FP32.value
    if precision not in available:
        raise ConfigError(
            f"the bundle has no {precision} model; expected one of {', '.join(available)}",
            key="precision",
            value=precision,
            expected=available,
        )
    return precision
