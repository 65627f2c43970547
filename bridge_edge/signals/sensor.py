"""PPG sensor front ends: what a real optical sensor does to the pulse wave before we see it.

Real PPG reaches us through very different electronics (docs/simulator.md, "Sensors"): an
intensity signal that falls when blood volume rises (inverted polarity), AC coupling (a
0.05-1 Hz high-pass that leaves an undershoot after every pulse), an analog anti-alias low-pass
of 2-15 Hz, sometimes resonant (ringing), an ADC of 8-16 bits that quantises and clips, and
sampling rates from 20 Hz to 2 kHz. None of this depends on the heart rhythm, so the simulator
draws one front end per subject, independently of its rhythm episodes, and the rhythm suite
plays real pulses through them.

``FrontEnd.apply`` carries filter state across calls, so a stream rendered in pieces equals one
rendered at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from bridge_edge.signals.filters import SosFilter, biquad_from_analog, butter_sos

# Sampling rates of real PPG sensors (Hz): wearables, pulse oximeters, lab amplifiers.
SENSOR_RATES_HZ = (25.0, 50.0, 64.0, 100.0, 125.0, 128.0, 200.0, 250.0, 256.0, 500.0)


@dataclass(frozen=True)
class FrontEnd:
    polarity: int  # +1: volume up = signal up; -1: an intensity signal (falls with each pulse)
    highpass_hz: float | None  # AC coupling (first order); None = DC coupled
    lowpass_hz: float  # analog low-pass corner (second order)
    resonance_q: float  # Q of that low-pass: 0.707 = Butterworth, > 1 rings after each upstroke
    adc_bits: int
    headroom: float  # ADC full scale in units of the conditioned signal's typical peak (< 1 clips)

    def as_dict(self) -> dict:
        return {k: (None if v is None else float(v)) for k, v in asdict(self).items()}

    def sos(self, fs: float) -> np.ndarray:
        """The analog chain (AC coupling, resonant low-pass) as second-order sections at ``fs``."""
        f0 = min(self.lowpass_hz, 0.4 * fs)
        w0 = 2 * fs * np.tan(np.pi * f0 / fs)  # pre-warped so the corner lands where asked
        sections = [biquad_from_analog([w0**2], [1.0, w0 / self.resonance_q, w0**2], fs)]
        if self.highpass_hz is not None:
            sections.append(butter_sos(1, self.highpass_hz, "highpass", fs))
        return np.concatenate(sections)


def draw_front_end(rng: np.random.Generator) -> FrontEnd:
    """A random sensor: independent of everything the subject's heart does.

    Ranges stop where a sensor would hide the rhythm itself: a resonance below 3 Hz or with Q
    above 1.6 rings for several cycles after each upstroke, which reads as extra beats (the
    first draw of 0.5.0 allowed 2 Hz and Q 2.5, and its bridge could not learn: docs/method.md).
    """
    ac = rng.random() < 0.6
    return FrontEnd(
        polarity=1 if rng.random() < 0.6 else -1,
        highpass_hz=float(np.exp(rng.uniform(np.log(0.05), np.log(1.0)))) if ac else None,
        lowpass_hz=float(np.exp(rng.uniform(np.log(3.0), np.log(15.0)))),
        resonance_q=float(rng.choice([0.707, rng.uniform(0.5, 0.9), rng.uniform(1.0, 1.6)])),
        adc_bits=int(rng.choice([8, 10, 12, 14, 16])),
        headroom=float(rng.uniform(1.0, 1.5) if rng.random() < 0.3 else rng.uniform(1.5, 6.0)),
    )


IDENTITY = FrontEnd(
    polarity=1, highpass_hz=None, lowpass_hz=1e9, resonance_q=0.707, adc_bits=32, headroom=1e9
)


class SensorChain:
    """A front end applied to a stream at ``fs``, state carried across ``apply`` calls.

    ``scale`` is the typical peak of the conditioned signal (e.g. the subject's perfusion); the
    ADC's full scale is ``headroom * scale`` around an offset, quantised to ``adc_bits``.
    """

    def __init__(self, front_end: FrontEnd, fs: float, scale: float) -> None:
        self.front_end, self.fs = front_end, float(fs)
        self._filter = SosFilter(front_end.sos(fs)) if front_end is not IDENTITY else None
        self._full_scale = front_end.headroom * float(scale)
        self._step = 2 * self._full_scale / 2**front_end.adc_bits

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """(sensor output, number of clipped samples) for the next stretch of the stream."""
        if self._filter is None:
            return np.asarray(x, np.float64).copy(), 0
        y = self._filter.process(self.front_end.polarity * np.asarray(x, np.float64))
        clipped = np.abs(y) > self._full_scale
        y = np.clip(y, -self._full_scale, self._full_scale)
        return np.round(y / self._step) * self._step, int(clipped.sum())


def through_front_end(x: np.ndarray, fs: float, front_end: FrontEnd) -> np.ndarray:
    """A whole recording through ``front_end``, scaled by its own robust peak (pure function)."""
    x = np.asarray(x, np.float64)
    centred = x - np.median(x)
    scale = float(np.percentile(np.abs(centred), 99)) or 1.0
    out, _ = SensorChain(front_end, fs, scale).apply(centred)
    return out


def resensor_windows(windows: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Each (band-passed, z-scored) window as if a different random sensor had recorded it.

    The analog chain is linear, so applying it after preprocessing's band-pass equals applying
    it before (the ADC's rounding and clipping aside). Each window is filtered behind a mirrored
    lead-in of ``LEAD_IN_S`` so the filters start settled. Returns float64 windows to be
    normalised again by the caller (preprocess.normalise_windows).
    """
    w = np.asarray(windows, dtype=np.float64)
    lead = min(int(LEAD_IN_S * fs), w.shape[1] - 1)
    padded = np.concatenate([w[:, lead:0:-1], w], axis=1)
    out = np.empty_like(w)
    for i, row in enumerate(padded):  # one filter design per window, no per-sample loop
        out[i] = through_front_end(row, fs, draw_front_end(rng))[lead:]
    return out


LEAD_IN_S = 3.0
