"""Intel RAPL (also AMD on recent kernels) via powercap sysfs: CPU package energy counters.

Layout: ``/sys/class/powercap/intel-rapl:<N>/`` with ``name`` ("package-0", "psys"),
``energy_uj`` (a counter in µJ) and ``max_energy_range_uj`` (where it wraps back to 0);
``intel-rapl:<N>:<M>`` are sub-domains (core, uncore, dram) and are not added to the package.
The counter wraps (e.g. at 262,143,999,938 µJ, about an hour at 70 W), so a difference is taken
modulo the range: one wrap per interval is handled, so intervals must be shorter than a wrap.
Since 2020 (the PLATYPUS fix) ``energy_uj`` is often readable by root only: then it is unmeasured.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from bridge_edge.bench.power.base import EnergyInterval, Unmeasured

POWERCAP = Path("/sys/class/powercap")
TOP_LEVEL = re.compile(r"^intel-rapl:\d+$")


@dataclass(frozen=True)
class RaplDomain:
    name: str
    energy_path: Path
    range_uj: int

    def read_uj(self) -> int:
        return int(self.energy_path.read_text().strip())


def counter_delta(before: int, after: int, range_uj: int) -> int:
    """Energy between two reads of a counter that wraps to 0 after ``range_uj``."""
    # The counter takes values 0..range_uj, so it wraps modulo range_uj + 1.
    return (after - before) % (range_uj + 1)


def find_domains(powercap: Path = POWERCAP) -> list[RaplDomain]:
    """Package domains (or psys where no package is exposed); sub-domains are left out."""
    domains = []
    for d in sorted(powercap.glob("intel-rapl:*")):
        if not TOP_LEVEL.match(d.name) or not (d / "energy_uj").exists():
            continue
        name = (d / "name").read_text().strip() if (d / "name").exists() else d.name
        domains.append(RaplDomain(name, d / "energy_uj", int((d / "max_energy_range_uj").read_text())))
    packages = [d for d in domains if d.name.startswith("package")]
    return packages or domains  # psys already contains the packages: never add both


class RaplMeter:
    source = "rapl"

    def __init__(self, domains: list[RaplDomain]):
        self.domains = domains
        self.scope = "CPU " + "+".join(d.name for d in domains)
        self._start: list[int] = []
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = [d.read_uj() for d in self.domains]

    def stop(self) -> EnergyInterval:
        end = [d.read_uj() for d in self.domains]
        seconds = time.perf_counter() - self._t0
        uj = sum(counter_delta(a, b, d.range_uj) for a, b, d in zip(self._start, end, self.domains))
        return EnergyInterval(joules=uj * 1e-6, seconds=seconds, samples=2)


def probe(powercap: Path = POWERCAP) -> RaplMeter | Unmeasured:
    if not powercap.exists():
        return Unmeasured("rapl", f"{powercap} absent (no powercap driver; not x86 or a VM without RAPL)")
    try:
        domains = find_domains(powercap)
        if not domains:
            return Unmeasured("rapl", f"no intel-rapl:N domain with energy_uj under {powercap}")
        for d in domains:
            d.read_uj()
    except PermissionError as err:
        return Unmeasured("rapl", f"permission denied reading {err.filename} (root-only since the 2020 fix)")
    except (OSError, ValueError) as err:
        return Unmeasured("rapl", f"unreadable RAPL counter: {err}")
    return RaplMeter(domains)
