"""TensorRT engine: the export area's named-tensor runner on the engine cached for the bundle.

The engine is built on this machine (never shipped) and cached by
``bridge_edge.export.tensorrt.build_or_load_engine`` under its key (ONNX hash, TensorRT version, GPU, precision,
shapes, builder options). Where TensorRT is not installed this raises
``EngineUnavailableError`` with the reason, and ``select_engine("auto")`` falls back to ORT.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from bridge_edge.errors import EngineUnavailableError
from bridge_edge.runtime.engines.base import Engine


def tensorrt_missing_reason() -> str | None:
    """Why TensorRT cannot be used here, or None when it can be tried."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed (JetPack or an NVIDIA container provides it)"
    if importlib.util.find_spec("bridge_edge.export.tensorrt") is None:
        return "bridge_edge.export.tensorrt is not part of this installation"
    return None


class TrtEngine(Engine):
    name = "trt"

    def __init__(self, bundle, precision: str, trt_module=None, memory=None, max_batch: int = 8) -> None:
        reason = tensorrt_missing_reason() if trt_module is None else None
        if reason is not None:
            raise EngineUnavailableError(
                f"TensorRT engine unavailable: {reason}",
                engine="trt",
                package="tensorrt",
                install_hint="use JetPack's Python or an L4T TensorRT container",
                reason=reason,
            )
        from bridge_edge.export import tensorrt as trt_export
        from bridge_edge.export.engine_cache import EngineCache

        trt = trt_module or trt_export.load_tensorrt()
        build = trt_export.build_or_load_engine(
            trt, bundle, precision, EngineCache.default(), max_batch=max_batch
        )
        self._runner = trt_export.TrtEngineRunner(trt, build.plan, memory or trt_export.CudaRuntimeMemory())
        self._output = bundle.manifest.onnx.outputs[0].name
        self._max_batch = max_batch
        self.precision = precision
        self.description = (
            f"TensorRT {trt.__version__} {precision}, engine {build.path.name} ({build.reason})"
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        parts = [
            self._runner.run(batch[i : i + self._max_batch])[self._output]
            for i in range(0, len(batch), self._max_batch)
        ]  # the profile's max batch bounds one call
        return np.concatenate(parts)

    def close(self) -> None:
        self._runner.close()
