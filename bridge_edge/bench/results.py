"""Benchmark results: percentile summaries, typed rows and the JSON file every bench writes.

One file per bench, ``<out>/<bench>.json``::

    {"bench": "latency", "machine": {...}, "summary": {...}, "rows": [{...}, ...]}

``--json`` prints the same content as JSON lines: ``{"machine": {...}}`` once, then one row per
measured (or unmeasured) configuration, then ``{"summary": {...}}``. A configuration that could
not be measured is still a row, with ``status: "unmeasured"`` and the ``reason`` — never zeros.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bridge_edge.errors import DataError

PERCENTILES = (50, 90, 99)
STATUS_OK = "ok"
STATUS_UNMEASURED = "unmeasured"


@dataclass(frozen=True)
class Unmeasured:
    """Something this machine cannot measure (an engine, a precision, a power source), and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one set of latency samples, in milliseconds."""

    n: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None

    @classmethod
    def of_seconds(cls, samples_s: Sequence[float] | np.ndarray) -> LatencySummary:
        ms = np.asarray(samples_s, dtype=np.float64) * 1e3
        if ms.size == 0:
            return cls.empty()
        p50, p90, p99 = np.percentile(ms, PERCENTILES)
        return cls(
            n=int(ms.size),
            p50_ms=round(float(p50), 4),
            p90_ms=round(float(p90), 4),
            p99_ms=round(float(p99), 4),
            max_ms=round(float(ms.max()), 4),
            mean_ms=round(float(ms.mean()), 4),
        )

    @classmethod
    def empty(cls) -> LatencySummary:
        return cls(n=0, p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None, mean_ms=None)


def _clean(value):
    """JSON-safe: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class BenchReport:
    """Everything one ``bridge-edge bench <name>`` run produced."""

    bench: str
    machine: dict
    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def add(self, row) -> None:
        """Append a row dataclass (or a plain dict)."""
        self.rows.append(_clean(row if isinstance(row, dict) else asdict(row)))

    def as_dict(self) -> dict:
        return _clean(
            {"bench": self.bench, "machine": self.machine, "summary": self.summary, "rows": self.rows}
        )

    def json_lines(self) -> Iterator[str]:
        yield json.dumps({"bench": self.bench, "machine": _clean(self.machine)})
        for row in self.rows:
            yield json.dumps(row)
        yield json.dumps({"bench": self.bench, "summary": _clean(self.summary)})

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.bench}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        tmp.replace(path)
        return path


def load_report(path: Path) -> BenchReport:
    try:
        data = json.loads(Path(path).read_text())
        return BenchReport(
            bench=data["bench"], machine=data["machine"], rows=data["rows"], summary=data.get("summary", {})
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"{path}: not a bench result file ({err}); expected JSON with bench, machine, rows",
            path=str(path),
            reason=str(err),
        ) from err
