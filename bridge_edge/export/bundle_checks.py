"""What a bundle must satisfy beyond its hashes (docs/bundles.md, "Loading and verification").

Three layers, each returning a list of one-line problems ([] = fine):

- ``manifest_problems``: the manifest alone, pure: safe ``name``/``version`` and file names,
  every file hashed and sized, ``golden.npz`` listed, known precisions, and ``fs``/``window_s``/
  ``hop_s``/labels consistent with each other and with the declared ONNX I/O, so that anything
  ``inspect`` calls verified can also be run.
- ``directory_problems``: files on disk the manifest does not list, and listed paths that lead
  out of the bundle (through ``..`` or a symlink).
- ``golden_problems``: the golden self-test on load: a few golden windows through each chosen
  precision with ONNX Runtime, compared with the stored outputs within ``golden.atol``. A model
  swapped for another and re-hashed fails here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from bridge_edge.errors import BundleError
from bridge_edge.export.manifest import MANIFEST_NAME, TARGETS, Manifest, onnx_file_name
from bridge_edge.runtime.engines.names import PRECISIONS

GOLDEN_NAME = "golden.npz"
SELFTEST_WINDOWS = 4  # golden windows run through each precision on load
IGNORED_FILES = frozenset({MANIFEST_NAME, ".complete"})  # .complete: the tar cache's marker
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
NAME_RULE = "1-128 of letters, digits, '.', '_', '-', not starting with '.' or '-', without '..'"


def name_problem(kind: str, value: object) -> str | None:
    """Why ``value`` is not safe as a bundle name, version or path part (None when it is)."""
    if isinstance(value, str) and _SAFE.fullmatch(value) and ".." not in value:
        return None
    return f"{kind} {value!r} is not a safe name; expected {NAME_RULE}"


def check_name(kind: str, value: object, where: str) -> str:
    """``value`` when it is a safe name, else a BundleError (deploy checks again before any ssh)."""
    problem = name_problem(kind, value)
    if problem:
        raise BundleError(f"{where}: {problem}", path=where, file=MANIFEST_NAME, problems=[problem])
    return value  # type: ignore[return-value]


def file_name_problem(name: object) -> str | None:
    """A listed file must be a relative path of safe parts inside the bundle."""
    if not isinstance(name, str) or not name or any(name_problem("", p) for p in name.split("/")):
        return f"files entry {name!r} is not a path inside the bundle; expected '/'-separated parts of {NAME_RULE}"
    return None


def _positive(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _int_dim(shape: object, axis: int) -> int | None:
    """The fixed size of ``shape[axis]``, None when symbolic or absent."""
    if isinstance(shape, list) and len(shape) > max(axis, -axis - 1) and type(shape[axis]) is int:
        return shape[axis]
    return None


def manifest_problems(m: Manifest) -> list[str]:
    problems = [p for p in (name_problem("name", m.name), name_problem("version", m.version)) if p]
    problems += [p for p in map(file_name_problem, m.files) if p]
    if set(m.sizes) != set(m.files):
        problems.append(f"{MANIFEST_NAME}: sizes list {sorted(m.sizes)} but files list {sorted(m.files)}")
    if GOLDEN_NAME not in m.files:
        problems.append(f"{GOLDEN_NAME}: not listed in the manifest; every bundle carries its golden windows")
    problems += _precision_problems(m)
    problems += _target_problems(m)
    problems += _shape_problems(m)
    return problems


def _target_problems(m: Manifest) -> list[str]:
    """Per-target files (docs/bundles.md, "Targets"): each variant names a declared precision, a
    known target, its canonical file (listed) and a golden tolerance; torch files are listed."""
    problems = []
    for file, target in m.targets.items():
        if file not in m.files:
            problems.append(f"targets[{file!r}]: the file is not listed in the manifest")
        if target not in TARGETS:
            problems.append(f"targets[{file!r}] is {target!r}; expected one of {', '.join(TARGETS)}")
    atol = m.golden.get("atol") if isinstance(m.golden, dict) else None
    seen = set()
    for v in m.variants:
        where = f"variant {v.precision}/{v.target}"
        if v.precision not in m.precisions:
            problems.append(f"{where}: precision {v.precision!r} is not one of precisions {m.precisions}")
        if v.target not in TARGETS or v.target == "any":
            problems.append(f"{where}: target {v.target!r}; expected one of {', '.join(TARGETS[1:])}")
        if v.file != onnx_file_name(v.precision, v.target):
            problems.append(f"{where}: file {v.file!r}; expected {onnx_file_name(v.precision, v.target)!r}")
        elif v.file not in m.files:
            problems.append(
                f"{v.file}: variant {v.precision}/{v.target} is declared but the file is not listed"
            )
        if v.key in seen:
            problems.append(f"{where}: declared twice")
        seen.add(v.key)
        value = atol.get(v.key) if isinstance(atol, dict) else None
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            problems.append(f"golden.atol[{v.key!r}] is {value!r}; expected a finite tolerance >= 0")
    if m.torch is not None:
        problems += [
            f"{name}: the torch reference is declared but the file is not listed"
            for name in (m.torch.weights, m.torch.spec)
            if name not in m.files
        ]
    return problems


def _precision_problems(m: Manifest) -> list[str]:
    precisions = m.precisions
    if not precisions or len(set(map(str, precisions))) != len(precisions):
        return [f"precisions {precisions!r}: expected a non-empty list without repeats"]
    problems = [
        f"precision {p!r} is unknown; expected {', '.join(PRECISIONS)}"
        for p in precisions
        if p not in PRECISIONS
    ]
    atol = m.golden.get("atol") if isinstance(m.golden, dict) else None
    for p in precisions:
        value = atol.get(p) if isinstance(atol, dict) else None
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            problems.append(f"golden.atol[{p!r}] is {value!r}; expected a finite tolerance >= 0")
    return problems


def _shape_problems(m: Manifest) -> list[str]:
    inp, problems = m.input, []
    fs, window_s, hop_s = _positive(inp.fs), _positive(inp.window_s), _positive(inp.hop_s)
    for key, value, ok in (
        ("fs", inp.fs, fs),
        ("window_s", inp.window_s, window_s),
        ("hop_s", inp.hop_s, hop_s),
    ):
        if ok is None:
            problems.append(f"input.{key} is {value!r}; expected a finite number > 0")
    if fs and window_s and hop_s:
        n = fs * window_s
        if not math.isfinite(n * hop_s / window_s * fs + n):  # the products, not only the factors
            return problems + [
                f"input fs {fs:g} Hz x window_s {window_s:g} s overflows; expected a real window"
            ]
        if abs(n - round(n)) > 1e-6 or round(n) < 1:
            problems.append(
                f"input fs {fs:g} Hz x window_s {window_s:g} s = {n:g} samples; expected a whole number"
            )
        elif round(fs * hop_s) < 1 or hop_s > window_s:
            problems.append(
                f"input hop_s {hop_s:g} s at {fs:g} Hz; expected 1 sample to window_s {window_s:g} s"
            )
        expected_l = _int_dim(m.onnx.inputs[0].shape, 1) if m.onnx.inputs else None
        if expected_l is not None and expected_l != round(n):
            problems.append(
                f"ONNX input {m.onnx.inputs[0].name} takes {expected_l} samples but fs x window_s = {round(n)}"
            )
        problems += _preprocess_problems(inp.preprocess, fs)
    if len(m.onnx.inputs) != 1:
        problems.append(f"onnx.inputs: {len(m.onnx.inputs)} inputs; expected one (the window)")
    labels = m.output.labels
    if not isinstance(labels, list) or not labels or len(set(map(str, labels))) != len(labels):
        problems.append(f"output.labels {labels!r}: expected a non-empty list without repeats")
    else:
        k = _int_dim(m.onnx.outputs[0].shape, -1) if m.onnx.outputs else None
        if not m.onnx.outputs or k != len(labels):
            problems.append(f"output.labels has {len(labels)} labels but the ONNX output has {k} columns")
        if m.output.positive_label is not None and m.output.positive_label not in labels:
            problems.append(f"output.positive_label {m.output.positive_label!r} is not one of the labels")
        weights = m.output.class_weights
        if weights is not None and not (
            len(weights) == len(labels)
            and all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w < float("inf")
                for w in weights
            )
        ):
            problems.append(f"output.class_weights {weights!r}: expected one finite weight > 0 per label")
    return problems


def _preprocess_problems(preprocess: object, fs: float) -> list[str]:
    from bridge_edge.signals.preprocess import PreprocessSpec

    try:
        spec = PreprocessSpec.from_dict(preprocess)  # type: ignore[arg-type]
        low, high = (float(b) for b in spec.band_hz)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as err:
        return [f"input.preprocess {preprocess!r} does not parse ({type(err).__name__}: {err})"]
    if abs(spec.fs_out - fs) > 1e-9:
        return [f"input.preprocess.fs_out {spec.fs_out:g} Hz differs from input.fs {fs:g} Hz"]
    if not (0 < low < high < fs / 2) or not 1 <= spec.filter_order <= 8:
        return [
            f"input.preprocess band {spec.band_hz} / order {spec.filter_order}: expected 0 < low < high < fs/2, order 1-8"
        ]
    return []


def directory_problems(bundle_dir: Path, m: Manifest) -> list[str]:
    root = bundle_dir.resolve()
    problems = []
    present = sorted(
        str(p.relative_to(bundle_dir)) for p in bundle_dir.rglob("*") if p.is_file() or p.is_symlink()
    )
    for name in present:
        if name not in m.files and name not in IGNORED_FILES:
            problems.append(f"{name}: present in the bundle but not listed in the manifest")
    for name in m.files:
        if file_name_problem(name) is None and not (bundle_dir / name).resolve().is_relative_to(root):
            problems.append(f"{name}: leads outside the bundle (symlink)")
    return problems


def golden_problems(
    bundle_dir: Path, m: Manifest, precisions: list[str], windows: int = SELFTEST_WINDOWS
) -> list[str]:
    """The golden self-test for ``precisions`` (precisions or variant keys such as
    ``int8-ort-cpu``): stored outputs reproduced within golden.atol."""
    files = m.model_files()
    precisions = [p for p in precisions if p in files]
    try:
        with np.load(bundle_dir / GOLDEN_NAME, allow_pickle=False) as z:
            x = np.asarray(z["input"][:windows], np.float32)
            want = {p: np.asarray(z[f"output_{p}"][:windows]) for p in precisions}
    except (OSError, KeyError, ValueError, EOFError) as err:
        return [f"{GOLDEN_NAME}: unreadable or incomplete ({type(err).__name__}: {err})"]
    n = round(float(m.input.fs) * float(m.input.window_s))
    if x.ndim != 2 or x.shape[1] != n or not len(x):
        return [f"{GOLDEN_NAME}: input has shape {x.shape}; expected (N, {n})"]
    try:
        import onnxruntime as ort
    except ImportError:
        return []  # verified by hash only; the runtime that needs ORT will say it is missing
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    batch = _int_dim(m.onnx.inputs[0].shape, 0) or len(x)  # a fixed-batch model: whole batches
    if len(x) < batch:
        return [f"{GOLDEN_NAME}: {len(x)} windows, fewer than the model's fixed batch of {batch}"]
    x = x[: len(x) // batch * batch]
    problems = []
    for p in precisions:
        try:
            session = ort.InferenceSession(
                str(bundle_dir / files[p]), options, providers=["CPUExecutionProvider"]
            )
            feed = m.onnx.inputs[0].name
            got = np.concatenate(
                [
                    session.run([m.onnx.outputs[0].name], {feed: x[i : i + batch]})[0]
                    for i in range(0, len(x), batch)
                ]
            )
            want[p] = want[p][: len(x)]
        except Exception as err:  # noqa: BLE001 - any ORT failure on the golden windows is a verification problem
            problems.append(
                f"{files[p]}: the golden windows do not run ({type(err).__name__}: {str(err)[:200]})"
            )
            continue
        if got.shape != want[p].shape:
            problems.append(
                f"{files[p]}: output shape {got.shape} differs from {GOLDEN_NAME}'s {want[p].shape}"
            )
            continue
        diff = float(np.max(np.abs(got - want[p]))) if got.size else 0.0
        atol = float(m.golden["atol"][p])
        if not diff <= atol:
            problems.append(
                f"{files[p]}: golden self-test max |diff| {diff:.3g} > atol {atol:g} "
                f"(the model is not the one the golden outputs came from)"
            )
    return problems
