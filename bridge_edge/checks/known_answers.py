"""Live-pipeline checks with known answers: a scripted AF episode and a real PPG recording.

``af_episode_check`` streams a simulated patient whose rhythm script is known (e.g. 3 min
sinus, 3 min AF, 3 min sinus) through the full pipeline and reports, per phase, the fraction of
hops labelled with the positive label (raw and smoothed). Windows that straddle a phase change
are counted apart, not scored.

``replay_real_ppg`` streams a real finger PPG recording shipped with the ``heartpy`` package
(``data2.csv``: ~117 Hz with a ms timer column; ``data3.csv``: ~100 Hz with datetimes). The
file is located with ``importlib.util.find_spec`` and read with numpy; heartpy is not
imported. There is no rhythm label: the report is the label distribution, its stability from
hop to hop, SQI and HR.

Both also count the pulse-timing baseline's call on the same hops (``Prediction.rr_af_score``
against ``signals.rr_timing.RR_AF_THRESHOLD``), so the model and plain timing sit side by side.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge_edge.devices.replay import from_array
from bridge_edge.runtime.outputs import Prediction


@dataclass(frozen=True)
class PhaseResult:
    rhythm: str
    start_s: float
    end_s: float
    hops: int  # windows entirely inside the phase and given to the model
    positive_fraction: float | None
    smoothed_positive_fraction: float | None
    gated: int
    # the pulse-timing baseline on the same hops: fraction with rr_af_score >= its threshold
    # (hops it could not score count as not irregular), and how many it could not score
    timing_positive_fraction: float | None = None
    timing_unscored: int = 0


@dataclass(frozen=True)
class EpisodeResult:
    positive_label: str
    engine: str
    precision: str
    bundle: str
    phases: list[PhaseResult]
    straddling_hops: int
    script: list[tuple[str, float]] = field(default_factory=list, repr=False)
    # per hop: window end (s of stream time), P(positive) raw and smoothed (NaN when not inferred)
    series: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)), repr=False)


@dataclass(frozen=True)
class RealPpgResult:
    file: str
    fs: float
    seconds: float
    hops: int
    gated: dict[str, int]
    labels: dict[str, int]
    stability: float | None  # fraction of consecutive inferred hops with the same label
    sqi_median: float
    hr_median_bpm: float | None
    timing_irregular: int  # scored hops whose pulse-timing score calls AF (all false alarms here)
    timing_unscored: int  # scored hops without a timing score (low SQI, too few beats)
    engine: str
    precision: str
    bundle: str
    predictions: list[dict] = field(default_factory=list, repr=False)


class _Collector:
    def __init__(self) -> None:
        self.preds: list[Prediction] = []

    def on_prediction(self, p: Prediction) -> None:
        self.preds.append(p)


def _timing_counts(preds: list[Prediction]) -> tuple[int, int]:
    """(hops the pulse-timing baseline calls AF, hops it could not score)."""
    from bridge_edge.signals.rr_timing import RR_AF_THRESHOLD

    scores = [p.rr_af_score for p in preds]
    return sum(s is not None and s >= RR_AF_THRESHOLD.value for s in scores), sum(s is None for s in scores)


def _stream(
    samples: np.ndarray,
    fs: float,
    bundle,
    engine: str,
    precision: str,
    threads: int | None,
    name: str,
    engine_choice=None,
):
    from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig

    source = from_array(samples, fs, chunk_sizes=(max(1, int(fs * 0.04)),), name=name)
    pipe = Pipeline(
        [source],
        bundle,
        engine=engine,
        precision=precision,
        config=PipelineConfig(lossless=True, threads=threads),
        engine_choice=engine_choice,
    )
    collector = _Collector()
    pipe.add_listener(collector)
    pipe.run_until_done()
    return collector.preds, pipe


def af_episode_check(
    bundle,
    script=(("sinus", 180.0), ("afib", 180.0), ("sinus", 180.0)),
    seed: int = 7,
    fs: float = 125.0,
    engine: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    engine_choice=None,
) -> EpisodeResult:
    from bridge_edge.signals.simulator import PatientSimulator

    total = float(sum(s for _, s in script))
    ppg = PatientSimulator(seed, fs_ppg=fs, fs_ecg=fs, script=list(script)).generate(total).ppg
    preds, pipe = _stream(ppg, fs, bundle, engine, precision, threads, f"sim ppg seed={seed}", engine_choice)
    positive = pipe.model.positive_label or pipe.model.labels[-1]
    edges = np.cumsum([0.0] + [s for _, s in script])
    window_s = pipe.model.window_len / pipe.model.fs
    hop_s = pipe.model.hop_len / pipe.model.fs
    phases, straddling = [], 0
    by_phase: dict[int, list[Prediction]] = {i: [] for i in range(len(script))}
    for p in preds:
        start = p.window_index * hop_s  # stream time of the window's first sample
        inside = [i for i in range(len(script)) if edges[i] <= start and start + window_s <= edges[i + 1]]
        if inside:
            by_phase[inside[0]].append(p)
        else:
            straddling += 1
    for i, (rhythm, _) in enumerate(script):
        ps = by_phase[i]
        scored = [p for p in ps if p.label is not None]
        smoothed = [p for p in ps if p.smoothed_label is not None]
        irregular, unscored = _timing_counts(scored)
        phases.append(
            PhaseResult(
                rhythm,
                float(edges[i]),
                float(edges[i + 1]),
                len(scored),
                float(np.mean([p.label == positive for p in scored])) if scored else None,
                float(np.mean([p.smoothed_label == positive for p in smoothed])) if smoothed else None,
                len(ps) - len(scored),
                irregular / len(scored) if scored else None,
                unscored,
            )
        )
    series = np.array(
        [
            (
                p.window_index * hop_s + window_s,
                p.probs[positive] if p.probs else np.nan,
                p.smoothed_probs[positive] if p.smoothed_probs and p.label is not None else np.nan,
            )
            for p in preds
        ]
    ).reshape(-1, 3)
    return EpisodeResult(
        positive,
        pipe.engine.name,
        pipe.engine.precision,
        f"{pipe.model.bundle_name} {pipe.model.bundle_version}",
        phases,
        straddling,
        list(script),
        series,
    )


def plot_episode(result: EpisodeResult, path: str | Path) -> Path:
    """PNG: P(positive) per hop over stream time, the scripted phases shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2))
    start = 0.0
    for rhythm, seconds in result.script:
        if rhythm == result.positive_label:
            ax.axvspan(start, start + seconds, color="tab:red", alpha=0.12, lw=0)
        ax.text(start + seconds / 2, 1.04, rhythm, ha="center", va="bottom", fontsize=9)
        start += seconds
    t, raw, smooth = result.series.T if len(result.series) else ([], [], [])
    ax.plot(t, raw, ".", ms=3, color="0.5", label=f"P({result.positive_label}) per hop")
    ax.plot(t, smooth, "-", color="tab:red", lw=1.5, label="smoothed (EMA)")
    ax.axhline(0.5, color="0.3", lw=0.6, ls=":")
    ax.set(xlim=(0, start), ylim=(0, 1.12), xlabel="stream time (s, window end)", ylabel="probability")
    ax.set_title(f"live pipeline, {result.bundle} ({result.engine} {result.precision})", fontsize=10)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_heartpy_ppg(name: str = "data2.csv") -> tuple[np.ndarray, float]:
    """(PPG samples, fs) of one heartpy example file, read by ``signals.dev_recordings`` (fs from
    the file's own time column; ``data.csv``, which has none, is 100 Hz)."""
    from bridge_edge.signals.dev_recordings import load_dev_recording

    rec = load_dev_recording(f"heartpy/{name}")
    return rec.ppg.astype(np.float32), rec.fs_ppg


def replay_real_ppg(
    bundle,
    name: str = "data2.csv",
    engine: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    engine_choice=None,
) -> RealPpgResult:
    x, fs = load_heartpy_ppg(name)
    preds, pipe = _stream(x, fs, bundle, engine, precision, threads, f"heartpy {name}", engine_choice)
    scored = [p for p in preds if p.label is not None]
    same = [a.label == b.label for a, b in itertools.pairwise(scored)]
    hrs = [p.hr_bpm for p in preds if p.hr_bpm is not None and p.gated is None]
    irregular, unscored = _timing_counts(scored)
    return RealPpgResult(
        file=name,
        fs=fs,
        seconds=len(x) / fs,
        hops=len(preds),
        gated=dict(Counter(p.gated for p in preds if p.gated)),
        labels=dict(Counter(p.label for p in scored)),
        stability=float(np.mean(same)) if same else None,
        sqi_median=float(np.median([p.sqi for p in preds])) if preds else 0.0,
        hr_median_bpm=float(np.median(hrs)) if hrs else None,
        timing_irregular=irregular,
        timing_unscored=unscored,
        engine=pipe.engine.name,
        precision=pipe.engine.precision,
        bundle=f"{pipe.model.bundle_name} {pipe.model.bundle_version}",
        predictions=[p.as_json() for p in preds],
    )
