"""`bridge-edge` subcommands owned by bridge_edge.bridge: fit, select, train-bridge, evaluate."""

from __future__ import annotations

import argparse
import json
import os

from bridge_edge.errors import ConfigError


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to train (default cpu)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit", help="the whole offline chain: data, pretrain, select, bridge, KD, evaluate"
    )
    p.add_argument("recipe", help="recipe TOML (or the name of one under recipes/, e.g. default, smoke)")
    p.add_argument("--out", default="runs/default", help="run directory (default runs/default)")
    _add_device(p)
    p.add_argument(
        "--fresh", action="store_true", help="recompute every stage (default: reuse unchanged ones)"
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    p.add_argument(
        "--nproc",
        type=int,
        default=0,
        help="run as N processes on this machine: re-runs itself under torchrun --standalone "
        "--nproc_per_node N (docs/scale.md); default: one process, or as torchrun started it",
    )
    p.set_defaults(handler=_fit)

    p = subparsers.add_parser("select", help="rerun bridge position selection in a run directory")
    p.add_argument("run_dir")
    _add_device(p)
    p.set_defaults(handler=_select)

    p = subparsers.add_parser(
        "train-bridge", help="retrain the bridge of a run directory and rewrite its report"
    )
    p.add_argument("run_dir")
    _add_device(p)
    p.set_defaults(handler=_train_bridge)

    p = subparsers.add_parser(
        "evaluate", help="metrics of a run directory or bundle on a dataset split, or a bundle's rhythm suite"
    )
    p.add_argument("path", help="fit run directory or bundle")
    p.add_argument(
        "--suite",
        choices=("rhythm",),
        help="instead of --data: the rhythm-not-shape suite (known rhythms, real pulses, the development "
        "real recordings) through the bundle on a runtime engine; no torch; exit 1 if a goal is missed",
    )
    p.add_argument("--engine", default="ort", help="a bundle's runtime engine (default ort)")
    p.add_argument(
        "--precision",
        default="auto",
        help="a bundle's model precision (default auto: --suite int8 if present, --data fp32)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="--suite: 3 fixed-shape subjects instead of 8, for iterating (judge goals on the full suite)",
    )
    p.add_argument("--out", help="--suite: folder for rhythm_suite.json and rhythm_suite.png")
    p.add_argument(
        "--data",
        action="append",
        help="dataset directory (e.g. written by `bridge-edge simulate`); repeat to pool the split of "
        "several, e.g. a run's data/ and held_out_data/ for the test set its report scored",
    )
    p.add_argument("--split", default="test", help="dataset split to score (default test)")
    _add_device(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_evaluate)


def _check_device(device: str) -> str:
    import torch

    from bridge_edge.errors import ConfigError

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but torch sees no CUDA device; use --device cpu",
            key="device",
            value=device,
            expected="cpu",
        )
    return device


def _summary(report: dict) -> str:
    def line(name, block):
        t = block["test"]
        auroc = t.get("positive_auroc")
        auroc = float("nan") if auroc is None else auroc
        return f"{name:<28} AF AUROC {auroc:.3f}  macro-F1 {t['macro_f1']:.3f}  acc {t['accuracy']:.3f}"

    rows = [
        f"positions: new block {report['positions']['k_in']} -> old block {report['positions']['k_out']}",
        line("bridge (PPG)", report["bridge"]),
    ]
    if "kd" in report:
        rows.append(line("KD student (PPG)", report["kd"]))
    if "timing" in report:
        rows.append(line("pulse timing (PPG)", report["timing"]))
    rows.append(line("old model on ECG (ceiling)", report["old_model_on_old_modality"]))
    return "\n".join(rows)


def _torchrun_fit(args) -> int:
    """``fit --nproc N``: the same fit as N processes under torchrun (one machine)."""
    import subprocess
    import sys

    from bridge_edge.bridge.distributed import ENV_KEYS

    if args.nproc < 1 or any(k in os.environ for k in ENV_KEYS):
        raise ConfigError(
            f"--nproc {args.nproc}: expected N >= 1, outside a torchrun job (torchrun sets the world size)",
            key="nproc",
            value=args.nproc,
            expected=">= 1, without RANK/WORLD_SIZE in the environment",
        )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
    cmd += ["-m", "bridge_edge", "fit", args.recipe, "--out", args.out, "--device", args.device]
    cmd += ["--fresh"] * args.fresh + ["--json"] * args.json
    return subprocess.run(cmd, check=False).returncode


def _fit(args) -> int:
    from bridge_edge.bridge.distributed import env_rank
    from bridge_edge.bridge.fit import fit
    from bridge_edge.bridge.rundir import RunDir
    from bridge_edge.outdirs import removed_on_failure

    if args.nproc:
        return _torchrun_fit(args)
    if env_rank():  # another rank of a torchrun job: rank 0 owns RUN_DIR and prints the report
        fit(args.recipe, args.out, device=_check_device(args.device), fresh=args.fresh)
        return 0
    # a fit that completed a stage keeps its RUN_DIR (a rerun reuses the stage); else it is removed
    with removed_on_failure(args.out, has_results=lambda d: RunDir(d).stages.exists()):
        report = fit(args.recipe, args.out, device=_check_device(args.device), fresh=args.fresh)
    print(json.dumps(report) if args.json else _summary(report))
    return 0


def _select(args) -> int:
    from bridge_edge.bridge.bridging import stage_select
    from bridge_edge.bridge.stages import Run

    run = Run.open(args.run_dir, device=_check_device(args.device))
    stage_select(run)
    print(run.dir.selection.read_text())
    return 0


def _train_bridge(args) -> int:
    from bridge_edge.bridge.bridging import stage_bridge
    from bridge_edge.bridge.report import write_report
    from bridge_edge.bridge.stages import Run

    run = Run.open(args.run_dir, device=_check_device(args.device))
    with run.stage("bridge"):
        stage_bridge(run)
    print(_summary(write_report(run)))
    return 0


def _evaluate(args) -> int:
    if args.suite:
        from bridge_edge.checks.report import run_rhythm_suite_command

        return run_rhythm_suite_command(
            args.path,
            engine=args.engine,
            precision=args.precision,
            quick=args.quick,
            out=args.out,
            as_json=args.json,
        )
    if not args.data:
        raise ConfigError("evaluate needs --data DIR (a dataset to score) or --suite rhythm", key="data")
    from bridge_edge.bridge.rundir import RunDir

    if RunDir(args.path).is_fit_run():  # the run's torch models
        from bridge_edge.bridge.evaluate import evaluate_run

        result = evaluate_run(args.path, args.data, split=args.split, device=_check_device(args.device))
    else:  # a bundle, on a runtime engine: no torch
        from bridge_edge.checks.bundle_eval import evaluate_bundle

        precision = "fp32" if args.precision == "auto" else args.precision
        result = evaluate_bundle(args.path, args.data, args.split, engine=args.engine, precision=precision)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['n_windows']} windows ({result['n_excluded']} excluded), split {result['split']}")
        for name, row in result["models"].items():
            ci = row.get("ci95") or {}
            print(
                f"{name:<8} AF AUROC {_fmt(row['positive_auroc'])} {_fmt_ci(ci.get('positive_auroc'))}"
                f"  macro-F1 {_fmt(row['macro_f1'])} {_fmt_ci(ci.get('macro_f1'))}  accuracy {_fmt(row['accuracy'])}"
            )
    return 0


def _fmt(v) -> str:
    return "  n/a" if v is None else f"{v:.3f}"


def _fmt_ci(ci) -> str:
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
