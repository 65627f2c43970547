"""NVIDIA GPUs through NVML (package nvidia-ml-py, module ``pynvml``, imported lazily).

``nvmlDeviceGetTotalEnergyConsumption`` is the energy in mJ since the driver loaded (Volta and
newer); the energy of an interval is the difference of two reads, summed over the GPUs.
(``nvmlDeviceGetPowerUsage`` is a 1 s average on Ampere+, so it is not integrated here.)
Jetsons have no NVML: they use hwmon or tegrastats.
"""

from __future__ import annotations

import time

from bridge_edge.bench.power.base import EnergyInterval, Unmeasured


class NvmlMeter:
    source = "nvml"

    def __init__(self, pynvml, handles: list, names: list[str]):
        self._nvml = pynvml
        self._handles = handles
        self.scope = "GPU board " + ", ".join(names)
        self._start: list[int] = []
        self._t0 = 0.0

    def _read_mj(self) -> list[int]:
        return [int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._handles]

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = self._read_mj()

    def stop(self) -> EnergyInterval:
        end = self._read_mj()
        seconds = time.perf_counter() - self._t0
        mj = sum(b - a for a, b in zip(self._start, end))
        return EnergyInterval(joules=mj / 1000.0, seconds=seconds, samples=2)


def probe() -> NvmlMeter | Unmeasured:
    try:
        import pynvml
    except ImportError:
        return Unmeasured("nvml", "pynvml not installed (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return Unmeasured("nvml", "NVML found no GPU")
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        names = [str(pynvml.nvmlDeviceGetName(h)) for h in handles]
        for h in handles:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h)  # NotSupported before Volta
    except pynvml.NVMLError as err:
        return Unmeasured("nvml", f"NVML unavailable: {err} (no NVIDIA driver, or GPU older than Volta)")
    return NvmlMeter(pynvml, handles, names)
