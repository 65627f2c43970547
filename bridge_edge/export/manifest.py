"""The bundle manifest (docs/bundles.md) as typed dataclasses, with lossless JSON round trip.

numpy only; the device reads this without torch or onnx. Unknown top-level keys written by a
newer exporter are kept in ``extra`` so an older reader neither fails nor drops them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bridge_edge.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


def onnx_file_name(precision: str) -> str:
    return f"model.{precision}.onnx"


@dataclass(frozen=True)
class InputSection:
    modality: str  # "ppg"
    fs: float  # model rate, Hz
    window_s: float
    hop_s: float
    channels: list[str]
    units: str
    preprocess: dict  # signals.preprocess.PreprocessSpec.as_dict(): {version, steps, ...}

    @property
    def n_samples(self) -> int:
        return int(round(self.fs * self.window_s))


@dataclass(frozen=True)
class OutputSection:
    kind: str  # "class_probabilities"
    labels: list[str]
    positive_label: str | None
    window_reduction: str = ""  # how a per-sample head became one window output


@dataclass(frozen=True)
class BridgeSection:
    rank: int
    prototypes: int
    params: int


@dataclass(frozen=True)
class ModelsSection:
    old: str
    new: str
    k_in: int | str
    k_out: int | str
    bridge: BridgeSection


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # ONNX element type name, e.g. "float32"
    shape: list[int | str]  # a str is a symbolic dim ("batch")


@dataclass(frozen=True)
class OnnxSection:
    opset: int
    exporter: str  # "dynamo" | "torchscript"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]  # outputs[0] is the task output; later ones are diagnostic


@dataclass(frozen=True)
class PrecisionMetrics:
    """Accuracy of one precision on the held-out windows (fp32 is the reference)."""

    n_windows: int
    macro_f1: float
    auroc: float | None  # macro one-vs-rest over the classes present
    auroc_positive: float | None  # positive label vs rest
    agreement_with_fp32: float
    max_abs_diff_vs_fp32: float
    bridge_cosine_with_fp32: float | None  # mean cosine of the bridge output, None if not exposed
    size_bytes: int


@dataclass(frozen=True)
class QuantizationSection:
    """How model.int8.onnx was made (ORT static quantization, Q/DQ)."""

    tool: str
    quant_format: str
    activation_type: str
    weight_type: str
    calibrate_method: str
    per_channel: bool
    activation_symmetric: bool
    calibration_windows: int
    calibration_recipe: str
    pre_processed: bool  # quant_pre_process (shape inference + optimisation) ran first
    op_types_quantized: list[str]
    op_types_excluded: list[str]  # present in the graph, kept in float on purpose
    nodes_excluded: int
    activation_matmuls_excluded: int  # attention-style MatMuls kept in float (see calibration.py)
    modules_excluded: list[str]  # module paths of the composed model kept in float
    attempts: list[dict]  # every setting tried, with its accuracy and whether it met the floor


@dataclass
class Manifest:
    schema_version: int
    name: str
    version: str
    created: str  # ISO-8601 UTC
    recipe_hash: str
    input: InputSection
    output: OutputSection
    models: ModelsSection
    onnx: OnnxSection
    precisions: list[str]
    files: dict[str, str]  # file name -> sha256 hex
    sizes: dict[str, int]  # file name -> bytes (so truncation is named as such)
    metrics: dict[str, PrecisionMetrics]
    parity: dict  # {"reference": "torch", "max_abs_diff": float, "tolerance": float, "n_windows": int}
    golden: dict  # {"n_windows": int, "labels_present": [...], "atol": {precision: float}}
    quantization: QuantizationSection | None = None
    licenses: list[str] = field(default_factory=list)  # notice files shipped in the bundle
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = MANIFEST_NAME) -> Manifest:
        try:
            if not isinstance(d, dict):
                raise TypeError(f"the manifest is a JSON {type(d).__name__}, not an object")
            if d.get("schema_version") != SCHEMA_VERSION:
                raise BundleError(
                    f"{where}: schema_version {d.get('schema_version')!r} is not supported; "
                    f"expected {SCHEMA_VERSION}",
                    file=MANIFEST_NAME,
                    problems=["schema_version"],
                )
            onnx = d["onnx"]
            models = d["models"]
            known = {f.name for f in fields(cls)}
            quant = d.get("quantization")
            return cls(
                schema_version=d["schema_version"],
                name=d["name"],
                version=d["version"],
                created=d["created"],
                recipe_hash=d["recipe_hash"],
                input=InputSection(**d["input"]),
                output=OutputSection(**d["output"]),
                models=ModelsSection(
                    **{**models, "bridge": BridgeSection(**models["bridge"])},
                ),
                onnx=OnnxSection(
                    opset=onnx["opset"],
                    exporter=onnx["exporter"],
                    inputs=[TensorSpec(**t) for t in onnx["inputs"]],
                    outputs=[TensorSpec(**t) for t in onnx["outputs"]],
                ),
                precisions=list(d["precisions"]),
                files=dict(d["files"]),
                sizes={k: int(v) for k, v in d["sizes"].items()},
                metrics={k: PrecisionMetrics(**v) for k, v in d["metrics"].items()},
                parity=dict(d["parity"]),
                golden=dict(d["golden"]),
                quantization=QuantizationSection(**quant) if quant else None,
                licenses=list(d.get("licenses", [])),
                extra={k: v for k, v in d.items() if k not in known},
            )._typed()
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as err:
            raise BundleError(
                f"{where}: malformed manifest ({type(err).__name__}: {err}); expected the docs/bundles.md "
                f"schema version {SCHEMA_VERSION}",
                file=MANIFEST_NAME,
                problems=[str(err)],
            ) from err

    def _typed(self) -> Manifest:
        """TypeError naming the first field of the wrong JSON type (from_dict makes it a BundleError)."""
        number = (int, float)
        checks = [
            ("name", self.name, str),
            ("version", self.version, str),
            ("created", self.created, str),
            ("recipe_hash", self.recipe_hash, str),
            ("input.fs", self.input.fs, number),
            ("input.window_s", self.input.window_s, number),
            ("input.hop_s", self.input.hop_s, number),
            ("input.channels", self.input.channels, list),
            ("input.preprocess", self.input.preprocess, dict),
            ("output.labels", self.output.labels, list),
            ("output.positive_label", self.output.positive_label, (str, type(None))),
            ("golden", self.golden, dict),
            ("parity", self.parity, dict),
        ]
        checks += [(f"precisions[{i}]", p, str) for i, p in enumerate(self.precisions)]
        checks += [(f"output.labels[{i}]", v, str) for i, v in enumerate(self.output.labels)]
        checks += [(f"files[{k!r}]", v, str) for k, v in self.files.items()]
        for t in self.onnx.inputs + self.onnx.outputs:
            checks += [
                (f"onnx tensor {t.name!r}", t.name, str),
                (f"onnx tensor {t.name!r} shape", t.shape, list),
            ]
        for key, value, types in checks:
            if not isinstance(value, types) or (isinstance(value, bool) and types is number):
                raise TypeError(f"{key} is {value!r}; expected a JSON {getattr(types, '__name__', 'number')}")
        return self

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            text = Path(path).read_bytes()
        except OSError as err:
            raise BundleError(
                f"{path}: cannot read the manifest ({err}); expected a JSON file",
                file=MANIFEST_NAME,
                path=str(path),
                problems=[str(err)],
            ) from err
        return cls.parse(text, where=str(path))

    @classmethod
    def parse(cls, text: bytes | str, *, where: str = MANIFEST_NAME) -> Manifest:
        """A manifest from JSON text; anything else is one BundleError."""
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as err:  # JSONDecodeError and bad UTF-8 are ValueErrors
            raise BundleError(
                f"{where}: the manifest is not JSON ({str(err)[:200]}); expected a JSON object",
                file=MANIFEST_NAME,
                path=where,
                problems=[str(err)[:200]],
            ) from err
        return cls.from_dict(raw, where=where)
