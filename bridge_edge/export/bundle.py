"""Bundles on disk (docs/bundles.md): load, verify, seal, and safe ``.tar`` extraction.

A bundle is a directory with ``manifest.json`` plus the files it lists by sha256. Loading
verifies every listed file (missing, truncated, changed) and every ONNX model's I/O against the
manifest, and names the offending file. The workstation files (``selftest.WORKSTATION_FILES``:
torch reference, calibration windows) may be absent, as in a wheel install; ``Bundle.absent``
names them. Device side: numpy + (onnx or onnxruntime) only.

    bundle = load_bundle("default")          # the embedded default bundle
    sess_path = bundle.onnx_path("int8")
    golden = bundle.golden()                 # Golden(input, outputs={"fp32": ..., ...})
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge_edge.errors import BundleError, BundleVerificationError
from bridge_edge.export.bundle_checks import (
    GOLDEN_NAME,
    directory_problems,
    file_name_problem,
    golden_problems,
    manifest_problems,
)
from bridge_edge.export.manifest import MANIFEST_NAME, Manifest, TensorSpec, onnx_file_name
from bridge_edge.export.selftest import absent_workstation_files
from bridge_edge.runtime.engines.names import PRECISIONS

DEFAULT_BUNDLE_DIR = Path(__file__).resolve().parent.parent / "assets" / "bundles" / "default"
CALIBRATION_NAME = "calibration.npz"


@dataclass(frozen=True)
class Golden:
    """Held-out windows exactly as the ONNX input, and each precision's stored output."""

    input: np.ndarray  # (N, L) float32
    outputs: dict[str, np.ndarray]  # precision -> (N, K) float32
    labels: np.ndarray | None  # (N,) int index into manifest.output.labels, if stored


@dataclass
class Bundle:
    path: Path
    manifest: Manifest
    verified: bool = False
    problems: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # listed workstation files not installed here

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def onnx_path(self, precision: str = "fp32", target: str | None = None) -> Path:
        """The ONNX file of ``precision``; with ``target`` ("ort-cpu", "tensorrt"), the file laid
        out for that target when the bundle has one, else the precision's own file."""
        if precision not in self.manifest.precisions:
            raise BundleError(
                f"bundle {self.name} {self.version} has no {precision} model; it has "
                f"{', '.join(self.manifest.precisions)}",
                path=str(self.path),
                file=onnx_file_name(precision),
                problems=["precision"],
            )
        variant = self.manifest.variant(precision, target) if target else None
        return self.path / (variant.file if variant else onnx_file_name(precision))

    def has_torch_weights(self) -> bool:
        """The manifest declares the torch reference and both its files are here (a wheel install
        leaves them out: docs/bundles.md, "Workstation files")."""
        t = self.manifest.torch
        return t is not None and all((self.path / n).is_file() for n in (t.weights, t.spec))

    def golden(self) -> Golden:
        with np.load(self.path / GOLDEN_NAME, allow_pickle=False) as z:
            outputs = {k.removeprefix("output_"): z[k] for k in z.files if k.startswith("output_")}
            labels = z["labels"] if "labels" in z.files else None
            return Golden(input=z["input"], outputs=outputs, labels=labels)

    def calibration(self) -> np.ndarray:
        if CALIBRATION_NAME in self.manifest.files and not (self.path / CALIBRATION_NAME).exists():
            raise BundleError(
                f"bundle {self.name} {self.version} at {self.path} lists {CALIBRATION_NAME} but this "
                f"install leaves it out (a workstation file, not in the wheel: docs/bundles.md); "
                f"expected a checkout's copy of the bundle or its .tar",
                path=str(self.path),
                file=CALIBRATION_NAME,
                problems=[f"{CALIBRATION_NAME}: absent"],
            )
        with np.load(self.path / CALIBRATION_NAME, allow_pickle=False) as z:
            return z["input"]


# --- hashing and sealing ---------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seal(bundle_dir: Path, manifest: Manifest) -> Manifest:
    """Hash every file of the bundle (all but the manifest) into the manifest and write it."""
    bundle_dir = Path(bundle_dir)
    names = sorted(
        str(p.relative_to(bundle_dir))
        for p in bundle_dir.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    )
    manifest.files = {n: sha256_file(bundle_dir / n) for n in names}
    manifest.sizes = {n: (bundle_dir / n).stat().st_size for n in names}
    (bundle_dir / MANIFEST_NAME).write_text(manifest.to_json())
    return manifest


# --- verification ----------------------------------------------------------------------------


def read_onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs and outputs of an ONNX file (onnx if installed, else onnxruntime)."""
    try:
        import onnx
    except ImportError:
        return _read_onnx_io_ort(path)
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def spec(v) -> TensorSpec:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        return TensorSpec(name=v.name, dtype=helper.tensor_dtype_to_np_dtype(t.elem_type).name, shape=shape)

    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in model.graph.output]


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64"}


def _read_onnx_io_ort(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def spec(a) -> TensorSpec:
        shape = [d if isinstance(d, int) else str(d) for d in a.shape]
        return TensorSpec(name=a.name, dtype=_ORT_TYPES.get(a.type, a.type), shape=shape)

    return [spec(a) for a in sess.get_inputs()], [spec(a) for a in sess.get_outputs()]


def _io_problems(name: str, declared: list[TensorSpec], actual: list[TensorSpec], kind: str) -> list[str]:
    want = [(t.name, t.dtype, [d if isinstance(d, int) else "?" for d in t.shape]) for t in declared]
    got = [(t.name, t.dtype, [d if isinstance(d, int) else "?" for d in t.shape]) for t in actual]
    if want == got:
        return []
    return [f"{name}: ONNX {kind} {got} differ from the manifest's {want}"]


def verification_problems(
    bundle_dir: Path, manifest: Manifest, selftest: str | list[str] | None = "all"
) -> list[str]:
    """Every way the bundle differs from its manifest or could not run; [] when it is intact.

    Manifest rules and unlisted files first (bundle_checks.py), then size and sha256 of every
    listed file (an absent workstation file is not a problem: ``absent_workstation_files``),
    each model's ONNX I/O, and, when all of that holds, the golden self-test for ``selftest``
    ("all", "auto", a precision, a list of them, or None)."""
    problems = manifest_problems(manifest) + directory_problems(bundle_dir, manifest)
    outside = {p.split(":", 1)[0] for p in problems if "leads outside" in p}
    absent = set(absent_workstation_files(bundle_dir, manifest.files))
    for name, digest in manifest.files.items():
        if file_name_problem(name) or name in outside or name in absent:
            continue  # never read a file the manifest places outside the bundle
        path = bundle_dir / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size, want_size = path.stat().st_size, manifest.sizes.get(name)
        if want_size is not None and size != want_size:
            what = "truncated" if size < want_size else "grown"
            problems.append(f"{name}: {what}, {size} bytes where the manifest says {want_size}")
        elif sha256_file(path) != digest:
            problems.append(f"{name}: sha256 differs from the manifest (file changed)")
    for key, name in manifest.model_files().items():
        if key in manifest.precisions and key not in PRECISIONS:
            continue  # an unknown precision: manifest_problems names it
        if name not in manifest.files:
            if key in PRECISIONS:  # a variant's unlisted file is named by manifest_problems
                problems.append(f"{name}: precision {key} is declared but the file is not listed")
        elif file_name_problem(name) is None and not any(p.startswith(f"{name}:") for p in problems):
            try:
                inputs, outputs = read_onnx_io(bundle_dir / name)
            except Exception as err:  # noqa: BLE001 - a file that hashes right but will not parse: still name it
                problems.append(f"{name}: not a readable ONNX model ({type(err).__name__}: {err})")
                continue
            problems += _io_problems(name, manifest.onnx.inputs, inputs, "inputs")
            problems += _io_problems(name, manifest.onnx.outputs, outputs, "outputs")
    if selftest and not problems:
        problems += golden_problems(bundle_dir, manifest, _selftest_precisions(manifest, selftest))
    return problems


def _selftest_precisions(manifest: Manifest, selftest: str | list[str]) -> list[str]:
    """ "all", a list, or one precision; "auto" is the one ``run --precision auto`` takes. A
    precision brings its per-target variants along (the engine may run either file)."""
    if selftest == "all":
        return list(manifest.model_files())
    if selftest == "auto":
        from bridge_edge.runtime.engines.names import resolve_precision

        chosen = [resolve_precision("auto", list(manifest.precisions))]
    else:
        chosen = [selftest] if isinstance(selftest, str) else list(selftest)
    keys = [p for p in chosen if p in manifest.precisions]
    return keys + [v.key for v in manifest.variants if v.precision in keys]


# --- loading ---------------------------------------------------------------------------------


def resolve_bundle_path(path_or_name: str | os.PathLike) -> Path:
    """``default`` -> the embedded bundle; a ``.tar`` -> extracted (safely) to the cache."""
    if str(path_or_name) == "default":
        return DEFAULT_BUNDLE_DIR
    path = Path(path_or_name).expanduser()
    if path.is_file() and tarfile.is_tarfile(path):
        return extract_tar(path)
    if not (path / MANIFEST_NAME).is_file():
        raise BundleError(
            f"{path}: not a bundle; expected a directory with {MANIFEST_NAME}, a .tar of one, or 'default'",
            path=str(path),
            file=MANIFEST_NAME,
            problems=["missing manifest"],
        )
    return path


def load_bundle(
    path_or_name: str | os.PathLike = "default",
    verify: bool = True,
    selftest: str | list[str] | None = "auto",
) -> Bundle:
    """Open a bundle; with ``verify`` every rule, hash and ONNX I/O is checked first, then the
    golden self-test runs for ``selftest``: "auto" (the precision ``run`` picks by default), a
    precision or a list of them, "all", or None.

    Raises BundleVerificationError naming the first bad file (all problems in ``.problems``).
    """
    path = resolve_bundle_path(path_or_name)
    manifest = Manifest.read(path / MANIFEST_NAME)
    bundle = Bundle(path=path, manifest=manifest, absent=absent_workstation_files(path, manifest.files))
    if verify:
        problems = verification_problems(path, manifest, selftest)
        if problems:
            first_file = problems[0].split(":", 1)[0]
            raise BundleVerificationError(
                f"bundle {path} failed verification: {problems[0]}"
                + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""),
                path=str(path),
                file=first_file,
                problems=problems,
            )
        bundle.verified = True
    return bundle


def inspect_bundle(path_or_name: str | os.PathLike) -> Bundle:
    """Like load_bundle but never raises on verification: problems are returned on the bundle."""
    path = resolve_bundle_path(path_or_name)
    manifest = Manifest.read(path / MANIFEST_NAME)
    problems = verification_problems(path, manifest)
    absent = absent_workstation_files(path, manifest.files)
    return Bundle(path=path, manifest=manifest, verified=not problems, problems=problems, absent=absent)


# --- tar -------------------------------------------------------------------------------------


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bridge-edge" / "bundles"


MAX_TAR_BYTES = 512 << 20  # a bundle is tens of MB (the default: ~10 MB); env BRIDGE_EDGE_MAX_BUNDLE_MB
MAX_TAR_MEMBERS = 256
MAX_TAR_RATIO = 100  # extracted bytes per compressed byte; ONNX weights barely compress


def _max_tar_bytes() -> int:
    value = os.environ.get("BRIDGE_EDGE_MAX_BUNDLE_MB")
    return int(float(value) * (1 << 20)) if value else MAX_TAR_BYTES


def check_tar_members(tar: tarfile.TarFile, where: Path) -> None:
    """Refuse absolute paths, '..', links and device files, too many members or too many bytes
    (a decompression bomb) before anything is written."""
    total, count = 0, 0
    limit = min(_max_tar_bytes(), MAX_TAR_RATIO * max(where.stat().st_size, 1 << 20))
    for m in tar:  # streamed: a tar of millions of members is refused without listing them all
        count += 1
        total += max(m.size, 0)
        if count > MAX_TAR_MEMBERS or total > limit:
            what = (
                f"more than {MAX_TAR_MEMBERS} members" if count > MAX_TAR_MEMBERS else f"over {limit} bytes"
            )
            raise BundleError(
                f"{where}: refusing the tar: it extracts to {what}; expected a bundle of at most "
                f"{MAX_TAR_MEMBERS} files and {limit >> 20} MiB (set BRIDGE_EDGE_MAX_BUNDLE_MB to allow more)",
                path=str(where),
                file=m.name,
                problems=["tar too large"],
            )
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
            raise BundleError(
                f"{where}: refusing tar member {m.name!r} (absolute path, '..', link or special file); "
                f"expected plain files under one bundle directory",
                path=str(where),
                file=m.name,
                problems=["unsafe tar member"],
            )


def extract_tar(tar_path: Path, dest_root: Path | None = None) -> Path:
    """Extract a bundle tar into ``dest_root/<sha256 prefix>/`` and return the bundle directory.

    Members are checked first; extraction goes to a temporary directory renamed into place, so a
    refused or interrupted tar leaves nothing behind."""
    digest = sha256_file(tar_path)[:16]
    dest = (dest_root or _cache_root()) / digest
    if not (dest / ".complete").exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(tar_path) as tar:
                check_tar_members(tar, tar_path)
                tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=dest.parent))
                try:
                    tar.extractall(tmp, filter="data")
                    (tmp / ".complete").touch()
                    shutil.rmtree(dest, ignore_errors=True)
                    os.replace(tmp, dest)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            raise BundleError(
                f"{tar_path}: cannot extract the bundle tar ({type(err).__name__}: {err})",
                path=str(tar_path),
                file=str(tar_path),
                problems=[str(err)],
            ) from err
    manifests = sorted(dest.rglob(MANIFEST_NAME), key=lambda p: len(p.parts))
    if not manifests:
        raise BundleError(
            f"{tar_path}: the tar holds no {MANIFEST_NAME}; expected a bundle directory inside",
            path=str(tar_path),
            file=MANIFEST_NAME,
            problems=["missing manifest"],
        )
    return manifests[0].parent


def write_tar(bundle_dir: Path, tar_path: Path) -> Path:
    """Pack a bundle directory as ``<name>/...`` inside ``tar_path``."""
    bundle_dir = Path(bundle_dir)
    with tarfile.open(tar_path, "w") as tar:
        for p in sorted(bundle_dir.rglob("*")):
            if p.is_file() and p.name != ".complete":
                tar.add(p, arcname=str(Path(bundle_dir.name) / p.relative_to(bundle_dir)))
    return tar_path
