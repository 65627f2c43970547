"""TensorRT engine: the named-tensor runner on the engine cached for the bundle.

The engine is built on this machine (never shipped) and cached by
``bridge_edge.export.tensorrt.build_or_load_engine`` under its key (ONNX hash, TensorRT version,
GPU, precision, shapes, builder options); an engine ``trtexec`` built through ``deploy`` lands
under the same key. Device buffers come from cuda-python (``cuda_runtime``), opened before the
engine is built so a missing binding is reported as itself. Where TensorRT is not installed
this raises ``EngineUnavailableError`` with the reason, and ``select_engine("auto")`` falls back
to ORT.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from bridge_edge.errors import EngineError, EngineUnavailableError
from bridge_edge.runtime.engines.base import Engine
from bridge_edge.runtime.engines.cuda_runtime import CudaRuntimeMemory, DeviceMemory


def tensorrt_missing_reason() -> str | None:
    """Why TensorRT cannot be used here, or None when it can be tried."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed (JetPack or an NVIDIA container provides it)"
    if importlib.util.find_spec("bridge_edge.export.tensorrt") is None:
        return "bridge_edge.export.tensorrt is not part of this installation"
    return None


class TrtEngine(Engine):
    name = "trt"
    device = "cuda"

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
        memory = memory or CudaRuntimeMemory()  # before the (minutes-long) build: fail fast
        build = trt_export.build_or_load_engine(
            trt, bundle, precision, EngineCache.default(), max_batch=max_batch
        )
        self._runner = TrtEngineRunner(trt, build.plan, memory)
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


class TrtEngineRunner:
    """Runs a serialized engine by tensor name; buffers sized for the profile's largest batch.

    runner = TrtEngineRunner(trt, plan, CudaRuntimeMemory())   # trt: the tensorrt module
    probs = runner.run(windows)["probs"]        # windows: (B, L) float32, B <= max batch
    """

    def __init__(self, trt, plan: bytes, memory: DeviceMemory) -> None:
        self._trt, self._memory = trt, memory
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))  # kept alive with the engine
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineError(
                "TensorRT engine does not deserialize (corrupt, or built for another TensorRT/GPU); "
                "rebuild it with `bridge-edge build-engine`",
                engine="tensorrt",
                reason="deserialize",
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self._stream = memory.stream()
        self.max_shapes = {n: tuple(self.engine.get_tensor_profile_shape(n, 0)[2]) for n in self.input_names}
        self._buffers: dict[str, int] = {}
        self.context.set_input_shape(self.input_names[0], self.max_shapes[self.input_names[0]])
        for n in names:
            shape = self.max_shapes[n] if is_input[n] else tuple(self.context.get_tensor_shape(n))
            self._buffers[n] = memory.malloc(int(np.prod(shape)) * 4)  # float32 I/O (bundle contract)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        name = self.input_names[0]
        if x.shape[0] > self.max_shapes[name][0]:
            raise EngineError(
                f"batch {x.shape[0]} exceeds the engine profile's max {self.max_shapes[name][0]}",
                engine="tensorrt",
                reason="batch",
            )
        self.context.set_input_shape(name, x.shape)
        outputs = {
            n: np.empty(tuple(self.context.get_tensor_shape(n)), np.float32) for n in self.output_names
        }
        for n, ptr in self._buffers.items():
            self.context.set_tensor_address(n, ptr)
        self._memory.copy_to_device(self._buffers[name], x, self._stream)
        if not self.context.execute_async_v3(self._stream):
            raise EngineError("TensorRT execute_async_v3 failed", engine="tensorrt", reason="execute")
        for n, host in outputs.items():
            self._memory.copy_to_host(host, self._buffers[n], self._stream)
        self._memory.synchronize(self._stream)
        return outputs

    def close(self) -> None:
        for ptr in self._buffers.values():
            self._memory.free(ptr)
        self._buffers.clear()
