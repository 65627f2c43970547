"""What machine a result came from: CPU, cores, library versions, clocks and power mode.

Everything is read without importing heavy libraries (versions come from package metadata),
and every field that cannot be read says so instead of guessing.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

PACKAGES = ("numpy", "scipy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "nvidia-ml-py")
UNREADABLE = "unreadable"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model(root: Path = Path("/")) -> str:
    text = _read(root / "proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Processor"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def cpu_clocks(root: Path = Path("/")) -> dict:
    """Governor and current/max frequency of cpu0 (cpufreq), else the MHz in /proc/cpuinfo."""
    cpufreq = root / "sys/devices/system/cpu/cpu0/cpufreq"
    governor = _read(cpufreq / "scaling_governor")
    cur = _read(cpufreq / "scaling_cur_freq")
    top = _read(cpufreq / "cpuinfo_max_freq")
    clocks = {
        "governor": governor or f"{UNREADABLE} (no cpufreq; virtual machine or driver absent)",
        "cpu0_cur_mhz": int(cur) / 1000 if cur else None,
        "cpu0_max_mhz": int(top) / 1000 if top else None,
    }
    if cur is None:
        mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)", _read(root / "proc/cpuinfo") or "", re.MULTILINE)
        clocks["cpuinfo_mhz"] = [float(m) for m in mhz] or None
    return clocks


def temperatures(root: Path = Path("/")) -> dict[str, float]:
    temps: dict[str, float] = {}
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        kind, milli_c = _read(zone / "type"), _read(zone / "temp")
        if kind and milli_c and milli_c.lstrip("-").isdigit():
            temps[kind] = int(milli_c) / 1000
    return temps


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def jetson_info(root: Path = Path("/")) -> dict | None:
    """L4T release, nvpmodel mode and jetson_clocks state; None on a machine that is not a Jetson."""
    release = _read(root / "etc/nv_tegra_release")
    if release is None:
        return None
    nvpmodel = _run(["nvpmodel", "-q"])
    clocks = _run(["jetson_clocks", "--show"])
    return {
        "l4t_release": release.splitlines()[0],
        "model": _read(root / "proc/device-tree/model"),
        "nvpmodel": nvpmodel or f"{UNREADABLE} (nvpmodel -q failed; needs root on some images)",
        "jetson_clocks": clocks or f"{UNREADABLE} (jetson_clocks --show needs root)",
    }


def collect(root: Path = Path("/")) -> dict:
    """The ``machine`` object of every bench result."""
    uname = platform.uname()
    return {
        "system": f"{uname.system} {uname.release} {uname.machine}",
        "cpu_model": cpu_model(root),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "versions": package_versions(),
        "clocks": cpu_clocks(root),
        "temperatures_c": temperatures(root) or f"{UNREADABLE} (no thermal zones exposed)",
        "jetson": jetson_info(root),
        "load_average_at_start": list(os.getloadavg()),
        "started_unix": round(time.time(), 3),
    }


def finish(machine: dict) -> dict:
    """Add what the machine looked like at the end (others may share the CPU during a run)."""
    machine["load_average_at_end"] = list(os.getloadavg())
    machine["finished_unix"] = round(time.time(), 3)
    return machine
