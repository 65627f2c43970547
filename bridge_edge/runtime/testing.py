"""Small stand-ins for tests and benches: an array-backed source and a tiny ONNX bundle.

``ArraySource`` yields chunks of a numpy array (optionally with device time, gaps, pacing).
``make_tiny_bundle`` writes a sealed bundle around a 1-layer ONNX classifier with the bundle I/O
convention (input ``ppg`` (B, L) float32 preprocessed window -> output ``probs`` (B, K)).
Needs the ``onnx`` package (dev extra).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bridge_edge.devices.base import Chunk, SourceStats, StreamInfo
from bridge_edge.signals.preprocess import preprocess_spec


class ArraySource:
    """Chunks of ``samples`` (n, channels) at ``fs``; ``speed`` 0 = as fast as possible.

    ``start_delay_s`` delays the first chunk (so paced streams do not all complete their
    windows in the same instant)."""

    def __init__(
        self,
        samples: np.ndarray,
        fs: float,
        chunk_sizes: Sequence[int] = (25,),
        channels: tuple[str, ...] = ("ppg",),
        device_clock: bool = False,
        gaps: dict[int, int] | None = None,  # chunk number -> samples missing before it
        speed: float = 0.0,
        name: str = "array",
        start_delay_s: float = 0.0,
    ) -> None:
        self.samples = np.asarray(samples, np.float32).reshape(len(samples), -1)
        self.info = StreamInfo(name=name, fs=float(fs), channels=channels, units=("a.u.",) * len(channels))
        self.stats = SourceStats()
        self.chunk_sizes = list(chunk_sizes)
        self.device_clock = device_clock
        self.gaps = gaps or {}
        self.speed = speed
        self.start_delay_s = start_delay_s
        self._closed = False

    def __iter__(self) -> Iterator[Chunk]:
        time.sleep(self.start_delay_s)
        t0 = time.monotonic_ns()
        pos, k, timeline = 0, 0, 0
        while pos < len(self.samples) and not self._closed:
            n = self.chunk_sizes[k % len(self.chunk_sizes)]
            gap = self.gaps.get(k, 0)
            timeline += gap
            block = self.samples[pos : pos + n]
            idx = timeline + np.arange(len(block))
            if self.speed > 0:  # absolute schedule: no accumulated sleep error
                due = t0 + int((idx[-1] + 1) / self.info.fs / self.speed * 1e9)
                time.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
            device = (idx * (1e9 / self.info.fs)).astype(np.int64) if self.device_clock else None
            self.stats.samples += len(block)
            self.stats.chunks += 1
            if gap:
                self.stats.gaps += 1
                self.stats.gap_samples += gap
            yield Chunk(block, time.monotonic_ns(), device, seq=k, gap_before=gap)
            pos += n
            k += 1
            timeline += len(block)

    def close(self) -> None:
        self._closed = True


def make_tiny_bundle(
    out_dir: Path,
    fs: float = 125.0,
    window_s: float = 10.0,
    hop_s: float = 2.0,
    labels: Sequence[str] = ("sinus", "afib", "ectopy"),
    seed: int = 0,
    fixed_batch: int | None = None,
    preprocess: str = "ppg-v2",
):
    """A sealed bundle directory whose ``model.fp32.onnx`` is softmax(window @ W), its input
    preprocessed as ``preprocess`` names; returns the loaded (verified) ``Bundle``."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from bridge_edge.export.bundle import load_bundle, seal
    from bridge_edge.export.manifest import (
        SCHEMA_VERSION,
        BridgeSection,
        InputSection,
        Manifest,
        ModelsSection,
        OnnxSection,
        OutputSection,
        TensorSpec,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    length, k = round(fs * window_s), len(labels)
    w = np.random.default_rng(seed).normal(0, 1 / np.sqrt(length), (length, k)).astype(np.float32)
    batch = fixed_batch if fixed_batch is not None else "batch"
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["ppg", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("ppg", TensorProto.FLOAT, [batch, length])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, k])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out_dir / "model.fp32.onnx")
    golden_x = np.random.default_rng(seed + 1).standard_normal((fixed_batch or 4, length)).astype(np.float32)
    golden_probs = ort.InferenceSession(str(out_dir / "model.fp32.onnx")).run(None, {"ppg": golden_x})[0]
    np.savez(out_dir / "golden.npz", input=golden_x, output_fp32=golden_probs)  # the self-test on load
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        name="tiny",
        version="0.0.1",
        created="2026-01-01T00:00:00Z",
        recipe_hash="tiny",
        input=InputSection(
            "ppg", fs, window_s, hop_s, ["ppg"], "a.u.", preprocess_spec(preprocess, fs).as_dict()
        ),
        output=OutputSection("class_probabilities", list(labels), "afib" if "afib" in labels else None),
        models=ModelsSection("tiny-linear", "none", 0, 0, BridgeSection(0, 0, 0)),
        onnx=OnnxSection(
            17,
            "onnx.helper",
            [TensorSpec("ppg", "float32", [batch, length])],
            [TensorSpec("probs", "float32", [batch, k])],
        ),
        precisions=["fp32"],
        files={},
        sizes={},
        metrics={},
        parity={},
        golden={"n_windows": len(golden_x), "atol": {"fp32": 1e-5}},
    )
    seal(out_dir, manifest)
    return load_bundle(out_dir)
