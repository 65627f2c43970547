"""ONNX Runtime on the CPU, tuned for per-window latency (docs/runtime.md).

Pinned ``intra_op_num_threads`` (default: cores - 1, at least 1, so ingest keeps a core),
sequential execution (one model, one request at a time), every graph optimisation on, and
thread spinning configurable (off for power runs: spinning burns CPU while idle).

The CPU memory arena is off by default: with it, ORT keeps the peak of the largest batch ever
run for the life of the session (measured on the default int8 model: 116 MB after batch 1,
1,123 MB after one batch of 64, and still 1,123 MB on batch 1 again). Without it, memory follows
the batch in flight (114 MB back after the batch of 64) at no measurable cost per window on
this machine (docs/runtime.md, "Memory").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from bridge_edge.errors import EngineError, EngineUnavailableError
from bridge_edge.runtime.engines.base import Engine

log = logging.getLogger(__name__)


def default_threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


class OrtEngine(Engine):
    name = "ort"

    def __init__(
        self,
        onnx_path: Path,
        precision: str,
        threads: int | None = None,
        spinning: bool = False,
        memory_arena: bool = False,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise EngineUnavailableError(
                "onnxruntime is not installed; expected it for the ort engine",
                engine="ort",
                package="onnxruntime",
                install_hint="pip install 'bridge-edge[device]'",
            ) from err
        self.precision = precision
        self.threads = threads or default_threads()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = memory_arena  # off: memory is not held at the largest batch's peak
        self.memory_arena = memory_arena
        try:
            self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise EngineError(
                f"onnxruntime cannot load {onnx_path}: {err}", engine="ort", reason=str(err)
            ) from err
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._output_name = self._session.get_outputs()[0].name
        batch_dim = inp.shape[0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        self.description = (
            f"onnxruntime {ort.__version__} CPU, {Path(onnx_path).name}, {self.threads} thread(s), "
            f"spinning={'on' if spinning else 'off'}, arena={'on' if memory_arena else 'off'}"
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._fixed_batch is None or len(batch) == self._fixed_batch:
            return self._session.run([self._output_name], {self._input_name: batch})[0]
        # a model exported with a fixed batch of 1: one call per window
        step = self._fixed_batch
        parts = [
            self._session.run([self._output_name], {self._input_name: batch[i : i + step]})[0]
            for i in range(0, len(batch), step)
        ]
        return np.concatenate(parts)
