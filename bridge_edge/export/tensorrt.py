"""TensorRT: build an engine from a bundle's fp16 or Q/DQ ONNX and cache it (the runner that runs
it by tensor name is ``bridge_edge.runtime.engines.trt.TrtEngineRunner``).

Everything here takes the ``tensorrt`` module as an argument (``trt``), so the logic runs
against the real library on a Jetson and against a scripted stand-in in the tests; only
``load_tensorrt()`` imports it. Facts followed (docs/bundles.md):
- TRT 8.6 (JetPack 6.0) needs the EXPLICIT_BATCH network flag; TRT >= 10 ignores/deprecates it.
- INT8 comes only from Q/DQ nodes in the ONNX (explicit quantization); there is no calibrator.
- FP16 uses BuilderFlag.FP16 while it exists; where it is gone (TRT 11) the fp16 ONNX is built
  as a strongly typed network instead. That choice lives in ``_network_flags``/``_precision_flags``.
- Workspace via ``set_memory_pool_limit``; one optimisation profile for the dynamic batch.
- Named I/O only: num_io_tensors, set_input_shape, set_tensor_address, execute_async_v3.
- A stale key or an engine that deserializes to None is rebuilt, with a warning.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bridge_edge.errors import EngineError, EngineUnavailableError
from bridge_edge.export.bundle import Bundle, sha256_file
from bridge_edge.export.engine_cache import EngineCache, EngineKey, ProfileShapes

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "TensorRT is not installed: on a Jetson use JetPack's python3-libnvinfer (sudo apt install "
    "python3-libnvinfer; venv with --system-site-packages), "
    "on x86 with an NVIDIA GPU pip install 'tensorrt==10.*'"
)


class TensorRTModule(Protocol):
    """The part of the ``tensorrt`` module this file uses (the real module satisfies it)."""

    __version__: str
    Logger: Any
    Builder: Any
    OnnxParser: Any
    Runtime: Any
    BuilderFlag: Any
    MemoryPoolType: Any
    NetworkDefinitionCreationFlag: Any
    TensorIOMode: Any


def load_tensorrt() -> TensorRTModule:
    try:
        import tensorrt
    except ImportError as err:
        raise EngineUnavailableError(
            INSTALL_HINT, engine="tensorrt", package="tensorrt", install_hint=INSTALL_HINT
        ) from err
    return tensorrt


def trt_major(trt: TensorRTModule) -> int:
    return int(str(trt.__version__).split(".")[0])


# --- GPU identity (part of the cache key) ----------------------------------------------------


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str


def detect_gpu() -> GpuInfo:
    """GPU name and compute capability from nvidia-smi, else the Jetson device tree."""
    smi = shutil.which("nvidia-smi")
    line = ""
    if smi:
        out = subprocess.run(
            [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    model = Path("/proc/device-tree/model")
    return gpu_from(line, model.read_text(errors="replace") if model.exists() else "")


# The same facts gathered on a deploy target through its shell (see gpu_from).
GPU_PROBE_SHELL = (
    "nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -n 1; "
    "echo ---; cat /proc/device-tree/model 2>/dev/null; true"
)


def gpu_from(smi_line: str, device_tree_model: str) -> GpuInfo:
    """GpuInfo from nvidia-smi's ``name, compute_cap`` line, else a Jetson device-tree model."""
    if "," in smi_line:
        name, cc = (s.strip() for s in smi_line.split(",", 1))
        return GpuInfo(name, cc)
    name = device_tree_model.strip("\x00 \n")
    if name:  # Jetson: nvidia-smi may lack compute_cap; Orin is sm_87, Xavier sm_72
        return GpuInfo(name, "8.7" if "Orin" in name else "7.2" if "Xavier" in name else "unknown")
    raise EngineError(
        "cannot identify the GPU (no nvidia-smi, no Jetson device tree); expected an NVIDIA GPU",
        engine="tensorrt",
        reason="no GPU",
    )


# --- build -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildOptions:
    workspace_bytes: int = 1 << 30
    optimization_level: int = 3

    def as_dict(self, trt: TensorRTModule, precision: str) -> dict:
        return {
            "workspace_bytes": self.workspace_bytes,
            "optimization_level": self.optimization_level,
            "network_flags": _network_flag_names(trt, precision),
            "precision_flags": _precision_flag_names(trt, precision),
        }


def _strongly_typed(trt: TensorRTModule) -> bool:
    return not hasattr(trt.BuilderFlag, "FP16")  # TRT 11: precision flags are gone


def _network_flag_names(trt: TensorRTModule, precision: str) -> list[str]:
    names = []
    if trt_major(trt) < 10:
        names.append("EXPLICIT_BATCH")  # TRT 8.6 (JetPack 6.0) still needs it; deprecated in 10
    if _strongly_typed(trt):
        names.append("STRONGLY_TYPED")
    return names


def _precision_flag_names(trt: TensorRTModule, precision: str) -> list[str]:
    if _strongly_typed(trt):
        return []  # dtypes come from the fp16 / Q/DQ graph itself
    # Q/DQ graphs still need the INT8 flag on weakly typed TRT; FP16 lets unquantized layers run in half.
    return {"fp16": ["FP16"], "int8": ["INT8", "FP16"]}.get(precision, [])


def build_serialized_engine(
    trt: TensorRTModule, onnx_path: Path, precision: str, profile: ProfileShapes, options: BuildOptions
) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in _network_flag_names(trt, precision):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(
            f"TensorRT cannot parse {onnx_path.name}: {errors}", engine="tensorrt", reason=errors
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    config.builder_optimization_level = options.optimization_level
    for name in _precision_flag_names(trt, precision):
        config.set_flag(getattr(trt.BuilderFlag, name))
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(profile.input_name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(opt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(
            f"TensorRT failed to build {onnx_path.name} ({precision}); see its log above",
            engine="tensorrt",
            reason="build_serialized_network returned None",
        )
    return bytes(plan)


@dataclass(frozen=True)
class EngineBuild:
    path: Path
    key: str
    built: bool  # False: reused from the cache
    reason: str  # why it was built, or "cache hit"
    plan: bytes


def engine_key(
    trt: TensorRTModule,
    onnx_path: Path,
    precision: str,
    profile: ProfileShapes,
    options: BuildOptions,
    gpu: GpuInfo,
) -> EngineKey:
    return EngineKey(
        onnx_sha256=sha256_file(onnx_path),
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=precision,
        profile=profile,
        builder_options=options.as_dict(trt, precision),
    )


def tensorrt_of_version(version: str) -> TensorRTModule:
    """What the cache key reads from the ``tensorrt`` module, for a TensorRT known only by its
    version (``trtexec`` on a deploy target, where Python may not see TensorRT)."""
    from types import SimpleNamespace

    major = int(version.split(".")[0])
    flags = SimpleNamespace(FP16="FP16", INT8="INT8") if major < 11 else SimpleNamespace()
    return SimpleNamespace(__version__=version, BuilderFlag=flags)  # type: ignore[return-value]


def bundle_engine_key(
    trt: TensorRTModule,
    bundle: Bundle,
    precision: str,
    gpu: GpuInfo,
    *,
    max_batch: int = 8,
    workspace_bytes: int = 1 << 30,
) -> tuple[str, EngineKey]:
    """The cache label and key of the bundle's engine; ``build_or_load_engine`` and deploy's
    trtexec path both use it, so an engine lands where the runtime looks for it."""
    spec = bundle.manifest.onnx.inputs[0]
    n = bundle.manifest.input.n_samples
    profile = ProfileShapes(spec.name, (1, n), (1, n), (max_batch, n))
    options = BuildOptions(workspace_bytes=workspace_bytes)
    key = engine_key(trt, bundle.onnx_path(precision), precision, profile, options, gpu)
    return f"{bundle.name}-{bundle.version}", key


def build_or_load_engine(
    trt: TensorRTModule,
    bundle: Bundle,
    precision: str,
    cache: EngineCache,
    *,
    max_batch: int = 8,
    workspace_bytes: int = 1 << 30,
    gpu: GpuInfo | None = None,
) -> EngineBuild:
    """The cached engine if its key matches and it deserializes; otherwise a fresh build."""
    onnx_path = bundle.onnx_path(precision)
    label, key = bundle_engine_key(
        trt, bundle, precision, gpu or detect_gpu(), max_batch=max_batch, workspace_bytes=workspace_bytes
    )
    profile = key.profile
    options = BuildOptions(workspace_bytes=workspace_bytes)
    entry = cache.entry(label, key)
    plan, reason = cache.load(entry, key)
    if plan is not None:
        if deserialize(trt, plan) is not None:
            return EngineBuild(entry.path, key.digest(), False, reason, plan)
        reason = "cached engine does not deserialize (corrupt or built by another TensorRT)"
    if reason != "no cached engine":
        log.warning("rebuilding TensorRT engine %s: %s", entry.path.name, reason)
    plan = build_serialized_engine(trt, onnx_path, precision, profile, options)
    if deserialize(trt, plan) is None:
        raise EngineError(
            "the freshly built engine does not deserialize; expected a usable plan",
            engine="tensorrt",
            reason="deserialize returned None",
        )
    cache.store(entry, key, plan)
    return EngineBuild(entry.path, key.digest(), True, reason, plan)


def deserialize(trt: TensorRTModule, plan: bytes):
    """ICudaEngine, or None when the plan is corrupt or from another TensorRT/GPU."""
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    try:
        return runtime.deserialize_cuda_engine(plan)
    except Exception:  # some TRT versions raise instead of returning None
        return None
