"""``bench scale``: peak memory and throughput of the fit stages as the corpus grows (docs/scale.md).

For each corpus size (simulated subject-hours) and process count, the recipe is run as a fresh
``bridge-edge fit`` in its own process (``--nproc N``: under torchrun), with only ``[data]
subjects`` changed: ``subjects = round(hours x 60 / minutes)``, each subject as long as the
recipe says, so one recording stays the same size while the corpus grows. Each fit records
every stage's peak memory per rank (bridge.memory, RUN_DIR/memory/rank<r>.json) and its seconds
(timings.json); a row is one (size, processes, stage) with the largest over the ranks.

``summary.peak_rss_growth``: (largest corpus' fit peak RSS - smallest's) / smallest's, one
process, the fit peak being the largest stage peak; ``peak_anon_growth`` the same for anonymous
memory (what cannot be paged out; see bridge.memory for why both).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bridge_edge.bench.results import STATUS_OK, STATUS_UNMEASURED, BenchReport
from bridge_edge.errors import ConfigError

log = logging.getLogger(__name__)

FULL_HOURS = (5.0, 20.0, 80.0)
QUICK_HOURS = (0.25, 1.0, 4.0)


@dataclass(frozen=True)
class ScaleRow:
    subject_hours: float
    subjects: int
    processes: int
    stage: str
    status: str
    reason: str | None = None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    peak_anon_mb: float | None = None
    peak_rss_method: str | None = None
    windows: int | None = None  # windows of every split of the corpus (train, val, pair, test)
    windows_per_s: float | None = None  # windows / the stage's seconds
    bench: str = "scale"


def recipe_with_subjects(text: str, subjects: int) -> str:
    """The recipe text with ``[data] subjects`` set; everything else as written."""
    from bridge_edge.bridge.recipe import parse_recipe

    head, sep, rest = text.partition("\n[data]\n")
    body, nxt, tail = rest.partition("\n[")
    new_body, n = re.subn(r"(?m)^subjects\s*=\s*\d+", f"subjects = {subjects}", body)
    out = head + sep + new_body + nxt + tail
    if not sep or n != 1 or parse_recipe(out).data.subjects != subjects:
        raise ConfigError(
            "bench scale needs a recipe whose [data] table sets `subjects = N` on one line",
            key="data.subjects",
            value=None,
            expected="subjects = N in [data]",
        )
    return out


def subjects_for(hours: float, minutes: float) -> int:
    return max(4, round(hours * 60.0 / minutes))  # 4: one subject per split at least


def run_fit(recipe: Path, run_dir: Path, processes: int, device: str) -> float:
    """One fresh fit in its own process (torchrun for 2+); its wall seconds."""
    cmd = [sys.executable, "-m", "bridge_edge.cli", "fit", str(recipe), "--out", str(run_dir), "--fresh"]
    cmd += ["--device", device] + (["--nproc", str(processes)] if processes > 1 else [])
    start = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as logf:
        subprocess.run(cmd, check=True, stdout=logf, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def rows_of_run(run_dir: Path, hours: float, subjects: int, processes: int) -> list[ScaleRow]:
    from bridge_edge.bridge.rundir import RunDir

    rd = RunDir(run_dir)
    timings = rd.load_json(rd.timings)
    counts = rd.load_json(rd.windows_meta)["counts"]
    windows = sum(c["windows"] for c in counts.values())
    ranks = [json.loads(p.read_text()) for p in sorted(rd.memory_dir.glob("rank*.json"))]
    rows = []
    for stage in dict.fromkeys(k for r in ranks for k in r):
        mem = [r[stage] for r in ranks if stage in r]
        rss = [m["peak_rss_bytes"] for m in mem if m["peak_rss_bytes"] is not None]
        anon = [m["peak_anon_bytes"] for m in mem if m["peak_anon_bytes"] is not None]
        seconds = timings.get(stage)
        rows.append(
            ScaleRow(
                hours,
                subjects,
                processes,
                stage,
                STATUS_OK if rss else STATUS_UNMEASURED,
                None if rss else "no /proc/self/status on this system",
                seconds,
                round(max(rss) / 2**20, 1) if rss else None,
                round(max(anon) / 2**20, 1) if anon else None,
                mem[0]["peak_rss_method"],
                windows,
                round(windows / seconds, 2) if seconds else None,
            )
        )
    return rows


def growth(rows: list[dict], key: str, processes: int = 1) -> float | None:
    """(fit peak at the largest corpus - at the smallest) / at the smallest, for ``processes``."""
    peaks: dict[float, float] = {}
    for r in rows:
        if r["processes"] == processes and r.get(key) is not None:
            peaks[r["subject_hours"]] = max(peaks.get(r["subject_hours"], 0.0), r[key])
    if len(peaks) < 2:
        return None
    small, large = peaks[min(peaks)], peaks[max(peaks)]
    return round((large - small) / small, 4)


def run(
    report: BenchReport,
    *,
    recipe: Path,
    hours: tuple[float, ...],
    processes: tuple[int, ...],
    work_dir: Path,
    device: str = "cpu",
) -> None:
    from bridge_edge.bridge.recipe import load_recipe

    text = recipe.read_text()
    minutes = load_recipe(recipe).data.minutes
    work_dir.mkdir(parents=True, exist_ok=True)
    fits = []
    for h in hours:
        n = subjects_for(h, minutes)
        sized = work_dir / f"recipe_{n}subjects.toml"
        sized.write_text(recipe_with_subjects(text, n))
        for p in processes:
            run_dir = work_dir / f"run_{n}subjects_{p}proc"
            log.info("bench scale: %g subject-hours (%d subjects), %d process(es)", h, n, p)
            try:
                wall = run_fit(sized, run_dir, p, device)
            except subprocess.CalledProcessError as err:
                report.add(
                    ScaleRow(h, n, p, "fit", STATUS_UNMEASURED, f"fit failed ({err}); see {run_dir}.log")
                )
                continue
            for row in rows_of_run(run_dir, h, n, p):
                report.add(row)
            fits.append({"subject_hours": h, "subjects": n, "processes": p, "wall_s": round(wall, 1)})
    report.summary.update(
        recipe=str(recipe),
        minutes_per_subject=minutes,
        device=device,
        fits=fits,
        peak_rss_growth=growth(report.rows, "peak_rss_mb"),
        peak_anon_growth=growth(report.rows, "peak_anon_mb"),
        peak_rss_growth_2proc=growth(report.rows, "peak_rss_mb", 2),
        definition="fit peak = largest stage peak (largest rank); growth = (largest corpus - smallest) / smallest",
    )
