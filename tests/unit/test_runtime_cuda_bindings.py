"""cuda-python's two runtime-binding layouts, through fake modules injected in sys.modules.

``cuda.bindings.runtime`` (cuda-python >= 12.6 and 13) and the legacy ``cuda.cudart`` (12.x)
expose the same calls; the fakes implement them over host memory with ctypes, so bytes really
go in and out. CUDA and TensorRT cannot run here; the real round trip at the end is skipped
with the reason.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from bridge_edge.errors import CudaBindingsMissingError, EngineError, EngineUnavailableError
from bridge_edge.runtime.engines import cuda_runtime
from bridge_edge.runtime.engines import trt as trt_engine
from bridge_edge.runtime.engines.cuda_runtime import CudaRuntimeMemory, load_cuda_runtime


class CudaError(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2


def fake_runtime(name: str, limit: int = 1 << 20) -> types.ModuleType:
    """The runtime calls the runner uses, over ctypes buffers; pointers are real addresses."""
    rt = types.ModuleType(name)
    buffers: dict[int, ctypes.Array] = {}
    rt.buffers = buffers
    rt.cudaError_t = CudaError
    rt.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    rt.calls = []

    def malloc(nbytes):
        if nbytes > limit:
            return (CudaError.cudaErrorMemoryAllocation, 0)
        buf = ctypes.create_string_buffer(nbytes)
        buffers[ctypes.addressof(buf)] = buf
        return (CudaError.cudaSuccess, ctypes.addressof(buf))

    def memcpy_async(dst, src, nbytes, kind, stream):
        rt.calls.append(("cudaMemcpyAsync", kind, stream))
        ctypes.memmove(dst, src, nbytes)
        return (CudaError.cudaSuccess,)

    rt.cudaMalloc = malloc
    rt.cudaFree = lambda ptr: (buffers.pop(ptr) is not None and CudaError.cudaSuccess,)
    rt.cudaStreamCreate = lambda: (CudaError.cudaSuccess, 42)
    rt.cudaMemcpyAsync = memcpy_async
    rt.cudaStreamSynchronize = lambda stream: (CudaError.cudaSuccess,)
    rt.cudaGetErrorName = lambda err: (CudaError.cudaSuccess, CudaError(err).name.encode())
    return rt


def _package(name):
    module = types.ModuleType(name)
    module.__path__ = []
    return module


@pytest.fixture
def bindings_13(monkeypatch):
    """cuda-python 13 (and >= 12.6): cuda.bindings.runtime, no cuda.cudart."""
    rt = fake_runtime("cuda.bindings.runtime")
    monkeypatch.setitem(sys.modules, "cuda", _package("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", _package("cuda.bindings"))
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    monkeypatch.setitem(sys.modules, "cuda.cudart", None)
    return rt


@pytest.fixture
def legacy_12(monkeypatch):
    """cuda-python <= 12.5: only cuda.cudart."""
    rt = fake_runtime("cuda.cudart")
    monkeypatch.setitem(sys.modules, "cuda", _package("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "cuda.cudart", rt)
    return rt


@pytest.fixture
def no_bindings(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)


def _round_trip(memory: CudaRuntimeMemory) -> np.ndarray:
    host = np.arange(24, dtype=np.float32).reshape(4, 6)
    back = np.zeros_like(host)
    ptr = memory.malloc(host.nbytes)
    stream = memory.stream()
    memory.copy_to_device(ptr, host, stream)
    memory.copy_to_host(back, ptr, stream)
    memory.synchronize(stream)
    memory.free(ptr)
    return back


@pytest.mark.parametrize("layout", ["bindings_13", "legacy_12"])
def test_both_layouts_move_bytes_through_the_same_memory_interface(layout, request):
    rt = request.getfixturevalue(layout)
    memory = CudaRuntimeMemory()
    assert memory.layout == rt.__name__
    np.testing.assert_array_equal(_round_trip(memory), np.arange(24, dtype=np.float32).reshape(4, 6))
    assert [c[1] for c in rt.calls] == [1, 2] and all(c[2] == 42 for c in rt.calls)
    assert rt.buffers == {}  # freed


def test_new_layout_wins_when_both_are_present(monkeypatch, bindings_13):
    monkeypatch.setitem(sys.modules, "cuda.cudart", fake_runtime("cuda.cudart"))
    assert load_cuda_runtime()[1] == "cuda.bindings.runtime"


def test_missing_bindings_are_named_as_such_not_as_missing_tensorrt(no_bindings):
    with pytest.raises(CudaBindingsMissingError) as err:
        load_cuda_runtime()
    text = str(err.value)
    assert "cuda.bindings.runtime" in text and "cuda.cudart" in text and "cuda-python" in text
    assert "TensorRT" not in text and "tensorrt" not in text
    assert err.value.package == "cuda-python" and isinstance(err.value, EngineUnavailableError)


def test_a_cuda_error_code_is_reported_by_name(bindings_13):
    memory = CudaRuntimeMemory()
    with pytest.raises(EngineError, match="cudaMalloc: cudaErrorMemoryAllocation"):
        memory.malloc(1 << 30)


def _fake_tensorrt_present(monkeypatch):
    from bridge_edge.export import tensorrt as trt_export

    def no_build(*args, **kwargs):
        raise AssertionError("the engine must not be built when device memory cannot be had")

    monkeypatch.setattr(trt_engine, "tensorrt_missing_reason", lambda: None)
    monkeypatch.setattr(trt_export, "load_tensorrt", lambda: SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(trt_export, "build_or_load_engine", no_build)


def test_trt_engine_reports_missing_bindings_before_building(tmp_path, monkeypatch, no_bindings):
    pytest.importorskip("onnx", reason="the tiny test model is written with the onnx package")
    from tiny_bundle import make_tiny_bundle

    _fake_tensorrt_present(monkeypatch)
    bundle = make_tiny_bundle(tmp_path, window_s=2.0, hop_s=1.0)
    with pytest.raises(CudaBindingsMissingError, match="cuda-python"):
        trt_engine.TrtEngine(bundle, "fp32")


def test_auto_falls_back_loudly_when_tensorrt_is_there_but_bindings_are_not(
    tmp_path, monkeypatch, no_bindings, caplog
):
    pytest.importorskip("onnx", reason="the tiny test model is written with the onnx package")
    pytest.importorskip("onnxruntime", reason="the fallback engine is ONNX Runtime")
    from tiny_bundle import make_tiny_bundle

    from bridge_edge.runtime.engines import select_engine

    _fake_tensorrt_present(monkeypatch)
    bundle = make_tiny_bundle(tmp_path, window_s=2.0, hop_s=1.0)
    with caplog.at_level(logging.WARNING):
        choice = select_engine("auto", bundle, "fp32", threads=1)
    assert choice.engine.name == "ort"
    assert "cuda-python" in choice.fallbacks[0] and "not installed" not in choice.fallbacks[0]
    assert any(r.levelno == logging.WARNING and "cuda-python" in r.getMessage() for r in caplog.records)


def test_real_cuda_python_round_trip():
    try:
        runtime, layout = load_cuda_runtime()
    except CudaBindingsMissingError as err:
        pytest.skip(f"cuda-python is not installed here: {err}")
    err, count = runtime.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        pytest.skip(f"no CUDA device here ({layout}: cudaGetDeviceCount -> {err}, {count})")
    np.testing.assert_array_equal(
        _round_trip(CudaRuntimeMemory(runtime)), np.arange(24, dtype=np.float32).reshape(4, 6)
    )


def test_no_legacy_import_statement_remains():
    from pathlib import Path

    root = Path(cuda_runtime.__file__).resolve().parents[2]
    offenders = [p for p in root.rglob("*.py") if "from cuda import cudart" in p.read_text()]
    assert offenders == []
