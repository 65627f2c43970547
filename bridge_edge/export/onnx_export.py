"""Composed torch module -> ONNX (explicit opset, dynamic batch, named I/O) + parity vs torch.

The graph has input ``ppg`` (batch, L) float32 and outputs ``probs`` (batch, K) and, when the
composed module has a ``bridge`` submodule, ``bridge`` (batch, ...): the bridge's output, a
diagnostic used to report how far fp16/int8 move the bridge (cosine vs fp32). Runtimes read
``probs`` (always ``outputs[0]``); asking ONNX Runtime for it alone costs nothing extra because
the bridge output is upstream of it anyway.

The torch.export-based exporter (``dynamo=True``) is tried first; if it fails the TorchScript
exporter is used, and the manifest records which one produced the file.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bridge_edge.errors import ModelError

log = logging.getLogger(__name__)

INPUT_NAME = "ppg"
OUTPUT_NAME = "probs"
BRIDGE_OUTPUT_NAME = "bridge"
DEFAULT_OPSET = 18
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    path: Path
    opset: int
    exporter: str  # "dynamo" | "torchscript"
    output_names: list[str]
    fallback_reason: str  # why dynamo was not used ("" when it was)


class _WithBridgeOutput(torch.nn.Module):
    """Returns (probs, bridge output); the bridge output is read by a forward hook on ``bridge``.

    The hook lives only inside ``exportable``'s ``with`` block (export or reference run); the
    composed module itself stays hook-free.
    """

    def __init__(self, composed: torch.nn.Module) -> None:
        super().__init__()
        self.composed = composed
        self._bridge_out: torch.Tensor | None = None

    def keep(self, _module, _inputs, output) -> None:
        self._bridge_out = output[0] if isinstance(output, tuple) else output

    def forward(self, x: torch.Tensor):
        probs = self.composed(x)
        return probs, self._bridge_out


@contextlib.contextmanager
def exportable(composed: torch.nn.Module) -> Iterator[tuple[torch.nn.Module, list[str]]]:
    """The module to export and its output names (``bridge`` too when the module has one)."""
    if not isinstance(getattr(composed, "bridge", None), torch.nn.Module):
        yield composed.eval(), [OUTPUT_NAME]
        return
    wrapper = _WithBridgeOutput(composed).eval()
    handle = composed.bridge.register_forward_hook(wrapper.keep)
    try:
        yield wrapper, [OUTPUT_NAME, BRIDGE_OUTPUT_NAME]
    finally:
        handle.remove()


def export_rewrites(composed: torch.nn.Module):
    """The module's exact rewrites for deployment (``ComposedModel.export_rewrites``), if it has
    any: the export runs inside them, the parity check (``torch_outputs``) outside, so it compares
    the rewritten graph with the model as trained."""
    rewrites = getattr(composed, "export_rewrites", None)
    return rewrites() if callable(rewrites) else contextlib.nullcontext()


def export_onnx(
    composed: torch.nn.Module, example: np.ndarray, path: Path, opset: int = DEFAULT_OPSET
) -> ExportResult:
    """Write ``path``; ``example`` is a (B, L) float32 batch with B >= 2 (the batch dim is dynamic)."""
    x = torch.from_numpy(np.ascontiguousarray(example[:2], dtype=np.float32))
    path = Path(path)
    with export_rewrites(composed), exportable(composed) as (module, output_names):
        try:
            _export_dynamo(module, x, path, opset, output_names)
            _finalize(path)
            return ExportResult(path, opset, "dynamo", output_names, "")
        except Exception as err:  # the exporter raises many types; any failure means "try the other one"
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
            log.warning("dynamo ONNX export failed (%s); falling back to the TorchScript exporter", reason)
    try:
        with export_rewrites(composed), exportable(composed) as (module, output_names):
            _export_torchscript(module, x, path, opset, output_names)
        _finalize(path)
    except Exception as err:
        raise ModelError(
            f"ONNX export failed with both exporters ({type(err).__name__}: {err}); expected a traceable "
            f"module mapping (B, L) float32 to (B, K)",
            model=type(composed).__name__,
            reason=str(err),
        ) from err
    return ExportResult(path, opset, "torchscript", output_names, reason)


def _export_dynamo(module, x, path: Path, opset: int, output_names: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (x,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            external_data=False,
            verbose=False,
        )
    program.save(str(path))


def _export_torchscript(module, x, path: Path, opset: int, output_names: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in output_names}},
        )


def _finalize(path: Path) -> None:
    """Exact graph rewrites every export gets (see graph_fixes)."""
    import onnx

    from bridge_edge.export.graph_fixes import (
        name_batch_dim,
        strip_build_metadata,
        zero_pads_before_maxpool_as_concat,
    )

    model = onnx.load(str(path))
    rewritten = zero_pads_before_maxpool_as_concat(model)
    if rewritten:
        log.info("rewrote %d zero Pad -> MaxPool pairs as Concat (ONNX Runtime pad-fusion bug)", rewritten)
    name_batch_dim(model)
    strip_build_metadata(model)
    onnx.save(model, str(path))


def torch_outputs(composed: torch.nn.Module, x: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """Reference outputs (probs and, if exposed, bridge) from torch, in batches."""
    with exportable(composed) as (module, names), torch.inference_mode():
        chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for i in range(0, len(x), batch):
            out = module(torch.from_numpy(np.ascontiguousarray(x[i : i + batch], dtype=np.float32)))
            out = out if isinstance(out, tuple) else (out,)
            for n, o in zip(names, out, strict=True):
                chunks[n].append(o.float().numpy())
    return {n: np.concatenate(c) for n, c in chunks.items()}


def ort_outputs(onnx_path: Path, x: np.ndarray, batch: int = 64, threads: int = 1) -> dict[str, np.ndarray]:
    """Every graph output from ONNX Runtime (CPU), in batches, as float32."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    in_name = sess.get_inputs()[0].name
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(0, len(x), batch):
        outs = sess.run(names, {in_name: np.ascontiguousarray(x[i : i + batch], np.float32)})
        for n, o in zip(names, outs, strict=True):
            chunks[n].append(o.astype(np.float32))
    return {n: np.concatenate(c) for n, c in chunks.items()}


def check_parity(reference: np.ndarray, onnx_probs: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> dict:
    """Max |torch - ONNX| over the windows; raises ModelError above ``tolerance``."""
    max_abs = float(np.max(np.abs(reference.astype(np.float64) - onnx_probs)))
    record = {
        "reference": "torch fp32 eager",
        "max_abs_diff": max_abs,
        "tolerance": tolerance,
        "n_windows": len(reference),
    }
    if not max_abs <= tolerance:
        raise ModelError(
            f"ONNX fp32 output differs from torch by {max_abs:.3g} (max |Δ|); expected <= {tolerance}",
            model="composed",
            reason="parity",
            **record,
        )
    return record
