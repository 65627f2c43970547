"""Development engine: the composed torch module of a fit RUN_DIR, run directly.

Useful to compare the live pipeline against the model before export. It needs torch and the
run directory (``bridge_edge.bridge.compose.load_composed``); without a RUN_DIR,
``select_engine`` falls back to ONNX Runtime and says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge_edge.errors import EngineUnavailableError
from bridge_edge.runtime.engines.base import Engine


class TorchEngine(Engine):
    name = "torch"
    precision = "fp32"

    def __init__(self, run_dir: Path, threads: int = 1) -> None:
        try:
            import torch
        except ImportError as err:
            raise EngineUnavailableError(
                "torch is not installed; the torch engine is for development machines",
                engine="torch",
                package="torch",
                install_hint="pip install 'bridge-edge[train]'",
            ) from err
        from bridge_edge.bridge.compose import load_composed

        torch.set_num_threads(threads)
        self._model, _ = load_composed(run_dir, device="cpu")
        self.description = f"torch {torch.__version__} CPU, composed module from {run_dir}"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(np.asarray(batch, np.float32))
