"""``bench latency``: per engine × precision × batch, per stage, percentiles over ≥ 1024 windows.

One call = one hop of B simulated streams, the same work ``bridge-edge run`` does per hop:

- preprocess: each stream's ``StreamingPreprocessor`` takes one hop of raw samples (band-pass,
  resample), the model-rate window slides on, beats and SQI are computed (the pipeline gates
  windows on them), and the B windows are z-scored;
- infer: one ``engine.infer`` call on the (B, L) batch;
- postprocess: per-stream probability smoothing and the label (argmax);
- end_to_end: the three together, timed as one.

The model's FLOPs (counted from the fp32 ONNX graph) turn each infer p50 into achieved GFLOP/s,
shown next to the limit of the row's own precision measured in the same run (``limits``: fp32
sgemm and ORT float kernels, int8 ORT QLinearConv/MatMulInteger, at the model's shapes). The key
ratio — ORT int8 vs torch fp32 eager at batch 1 — is the quotient of two p50s of this run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from bridge_edge.bench import limits, roofline
from bridge_edge.bench.flops import count_flops
from bridge_edge.bench.results import STATUS_OK, STATUS_UNMEASURED, BenchReport, LatencySummary, Unmeasured
from bridge_edge.bench.subject import Subject, open_engine
from bridge_edge.runtime.engines.names import PRECISIONS

log = logging.getLogger(__name__)

STAGES = ("preprocess", "infer", "postprocess", "end_to_end")
KEY_RATIO_TARGET = 0.5  # ORT int8 at most half of torch fp32 eager, batch 1 (export issue floor)
# issue #19's targets for the same ratio, by thread count (1 thread: 0.40x; 2 or more: 0.50x)
KEY_RATIO_TARGET_BY_THREADS = {1: 0.40}


@dataclass(frozen=True)
class LatencyConfig:
    engines: tuple[str, ...] = ("torch", "ort", "trt")
    precisions: tuple[str, ...] = PRECISIONS
    batches: tuple[int, ...] = (1, 8)
    windows: int = 1024  # timed windows per configuration, after warm-up
    warmup_calls: int = 10
    threads: int = 1
    raw_fs: float = 250.0  # sensor rate fed to the streaming preprocessing
    device: str = "cpu"
    matmul_seconds: float = 1.0


@dataclass(frozen=True)
class LatencyRow:
    engine: str
    precision: str
    batch: int
    stage: str
    n: int  # timed calls
    windows: int  # timed windows (n × batch)
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    throughput_windows_s: float | None  # batch / mean time of this stage
    achieved_gflops: float | None  # model FLOPs per call / p50 (infer and end_to_end only)
    pct_of_limit: float | None  # of ``limit_gflops``; None where it would exceed 100 %
    limit_gflops: float | None = None  # this precision's limit, measured in this run (limits.py)
    status: str = STATUS_OK
    reason: str | None = None
    device: str = "cpu"
    engine_description: str = ""
    bench: str = "latency"


def synthetic_ppg(seconds: float, fs: float, seed: int) -> np.ndarray:
    """A pulse-like raw signal (the bench times work, so realism only needs plausible bands)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    hr_hz = rng.uniform(1.0, 1.6)
    phase = 2 * np.pi * hr_hz * t
    return (np.sin(phase) + 0.4 * np.sin(2 * phase + 0.8) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )


class HopFeeder:
    """B simulated streams; each call pushes one hop of raw samples per stream, returns (B, L)."""

    def __init__(self, subject: Subject, raw_fs: float, batch: int, seed: int = 0):
        from bridge_edge.runtime.stream_dsp import StreamingPreprocessor
        from bridge_edge.signals.preprocess import PreprocessSpec

        self.spec = PreprocessSpec.from_dict(subject.preprocess)
        self.modality = subject.modality
        self.pre = [StreamingPreprocessor(self.spec, raw_fs) for _ in range(batch)]
        self.hop_raw = max(1, round(subject.hop_s * raw_fs))
        window_raw = math.ceil(subject.n_samples / self.spec.fs_out * raw_fs) + self.hop_raw
        self.raw = [synthetic_ppg(max(60.0, 4 * window_raw / raw_fs), raw_fs, seed + i) for i in range(batch)]
        self.pos = 0
        self.windows = np.zeros((batch, subject.n_samples))
        self._push(window_raw)  # fill the first window (untimed)

    def _push(self, n_raw: int) -> None:
        for i, (pre, raw) in enumerate(zip(self.pre, self.raw)):
            idx = (self.pos + np.arange(n_raw)) % len(raw)
            new = pre.process(raw[idx]).values
            if len(new) >= self.windows.shape[1]:
                self.windows[i] = new[-self.windows.shape[1] :]
            elif len(new):
                self.windows[i, : -len(new)] = self.windows[i, len(new) :]
                self.windows[i, -len(new) :] = new
        self.pos += n_raw

    def next_batch(self) -> np.ndarray:
        """One hop: DSP, window slide, beats + SQI (as the pipeline gates on them), z-score."""
        from bridge_edge.signals.beats import detect_beats
        from bridge_edge.signals.preprocess import normalise_windows
        from bridge_edge.signals.quality import window_sqi

        self._push(self.hop_raw)
        beats = [
            detect_beats(w, self.spec.fs_out, self.modality, self.spec.search_back) for w in self.windows
        ]
        self.sqi = window_sqi(self.windows, self.spec.fs_out, self.modality, beats=beats)
        return normalise_windows(self.windows, self.spec)


def time_engine(engine, subject: Subject, batch: int, cfg: LatencyConfig) -> dict[str, np.ndarray]:
    """Seconds per call for every stage, over ceil(windows / batch) calls after warm-up."""
    from bridge_edge.runtime.outputs import ProbabilitySmoother

    feeder = HopFeeder(subject, cfg.raw_fs, batch)
    smoother = ProbabilitySmoother(subject.labels)
    labels = np.asarray(subject.labels)
    n_calls = math.ceil(cfg.windows / batch)
    times = np.zeros((len(STAGES), n_calls))
    clock = time.perf_counter
    for call in range(-cfg.warmup_calls, n_calls):
        t0 = clock()
        x = feeder.next_batch()
        t1 = clock()
        probs = engine.infer(x)
        t2 = clock()
        smoothed = np.stack([smoother.update(i, p) for i, p in enumerate(probs)])
        _predicted = labels[np.argmax(smoothed, axis=1)]
        t3 = clock()
        if call >= 0:
            times[:, call] = (t1 - t0, t2 - t1, t3 - t2, t3 - t0)
    return dict(zip(STAGES, times))


def _row(
    engine, precision: str, batch: int, stage: str, samples: np.ndarray, gflop_per_call: float
) -> LatencyRow:
    """One stage of one timed configuration; ``engine`` (an open Engine) names it, says what it
    is and where it computed."""
    s = LatencySummary.of_seconds(samples)
    achieved = None
    if stage in ("infer", "end_to_end") and gflop_per_call > 0 and s.p50_ms:
        achieved = round(gflop_per_call / (s.p50_ms / 1e3), 3)
    return LatencyRow(
        engine=engine.name,
        precision=precision,
        batch=batch,
        stage=stage,
        n=s.n,
        windows=s.n * batch,
        p50_ms=s.p50_ms,
        p90_ms=s.p90_ms,
        p99_ms=s.p99_ms,
        max_ms=s.max_ms,
        mean_ms=s.mean_ms,
        throughput_windows_s=round(batch / (s.mean_ms / 1e3), 2) if s.mean_ms else None,
        achieved_gflops=achieved,
        pct_of_limit=None,  # filled in by run() once every limit of the run is measured
        device=engine.device,
        engine_description=engine.description,
    )


def pct_of_limit(achieved_gflops: float | None, limit_gflops: float | None) -> float | None:
    """Achieved / the precision's limit in %; None (not shown) where it would exceed 100 %: the
    limit was measured while the machine had less to give than when the model ran, so it is no
    limit."""
    if not achieved_gflops or not limit_gflops:
        return None
    pct = round(100 * achieved_gflops / limit_gflops, 2)
    return pct if pct <= 100 else None


def _device(engine_name: str, cfg: LatencyConfig) -> str:
    """Where an engine that could not open would have computed: ``--device`` moves torch only."""
    return {"ort": "cpu", "trt": "cuda"}.get(engine_name, cfg.device)


def _unmeasured_row(engine: str, precision: str, batch: int, reason: str, device: str) -> LatencyRow:
    return LatencyRow(
        engine=engine,
        precision=precision,
        batch=batch,
        stage="end_to_end",
        n=0,
        windows=0,
        p50_ms=None,
        p90_ms=None,
        p99_ms=None,
        max_ms=None,
        mean_ms=None,
        throughput_windows_s=None,
        achieved_gflops=None,
        pct_of_limit=None,
        status=STATUS_UNMEASURED,
        reason=reason,
        device=device,
    )


def key_ratio(rows: list[dict], threads: int | None = None) -> dict:
    """ORT int8 / torch fp32 eager at batch 1, from the infer and end-to-end p50s of this run."""

    def p50(engine: str, precision: str, stage: str) -> float | None:
        for r in rows:
            if (r["engine"], r["precision"], r["batch"], r["stage"], r["status"]) == (
                engine,
                precision,
                1,
                stage,
                STATUS_OK,
            ):
                return r["p50_ms"]
        return None

    out: dict = {
        "numerator": "ort int8 batch 1",
        "denominator": "torch fp32 eager batch 1",
        "target_max": KEY_RATIO_TARGET
        if threads is None
        else KEY_RATIO_TARGET_BY_THREADS.get(threads, KEY_RATIO_TARGET),
    }
    for stage in ("infer", "end_to_end"):
        num, den = p50("ort", "int8", stage), p50("torch", "fp32", stage)
        out[f"{stage}_p50_ratio"] = round(num / den, 4) if num and den else None
    ratio = out["infer_p50_ratio"]
    out["meets_target"] = None if ratio is None else bool(ratio <= out["target_max"])
    described = [
        r.get("engine_description")
        for r in rows
        if (r["engine"], r["precision"], r["batch"], r["status"]) == ("ort", "int8", 1, STATUS_OK)
    ]
    out["int8_engine"] = next((d for d in described if d), None)  # names the ONNX file ORT ran
    if ratio is None:
        out["reason"] = "ort int8 or torch fp32 batch 1 was not measured in this run (see rows)"
    return out


def run(subject: Subject, cfg: LatencyConfig, report: BenchReport) -> dict[tuple, dict[str, np.ndarray]]:
    """Fill ``report`` with rows and summary; returns raw per-call seconds for the plots."""
    # The limits (sgemm, and ORT's float and int8 kernels at the model's shapes) are measured
    # before and again after every configuration (interleaved with the model, so a neighbour's
    # load hits both alike), and the best of all of it is each precision's limit.
    fp32_path = subject.onnx_paths.get("fp32")
    peaks, kernels = _measure_limits(cfg, fp32_path, 1.0)
    flops = _graph_flops(fp32_path)
    gflop_per_window = flops.per_window / 1e9 if flops else 0.0
    raw: dict[tuple, dict[str, np.ndarray]] = {}
    beyond_export: dict[str, int] = {}  # engine -> FLOPs per window it runs beyond the graph
    combos = [(e, p) for e in cfg.engines for p in cfg.precisions]
    for engine_name, precision in tqdm(combos, desc="bench latency", unit="config"):
        engine = open_engine(subject, engine_name, precision, cfg.threads, cfg.device)
        if isinstance(engine, Unmeasured):
            log.info("latency %s: unmeasured (%s)", engine.source, engine.reason)
            for batch in cfg.batches:
                report.add(
                    _unmeasured_row(engine_name, precision, batch, engine.reason, _device(engine_name, cfg))
                )
            continue
        try:
            # torch eager runs the model as written; the ONNX files run it after the export's exact
            # rewrites, which save FLOPs (docs/benchmarks.md): each engine is credited its own work
            beyond = getattr(engine, "flops_beyond_export", None)
            if beyond is not None and flops:
                beyond_export[engine_name] = beyond(subject.n_samples)
            gflop = gflop_per_window + beyond_export.get(engine_name, 0) / 1e9
            for batch in cfg.batches:
                samples = time_engine(engine, subject, batch, cfg)
                raw[(engine_name, precision, batch)] = samples
                for stage in STAGES:
                    report.add(_row(engine, precision, batch, stage, samples[stage], gflop * batch))
        finally:
            engine.close()
        more_peaks, more_kernels = _measure_limits(cfg, fp32_path, 0.5)
        peaks, kernels = peaks + more_peaks, kernels + more_kernels
    sgemm = roofline.limit_gflops(peaks)
    by_precision = limits.limits_by_precision(sgemm, kernels)
    over = 0
    for row in report.rows:
        row["limit_gflops"] = by_precision.get(row["precision"]) if row.get("achieved_gflops") else None
        if row.get("achieved_gflops"):
            row["pct_of_limit"] = pct_of_limit(row["achieved_gflops"], row["limit_gflops"])
            over += row["pct_of_limit"] is None
    if over:
        log.warning("%d rows ran faster than this run's best limit of their precision; not shown", over)
    report.summary.update(
        subject=subject.label,
        notes=subject.notes,
        config=asdict(cfg),
        flops={
            "per_window": flops.per_window if flops else None,
            "by_op": flops.by_op if flops else {},
            "uncounted_ops": flops.uncounted if flops else [],
            "beyond_graph_per_window": beyond_export,  # torch eager: the model as written
            "counted": "Conv/ConvTranspose/MatMul/Gemm (+ quantized forms), 2 FLOPs per MAC",
        },
        limits={
            "by_precision": by_precision,
            "sgemm_gflops": sgemm,
            "sgemm_peaks": [asdict(p) for p in peaks],
            "kernels": _best_kernels(kernels),
            "rows_over_limit": over,
            "fp16": "held to the fp32 limit (ORT's CPU provider has no x86 fp16 Conv/GEMM kernels)",
        },
        key_ratio=key_ratio(report.rows, cfg.threads),
    )
    return raw


def _graph_flops(fp32_path):
    """The fp32 graph's FLOP count, None without the file or the onnx package (a device install
    leaves it out): the rows then carry no achieved rate, and the times are still measured."""
    if fp32_path is None:
        return None
    try:
        return count_flops(fp32_path, batch=1)
    except ImportError as err:
        log.warning("FLOPs per window unmeasured: %s (pip install onnx)", err)
        return None


def _measure_limits(cfg: LatencyConfig, fp32_path, seconds: float):
    peaks = roofline.measure(cfg.threads, seconds=cfg.matmul_seconds * seconds)
    kernels = []
    if fp32_path is not None:
        try:
            kernels = limits.measure_kernels(fp32_path, cfg.threads, seconds=cfg.matmul_seconds * seconds)
        except Exception as err:  # noqa: BLE001 - a kernel ORT cannot build here leaves that limit unmeasured
            log.warning("ORT kernel limits unmeasured: %s: %s", type(err).__name__, err)
    return peaks, kernels


def _best_kernels(kernels: list) -> list[dict]:
    """The best rate of each (precision, kernel) over the run's repeats."""
    best: dict = {}
    for k in kernels:
        key = (k.precision, k.kernel)
        if key not in best or k.gflops > best[key].gflops:
            best[key] = k
    return [asdict(k) for k in best.values()]
