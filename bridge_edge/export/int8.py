"""fp32 ONNX -> int8 Q/DQ ONNX by ONNX Runtime static quantization.

Every quantize_static argument whose default changed across releases is passed explicitly
(quant_format, activation_type, weight_type, calibrate_method; docs/bundles.md). ``quant_pre_process``
(shape inference + graph optimisation) runs first. Op types named in the recipe are left in
float; everything else present in the graph is quantized. TensorRT builds such a Q/DQ graph
directly (explicit quantization), so no calibrator exists anywhere in this project.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge_edge.errors import ModelError
from bridge_edge.export.calibration import QuantSettings
from bridge_edge.export.onnx_export import INPUT_NAME

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Int8Result:
    path: Path
    pre_processed: bool
    op_types_quantized: list[str]
    op_types_excluded: list[str]
    nodes_excluded: int
    activation_matmuls_excluded: int


class _WindowReader:
    """CalibrationDataReader over (N, L) windows, a few at a time, every batch the same size.

    ORT's histogram calibrators (Percentile, Entropy) stack each node's outputs over all batches
    with ``np.asarray``; a shorter last batch (22 windows in batches of 16: 16 + 6) makes that
    an inhomogeneous-shape ValueError inside ORT. So the batch is the largest size <= ``batch``
    that divides N (1 for a prime N: slower, still exact)."""

    def __init__(self, windows: np.ndarray, batch: int = 16) -> None:
        size = even_batch(len(windows), batch)
        self._batches = iter([windows[i : i + size] for i in range(0, len(windows), size)])

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}


def even_batch(n: int, largest: int) -> int:
    """The largest batch size <= ``largest`` that splits ``n`` windows into equal batches."""
    return next(b for b in range(min(largest, max(n, 1)), 0, -1) if n % b == 0)


def quantize_int8(
    fp32_path: Path, int8_path: Path, windows: np.ndarray, settings: QuantSettings
) -> Int8Result:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="bridge-edge-int8-") as tmp:
        pre_path = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=False)
            source, pre_processed = pre_path, True
        except Exception as err:  # pre-processing is an optimisation; quantizing without it still works
            log.warning(
                "quant_pre_process failed (%s: %s); quantizing the exported graph as is",
                type(err).__name__,
                err,
            )
            source, pre_processed = Path(fp32_path), False

        graph = onnx.load(str(source), load_external_data=False).graph
        present = sorted({n.op_type for n in graph.node})
        excluded = sorted(set(present) & set(settings.exclude_op_types))
        quantized = [t for t in present if t in quantizable_op_types() and t not in excluded]
        excluded_nodes = activation_matmuls(graph) if settings.exclude_activation_matmuls else []
        module_nodes = _module_nodes(fp32_path, graph, settings.exclude_modules)
        excluded_nodes += [n for n in module_nodes if n not in excluded_nodes]
        try:
            quantize_static(
                str(source),
                str(int8_path),
                _WindowReader(windows),
                quant_format=QuantFormat[settings.quant_format],
                op_types_to_quantize=quantized,
                per_channel=settings.per_channel,
                reduce_range=False,
                activation_type=QuantType[settings.activation_type],
                weight_type=QuantType[settings.weight_type],
                calibrate_method=CalibrationMethod[settings.calibrate_method],
                nodes_to_exclude=excluded_nodes,
                extra_options={
                    "ActivationSymmetric": settings.activation_symmetric,
                    "WeightSymmetric": True,
                    # Biases stay float: TensorRT's ONNX parser has no int32 DequantizeLinear,
                    # and ORT still fuses Q/DQ Conv/MatMul with a float bias.
                    "QuantizeBias": False,
                },
            )
        except Exception as err:
            raise ModelError(
                f"int8 quantization failed ({type(err).__name__}: {err}); expected ORT to quantize "
                f"{fp32_path.name} with {settings}",
                model=str(fp32_path),
                reason=str(err),
            ) from err
    return Int8Result(
        path=Path(int8_path),
        pre_processed=pre_processed,
        op_types_quantized=quantized,
        op_types_excluded=excluded,
        nodes_excluded=sum(n.op_type in excluded for n in graph.node) + len(excluded_nodes),
        activation_matmuls_excluded=len(excluded_nodes),
    )


def quantizable_op_types() -> set[str]:
    """ORT's QDQ registry plus the element-wise ops its default QDQ handler quantizes on request."""
    from onnxruntime.quantization.registry import QDQRegistry

    return set(QDQRegistry) | {"Add", "Mul", "Softmax"}


def activation_matmuls(graph) -> list[str]:
    """Names of MatMul nodes with no constant input (activation x activation, as in attention)."""
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not constants.intersection(n.input)]


def _module_nodes(fp32_path: Path, graph, modules: tuple[str, ...]) -> list[str]:
    """Nodes of ``graph`` (what is quantized) that came from ``modules``, found in the exported
    ``fp32_path``: ORT's pre-processing keeps node names but drops the exporter's module scopes,
    so searching the pre-processed graph found nothing. A module that matches no node (a wrong
    path, or a source such as ORT's fused graph that carries no scopes) is an error: an exclusion
    that silently does nothing would ship int8 where float was asked."""
    if not modules:
        return []
    import onnx

    scoped = onnx.load(str(fp32_path), load_external_data=False).graph
    present = {n.name for n in graph.node}
    found = {m: [n for n in nodes_in_modules(scoped, (m,)) if n in present] for m in modules}
    missing = [m for m, nodes in found.items() if not nodes]
    if missing:  # a ModelError: the int8 ladder records this attempt as failed, with this reason
        raise ModelError(
            f"int8 exclude_modules {missing} match no node of {fp32_path.name}; expected module paths of "
            "the composed model as the exporter names them (e.g. 'new_model', "
            "'old_model.upper_transformer.layers.2'), in a graph that still carries the exporter's scopes",
            model=str(fp32_path),
            reason=f"exclude_modules {missing} match no node",
        )
    return list(dict.fromkeys(n for nodes in found.values() for n in nodes))


def nodes_in_modules(graph, modules: tuple[str, ...]) -> list[str]:
    """Names of nodes that came from one of ``modules`` (paths inside the composed model).

    The dynamo exporter records each node's module path in its ``name_scopes`` metadata
    (prefixed by the export wrapper's ``composed``); the TorchScript exporter puts it in the
    node name ("/composed/new_model/...").
    """
    if not modules:
        return []
    wanted = [f"composed.{m}" for m in modules]
    names = []
    for node in graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        path = node.name.replace("/", ".")
        if any(f"'{w}'" in scopes or f"'{w}." in scopes or f".{w}." in path for w in wanted):
            names.append(node.name)
    return names
