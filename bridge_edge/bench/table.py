"""The README results table, generated from the committed bench JSON (never typed by hand).

``render(results_dir)`` turns whichever of latency/streams/training/power.json exist into
markdown; ``rewrite_between_markers`` replaces only the text between
``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->``.
"""

from __future__ import annotations

from pathlib import Path

from bridge_edge.bench.results import STATUS_OK, BenchReport, load_report
from bridge_edge.errors import ConfigError
from bridge_edge.runtime.engines.names import PRECISIONS

START = "<!-- bench-table:start -->"
END = "<!-- bench-table:end -->"
BENCHES = ("latency", "streams", "training", "power")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def run_note(report: BenchReport) -> str:
    """Threads and the machine's load average (1 min) at start and end of that run."""
    m, cfg = report.machine, report.summary.get("config", {})
    start, end = m.get("load_average_at_start"), m.get("load_average_at_end")
    notes = [f"{cfg['threads']} thread(s)"] if cfg.get("threads") else []
    if start and end:
        notes.append(f"load avg {start[0]:.1f} → {end[0]:.1f} on {m.get('cpu_logical_cores', '?')} cores")
    return "; ".join(notes)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def machine_line(report: BenchReport) -> str:
    m = report.machine
    versions = m.get("versions", {})
    parts = [
        f"{m.get('cpu_model', '?')}, {m.get('cpu_logical_cores', '?')} cores",
        ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]
    return "_Machine: " + "; ".join(parts) + "._"


ENGINE_ORDER = ("torch", "ort", "trt")
PRECISION_ORDER = PRECISIONS


def _order(value: str, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def _pct(row: dict) -> str:
    """% of the precision's limit (older files: of sgemm); never above 100 (an older result file
    may hold one: shown as over the limit)."""
    pct = row.get("pct_of_limit", row.get("pct_of_matmul_limit"))
    if pct is not None and pct <= 100:
        return _fmt(pct)
    return "over limit" if row.get("achieved_gflops") else _fmt(None)


def latency_section(report: BenchReport) -> list[str]:
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in report.rows:
        by_key.setdefault((r["engine"], r["precision"], r["batch"]), {})[r["stage"]] = r
    keys = sorted(by_key, key=lambda k: (k[2], _order(k[0], ENGINE_ORDER), _order(k[1], PRECISION_ORDER)))
    rows, unmeasured = [], {}
    for engine, precision, batch in keys:
        stages = by_key[(engine, precision, batch)]
        e2e = stages.get("end_to_end", {})
        if e2e.get("status") != STATUS_OK:  # one line per engine/precision, whatever the batches
            unmeasured.setdefault((engine, precision, e2e.get("reason")), []).append(str(batch))
            continue
        inf = stages["infer"]
        rows.append(
            [
                engine,
                precision,
                str(batch),
                str(inf["n"]),
                f"{_fmt(inf['p50_ms'])} / {_fmt(inf['p99_ms'])}",
                f"{_fmt(e2e['p50_ms'])} / {_fmt(e2e['p99_ms'])} / {_fmt(e2e['max_ms'])}",
                _fmt(e2e["throughput_windows_s"]),
                _fmt(inf["achieved_gflops"]),
                _fmt(inf.get("limit_gflops")),
                _pct(inf),
            ]
        )
    for (engine, precision, reason), batches in sorted(
        unmeasured.items(), key=lambda kv: (_order(kv[0][0], ENGINE_ORDER), _order(kv[0][1], PRECISION_ORDER))
    ):
        rows.append([engine, precision, ", ".join(batches), f"unmeasured: {reason}", "", "", "", "", "", ""])
    s = report.summary
    out = [
        f"**Latency** (bundle {s.get('subject', '?')}; ms per call of one hop of B streams; {run_note(report)})",
        "",
    ]
    out += _table(
        [
            "engine",
            "precision",
            "batch",
            "n calls",
            "infer p50 / p99",
            "end-to-end p50 / p99 / max",
            "windows/s",
            "GFLOP/s",
            "limit GFLOP/s",
            "% of limit",
        ],
        rows,
    )
    flops = s.get("flops", {}).get("per_window")
    ratio = s.get("key_ratio", {})
    out += ["", _limits_line(s, flops)]
    if ratio.get("infer_p50_ratio") is not None:
        verdict = "meets" if ratio["meets_target"] else "misses"
        out.append(
            f"ORT int8 vs torch fp32 eager, batch 1 (p50, same run): infer **{ratio['infer_p50_ratio']:.3f}×**, "
            f"end to end {_fmt(ratio.get('end_to_end_p50_ratio'))}× — {verdict} the ≤ {ratio['target_max']}× target."
        )
    elif ratio:
        out.append(f"ORT int8 vs torch fp32 ratio: not measured ({ratio.get('reason')}).")
    return out


def _limits_line(s: dict, flops: float | None) -> str:
    model = f"Model: {_fmt(flops / 1e9 if flops else None)} GFLOP per window"
    beyond = s.get("flops", {}).get("beyond_graph_per_window") or {}
    if flops and beyond:  # engines that run the model as written, before the export's rewrites
        model += (
            " in the exported graph ("
            + ", ".join(
                f"{engine} as written {_fmt((flops + extra) / 1e9)}"
                for engine, extra in sorted(beyond.items())
            )
            + ")"
        )
    if "limits" not in s:  # an older result file: one fp32 sgemm limit for every row
        limit = s.get("matmul_limit", {}).get("gflops")
        return f"{model}; this machine's sgemm limit measured in the same run: {_fmt(limit)} GFLOP/s."
    lim = s["limits"]
    kernels = ", ".join(f"{k['kernel']} {_fmt(k['gflops'])}" for k in lim.get("kernels", []))
    by = lim.get("by_precision", {})
    return (
        f"{model}; limits measured in the same run at the model's heaviest Conv/MatMul shapes, each "
        f"row held to its own precision's: fp32 {_fmt(by.get('fp32'))} GFLOP/s (best of sgemm "
        f"{_fmt(lim.get('sgemm_gflops'))} and ORT float kernels), int8 {_fmt(by.get('int8'))} GOP/s "
        f"(ORT int8 kernels); fp16 rows use the fp32 limit. Kernels: {kernels or 'unmeasured'}."
    )


def streams_section(report: BenchReport) -> list[str]:
    rows = []
    swept = "thread_split" in report.summary  # then each answer names its engine thread count
    for r in report.rows:
        if r.get("kind") == "ingest":
            rows.append(
                ["ingest path alone (no model)", "", f"{_fmt(r.get('samples_per_s'))} samples/s", "", ""]
            )
        elif r.get("kind") == "max" and r.get("status") == STATUS_OK:
            answer = ("≥ " if r.get("capped") else "") + _fmt(r.get("max_realtime_streams"))
            if r.get("confirmed") is False:  # kept up in the search, not in the run at that count
                answer += " (not confirmed)"
            elif (r.get("search_max_streams") or 0) > (r.get("max_realtime_streams") or 0):
                answer += f" ({r['search_max_streams']} kept up once, not confirmed)"
            rows.append(
                [
                    f"{r['engine']} ({r.get('threads')} thread{'' if r.get('threads') == 1 else 's'})"
                    if swept
                    else r["engine"],
                    r["precision"],
                    answer,
                    f"{_fmt(r.get('e2e_p50_ms'))} / {_fmt(r.get('e2e_p99_ms'))} / "
                    f"{_fmt(r.get('hop_lag_p99_ms'))} / {_fmt(r.get('lag_p99_ms'))}",
                    _per_call(r),
                ]
            )
        elif r.get("kind") == "max":
            rows.append([r["engine"], r["precision"], f"unmeasured: {r.get('reason')}", "", ""])
        elif r.get("kind") == "split":
            counts = ", ".join(
                f"{t}: {n}" for t, n in sorted(r["streams_by_threads"].items(), key=lambda x: int(x[0]))
            )
            rows.append(
                [
                    r["engine"],
                    r["precision"],
                    f"thread split: {r['threads']} engine threads",
                    f"streams by threads {counts}",
                    "",
                ]
            )
    seconds = report.summary.get("config", {}).get("trial_seconds")
    title = f"**Concurrent real-time streams** (bundle {report.summary.get('subject', '?')}; {_fmt(seconds)} s trials; "
    return [title + f"{run_note(report)})", ""] + _table(
        [
            "engine",
            "precision",
            "max streams kept up",
            "at that count: end-to-end p50 / p99, hop lag p99, lag p99 (ms)",
            "windows per call",
        ],
        rows,
    )


def _per_call(row: dict) -> str:
    """Mean windows per engine call, with the engine batch capping it (records from before it: none)."""
    mean = _fmt(row.get("mean_batch"))
    if row.get("engine_batch") is None:
        return mean
    return f"{mean} (at most {row['engine_batch']}, {row.get('engine_batch_how')})"


def training_section(report: BenchReport) -> list[str]:
    rows = [
        [
            r["method"],
            _fmt(r.get("trainable_params")),
            _fmt(r.get("peak_memory_mb")),
            _fmt(r.get("seconds_per_epoch")),
            _fmt(r.get("test_macro_f1")),
            _fmt(r.get("test_positive_auroc")),
        ]
        if r["status"] == STATUS_OK
        else [r["method"], f"unmeasured: {r.get('reason')}", "", "", "", ""]
        for r in report.rows
    ]
    recipe = (report.summary.get("recipe") or {}).get("name", "?")
    device = report.summary.get("device")
    where = f"; trained on {device}" if device else ""
    lines = [f"**Training cost, bridge vs KD** (recipe `{recipe}`, same data, same run{where})", ""] + _table(
        ["method", "trainable params", "peak memory MB", "s / epoch", "test macro-F1", "test AF AUROC"], rows
    )
    side_by_side = report.summary.get("interleaved")
    if side_by_side:
        lines += [
            "",
            f"Side by side ({side_by_side['rounds']} rounds of one bridge epoch then one KD epoch on "
            f"{side_by_side['windows']} pair windows, {side_by_side.get('device', '?')}): median seconds a batch, "
            f"bridge {_fmt(side_by_side['bridge_median_batch_seconds'])} vs KD "
            f"{_fmt(side_by_side['kd_median_batch_seconds'])}, ratio **{_fmt(side_by_side['batch_seconds_ratio'])}** "
            f"(per round: {', '.join(_fmt(r) for r in side_by_side['batch_seconds_ratio_per_round'])}).",
        ]
    return lines


def power_section(report: BenchReport) -> list[str]:
    rows = [
        [
            r["source"],
            r.get("workload", ""),
            _fmt(r.get("mean_watts")),
            _fmt(r["joules_per_inference"] * 1e3 if r.get("joules_per_inference") is not None else None),
        ]
        if r["status"] == STATUS_OK
        else [r["source"], r.get("workload", ""), f"unmeasured: {r.get('reason')}", ""]
        for r in report.rows
    ]
    return ["**Power**", ""] + _table(["source", "workload", "mean W", "mJ / inference"], rows)


def scale_section(report: BenchReport) -> list[str]:
    rows = [
        [
            _fmt(r["subject_hours"]),
            str(r["processes"]),
            r["stage"],
            _fmt(r.get("seconds")),
            _fmt(r.get("peak_rss_mb")),
            _fmt(r.get("peak_anon_mb")),
            _fmt(r.get("windows_per_s")),
        ]
        if r["status"] == STATUS_OK
        else [_fmt(r["subject_hours"]), str(r["processes"]), r["stage"], f"unmeasured: {r.get('reason')}"]
        + [""] * 3
        for r in report.rows
    ]
    s = report.summary
    head = (
        f"**Fit at scale** (recipe `{s.get('recipe')}`; peak RSS growth, largest vs smallest corpus, "
        f"1 process: {_fmt(s.get('peak_rss_growth'))}; anonymous memory: {_fmt(s.get('peak_anon_growth'))})"
    )
    return [head, ""] + _table(
        ["subject-hours", "processes", "stage", "s", "peak RSS MB", "peak anon MB", "windows / s"], rows
    )


# "scale" is rendered by its own command only; the README table (render) shows BENCHES
SECTIONS = {
    "latency": latency_section,
    "streams": streams_section,
    "training": training_section,
    "power": power_section,
    "scale": scale_section,
}


def render(results_dir: Path, link_prefix: str = "benchmarks/results") -> str:
    """Markdown for every result file present; ``link_prefix`` is how the README reaches the PNGs."""
    parts: list[str] = []
    figures: list[str] = []
    for bench in BENCHES:
        path = Path(results_dir) / f"{bench}.json"
        if not path.exists():
            continue
        report = load_report(path)
        if not parts:
            parts += [machine_line(report), ""]
        parts += SECTIONS[bench](report) + [""]
        if path.with_suffix(".png").exists():
            figures.append(f"[{bench}]({link_prefix}/{bench}.png)")
        if bench == "latency" and (Path(results_dir) / "roofline.png").exists():
            figures.append(f"[roofline]({link_prefix}/roofline.png)")
        # the same bench at another setting, run with --out RESULTS/<name> (e.g. threads2/):
        # rendered after the main one; quick/ is CI output and never part of the table
        for extra in sorted(Path(results_dir).glob(f"*/{bench}.json")):
            if extra.parent.name != "quick":
                parts += SECTIONS[bench](load_report(extra)) + [""]
    if not parts:
        return f"_No bench results under {link_prefix} yet: run `bridge-edge bench latency`._\n"
    if figures:
        parts += ["Plots: " + ", ".join(figures) + "; method: [docs/benchmarks.md](docs/benchmarks.md).", ""]
    return "\n".join(parts)


def rewrite_between_markers(text: str, table: str, where: str = "README.md") -> str:
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ConfigError(
            f"{where} has no '{START}' ... '{END}' block; expected both markers, start first",
            key="markers",
            value=where,
            expected=[START, END],
        )
    return text[: start + len(START)] + "\n" + table.rstrip("\n") + "\n" + text[end:]
