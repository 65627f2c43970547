"""Self-test of an installed bundle: every hash, then golden.npz through ONNX Runtime.

Standalone on purpose: it imports only numpy and onnxruntime (never bridge_edge), so `deploy`
can copy this one file to a target that has no bridge-edge installed and run

    python3 selftest.py BUNDLE_DIR            # exit 0 = pass; one JSON line on stdout

Each precision's ONNX (and each per-target variant's) must reproduce the stored ``output_<precision>`` within the manifest's
``golden.atol`` for that precision. A workstation file (``WORKSTATION_FILES``) the manifest lists
may be absent (a wheel install leaves it out); it is reported under ``absent``, and checked by
its hash like every other file where it is present.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

# Files a bundle lists that only a workstation reads (docs/bundles.md, "Workstation files"): the
# torch fp32 reference (needs torch) and the int8 calibration windows (read by `requantize`, which
# needs onnx). The wheel leaves them out (pyproject.toml, exclude-package-data). Defined here
# because this file stands alone; bridge_edge.export.bundle_checks imports it.
WORKSTATION_FILES = ("torch/composed.safetensors", "torch/composed.json", "calibration.npz")


def absent_workstation_files(bundle_dir: Path, names) -> list[str]:
    """The listed workstation files that are not there at all (a dangling symlink is not absent:
    it fails like any other unreadable file)."""
    return [n for n in names if n in WORKSTATION_FILES and not os.path.lexists(Path(bundle_dir) / n)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_selftest(bundle_dir: str | Path) -> dict:
    import numpy as np
    import onnxruntime as ort

    bundle_dir = Path(bundle_dir)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    root = bundle_dir.resolve()
    inside = {n: (bundle_dir / n).resolve().is_relative_to(root) and ".." not in n for n in manifest["files"]}
    problems = [f"{name}: not a path inside the bundle; not read" for name, ok in inside.items() if not ok]
    absent = absent_workstation_files(bundle_dir, manifest["files"])
    problems += [
        f"{name}: sha256 differs from the manifest"
        for name, digest in manifest["files"].items()
        if inside[name]
        and name not in absent
        and (not (bundle_dir / name).is_file() or _sha256(bundle_dir / name) != digest)
    ]
    results = {}
    if not problems:
        golden = np.load(bundle_dir / "golden.npz", allow_pickle=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        models = [(p, f"model.{p}.onnx") for p in manifest["precisions"]]
        # per-target variants (docs/bundles.md, "Targets"): model.<precision>.<target>.onnx
        models += [(f"{v['precision']}-{v['target']}", v["file"]) for v in manifest.get("variants", [])]
        for precision, file in models:
            if not inside.get(file, False):
                problems.append(f"{file}: not listed in the manifest's files; not read")
                continue
            sess = ort.InferenceSession(str(bundle_dir / file), opts, providers=["CPUExecutionProvider"])
            out_name = manifest["onnx"]["outputs"][0]["name"]
            got = sess.run([out_name], {manifest["onnx"]["inputs"][0]["name"]: golden["input"]})[0]
            want = golden[f"output_{precision}"]
            max_abs = float(np.max(np.abs(got - want)))
            atol = float(manifest["golden"]["atol"][precision])
            results[precision] = {"max_abs_diff": max_abs, "atol": atol, "ok": max_abs <= atol}
            if max_abs > atol:
                problems.append(f"{file}: golden max |diff| {max_abs:.3g} > atol {atol}")
    return {
        "bundle": str(bundle_dir),
        "name": manifest["name"],
        "version": manifest["version"],
        "ok": not problems,
        "precisions": results,
        "absent": absent,
        "problems": problems,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: selftest.py BUNDLE_DIR", file=sys.stderr)
        return 2
    report = run_selftest(argv[0])
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
