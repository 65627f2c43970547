"""The model a benchmark measures: a bundle (the deployed thing) plus, optionally, its run dir.

``open_engine`` is the one place a bench opens an inference engine. It goes through the
runtime's ``select_engine`` (so the bench measures what ``bridge-edge run`` runs) and turns
anything that cannot run here into ``Unmeasured`` with the reason — including the runtime
quietly falling back to another engine, which a benchmark must never report under the
requested engine's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bridge_edge.bench.results import Unmeasured
from bridge_edge.errors import BridgeEdgeError


@dataclass
class Subject:
    label: str  # "default 1.0.0", shown in results
    onnx_paths: dict[str, Path]  # precision -> ONNX file
    n_samples: int  # model input length per window
    fs_model: float
    hop_s: float
    preprocess: dict  # PreprocessSpec.as_dict()
    labels: list[str]
    modality: str = "ppg"
    bundle: object | None = None  # bridge_edge.export.bundle.Bundle, when there is one
    run_dir: Path | None = None  # training run with the composed torch module (torch engine)
    notes: list[str] = field(default_factory=list)

    @property
    def has_torch_reference(self) -> bool:
        """The bundle carries the composed fp32 weights (export.torch_reference) and they are
        installed here (a wheel leaves them out)."""
        return self.bundle is not None and self.bundle.has_torch_weights()

    @classmethod
    def from_bundle(cls, bundle, run_dir: Path | None = None) -> Subject:
        m = bundle.manifest
        return cls(
            label=f"{m.name} {m.version}",
            onnx_paths={p: bundle.onnx_path(p) for p in m.precisions},
            n_samples=round(m.input.fs * m.input.window_s),
            fs_model=float(m.input.fs),
            hop_s=float(m.input.hop_s),
            preprocess=dict(m.input.preprocess),
            labels=list(m.output.labels),
            modality=m.input.modality,
            bundle=bundle,
            run_dir=run_dir,
        )


def load_subject(bundle_ref: str, run_dir: Path | None, fallback_run_dir: Path | None = None) -> Subject:
    """The bundle, and the torch reference: ``run_dir`` when given, else the bundle's own torch
    weights, else ``fallback_run_dir`` (e.g. runs/default) for a bundle without them."""
    from bridge_edge.export.bundle import load_bundle

    bundle = load_bundle(bundle_ref)
    if run_dir is None and not bundle.has_torch_weights():
        run_dir = fallback_run_dir
    subject = Subject.from_bundle(bundle, run_dir)
    if run_dir is not None and not Path(run_dir).exists():
        subject.notes.append(f"run dir {run_dir} does not exist: the torch engine is unmeasured")
        subject.run_dir = None
    return subject


def open_engine(subject: Subject, engine: str, precision: str, threads: int, device: str = "cpu"):
    """An Engine (``.infer(batch) -> probs``), or Unmeasured with the reason."""
    what = f"{engine} {precision} ({device})"
    if engine == "torch":
        if precision != "fp32":
            return Unmeasured(
                what,
                "torch eager is the fp32 reference; fp16 and int8 are the ONNX Runtime and TensorRT paths",
            )
        if subject.run_dir is None and not subject.has_torch_reference:
            return Unmeasured(
                what,
                "the bundle's torch reference is not here (bundles before 0.6 have none; a wheel install "
                "leaves it out) and no run dir was given (pass --run-dir RUN_DIR)",
            )
        if device == "cuda" and not _cuda_available():
            return Unmeasured(what, "CUDA is not available on this machine (no GPU or CPU-only torch)")
    if precision not in subject.onnx_paths:
        return Unmeasured(what, f"the model has no {precision} ONNX file")
    try:
        if subject.bundle is None:
            if engine != "ort":
                return Unmeasured(what, "only ONNX files were given; this engine needs a bundle")
            from bridge_edge.runtime.engines.ort import OrtEngine

            return OrtEngine(subject.onnx_paths[precision], precision, threads=threads)
        from bridge_edge.runtime.engines import select_engine

        choice = select_engine(engine, subject.bundle, precision, threads=threads, run_dir=subject.run_dir)
    except (BridgeEdgeError, ImportError) as err:
        return Unmeasured(what, str(err))
    if choice.engine.name != engine:
        choice.engine.close()
        return Unmeasured(what, "; ".join(choice.fallbacks) or f"runtime chose {choice.engine.name} instead")
    if engine == "torch":
        _match_torch_threads(choice.engine, threads)
        if device == "cuda":
            return _to_cuda(choice.engine, what)
    return choice.engine


def _match_torch_threads(engine, threads: int) -> None:
    """Give torch the same thread count as the other engines (a fair ratio needs equal threads)."""
    import torch

    torch.set_num_threads(threads)
    engine.description = f"{engine.description}, {threads} thread(s)"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _to_cuda(engine, what: str):
    try:
        engine.to_device("cuda")
    except RuntimeError as err:  # e.g. out of device memory, a driver too old for this torch
        engine.close()
        return Unmeasured(what, f"torch could not move the model to CUDA: {err}")
    return engine
