"""PNG figures of the bench results (matplotlib, Agg backend; imported lazily by the commands)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge_edge.bench.results import STATUS_OK


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_distributions(raw: dict[tuple, dict[str, np.ndarray]], path: Path, title: str) -> Path | None:
    """Box plots (whiskers p1-p99, max as a cross) of infer and end-to-end ms per configuration,
    and the p50 of each stage stacked, so where the time goes is visible next to how it spreads."""
    if not raw:
        return None
    plt = _pyplot()
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    order = {"torch": 0, "ort": 1, "trt": 2, "fp32": 0, "fp16": 1, "int8": 2}
    keys = sorted(raw, key=lambda k: (k[2], order.get(k[0], 9), order.get(k[1], 9)))
    names = [f"{e} {p}\nb={b}" for e, p, b in keys]
    x = np.arange(1, len(keys) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(min(18, max(11, 0.75 * len(keys) * 3)), 4.8))
    for ax, stage in zip(axes[:2], ("infer", "end_to_end")):
        data = [raw[k][stage] * 1e3 for k in keys]
        ax.boxplot(data, whis=(1, 99), showfliers=False)
        ax.scatter(x, [d.max() for d in data], marker="x", color="C3", label="max")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{stage.replace('_', ' ')} per call (ms)")
    axes[0].set_ylabel("box p25-p75, whiskers p1-p99")
    axes[1].legend(fontsize=8)
    bottom = np.zeros(len(keys))
    for i, stage in enumerate(("preprocess", "infer", "postprocess")):
        p50 = np.array([np.median(raw[k][stage]) * 1e3 for k in keys])
        axes[2].bar(x, p50, bottom=bottom, color=f"C{i}", label=stage)
        bottom += p50
    axes[2].set_title("p50 per stage (ms)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(x, names, fontsize=7)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def streams_vs_lag(rows: list[dict], path: Path, title: str, hop_ms: float | None = None) -> Path | None:
    """End-to-end p99 (newest sample -> prediction) of every stream count tried, per engine/precision.

    Filled markers kept up in real time, hollow ones did not; the dashed line is the hop (the
    real-time budget) and the star is the p50 at the answer. Beside it, where the trials carry
    it, each stage's share of a hop (``stage_split``).
    """
    trials = [r for r in rows if r.get("kind") == "trial" and r.get("e2e_p99_ms") is not None]
    if not trials:
        return None
    plt = _pyplot()
    split = [r for r in trials if r.get("wait_p50_ms") is not None]
    fig, axes = plt.subplots(1, 2 if split else 1, figsize=(13 if split else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    if split:  # the thread count the split row chose, where the bench searched several
        chosen = [_config(r) for r in rows if r.get("kind") == "split"]
        stage_split(axes[0][1], split, hop_ms, chosen[0] if chosen else None)
    configs = sorted({_config(r) for r in trials})
    for i, config in enumerate(configs):
        pts = sorted((r for r in trials if _config(r) == config), key=lambda r: r["streams"])
        color = f"C{i}"
        ax.plot([r["streams"] for r in pts], [r["e2e_p99_ms"] for r in pts], "-", color=color, alpha=0.5)
        for r in pts:
            ax.plot(
                r["streams"],
                r["e2e_p99_ms"],
                "o",
                color=color,
                markerfacecolor=color if r["keeps_up"] else "white",
            )
        best = [
            r
            for r in rows
            if r.get("kind") == "max" and _config(r) == config and r.get("e2e_p50_ms") is not None
        ]
        for r in best:
            ax.plot(r["streams"], r["e2e_p50_ms"], "*", color=color, markersize=12)
        ax.plot(
            [],
            [],
            "o-",
            color=color,
            label=_config_label(config, len(configs) > len({c[:2] for c in configs})),
        )
    if hop_ms:
        ax.axhline(
            hop_ms, color="k", linestyle="--", linewidth=1, label=f"hop ({hop_ms:.0f} ms): real-time budget"
        )
    from matplotlib.ticker import FormatStrFormatter

    ax.set_xlabel("concurrent simulated real-time streams")
    ax.set_ylabel("prediction lag, end-to-end p99 (ms)")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FormatStrFormatter("%d"))
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="filled: keeps up; star: p50 at max", title_fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _config(row: dict) -> tuple:
    """(engine, precision, engine threads) of a streams row (threads 0 in rows written before)."""
    return row["engine"], row["precision"], row.get("threads") or 0


def _config_label(config: tuple, with_threads: bool) -> str:
    engine, precision, threads = config
    return (
        f"{engine} {precision}, {threads} thread{'s' if threads != 1 else ''}"
        if with_threads
        else f"{engine} {precision}"
    )


STAGE_STYLE = (
    ("preprocess", "streaming DSP", "C2"),
    ("wait", "wait for the engine", "C3"),
    ("infer", "engine call", "C0"),
)


def stage_split(ax, trials: list[dict], hop_ms: float | None, config: tuple | None = None) -> None:
    """p50 (solid) and p99 (dashed) of each stage against the stream count, for ``config``
    (engine, precision, threads; default: the first trial's)."""
    from matplotlib.ticker import FormatStrFormatter

    config = config or _config(trials[0])
    engine, precision, threads = config
    pts = sorted((r for r in trials if _config(r) == config), key=lambda r: r["streams"])
    n = [r["streams"] for r in pts]
    for stage, name, color in STAGE_STYLE:
        ax.plot(n, [r[f"{stage}_p50_ms"] for r in pts], "o-", color=color, label=f"{name} p50")
        ax.plot(n, [r[f"{stage}_p99_ms"] for r in pts], "--", color=color, alpha=0.6, label=f"{name} p99")
    kept = [r["streams"] for r in pts if r["keeps_up"]]
    if kept:
        ax.axvline(max(kept), color="k", linewidth=1, alpha=0.5, label=f"knee: {max(kept)} streams keep up")
    if hop_ms:
        ax.axhline(hop_ms, color="k", linestyle="--", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FormatStrFormatter("%d"))
    ax.set_yscale("log")
    ax.set_xlabel("concurrent simulated real-time streams")
    ax.set_ylabel("ms per hop (engine call: per batch)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"where a hop's time goes: {_config_label(config, bool(threads))}", fontsize=10)


TRAINING_PANELS = (
    ("trainable_params", "trainable parameters"),
    ("peak_memory_mb", "peak memory (MB)"),
    ("seconds_per_epoch", "seconds per epoch"),
    ("test_macro_f1", "test macro-F1"),
)


def _label(v: float) -> str:
    if np.isnan(v):
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def training_bars(rows: list[dict], path: Path, title: str) -> Path | None:
    ok = [r for r in rows if r.get("status") == STATUS_OK]
    if not ok:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(TRAINING_PANELS), figsize=(13, 3.8))
    methods = [r["method"] for r in ok]
    for ax, (key, label) in zip(axes, TRAINING_PANELS):
        values = [r.get(key) if r.get(key) is not None else np.nan for r in ok]
        bars = ax.bar(methods, values, color=[f"C{i}" for i in range(len(ok))])
        ax.bar_label(bars, labels=[_label(v) for v in values], fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def power_bars(rows: list[dict], path: Path, title: str) -> Path | None:
    ok = [r for r in rows if r.get("status") == STATUS_OK and r.get("joules_per_inference") is not None]
    if not ok:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [f"{r['source']}\n{r['workload']}" for r in ok]
    bars = ax.bar(names, [r["joules_per_inference"] * 1e3 for r in ok])
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_ylabel("mJ per inference")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roofline(rows: list[dict], summary: dict, path: Path, title: str) -> Path | None:
    """Achieved G(FL)OP/s of each measured engine x precision x batch (infer p50) against the
    limit of its own precision measured in the same run (dashed line per precision), on one
    log axis: how far each engine is from what this CPU does with this model's operators."""
    measured = [r for r in rows if r.get("stage") == "infer" and r.get("achieved_gflops")]
    by_precision = summary.get("limits", {}).get("by_precision", {})
    if not measured:
        return None
    plt = _pyplot()
    order = {"torch": 0, "ort": 1, "trt": 2, "fp32": 0, "fp16": 1, "int8": 2}
    measured.sort(key=lambda r: (r["batch"], order.get(r["engine"], 9), order.get(r["precision"], 9)))
    colors = {"fp32": "C0", "fp16": "C1", "int8": "C2"}
    fig, ax = plt.subplots(figsize=(max(6.5, 0.8 * len(measured) + 3), 4.6))
    x = np.arange(len(measured))
    ax.bar(
        x,
        [r["achieved_gflops"] for r in measured],
        color=[colors.get(r["precision"], "C7") for r in measured],
    )
    for i, r in enumerate(measured):
        pct = r.get("pct_of_limit")
        ax.annotate(
            f"{pct:.0f} %" if pct is not None else "over",
            (i, r["achieved_gflops"]),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    for precision, limit in by_precision.items():
        if limit and precision != "fp16":
            ax.axhline(limit, ls="--", color=colors[precision], lw=1, label=f"{precision} limit {limit:.0f}")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{r['engine']} {r['precision']}\nb={r['batch']}" for r in measured], fontsize=7)
    ax.set_ylabel("achieved G(FL)OP/s (infer p50)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scale_curves(rows: list[dict], path: Path, title: str) -> Path | None:
    """Peak RSS and throughput of each fit stage against the corpus size; 1 process solid, 2+ dashed."""
    ok = [r for r in rows if r.get("status") == STATUS_OK]
    if not ok:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    stages = list(dict.fromkeys(r["stage"] for r in ok))
    for i, stage in enumerate(stages):
        for procs in sorted({r["processes"] for r in ok}):
            pts = sorted(
                (r["subject_hours"], r) for r in ok if r["stage"] == stage and r["processes"] == procs
            )
            if not pts:
                continue
            x = [h for h, _ in pts]
            style = dict(color=f"C{i % 10}", marker="o", ls="-" if procs == 1 else "--")
            label = f"{stage} ({procs} proc)"
            axes[0].plot(x, [r["peak_rss_mb"] for _, r in pts], label=label, **style)
            axes[1].plot(x, [r.get("windows_per_s") or np.nan for _, r in pts], label=label, **style)
    for ax, ylabel in zip(axes, ("peak RSS (MB)", "corpus windows / stage second")):
        ax.set_xscale("log")
        ax.set_xlabel("simulated subject-hours")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
