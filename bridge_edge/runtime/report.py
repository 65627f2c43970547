"""Human-readable lines for `bridge-edge run` (the --json form is ``Prediction.as_json``)."""

from __future__ import annotations

import time

from bridge_edge.runtime.outputs import Prediction
from bridge_edge.runtime.stats import Percentiles, PipelineStats


def format_prediction(p: Prediction) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(p.t_end))
    if p.label is None:
        what = f"-- ({p.gated}: {p.sqi_cause})" if p.sqi_cause else f"-- ({p.gated})"
    else:
        what = f"{p.label:<8} p={p.probs[p.label]:.2f} smoothed={p.smoothed_label}"
    sqi = f"{p.sqi:.2f}" if p.sqi == p.sqi else " -- "  # NaN: a flat or degenerate window
    hr = f"{p.hr_bpm:5.0f}" if p.hr_bpm is not None else "  ---"
    rr = f"{p.rr_af_score:.2f}" if p.rr_af_score is not None else " ---"
    flags = (" GAP" if p.gap else "") + (f" dropped={p.dropped_samples}" if p.dropped_samples else "")
    flags += " AF-ruled-out(regular beats)" if p.af_ruled_out else ""
    return (
        f"{clock} [{p.stream.index}:{p.stream.name}] {what}  HR {hr}  SQI {sqi}  timing {rr}  "
        f"{p.latency_ms.total:6.1f} ms (infer {p.latency_ms.infer:.1f}){flags}"
    )


def _pct(p: Percentiles) -> str:
    if p.n == 0:
        return "n=0"
    return f"p50 {p.p50_ms:.2f} ms, p99 {p.p99_ms:.2f} ms, max {p.max_ms:.2f} ms (n={p.n})"


def _engine_batch(s: PipelineStats) -> str:
    eb = s.engine_batch
    if eb is None:
        return ""
    if eb.how != "measured":
        return f" (at most {eb.size} a call: {eb.how})"
    costs = ", ".join(f"{n}: {ms:.1f}" for n, ms in eb.per_window_ms.items())
    return f" (at most {eb.size} a call: cheapest per window here; ms a window by call size {costs})"


def summary_lines(s: PipelineStats, ended: str | None = None) -> list[str]:
    lines = [f"run: ended ({ended})"] if ended else []
    lines += [
        (
            f"run: {s.hops} hops, engine {s.engine} {s.precision} ({s.engine_description}), "
            f"bundle {s.bundle_name} {s.bundle_version}"
        ),
        f"run: windows skipped {s.windows_skipped}; dropped samples {s.dropped_samples}; ring overwrites {s.overwrites}",
    ]
    if s.low_sqi_causes:
        lines.append(f"run: low-SQI windows by cause {s.low_sqi_causes}")
    lines += [f"run: latency {stage}: {_pct(p)}" for stage, p in s.latency.items()]
    batch = f"{s.inferred_windows / s.infer_calls:.1f}" if s.infer_calls else "-"
    lines.append(
        f"run: hop lag (last sample arrived -> emitted, all streams): {_pct(s.hop_lag)}; "
        f"{s.infer_calls} engine calls, mean batch {batch}{_engine_batch(s)}"
    )
    for st in s.streams:
        clock = (
            f"drift {st.clock_drift_ppm:.1f} ppm, jitter {st.clock_jitter_ms:.2f} ms, jumps {st.clock_jumps}, "
            f"resets {st.clock_resets}"
            if st.clock_drift_ppm is not None
            else "no clock fit"
        )
        lines.append(
            f"run: stream {st.index} {st.name}: {st.samples} samples, gaps {st.gap_samples}, "
            f"lost {st.lost_samples}, non-finite {st.nonfinite_samples}, hop lag {_pct(st.hop_lag)}, "
            f"lag {_pct(st.lag)}, {clock}"
        )
    lines += [f"run: engine fallback: {f}" for f in s.engine_fallbacks]
    return lines
