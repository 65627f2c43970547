"""`bridge-edge` subcommands owned by bridge_edge.export: export, inspect, build-engine, deploy."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands. Handlers import heavy modules lazily."""
    p = subparsers.add_parser(
        "export", help="compose, export ONNX, quantize with calibration, verify, package a bundle"
    )
    p.add_argument("run_dir", help="a `bridge-edge fit` run directory")
    p.add_argument("--out", required=True, help="bundle directory to write (or BUNDLE.tar)")
    p.add_argument(
        "--precision", default="fp32,fp16,int8", help="comma list of fp32,fp16,int8 (default: all)"
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="calibration recipe TOML (default: calibration/default.toml semantics, built in)",
    )
    p.add_argument(
        "--version", dest="bundle_version", default=None, help="bundle version (default: UTC timestamp)"
    )
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument(
        "--int8-targets",
        default="tensorrt,ort-cpu",
        help="int8 files to make: tensorrt (the recipe's Q/DQ) and/or ort-cpu (a second file for ORT "
        "on CPUs: transformer fusions, u8 activations, per-channel weights; default: both)",
    )
    p.add_argument("--plot", default=None, help="also write a PNG of accuracy and size per precision")
    p.add_argument("--json", action="store_true", help="print the manifest as one JSON object")
    p.set_defaults(handler=_export)

    p = subparsers.add_parser(
        "requantize",
        help="add the ort-cpu int8 file (and, with --run-dir, the torch reference) to an existing bundle",
    )
    p.add_argument("bundle", help="bundle directory, .tar, or 'default'")
    p.add_argument("--out", default=None, help="write here instead of replacing the bundle in place")
    p.add_argument(
        "--run-dir",
        default=None,
        help="the bundle's training run: accuracy on its held-out windows, and the torch reference "
        "(default: accuracy on the bundle's golden windows, no torch reference)",
    )
    p.add_argument("--calibration", default=None, help="calibration recipe TOML (floor and op exclusions)")
    p.add_argument(
        "--version", dest="bundle_version", default=None, help="new bundle version (default: keep)"
    )
    p.add_argument("--json", action="store_true", help="print the manifest as one JSON object")
    p.set_defaults(handler=_requantize)

    p = subparsers.add_parser("inspect", help="manifest, I/O, hashes and metrics of a bundle; verifies it")
    p.add_argument("bundle", help="bundle directory, .tar, or 'default'")
    p.add_argument("--json", action="store_true", help="one JSON object: manifest + path, verified, problems")
    p.set_defaults(handler=_inspect)

    p = subparsers.add_parser(
        "build-engine", help="build (or reuse) the TensorRT engine of a bundle on this machine"
    )
    p.add_argument("bundle", nargs="?", default="default", help="bundle directory, .tar, or 'default'")
    p.add_argument("--precision", choices=("fp16", "int8"), default="fp16")
    p.add_argument("--workspace-mib", type=int, default=1024, help="TensorRT workspace pool limit (MiB)")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch of the optimisation profile")
    p.add_argument("--cache-dir", default=None, help="engine cache (default: ~/.cache/bridge-edge/engines)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_build_engine)

    p = subparsers.add_parser(
        "deploy", help="push a bundle over SSH, self-test, build the engine, flip `current`"
    )
    p.add_argument("bundle", help="bundle directory, .tar, or 'default'")
    p.add_argument("target", help="ssh://[user@]host[:port]/dir")
    p.add_argument(
        "--rollback", action="store_true", help="flip `current` back to the previous version instead"
    )
    p.add_argument("--identity", default=None, help="ssh private key file")
    p.add_argument("--known-hosts", default=None, help="known_hosts file (host keys are always checked)")
    p.add_argument("--remote-python", default="python3", help="python on the target for the self-test")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_deploy)


def _print_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bridge_edge.export.calibration import load_recipe
    from bridge_edge.export.pipeline import parse_precisions
    from bridge_edge.export.source import source_from_run_dir
    from bridge_edge.export.targets import parse_int8_targets

    precisions = parse_precisions(args.precision)
    args.int8_targets = parse_int8_targets(args.int8_targets)
    recipe = load_recipe(args.calibration)
    source = source_from_run_dir(args.run_dir, calibration_split=recipe.windows.split)
    out = Path(args.out)
    # stdout carries only this command's own output (--json: one object); what libraries print
    # while exporting (torch's ONNX exporter reports its steps there) goes to stderr with the logs
    with contextlib.redirect_stdout(sys.stderr):
        manifest = _export_to(source, out, precisions, recipe, args)
    return _export_tail(args, manifest, out)


def _export_to(source, out, precisions, recipe, args):
    import tempfile
    from pathlib import Path

    from bridge_edge.export.bundle import write_tar
    from bridge_edge.export.pipeline import export_bundle

    if out.suffix == ".tar":
        with tempfile.TemporaryDirectory() as tmp:
            bundle_dir = Path(tmp) / source.name
            work = out.with_name(f".{out.name}.export")  # kept beside the tar when a step fails
            manifest = export_bundle(
                source, bundle_dir, precisions, recipe, work_dir=work, **_export_options(args)
            )
            write_tar(bundle_dir, out)
        return manifest
    return export_bundle(source, out, precisions, recipe, **_export_options(args))


def _export_options(args) -> dict:
    return {"version": args.bundle_version, "opset": args.opset, "int8_targets": args.int8_targets}


def _export_tail(args: argparse.Namespace, manifest, out) -> int:
    if args.plot:
        from bridge_edge.export.accuracy import plot_precisions

        plot_precisions(manifest.metrics, args.plot)
    return _print_written(manifest, out, args.json)


def _print_written(manifest, out, as_json: bool) -> int:
    """What export and requantize print: the manifest as JSON, or a line and the metrics table."""
    if as_json:
        _print_json(manifest.to_dict() | {"path": str(out)})
    else:
        print(f"wrote {out}: {manifest.name} {manifest.version}")
        print(_metrics_table(manifest))
    return 0


def _metrics_table(manifest) -> str:
    """Per precision; the AUROC users read first is the positive label's (e.g. afib vs rest),
    named as such, with the macro one-vs-rest AUROC over the classes present beside it."""
    positive = manifest.output.positive_label
    head = f"{positive} AUROC" if positive else "pos. AUROC"
    rows = [
        f"{'precision':<9} {'target':<8} {'size MB':>8} {'macro-F1':>9} {head:>{max(len(head), 10)}} "
        f"{'macro AUROC':>11} {'agree':>7} {'bridge cos':>10}  file"
    ]
    from bridge_edge.export.manifest import onnx_file_name

    entries = [(p, onnx_file_name(p), m) for p, m in manifest.metrics.items()]
    entries += [(v.precision, v.file, v.metrics) for v in manifest.variants]
    for p, file, m in entries:
        pos = "n/a" if m.positive_auroc is None else f"{m.positive_auroc:.4f}"
        macro = "n/a" if m.macro_auroc is None else f"{m.macro_auroc:.4f}"
        cos = "n/a" if m.bridge_cosine_with_fp32 is None else f"{m.bridge_cosine_with_fp32:.5f}"
        rows.append(
            f"{p:<9} {manifest.target_of(file):<8} {m.size_bytes / 1e6:>8.2f} {m.macro_f1:>9.4f} "
            f"{pos:>{max(len(head), 10)}} {macro:>11} {m.agreement_with_fp32:>7.4f} {cos:>10}  {file}"
        )
    return "\n".join(rows)


def _requantize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bridge_edge.export.calibration import load_recipe
    from bridge_edge.export.requantize import requantize_bundle

    with contextlib.redirect_stdout(sys.stderr):
        manifest = requantize_bundle(
            args.bundle,
            Path(args.out) if args.out else None,
            load_recipe(args.calibration),
            run_dir=Path(args.run_dir) if args.run_dir else None,
            version=args.bundle_version,
        )
    return _print_written(manifest, args.out or args.bundle, args.json)


def _inspect(args: argparse.Namespace) -> int:
    from bridge_edge.export.bundle import inspect_bundle

    bundle = inspect_bundle(args.bundle)
    if args.json:
        _print_json(
            bundle.manifest.to_dict()
            | {
                "path": str(bundle.path),
                "verified": bundle.verified,
                "problems": bundle.problems,
                "absent": bundle.absent,
            }
        )
    else:
        m = bundle.manifest
        print(f"{m.name} {m.version}  ({bundle.path})")
        print(f"  created {m.created}, recipe {m.recipe_hash[:16] or '-'}, schema {m.schema_version}")
        print(
            f"  input  {m.input.modality} {m.input.fs:g} Hz, window {m.input.window_s:g} s, "
            f"hop {m.input.hop_s:g} s, "
            f"preprocess {m.input.preprocess.get('version')}"
        )
        print(f"  output {m.output.kind}: {', '.join(m.output.labels)} (positive: {m.output.positive_label})")
        if m.output.class_weights is not None:
            weights = ", ".join(
                f"{lab} x{w:.3g}" for lab, w in zip(m.output.labels, m.output.class_weights) if w != 1
            )
            print(f"  operating point: {weights or 'all x1'} (applied inside the model files)")
        print(
            f"  models {m.models.new}[..{m.models.k_in}] -> bridge (rank {m.models.bridge.rank}, "
            f"{m.models.bridge.prototypes} prototypes, {m.models.bridge.params} params) -> "
            f"{m.models.old}[{m.models.k_out}..]"
        )
        io = ", ".join(f"{t.name} {t.dtype}{t.shape}" for t in m.onnx.inputs + m.onnx.outputs)
        print(f"  onnx   opset {m.onnx.opset} ({m.onnx.exporter}): {io}")
        print("  " + _metrics_table(m).replace("\n", "\n  "))
        if m.torch is not None:
            print(
                f"  torch  {m.torch.weights} + {m.torch.spec} ({m.torch.tensors} tensors, fp32; "
                f"rebuilt vs exported {m.torch.parity_max_abs_diff:.2g})"
            )
        if bundle.absent:
            print(f"  absent here (workstation files, not in a wheel install): {', '.join(bundle.absent)}")
        print("  verified" if bundle.verified else "  NOT VERIFIED:\n    " + "\n    ".join(bundle.problems))
    return 0 if bundle.verified else 4


def _build_engine(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bridge_edge.export.bundle import load_bundle
    from bridge_edge.export.tensorrt import EngineCache, build_or_load_engine, load_tensorrt

    trt = load_tensorrt()  # raises EngineUnavailableError with the install line
    bundle = load_bundle(args.bundle)
    cache = EngineCache(Path(args.cache_dir)) if args.cache_dir else EngineCache.default()
    result = build_or_load_engine(
        trt, bundle, args.precision, cache, max_batch=args.max_batch, workspace_bytes=args.workspace_mib << 20
    )
    if args.json:
        _print_json(
            {"engine": str(result.path), "key": result.key, "built": result.built, "reason": result.reason}
        )
    else:
        print(f"{'built' if result.built else 'reused'} {result.path} ({result.reason})")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from bridge_edge.export.deploy import SshTarget, deploy, rollback

    target = SshTarget.parse(args.target, identity=args.identity, known_hosts=args.known_hosts)
    if args.rollback:
        result = rollback(args.bundle, target)
    else:
        result = deploy(args.bundle, target, remote_python=args.remote_python)
    if args.json:
        _print_json(result.as_dict())
    else:
        print(result.summary())
    return 0
