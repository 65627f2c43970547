"""The one interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Engine(ABC):
    """Runs the bundle's model: ``infer((B, L) float32 windows) -> (B, K) class probabilities``."""

    name: str  # "ort", "trt", "torch"
    precision: str  # "fp32", "fp16", "int8"
    description: str = ""  # provider, threads, device: shown in stats and logs
    device: str = "cpu"  # where ``infer`` computes: "cpu", or a CUDA device (TensorRT, torch on a GPU)

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:  # noqa: B027 - optional hook; most engines hold nothing to release
        """Release native resources (sessions, CUDA buffers)."""
