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
# What an ONNX file is laid out for (docs/bundles.md, "Targets"): "any" runs everywhere;
# "tensorrt" is symmetric int8 Q/DQ (TensorRT's explicit quantization; ORT runs it too, slower);
# "ort-cpu" is uint8-activation Q/DQ after ORT's transformer fusions (TensorRT rejects it).
TARGETS = ("any", "tensorrt", "ort-cpu")
TORCH_WEIGHTS_NAME = "torch/composed.safetensors"
TORCH_SPEC_NAME = "torch/composed.json"


def onnx_file_name(precision: str, target: str | None = None) -> str:
    """``model.<precision>.onnx``; a per-target variant is ``model.<precision>.<target>.onnx``."""
    return f"model.{precision}.onnx" if target is None else f"model.{precision}.{target}.onnx"


def variant_key(precision: str, target: str) -> str:
    """Key of a per-target variant in golden.npz (``output_<key>``) and in ``golden.atol``."""
    return f"{precision}-{target}"


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
    # The operating point the model files already apply (probabilities x weight per label,
    # renormalised; docs/method.md, "Operating point"): a record, never applied again. None: as trained.
    class_weights: list[float] | None = None


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
    positive_auroc: float | None  # positive label vs rest (bridge.metrics' vocabulary)
    macro_auroc: float | None  # mean one-vs-rest AUROC over the classes present
    agreement_with_fp32: float
    max_abs_diff_vs_fp32: float
    bridge_cosine_with_fp32: float | None  # mean cosine of the bridge output, None if not exposed
    size_bytes: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrecisionMetrics:
        """Also reads older manifests, which wrote ``auroc`` (the macro) and ``auroc_positive``."""
        d = dict(d)
        for old, new in _OLD_METRIC_KEYS.items():
            if old in d:
                value = d.pop(old)
                d.setdefault(new, value)
        return cls(**d)


# metric keys of manifests written before the one metric vocabulary (the shipped 0.6.0 bundle
# among them): read as aliases, never written
_OLD_METRIC_KEYS = {"auroc": "macro_auroc", "auroc_positive": "positive_auroc"}


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


@dataclass(frozen=True)
class VariantSection:
    """A second ONNX file of one precision, laid out for another target (docs/bundles.md)."""

    precision: str  # one of ``precisions``
    target: str  # one of TARGETS
    file: str  # model.<precision>.<target>.onnx
    metrics: PrecisionMetrics  # same held-out windows as ``metrics``
    quantization: QuantizationSection | None = None
    fusions: dict = field(default_factory=dict)  # ORT transformer fusions applied: op -> count

    @property
    def key(self) -> str:
        return variant_key(self.precision, self.target)


@dataclass(frozen=True)
class TorchSection:
    """What torch needs to rebuild the composed fp32 model from the bundle alone."""

    weights: str  # TORCH_WEIGHTS_NAME: the composed module's state dict, float32 safetensors
    spec: str  # TORCH_SPEC_NAME: the composition (bridge.compose.ComposedSpec as JSON)
    tensors: int
    parity_max_abs_diff: float  # rebuilt module vs the exported one on the golden windows


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
    # ONNX file -> target, for every model file (absent in bundles before 0.6: then every
    # file's target is "any", except an int8 file, which is "tensorrt" when its activations are
    # symmetric int8; see ``target_of``)
    targets: dict[str, str] = field(default_factory=dict)
    variants: list[VariantSection] = field(default_factory=list)
    torch: TorchSection | None = None
    extra: dict = field(default_factory=dict)

    def target_of(self, file: str) -> str:
        if file in self.targets:
            return self.targets[file]
        q = self.quantization
        if file == onnx_file_name("int8") and q is not None:
            return "tensorrt" if q.activation_symmetric and q.activation_type == "QInt8" else "ort-cpu"
        return "any"

    def model_files(self) -> dict[str, str]:
        """Golden key (a precision, or a variant's key) -> ONNX file, for every model file."""
        files = {p: onnx_file_name(p) for p in self.precisions}
        files.update({v.key: v.file for v in self.variants})
        return files

    def variant(self, precision: str, target: str) -> VariantSection | None:
        return next((v for v in self.variants if (v.precision, v.target) == (precision, target)), None)

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
                metrics={k: PrecisionMetrics.from_dict(v) for k, v in d["metrics"].items()},
                parity=dict(d["parity"]),
                golden=dict(d["golden"]),
                quantization=QuantizationSection(**quant) if quant else None,
                licenses=list(d.get("licenses", [])),
                targets={str(k): str(v) for k, v in d.get("targets", {}).items()},
                variants=[_variant(v) for v in d.get("variants", [])],
                torch=TorchSection(**d["torch"]) if d.get("torch") else None,
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
            ("output.class_weights", self.output.class_weights, (list, type(None))),
            ("golden", self.golden, dict),
            ("parity", self.parity, dict),
        ]
        checks += [(f"precisions[{i}]", p, str) for i, p in enumerate(self.precisions)]
        checks += [(f"output.labels[{i}]", v, str) for i, v in enumerate(self.output.labels)]
        checks += [(f"files[{k!r}]", v, str) for k, v in self.files.items()]
        checks += [(f"targets[{k!r}]", v, str) for k, v in self.targets.items()]
        checks += [(f"variants[{i}].file", v.file, str) for i, v in enumerate(self.variants)]
        if self.torch is not None:  # names looked up in files, figures formatted by inspect
            checks += [
                ("torch.weights", self.torch.weights, str),
                ("torch.spec", self.torch.spec, str),
                ("torch.tensors", self.torch.tensors, int),
                ("torch.parity_max_abs_diff", self.torch.parity_max_abs_diff, number),
            ]
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


def _variant(d: dict) -> VariantSection:
    quant = d.get("quantization")
    return VariantSection(
        precision=d["precision"],
        target=d["target"],
        file=d["file"],
        metrics=PrecisionMetrics.from_dict(d["metrics"]),
        quantization=QuantizationSection(**quant) if quant else None,
        fusions=dict(d.get("fusions", {})),
    )
