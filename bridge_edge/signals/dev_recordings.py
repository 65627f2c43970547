"""The real PPG recordings the project develops against, read from installed packages' data files.

Development set (may be used for training, tuning and tests; no rhythm label exists or is used):

- heartpy ``data/data.csv`` (finger PPG, 100 Hz), ``data2.csv`` (ms timer column) and
  ``data3.csv`` (datetime column): the rate of the last two comes from their own clocks;
- biosignalsnotebooks 0.6.14 ``notebook_files/osf_files/signal_samples/``: ``bvp_rest.h5`` and
  ``bvp_motion_artifact.h5`` (finger BVP, 1000 Hz; the signal of the second is ``raw/channel_2``),
  and the finger / hand SpO2 sensor files (red and infrared PPG, 1000 Hz).

Packages are located with ``importlib.util.find_spec`` and their files read with numpy / h5py;
the packages themselves are never imported. Any other real PPG recording found in a package is
kept for acceptance checks and deliberately not listed here (docs/method.md, "Real PPG").
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge_edge.errors import DatasetNotFoundError


@dataclass(frozen=True)
class RealPPG:
    """One real PPG recording without labels (reads like a PairedRecording's PPG half)."""

    source: str  # "<package>/<file>[:<channel>]"
    ppg: np.ndarray  # float64, raw sensor units
    fs_ppg: float

    @property
    def seconds(self) -> float:
        return len(self.ppg) / self.fs_ppg


def package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _clock_rate(t_s: np.ndarray) -> float:
    return float((len(t_s) - 1) / (t_s[-1] - t_s[0]))


def _heartpy(name: str) -> RealPPG:
    path = _require("heartpy", Path("data") / name)
    if name == "data.csv":
        return RealPPG(f"heartpy/{name}", np.loadtxt(path, dtype=np.float64), 100.0)
    header = path.read_text().splitlines()[0].split(",")
    if header[0] == "timer":  # data2.csv: ms timer, value
        data = np.loadtxt(path, delimiter=",", skiprows=1)
        t_s, x = data[:, 0] / 1000.0, data[:, 1]
    else:  # data3.csv: datetime, value
        raw = np.loadtxt(path, delimiter=",", skiprows=1, dtype=str)
        t_s = (raw[:, 0].astype("datetime64[us]") - np.datetime64("1970-01-01", "us")).astype(
            np.float64
        ) / 1e6
        x = raw[:, 1].astype(np.float64)
    return RealPPG(f"heartpy/{name}", x.astype(np.float64), _clock_rate(t_s))


_BSN_SAMPLES = Path("notebook_files") / "osf_files" / "signal_samples"


def _opensignals_h5(name: str, channel: str) -> RealPPG:
    """One channel of an OpenSignals (PLUX) .h5 file: ``<mac>/raw/<channel>`` at the file's rate."""
    path = _require("biosignalsnotebooks", _BSN_SAMPLES / name)
    try:  # after the file is found: without the package there is nothing to read either way
        import h5py
    except ImportError as err:
        raise DatasetNotFoundError(
            f"reading {path.name} needs h5py, which is not installed; expected `pip install h5py` "
            "(in the dev extra)",
            path=str(path),
            expected="h5py",
        ) from err
    with h5py.File(path, "r") as f:
        device = f[next(iter(f.keys()))]
        fs = float(device.attrs["sampling rate"])
        x = np.asarray(device["raw"][channel], dtype=np.float64).reshape(-1)
    return RealPPG(f"biosignalsnotebooks/{name}:{channel}", x, fs)


def _require(package: str, relative: Path) -> Path:
    root = package_dir(package)
    path = None if root is None else root / relative
    if path is None or not path.is_file():
        raise DatasetNotFoundError(
            f"{package} data file {relative} not found; expected the installed {package} package "
            f"(scripts/setup-tests.sh installs it)",
            path=str(path or package),
            expected=str(relative),
        )
    return path


# name -> loader; the order is the order of every table that lists them
DEV_RECORDINGS: dict[str, Callable[[], RealPPG]] = {
    "heartpy/data.csv": lambda: _heartpy("data.csv"),
    "heartpy/data2.csv": lambda: _heartpy("data2.csv"),
    "heartpy/data3.csv": lambda: _heartpy("data3.csv"),
    "bsn/bvp_rest": lambda: _opensignals_h5("bvp_rest.h5", "channel_1"),
    "bsn/bvp_motion_artifact": lambda: _opensignals_h5("bvp_motion_artifact.h5", "channel_2"),
    "bsn/fspo2_red": lambda: _opensignals_h5("signal_sample_single_hub_fspo2_2018_9_3.h5", "channel_9"),
    "bsn/fspo2_ir": lambda: _opensignals_h5("signal_sample_single_hub_fspo2_2018_9_3.h5", "channel_10"),
    "bsn/hspo2_red": lambda: _opensignals_h5("signal_sample_single_hub_hSpO2_2018_7_6.h5", "channel_9"),
    "bsn/hspo2_ir": lambda: _opensignals_h5("signal_sample_single_hub_hSpO2_2018_7_6.h5", "channel_10"),
}


def load_dev_recording(name: str) -> RealPPG:
    if name not in DEV_RECORDINGS:
        raise DatasetNotFoundError(
            f"unknown development recording {name!r}; expected one of {sorted(DEV_RECORDINGS)}",
            path=name,
            expected=sorted(DEV_RECORDINGS),
        )
    return DEV_RECORDINGS[name]()


def available_dev_recordings() -> list[RealPPG]:
    """Every development recording whose package is installed (missing packages are skipped)."""
    out = []
    for name in DEV_RECORDINGS:
        try:
            out.append(load_dev_recording(name))
        except DatasetNotFoundError:
            continue
    return out
