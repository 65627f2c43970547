"""TensorRT build, cache and runner logic, through a scripted test double of the tensorrt module.

The double records every call so the tests can check what a real TensorRT would be asked to
do (named-tensor API only, EXPLICIT_BATCH only on 8.x, workspace via memory-pool limits,
INT8 without any calibrator). The real build is tested at the end, skipped without TensorRT.
"""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from export_standin import minimal_bundle

from bridge_edge.errors import EngineError, EngineUnavailableError
from bridge_edge.export import tensorrt as trt_mod
from bridge_edge.export.bundle import load_bundle
from bridge_edge.export.engine_cache import EngineCache
from bridge_edge.runtime.engines.trt import TrtEngineRunner

GPU = trt_mod.GpuInfo("Orin (test double)", "8.7")


class FakeTensorRT:
    """Test double of the ``tensorrt`` module: same names, records calls, 'plans' are bytes."""

    def __init__(self, version: str = "10.3.0", strongly_typed_only: bool = False) -> None:
        self.__version__ = version
        self.calls: list[tuple] = []
        calls = self.calls
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level=None: None})
        flags = {"FP16": "FP16", "INT8": "INT8"} if not strongly_typed_only else {}
        self.BuilderFlag = SimpleNamespace(**flags)
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
        self.TensorIOMode = SimpleNamespace(INPUT="IN", OUTPUT="OUT")
        fake = self

        class Config:
            def set_memory_pool_limit(self, pool, n):
                calls.append(("set_memory_pool_limit", pool, n))

            def set_flag(self, flag):
                calls.append(("set_flag", flag))

            def add_optimization_profile(self, p):
                calls.append(("add_optimization_profile",))

            def __setattr__(self, name, value):
                calls.append(("config." + name, value))

        class Profile:
            def set_shape(self, name, mn, opt, mx):
                calls.append(("set_shape", name, tuple(mn), tuple(opt), tuple(mx)))

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                calls.append(("create_network", flags))
                return SimpleNamespace()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                calls.append(("build_serialized_network",))
                return b"PLAN:" + fake.__version__.encode()

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                calls.append(("parse_from_file", Path(path).name))
                return True

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, plan):
                calls.append(("deserialize_cuda_engine",))
                return FakeEngine(fake) if bytes(plan).startswith(b"PLAN:") else None

        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime


class FakeEngine:
    """Two tensors: input ``ppg`` (B, 6), output ``probs`` (B, 3) = first three columns x 2."""

    def __init__(self, trt):
        self.trt, self.num_io_tensors = trt, 2

    def get_tensor_name(self, i):
        return ["ppg", "probs"][i]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name == "ppg" else self.trt.TensorIOMode.OUTPUT

    def get_tensor_profile_shape(self, name, profile):
        return [(1, 6), (1, 6), (8, 6)]

    def create_execution_context(self):
        return FakeContext(self.trt)


class FakeContext:
    def __init__(self, trt):
        self.trt, self.shapes, self.addresses, self.memory = trt, {}, {}, None

    def set_input_shape(self, name, shape):
        self.trt.calls.append(("set_input_shape", name, tuple(shape)))
        self.shapes["ppg"] = tuple(shape)
        self.shapes["probs"] = (shape[0], 3)

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def set_tensor_address(self, name, ptr):
        self.trt.calls.append(("set_tensor_address", name))
        self.addresses[name] = ptr

    def execute_async_v3(self, stream):
        self.trt.calls.append(("execute_async_v3", stream))
        b = self.shapes["ppg"][0]
        x = FakeMemory.heap[self.addresses["ppg"]][: b * 6].reshape(b, 6)
        FakeMemory.heap[self.addresses["probs"]][: b * 3] = (2 * x[:, :3]).ravel()
        return True


class FakeMemory:
    heap: dict[int, np.ndarray] = {}

    def malloc(self, nbytes):
        ptr = 1000 + len(self.heap)
        self.heap[ptr] = np.zeros(nbytes // 4, np.float32)
        return ptr

    def free(self, ptr):
        del self.heap[ptr]

    def stream(self):
        return 7

    def copy_to_device(self, ptr, host, stream):
        self.heap[ptr][: host.size] = host.ravel()

    def copy_to_host(self, host, ptr, stream):
        host[...] = self.heap[ptr][: host.size].reshape(host.shape)

    def synchronize(self, stream):
        pass


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(minimal_bundle(tmp_path_factory.mktemp("b") / "mini"))


def _build(trt, bundle, cache, precision="fp32"):
    return trt_mod.build_or_load_engine(
        trt, bundle, precision, cache, max_batch=8, workspace_bytes=1 << 28, gpu=GPU
    )


def test_trt10_build_uses_memory_pool_profile_and_no_explicit_batch(bundle, tmp_path):
    trt = FakeTensorRT("10.3.0")
    result = _build(trt, bundle, EngineCache(tmp_path))
    assert result.built and result.path.exists()
    assert ("create_network", 0) in trt.calls  # EXPLICIT_BATCH is deprecated/ignored in 10.x
    assert ("set_memory_pool_limit", "WORKSPACE", 1 << 28) in trt.calls
    assert ("set_shape", "ppg", (1, 6), (1, 6), (8, 6)) in trt.calls
    assert ("add_optimization_profile",) in trt.calls
    assert not any("calibrat" in str(c).lower() for c in trt.calls)


def test_trt86_sets_explicit_batch(bundle, tmp_path):
    trt = FakeTensorRT("8.6.2")
    _build(trt, bundle, EngineCache(tmp_path))
    assert ("create_network", 1 << 0) in trt.calls


def test_int8_sets_int8_flag_from_qdq_and_no_calibrator(tmp_path):
    trt = FakeTensorRT("10.3.0")
    assert trt_mod._precision_flag_names(trt, "int8") == ["INT8", "FP16"]
    assert trt_mod._precision_flag_names(trt, "fp16") == ["FP16"]
    # TensorRT 11 drops precision flags: the fp16/Q-DQ graph is built strongly typed instead
    trt11 = FakeTensorRT("11.4.0", strongly_typed_only=True)
    assert trt_mod._precision_flag_names(trt11, "fp16") == []
    assert trt_mod._network_flag_names(trt11, "fp16") == ["STRONGLY_TYPED"]


def test_cache_hit_skips_the_build(bundle, tmp_path):
    cache = EngineCache(tmp_path)
    first = _build(FakeTensorRT(), bundle, cache)
    trt = FakeTensorRT()
    second = _build(trt, bundle, cache)
    assert not second.built and second.reason == "cache hit" and second.path == first.path
    assert ("build_serialized_network",) not in trt.calls


@pytest.mark.parametrize("change", ["tensorrt", "gpu", "workspace"])
def test_key_covers_version_gpu_and_builder_options(bundle, tmp_path, change):
    cache = EngineCache(tmp_path)
    first = _build(FakeTensorRT("10.3.0"), bundle, cache)
    trt = FakeTensorRT("10.4.0" if change == "tensorrt" else "10.3.0")
    gpu = trt_mod.GpuInfo("Other GPU", "8.6") if change == "gpu" else GPU
    ws = (1 << 29) if change == "workspace" else (1 << 28)
    second = trt_mod.build_or_load_engine(
        trt, bundle, "fp32", cache, max_batch=8, workspace_bytes=ws, gpu=gpu
    )
    assert second.built and second.key != first.key


def test_unreadable_engine_is_rebuilt_with_a_warning(bundle, tmp_path, caplog):
    cache = EngineCache(tmp_path)
    first = _build(FakeTensorRT(), bundle, cache)
    garbage = b"garbage that does not deserialize"
    first.path.write_bytes(garbage)  # with a matching hash: a plan this TensorRT cannot read
    first.path.with_name(first.path.name + ".sha256").write_text(hashlib.sha256(garbage).hexdigest())
    trt = FakeTensorRT()
    with caplog.at_level("WARNING"):
        second = _build(trt, bundle, cache)
    assert second.built and "does not deserialize" in second.reason
    assert "rebuilding TensorRT engine" in caplog.text
    assert first.path.read_bytes().startswith(b"PLAN:")


@pytest.mark.parametrize("tamper", ["engine", "hash", "no hash"])
def test_cached_engine_whose_bytes_do_not_match_its_hash_is_rebuilt_with_a_warning(
    bundle, tmp_path, caplog, tamper
):
    cache = EngineCache(tmp_path)
    first = _build(FakeTensorRT(), bundle, cache)
    digest = first.path.with_name(first.path.name + ".sha256")
    assert digest.read_text().strip() == hashlib.sha256(first.path.read_bytes()).hexdigest()
    if tamper == "engine":  # still a plan that deserializes: only the hash can tell
        first.path.write_bytes(first.path.read_bytes() + b"swapped")
    elif tamper == "hash":
        digest.write_text("0" * 64)
    else:
        digest.unlink()
    trt = FakeTensorRT()
    with caplog.at_level("WARNING"):
        second = _build(trt, bundle, cache)
    assert second.built and ("build_serialized_network",) in trt.calls
    assert "sha256" in second.reason and "rebuilding TensorRT engine" in caplog.text
    assert digest.read_text().strip() == hashlib.sha256(second.path.read_bytes()).hexdigest()


def test_engine_cache_load_through_the_cache_module_alone(tmp_path):
    from bridge_edge.export.engine_cache import EngineKey, ProfileShapes

    cache = EngineCache(tmp_path)
    key = EngineKey(
        "ab" * 32, "10.3.0", "Orin", "8.7", "int8", ProfileShapes("ppg", (1, 6), (1, 6), (8, 6)), {}
    )
    entry = cache.entry("mini-1", key)
    assert cache.load(entry, key) == (None, "no cached engine")
    cache.store(entry, key, b"PLAN")
    assert cache.load(entry, key) == (b"PLAN", "cache hit")
    entry.path.write_bytes(b"PLAN but another")
    plan, reason = cache.load(entry, key)
    assert plan is None and "sha256 differs" in reason


def test_stale_sidecar_forces_rebuild(bundle, tmp_path, caplog):
    cache = EngineCache(tmp_path)
    first = _build(FakeTensorRT(), bundle, cache)
    first.path.with_suffix(".json").write_text('{"onnx_sha256": "something else"}')
    with caplog.at_level("WARNING"):
        second = _build(FakeTensorRT(), bundle, cache)
    assert second.built and "key differs" in second.reason


def test_runner_uses_named_io_only():
    trt = FakeTensorRT()
    runner = TrtEngineRunner(trt, b"PLAN:x", FakeMemory())
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    out = runner.run(x)
    np.testing.assert_array_equal(out["probs"], 2 * x[:, :3])
    names = {c[0] for c in trt.calls}
    assert {"set_input_shape", "set_tensor_address", "execute_async_v3"} <= names
    assert not any("binding" in n or n == "execute_v2" for n in names)
    assert ("set_input_shape", "ppg", (2, 6)) in trt.calls
    with pytest.raises(EngineError, match="exceeds the engine profile"):
        runner.run(np.zeros((9, 6), np.float32))
    runner.close()


def test_runner_refuses_a_plan_that_does_not_deserialize():
    with pytest.raises(EngineError, match="does not deserialize"):
        TrtEngineRunner(FakeTensorRT(), b"not a plan", FakeMemory())


def test_build_engine_without_tensorrt_is_one_clear_line(tmp_path):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; the missing-TensorRT message cannot be shown")
    except ImportError:
        pass
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_edge.cli", "build-engine", "default"], capture_output=True, text=True
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TensorRT is not installed" in lines[0] and "python3-libnvinfer" in lines[0]


def test_load_tensorrt_raises_engine_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EngineUnavailableError) as err:
        trt_mod.load_tensorrt()
    assert err.value.package == "tensorrt"


def test_trtexec_script_passes_the_documented_flags(bundle, tmp_path):
    """Run export/build_engine_trtexec.sh against a recording stand-in trtexec."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    fake = tmp_path / "trtexec"
    log = tmp_path / "args.txt"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\n')
    fake.chmod(0o755)
    script = Path(__file__).resolve().parents[2] / "export" / "build_engine_trtexec.sh"
    work = Path(shutil.copytree(bundle.path, tmp_path / "b"))
    (work / "model.int8.onnx").write_bytes((work / "model.fp32.onnx").read_bytes())
    proc = subprocess.run(
        ["bash", str(script), str(work), "int8", "4", "512"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TRTEXEC": str(fake)},
    )
    assert proc.returncode == 0, proc.stderr
    args = log.read_text().split()
    assert f"--onnx={work}/model.int8.onnx" in args
    assert "--minShapes=ppg:1x6" in args and "--maxShapes=ppg:4x6" in args and "--optShapes=ppg:1x6" in args
    assert "--int8" in args and "--memPoolSize=workspace:512" in args
    assert any(a.startswith("--saveEngine=") for a in args)
    assert "--explicitBatch" not in args and not any(a.startswith("--workspace") for a in args)


def test_real_tensorrt_build(bundle, tmp_path):
    trt = pytest.importorskip(
        "tensorrt", reason="TensorRT is not installed on this machine (Jetson/NVIDIA GPU only)"
    )
    result = trt_mod.build_or_load_engine(trt, bundle, "fp32", EngineCache(tmp_path))
    assert result.built and result.path.stat().st_size > 0
