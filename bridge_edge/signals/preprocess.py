"""Versioned offline preprocessing: the one definition training and the device both follow.

Version ``ppg-v2`` (recorded in every bundle manifest as ``input.preprocess``):
1. causal Butterworth band-pass (second-order sections) at the *input* rate, state starting
   from rest (zeros) — causal so a stream can reproduce it exactly chunk by chunk;
2. resampling to the model rate by linear interpolation on the absolute sample grid
   t_out[k] = k / fs_out (input sample i sits at t = i / fs_in);
3. per-window normalisation (z-score with a floor on the standard deviation), applied to each
   model window when it is cut, never across windows, so no future data leaks in;
4. per-window polarity: a window whose skewness is negative is negated. A pulse wave has narrow
   peaks over broad troughs (positive skew) and an intensity-type sensor delivers it upside
   down; negating by the sign of the skew maps a window and its inverse onto the same input,
   so the model cannot tell a sensor's polarity by construction (docs/method.md, "Real PPG").
``ppg-v1`` (bundles up to 0.4.x) is steps 1-3; ``from_dict`` reads every version.

Version ``ppg-v3`` adds, before step 3, a rendering of the window's *beats*: the systolic peaks
``signals.beats.detect_ppg_beats`` finds in the band-passed window are re-drawn as one fixed
pulse each (``render_beat_pulses``), so the model input carries when the heart beat and nothing
of the sensor's pulse shape, amplitude, ringing or polarity. Models trained on ``ppg-v2`` read
the simulator's pulse shapes instead of the rhythm on real sensors (docs/method.md, "Real PPG").

Version ``ppg-v4`` is ``ppg-v3`` whose beat detector searches back for a beat it dropped when an
interval spans about two of the window's intervals (``detect_ppg_beats(search_back=True)``): a
weak pulse in sinus rhythm left one double interval, which reads as irregular (docs/method.md,
"Missed beats on real PPG").

``bridge_edge.runtime`` implements the same steps with state carried across chunks and is
tested to match this module within 1e-5 after the filter warm-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from bridge_edge.errors import ConfigError, NonFiniteError, SampleRateError
from bridge_edge.signals.beats import detect_ppg_beats
from bridge_edge.signals.filters import butter_sos, sosfilt

POLARITY_CHOICES = ("none", "skew_sign")
RENDER_CHOICES = ("none", "beat_pulses")
# The pulse ``render_beat_pulses`` draws at every detected beat: a rise and a fall of a Gaussian
# (standard deviations in seconds), a smooth peak like a finger pulse's, short enough that
# pulses at 180 bpm (0.33 s apart) stay separate.
BEAT_PULSE_RISE_S = 0.05
BEAT_PULSE_FALL_S = 0.12


@dataclass(frozen=True)
class PreprocessSpec:
    version: str = "ppg-v2"
    fs_out: float = 125.0
    band_hz: tuple[float, float] = (0.5, 8.0)
    filter_order: int = 2  # per band edge (the band-pass has 2 * order poles)
    std_floor: float = 1e-6
    polarity: str = "skew_sign"  # "none" in ppg-v1
    render: str = "none"  # "beat_pulses" in ppg-v3
    search_back: bool = False  # the beat detector's search-back for missed beats (ppg-v4)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["band_hz"] = list(self.band_hz)
        d["steps"] = (
            ["bandpass_causal_sos", "resample_linear"]
            + (["beats_search_back"] if self.search_back else [])
            + (["render_beat_pulses"] if self.render == "beat_pulses" else [])
            + ["zscore_window"]
            + (["polarity_skew_sign"] if self.polarity == "skew_sign" else [])
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        """A recorded spec (bundle manifest, run directory). A step this package does not
        implement is refused: running a model without a step it was trained with would feed it
        inputs it never saw (a ``ppg-v3`` model given raw pulses) and label them confidently."""
        spec = cls(
            version=d["version"],
            fs_out=float(d["fs_out"]),
            band_hz=tuple(d["band_hz"]),
            filter_order=int(d["filter_order"]),
            std_floor=float(d.get("std_floor", 1e-6)),
            polarity=str(d.get("polarity", "none")),
            render=str(d.get("render", "none")),
            search_back=bool(d.get("search_back", False)),
        )
        implemented = spec.as_dict()["steps"]  # once, not per recorded step
        unknown = [s for s in d.get("steps", []) if s not in implemented]
        if spec.polarity not in POLARITY_CHOICES or spec.render not in RENDER_CHOICES or unknown:
            raise ConfigError(
                f"preprocessing {spec.version!r} asks for steps this package does not implement "
                f"(polarity {spec.polarity!r}, render {spec.render!r}, steps {unknown}); expected polarity in "
                f"{list(POLARITY_CHOICES)}, render in {list(RENDER_CHOICES)}: update bridge-edge",
                key="input.preprocess",
                value=d.get("steps", []),
            )
        return spec


PREPROCESS_VERSIONS = {
    "ppg-v1": PreprocessSpec(version="ppg-v1", polarity="none"),
    "ppg-v2": PreprocessSpec(version="ppg-v2"),
    "ppg-v3": PreprocessSpec(version="ppg-v3", render="beat_pulses"),
    "ppg-v4": PreprocessSpec(version="ppg-v4", render="beat_pulses", search_back=True),
}


def preprocess_spec(version: str, fs_out: float) -> PreprocessSpec:
    """The named preprocessing version at the model rate ``fs_out``."""
    if version not in PREPROCESS_VERSIONS:
        raise ConfigError(
            f"unknown PPG preprocessing {version!r}; expected one of {sorted(PREPROCESS_VERSIONS)}",
            key="data.preprocess",
            value=version,
        )
    return replace(PREPROCESS_VERSIONS[version], fs_out=float(fs_out))


def bandpass_sos(spec: PreprocessSpec, fs_in: float) -> np.ndarray:
    low, high = spec.band_hz
    if not fs_in > 2 * high:
        raise SampleRateError(
            f"input rate {fs_in} Hz is too low for the {low}-{high} Hz band of {spec.version}; "
            f"expected more than {2 * high} Hz",
            expected_hz=2 * high,
            got_hz=fs_in,
            where=spec.version,
        )
    return butter_sos(spec.filter_order, [low, high], "bandpass", fs_in)


def check_finite(x: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise NonFiniteError(
            f"{where}: {int(bad.sum())} non-finite samples (first at index {first}); expected finite values",
            where=where,
            count=int(bad.sum()),
            first_index=first,
        )


def resample_linear(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Linear interpolation at t_out = k / fs_out for every k with t_out <= last input time."""
    if fs_in == fs_out:
        return x.astype(np.float64, copy=True)
    n_out = int(np.floor((len(x) - 1) * fs_out / fs_in)) + 1 if len(x) else 0
    t = np.arange(n_out) * (fs_in / fs_out)  # output times in input-sample units
    return np.interp(t, np.arange(len(x)), x)


def filter_and_resample(x: np.ndarray, fs_in: float, spec: PreprocessSpec) -> np.ndarray:
    """Steps 1-2 over a whole recording: returns the model-rate signal (float64)."""
    x = np.asarray(x, dtype=np.float64)
    check_finite(x, "preprocess input")
    y = sosfilt(bandpass_sos(spec, fs_in), x)
    return resample_linear(y, fs_in, spec.fs_out)


def normalise_windows(windows: np.ndarray, spec: PreprocessSpec, beats: list | None = None) -> np.ndarray:
    """Steps 3-4 on band-passed model-rate windows: (ppg-v3) draw each window's beats, z-score
    each window (last axis) independently, then (ppg-v2, v3) make its skewness non-negative;
    returns float32. ``beats``: the windows' ``detect_ppg_beats`` output when the caller has it
    already (the runtime does, for HR and SQI), so ppg-v3 does not detect them twice."""
    w = np.asarray(windows, dtype=np.float64)
    if spec.render == "beat_pulses":
        w = render_beat_pulses(w, spec.fs_out, beats, spec.search_back)
    mean = w.mean(axis=-1, keepdims=True)
    std = np.maximum(w.std(axis=-1, keepdims=True), spec.std_floor)
    z = (w - mean) / std
    if spec.polarity == "skew_sign":
        z = z * np.where((z**3).mean(axis=-1, keepdims=True) < 0, -1.0, 1.0)
    return z.astype(np.float32)


def window_beats(windows: np.ndarray, spec: PreprocessSpec) -> list[np.ndarray]:
    """Each (upright, band-passed) window's beats, found by the detector ``spec`` names."""
    return [detect_ppg_beats(w, spec.fs_out, spec.search_back) for w in windows]  # per window


def upright_windows(windows: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Band-passed windows turned as step 4 turns them (unchanged for ``ppg-v1``), not normalised:
    what beat detection, heart rate and SQI read, so they see the pulses the model sees."""
    w = np.asarray(windows, dtype=np.float64)
    return w * window_polarity(w)[..., None] if spec.polarity == "skew_sign" else w


def window_polarity(windows: np.ndarray) -> np.ndarray:
    """+1 / -1 per window: the sign step 4 applies (for reports: how often a stream was flipped)."""
    w = np.asarray(windows, dtype=np.float64)
    centred = w - w.mean(axis=-1, keepdims=True)
    return np.where((centred**3).mean(axis=-1) < 0, -1, 1)


def beat_pulse_template(fs: float) -> tuple[np.ndarray, int]:
    """The pulse drawn at each beat, and the index of its peak within it."""
    lead = int(round(3 * BEAT_PULSE_RISE_S * fs))
    t = np.arange(-lead, int(round(3 * BEAT_PULSE_FALL_S * fs)) + 1) / fs
    return np.exp(-0.5 * (t / np.where(t < 0, BEAT_PULSE_RISE_S, BEAT_PULSE_FALL_S)) ** 2), lead


def render_beat_pulses(
    windows: np.ndarray, fs: float, beats: list | None = None, search_back: bool = False
) -> np.ndarray:
    """Each window (last axis) re-drawn as one ``beat_pulse_template`` per detected beat, peak
    on the beat; a window without beats becomes zeros. One detector call per window unless
    ``beats`` gives them; every pulse of every window is then added in one scatter."""
    w = np.asarray(windows, dtype=np.float64)
    rows = w.reshape(-1, w.shape[-1])
    if beats is None:
        beats = [detect_ppg_beats(row, fs, search_back) for row in rows]  # per window, not per sample
    template, lead = beat_pulse_template(fs)
    row_of = np.repeat(np.arange(len(rows)), [len(p) for p in beats])
    peaks = np.concatenate([np.asarray(p, np.int64) for p in beats]) if len(rows) else np.empty(0, np.int64)
    cols = peaks[:, None] - lead + np.arange(len(template))[None, :]  # each pulse's samples
    inside = (cols >= 0) & (cols < rows.shape[-1])
    drawn = np.zeros_like(rows)
    np.add.at(
        drawn,
        (np.broadcast_to(row_of[:, None], cols.shape)[inside], cols[inside]),
        np.broadcast_to(template, cols.shape)[inside],
    )
    return drawn.reshape(w.shape)
