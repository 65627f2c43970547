"""``bench power``: mean watts and joules per inference from every energy source this machine has.

For each readable source: an idle interval (the baseline), then each workload (back-to-back
``engine.infer`` on batch-1 windows) for the same duration. J/inference = energy of the
interval / inferences; the marginal figure subtracts the idle power over the same time, which
is what one more inference costs. Sources that cannot be read are rows with
``status: "unmeasured"`` and the reason, never 0 W. ORT runs with thread spinning off here
(spinning burns CPU while idle and would bill that to the model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bridge_edge.bench.power import probe_all
from bridge_edge.bench.power.base import EnergyInterval, EnergyMeter, Unmeasured
from bridge_edge.bench.results import STATUS_OK, STATUS_UNMEASURED, BenchReport
from bridge_edge.bench.subject import Subject, open_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PowerConfig:
    workloads: tuple[tuple[str, str], ...] = (("ort", "int8"), ("ort", "fp32"))  # (engine, precision)
    seconds: float = 10.0
    threads: int = 1


@dataclass(frozen=True)
class PowerRow:
    source: str
    scope: str | None
    workload: str  # "idle" or "<engine> <precision> batch 1"
    status: str
    reason: str | None = None
    seconds: float | None = None
    joules: float | None = None
    mean_watts: float | None = None
    inferences: int | None = None
    joules_per_inference: float | None = None
    marginal_joules_per_inference: float | None = None  # minus idle power over the same time
    samples: int | None = None
    bench: str = "power"


def _measure(meters: list[EnergyMeter], work) -> tuple[list[EnergyInterval], int]:
    for m in meters:
        m.start()
    count = work()
    return [m.stop() for m in meters], count


def _inference_loop(engine, x: np.ndarray, seconds: float):
    def work() -> int:
        n, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            engine.infer(x)
            n += 1
        return n

    return work


def run(subject: Subject | None, cfg: PowerConfig, report: BenchReport, root: Path = Path("/")) -> None:
    meters, unmeasured = probe_all(root)
    for u in unmeasured:
        report.add(
            PowerRow(source=u.source, scope=None, workload="all", status=STATUS_UNMEASURED, reason=u.reason)
        )
    report.summary.update(
        config=asdict(cfg),
        sources_read=[m.source for m in meters],
        sources_unmeasured={u.source: u.reason for u in unmeasured},
    )
    if not meters:
        report.summary["energy_per_inference"] = "unmeasured: no energy source is readable on this machine"
        return
    idle, _ = _measure(meters, lambda: time.sleep(cfg.seconds) or 0)
    for m, e in zip(meters, idle):
        report.add(
            PowerRow(
                m.source,
                m.scope,
                "idle",
                STATUS_OK,
                seconds=round(e.seconds, 3),
                joules=e.joules,
                mean_watts=e.mean_watts,
                samples=e.samples,
            )
        )
    if subject is None:
        return
    x = np.zeros((1, subject.n_samples), dtype=np.float32)
    for engine_name, precision in cfg.workloads:
        name = f"{engine_name} {precision} batch 1"
        engine = open_engine(subject, engine_name, precision, cfg.threads)
        if isinstance(engine, Unmeasured):
            report.add(PowerRow("all", None, name, STATUS_UNMEASURED, reason=engine.reason))
            continue
        try:
            engine.infer(x)  # warm-up outside the interval
            intervals, count = _measure(meters, _inference_loop(engine, x, cfg.seconds))
        finally:
            engine.close()
        for m, e, base in zip(meters, intervals, idle):
            per = e.joules / count if count else None
            marginal = (e.joules - base.mean_watts * e.seconds) / count if count else None
            report.add(
                PowerRow(
                    m.source,
                    m.scope,
                    name,
                    STATUS_OK,
                    seconds=round(e.seconds, 3),
                    joules=e.joules,
                    mean_watts=e.mean_watts,
                    inferences=count,
                    joules_per_inference=per,
                    marginal_joules_per_inference=marginal,
                    samples=e.samples,
                )
            )
