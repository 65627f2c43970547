"""`bridge-edge evaluate BUNDLE --suite rhythm`: run the suite, print it, write JSON and a picture."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bridge_edge.checks.rhythm_suite import VARIANTS, SuiteReport, run_suite
from bridge_edge.monitor.alarms import AlarmRules

SUITE_JSON, SUITE_PNG = "rhythm_suite.json", "rhythm_suite.png"
# what the real-pulse cases and the healthy recordings need (scripts/setup-tests.sh installs them)
NO_RECORDINGS = "the re-sequenced cases and these need heartpy, biosignalsnotebooks, h5py and scipy"


def run_rhythm_suite_command(
    bundle_name: str, *, engine: str, precision: str, quick: bool, out: str | None, as_json: bool
) -> int:
    from bridge_edge.export.bundle import load_bundle

    report = run_suite(load_bundle(bundle_name), engine=engine, precision=precision, quick=quick)
    data = report.as_dict()
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SUITE_JSON).write_text(json.dumps(data, indent=1) + "\n")
        try:
            plot_suite(report, folder / SUITE_PNG)
        except ModuleNotFoundError as err:  # a device install has no matplotlib; the JSON is written
            if err.name != "matplotlib":
                raise
            print(
                f"{SUITE_PNG} not drawn: matplotlib is not installed (pip install matplotlib)",
                file=sys.stderr,
            )
    if as_json:
        print(json.dumps(data, allow_nan=False))
    else:
        print(text_table(report))
    return 0 if all(t["met"] is not False for t in data["targets"].values()) else 1


def _pct(x: float | None) -> str:
    return "  -  " if x is None else f"{100 * x:5.1f}"


KNOWN_RHYTHMS = (
    ("fixed_shape", "afib"),
    ("fixed_shape", "sinus"),
    ("resequenced", "afib"),
    ("resequenced", "sinus"),
    ("resequenced", "ectopic"),
)


def _has_model_alone(report: SuiteReport) -> bool:
    return any(c.model_called is not None for c in report.cases)


def text_table(report: SuiteReport) -> str:
    lines = [f"rhythm-not-shape suite: bundle {report.bundle}, {report.engine} {report.precision}"]
    lines.append("% of scored windows called AF     " + "  ".join(f"{v:>11}" for v in VARIANTS))
    for group, rhythm in KNOWN_RHYTHMS:
        row = "  ".join(f"{_pct(report.share(group, rhythm, v)):>11}" for v in VARIANTS)
        lines.append(f"{group + ' ' + rhythm:33} {row}")
    if _has_model_alone(report):
        lines.append("the model alone, before the runtime's regular-rhythm rule:")
        for group, rhythm in KNOWN_RHYTHMS:
            row = "  ".join(f"{_pct(report.share(group, rhythm, v, 'model_alone')):>11}" for v in VARIANTS)
            lines.append(f"{group + ' ' + rhythm:33} {row}")
    lines.append("development recordings (healthy; any AF call is false): % called AF of scored hops")
    if not any(c.group == "dev_recordings" for c in report.cases):
        lines.append(f"  none installed: {NO_RECORDINGS}")
    for c in report.cases:
        if c.group in ("dev_recordings", "probe"):
            name = c.source if c.group == "dev_recordings" else f"{c.variant}: {c.source}"
            alarms = "" if c.af_alarms is None else f", {c.af_alarms} AF alarm{'s' * (c.af_alarms != 1)}"
            lines.append(
                f"  {name:58} {_pct(c.positive_share)}  ({c.called_positive}/{c.scored} scored, {c.gated} gated{alarms})"
            )
    lines.append(f"  {'pooled':58} {_pct(report.share('dev_recordings', 'sinus'))}")
    alarms = report.summary()["dev_recordings/af_alarms"]
    if alarms["bundle"] is not None:
        lines.append(
            f"  AF alarms a bedside monitor raises over the healthy recordings: {alarms['bundle']} "
            f"(runtime smoothing, {AlarmRules().onset_s:.0f}-s onset)"
        )
    for key, t in report.targets().items():
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"target {key}: {t['value']} (goal {t['goal']}) {verdict}")
    return "\n".join(lines)


def plot_suite(report: SuiteReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    rows = KNOWN_RHYTHMS
    x = np.arange(len(rows))
    for i, variant in enumerate(VARIANTS):
        values = [report.share(g, r, variant) or 0.0 for g, r in rows]
        left.bar(x + (i - 1.5) * 0.2, values, 0.2, label=variant)
        if _has_model_alone(report):
            alone = [report.share(g, r, variant, "model_alone") or 0.0 for g, r in rows]
            left.scatter(
                x + (i - 1.5) * 0.2,
                alone,
                marker="_",
                s=60,
                color="k",
                label="model alone" if i == 0 else None,
            )
    left.set_xticks(x, [f"{g}\n{r}" for g, r in rows], fontsize=8)
    left.set_ylabel("share of scored windows called AF")
    left.axhline(0.9, color="k", lw=0.6, ls="--")
    left.axhline(0.05, color="r", lw=0.6, ls="--")
    left.set_ylim(0, 1)
    left.legend(fontsize=8)
    left.set_title(
        "known rhythms: AF should be called on AF only (dashed: 0.90 recall, 0.05 false-AF goals)", fontsize=9
    )
    dev = [c for c in report.cases if c.group in ("dev_recordings", "probe")]
    names = [
        _short(
            c.source.split("/")[-1]
            if c.group == "dev_recordings"
            else f"{c.variant} {c.source.split('/')[-1]}"
        )
        for c in dev
    ]
    right.barh(
        np.arange(len(dev)),
        [c.positive_share or 0.0 for c in dev],
        color=["tab:blue" if c.group == "dev_recordings" else "tab:gray" for c in dev],
    )
    right.set_yticks(np.arange(len(dev)), names, fontsize=7)
    right.invert_yaxis()
    right.axvline(0.05, color="r", lw=0.6, ls="--")
    right.set_xlim(0, 1)
    right.set_xlabel("share of scored hops called AF (all healthy)")
    right.set_title("real PPG (blue) and shortcut probes (grey)", fontsize=9)
    fig.suptitle(
        f"rhythm-not-shape suite: bundle {report.bundle} ({report.engine} {report.precision})", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short(name: str, width: int = 36) -> str:
    """A tick label that keeps both ends (file names differ at the start, channels at the end)."""
    name = name.replace("signal_sample_single_hub_", "")  # biosignalsnotebooks' common prefix
    return name if len(name) <= width else f"{name[: width // 2 - 2]}...{name[-(width // 2 - 1) :]}"
