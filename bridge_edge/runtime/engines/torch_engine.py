"""Development engine: the composed torch fp32 module, run directly (the benches' reference).

Rebuilt from a bundle's torch reference (``torch/composed.safetensors`` + ``torch/composed.json``,
``bridge_edge.export.torch_reference``), or from a fit RUN_DIR (``bridge.compose.load_composed``).
It needs torch (the ``train`` extra); with neither source ``select_engine`` falls back to ONNX
Runtime and says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge_edge.errors import EngineUnavailableError
from bridge_edge.runtime.engines.base import Engine


class TorchEngine(Engine):
    name = "torch"
    precision = "fp32"

    def __init__(self, run_dir: Path | None, threads: int = 1, *, model=None, source: str = "") -> None:
        torch = _torch()
        torch.set_num_threads(threads)
        if model is None:
            from bridge_edge.bridge.compose import load_composed

            model, _ = load_composed(run_dir, device="cpu")
            source = f"composed module from {run_dir}"
        self._model = model
        self.description = f"torch {torch.__version__} CPU, {source}"

    @classmethod
    def from_bundle(cls, bundle, threads: int = 1) -> TorchEngine:
        """The composed fp32 module rebuilt from the bundle's torch reference."""
        _torch()
        from bridge_edge.export.torch_reference import load_torch_reference

        t = bundle.manifest.torch
        model = load_torch_reference(bundle.path, t.spec, t.weights)
        return cls(
            None, threads, model=model, source=f"rebuilt from {bundle.name} {bundle.version}'s {t.weights}"
        )

    def to_device(self, device: str) -> None:
        """Run on ``device`` (e.g. "cuda"); ``infer`` still takes and gives numpy arrays, so each
        call includes the copies to and from the device (what a caller of the runtime pays)."""
        torch = _torch()
        self._model.to(device)
        where = torch.device(device)
        self.device = str(where)
        name = torch.cuda.get_device_name(where) if where.type == "cuda" else where.type.upper()
        self.description = self.description.replace(" CPU,", f" {name},", 1)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(np.asarray(batch, np.float32))

    def flops_beyond_export(self, n_samples: int) -> int:
        """FLOPs per window this module, as written, runs beyond its exported graph: what the
        export's exact rewrites save (export.onnx_export.export_rewrites), by torch's FLOP counter
        on one window with and without them. 0 for a module without rewrites."""
        torch = _torch()
        from torch.utils.flop_counter import FlopCounterMode

        from bridge_edge.export.onnx_export import export_rewrites

        x = torch.zeros(1, n_samples, device=next(self._model.parameters()).device)

        def counted() -> int:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self._model(x)
            return counter.get_total_flops()

        as_written = counted()
        with export_rewrites(self._model):
            return as_written - counted()


def _torch():
    try:
        import torch
    except ImportError as err:
        raise EngineUnavailableError(
            "torch is not installed; the torch engine is for development machines",
            engine="torch",
            package="torch",
            install_hint="pip install 'bridge-edge[train]'",
        ) from err
    return torch
