"""Inference backends behind one interface; ``select_engine`` is the one place one is chosen.

``auto`` tries TensorRT, then ONNX Runtime on the CPU, and logs why each earlier choice was
not taken. Precision ``auto`` takes the bundle's int8 model where it has one (the fastest on
both backends), else fp32. Backend modules import their runtime lazily.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from bridge_edge.errors import ConfigError, CudaBindingsMissingError, EngineError
from bridge_edge.runtime.engines.base import Engine
from bridge_edge.runtime.engines.names import ENGINE_CHOICES, PRECISION_CHOICES, resolve_precision

__all__ = ["ENGINE_CHOICES", "PRECISION_CHOICES", "EngineChoice", "resolve_precision", "select_engine"]

log = logging.getLogger(__name__)


@dataclass
class EngineChoice:
    engine: Engine
    fallbacks: list[str] = field(default_factory=list)  # why earlier candidates were skipped


def select_engine(
    name: str,
    bundle,
    precision: str = "auto",
    threads: int | None = None,
    spinning: bool = False,
    run_dir: Path | None = None,
) -> EngineChoice:
    """Open the engine ``name`` (auto|trt|ort|torch) for ``bundle`` at ``precision``."""
    if name not in ENGINE_CHOICES:
        raise ConfigError(
            f"unknown engine {name!r}; expected one of {', '.join(ENGINE_CHOICES)}",
            key="engine",
            value=name,
            expected=list(ENGINE_CHOICES),
        )
    prec = resolve_precision(precision, list(bundle.manifest.precisions))
    fallbacks: list[str] = []
    if name in ("auto", "trt"):
        try:
            from bridge_edge.runtime.engines.trt import TrtEngine

            return EngineChoice(TrtEngine(bundle, prec), fallbacks)
        except EngineError as err:
            if name == "trt":
                raise
            fallbacks.append(f"trt: {err}")
            # TensorRT present but unusable (e.g. cuda-python missing) is worth a warning
            level = logging.WARNING if isinstance(err, CudaBindingsMissingError) else logging.INFO
            log.log(level, "engine auto: TensorRT not used (%s); falling back to onnxruntime", err)
    if name == "torch":
        from bridge_edge.runtime.engines.torch_engine import TorchEngine

        if run_dir is not None:
            return EngineChoice(TorchEngine(Path(run_dir), threads=threads or 1), fallbacks)
        if bundle.has_torch_weights():
            return EngineChoice(TorchEngine.from_bundle(bundle, threads=threads or 1), fallbacks)
        reason = (
            "torch engine needs the bundle's torch reference (bundles from 0.6 carry it; a wheel "
            "install leaves it out, docs/bundles.md) or a RUN_DIR with the composed module; neither is here"
        )
        fallbacks.append(f"torch: {reason}")
        log.warning("%s; falling back to onnxruntime", reason)
    from bridge_edge.runtime.engines.ort import OrtEngine

    # on the CPU, ORT takes the file laid out for it where the bundle has one (docs/bundles.md, "Targets")
    path = bundle.onnx_path(prec, target="ort-cpu")
    return EngineChoice(OrtEngine(path, prec, threads=threads, spinning=spinning), fallbacks)
