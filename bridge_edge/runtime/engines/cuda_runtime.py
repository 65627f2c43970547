"""Device memory and streams for the TensorRT runner, over cuda-python's CUDA runtime bindings.

cuda-python moved its runtime bindings: 12.x has ``cuda.bindings.runtime`` (from 12.6 on) and
the legacy ``cuda.cudart``; 13.x has only ``cuda.bindings.runtime``. Both expose the same
calls (``cudaMalloc`` … returning ``(error, value)`` tuples), so ``load_cuda_runtime`` takes the
new layout first and the legacy one second, and a missing binding is reported as itself
(``CudaBindingsMissingError``), never as "TensorRT not installed" (docs/bundles.md).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from bridge_edge.errors import CudaBindingsMissingError, EngineError

# Module paths tried in order; the first that imports is used.
LAYOUTS = ("cuda.bindings.runtime", "cuda.cudart")
INSTALL_HINT = (
    "pip install 'cuda-python>=12.6,<14' matching the machine's CUDA major version "
    "(JetPack 6: 'cuda-python==12.6.*'; export/JETSON.md)"
)


class DeviceMemory(Protocol):
    """CUDA memory and streams; ``CudaRuntimeMemory`` is the real one (cuda-python)."""

    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def stream(self) -> int: ...
    def copy_to_device(self, ptr: int, host: np.ndarray, stream: int) -> None: ...
    def copy_to_host(self, host: np.ndarray, ptr: int, stream: int) -> None: ...
    def synchronize(self, stream: int) -> None: ...


def load_cuda_runtime() -> tuple[Any, str]:
    """The CUDA runtime bindings module and the path it came from (``LAYOUTS`` order)."""
    failures = []
    for path in LAYOUTS:
        try:
            return importlib.import_module(path), path
        except ImportError as err:
            failures.append(f"{path}: {err}")
    raise CudaBindingsMissingError(
        "cuda-python's CUDA runtime bindings are missing (" + "; ".join(failures) + f"); {INSTALL_HINT}",
        engine="tensorrt",
        package="cuda-python",
        install_hint=INSTALL_HINT,
        reason="no CUDA runtime bindings",
    )


class CudaRuntimeMemory:
    """DeviceMemory over cuda-python's runtime bindings (either layout)."""

    def __init__(self, runtime: Any = None) -> None:
        self._rt, self.layout = (runtime, "given") if runtime is not None else load_cuda_runtime()

    def _check(self, result, call: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise EngineError(
                f"CUDA runtime error in {call}: {self._error_name(err)} ({int(err)})",
                engine="tensorrt",
                reason=self._error_name(err),
            )
        return rest[0] if rest else None

    def _error_name(self, err) -> str:
        try:
            _, name = self._rt.cudaGetErrorName(err)
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # the name is a courtesy; the code is reported regardless
            return str(err)

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMalloc(nbytes), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._check(self._rt.cudaFree(ptr), "cudaFree")

    def stream(self) -> int:
        return int(self._check(self._rt.cudaStreamCreate(), "cudaStreamCreate"))

    def copy_to_device(self, ptr: int, host: np.ndarray, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            self._rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, stream), "cudaMemcpyAsync"
        )

    def copy_to_host(self, host: np.ndarray, ptr: int, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(
            self._rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, stream), "cudaMemcpyAsync"
        )

    def synchronize(self, stream: int) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
