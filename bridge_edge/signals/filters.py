"""IIR filters in numpy alone: Butterworth design, causal and zero-phase second-order sections.

The device side (streaming preprocessing, the monitor's traces, the simulator behind ``sim://``)
filters with these, so a device install needs no scipy (docs/bundles.md, "Installing on the
device"). The conventions are scipy.signal's, which the tests check these against within 1e-9:
``sos`` rows are ``[b0, b1, b2, 1, a1, a2]``, the state of a section is that of a transposed
direct-form-II biquad, ``zi`` has shape (sections, 2), and ``sosfilt_zi`` scales each section's
steady state by the DC gain of the sections before it.

**How a recursion runs without a loop over samples.** A biquad is the linear state-space system
``z[n+1] = A z[n] + B x[n]``, ``y[n] = C z[n] + D x[n]`` with a 2x2 ``A``. Over a block of ``L``
samples that starts in state ``z``, its output is the block convolved with the first ``L`` taps
of the impulse response plus the response to ``z`` alone (``C A^n z``), and the state after the
block is ``A^L z`` plus the block weighted by ``A^(L-1-k) B``. Every term comes from the powers
``A^0 .. A^L``, computed once per filter by repeated squaring. All blocks of a signal are
convolved at once (FFT), and only the 2-vector state steps from block to block in Python: one
step per ``BLOCK`` samples. Rounding differs from a sample-by-sample recursion by about 1e-12 of
the signal's scale.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from bridge_edge.errors import ConfigError

BLOCK = 512  # samples per block: the state steps once per block in Python
BTYPES = ("lowpass", "highpass", "bandpass")


def butter_sos(order: int, cutoff_hz, btype: str, fs: float) -> np.ndarray:
    """A digital Butterworth filter as second-order sections (``scipy.signal.butter(...,
    output="sos")``): analog prototype poles, frequency transform at the pre-warped corners,
    bilinear transform, then poles paired into sections, those nearest the unit circle last."""
    if btype not in BTYPES:
        raise ConfigError(
            f"unknown filter type {btype!r}; expected one of {list(BTYPES)}", key="btype", value=btype
        )
    corners = np.atleast_1d(np.asarray(cutoff_hz, dtype=np.float64))
    if len(corners) != (2 if btype == "bandpass" else 1) or not np.all((corners > 0) & (corners < fs / 2)):
        raise ConfigError(
            f"{btype} corners {corners.tolist()} Hz at {fs} Hz; expected "
            f"{'two' if btype == 'bandpass' else 'one'} between 0 and {fs / 2} Hz (Nyquist)",
            key="cutoff_hz",
            value=corners.tolist(),
        )
    warped = 4.0 * np.tan(np.pi * corners / fs)  # analog corners for a bilinear transform at fs = 2
    prototype = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))
    if btype == "lowpass":
        poles, zeros, gain = prototype * warped[0], np.empty(0), warped[0] ** order
    elif btype == "highpass":
        poles, zeros, gain = warped[0] / prototype, np.zeros(order), float(np.real(1.0 / np.prod(-prototype)))
    else:
        centre, width = np.sqrt(warped[0] * warped[1]), warped[1] - warped[0]
        half = prototype * width / 2
        root = np.sqrt(half**2 - centre**2)
        poles, zeros, gain = np.concatenate([half + root, half - root]), np.zeros(order), width**order
    # bilinear transform (fs = 2: s = 4 (z - 1) / (z + 1)); zeros at infinity land on z = -1
    digital_poles = (4.0 + poles) / (4.0 - poles)
    digital_zeros = np.concatenate([(4.0 + zeros) / (4.0 - zeros), -np.ones(len(poles) - len(zeros))])
    gain = gain * float(np.real(np.prod(4.0 - zeros) / np.prod(4.0 - poles)))
    return _sections(digital_zeros, digital_poles, gain)


def _sections(zeros: np.ndarray, poles: np.ndarray, gain: float) -> np.ndarray:
    """Sections from poles and zeros as scipy's ``zpk2sos`` pairs them: the pole nearest the unit
    circle with its conjugate (a real one with the nearest other real pole, or alone when none
    is left) and the zeros nearest it; those sections go last, the gain into the first."""
    is_real = np.abs(np.imag(poles)) <= 1e-12
    free_poles = list(np.real(poles[is_real])) + list(poles[~is_real & (np.imag(poles) > 0)])
    free_zeros = list(zeros)
    rows = []
    while free_poles:  # a loop over sections (at most a few)
        first = free_poles.pop(int(np.argmin([abs(1.0 - abs(p)) for p in free_poles])))
        if isinstance(first, complex):
            group = [first, np.conj(first)]
        else:
            reals = [i for i, p in enumerate(free_poles) if not isinstance(p, complex)]
            group = [first] + (
                [free_poles.pop(min(reals, key=lambda i: abs(free_poles[i] - first)))] if reals else []
            )
        chosen = [free_zeros.pop(int(np.argmin([abs(z - first) for z in free_zeros]))) for _ in group]
        b = np.real(np.poly(chosen))
        a = np.real(np.poly(group))
        rows.append(np.concatenate([np.pad(b, (0, 3 - len(b))), np.pad(a, (0, 3 - len(a)))]))
    sos = np.array(rows[::-1])
    sos[0, :3] *= gain
    return sos


def biquad_from_analog(b: np.ndarray, a: np.ndarray, fs: float) -> np.ndarray:
    """One section from an analog second-order transfer function ``b(s) / a(s)`` (coefficients
    highest power first, three each) by the bilinear transform at ``fs`` (``scipy.signal.bilinear``
    followed by ``tf2sos`` for one section); corners are the caller's to pre-warp."""
    b2, b1, b0 = np.pad(np.asarray(b, np.float64), (3 - len(b), 0))
    a2, a1, a0 = np.pad(np.asarray(a, np.float64), (3 - len(a), 0))
    k = 2.0 * fs  # s = k (z - 1) / (z + 1); numerator and denominator times (z + 1)^2
    num = np.array([b2 * k * k + b1 * k + b0, 2 * b0 - 2 * b2 * k * k, b2 * k * k - b1 * k + b0])
    den = np.array([a2 * k * k + a1 * k + a0, 2 * a0 - 2 * a2 * k * k, a2 * k * k - a1 * k + a0])
    return np.concatenate([num / den[0], den / den[0]])[None, :]


def sos_response(sos: np.ndarray, n: int) -> np.ndarray:
    """Complex frequency response at ``n`` frequencies evenly spaced on [0, Nyquist)."""
    z1 = np.exp(-1j * np.pi * np.arange(n) / n)  # z^-1
    h = np.ones(n, dtype=np.complex128)
    for b0, b1, b2, a0, a1, a2 in np.asarray(sos, np.float64):  # a loop over sections
        h *= (b0 + b1 * z1 + b2 * z1**2) / (a0 + a1 * z1 + a2 * z1**2)
    return h


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """Per-section states of a filter that has seen a constant 1 for ever (shape (sections, 2)):
    scaled by the input level, a filter started in them has no step transient."""
    zi = np.empty((len(sos), 2))
    level = 1.0
    for i, section in enumerate(_normalised(sos)):
        A, B, _ = _state_space(section)
        zi[i] = level * np.linalg.solve(np.eye(2) - A, B)
        level *= section[:3].sum() / section[3:].sum()
    return zi


class SosFilter:
    """A cascade of sections with its state carried between calls (a stream's filter).

    ``process(x)`` filters the next stretch of input; chunk sizes do not change the output."""

    def __init__(self, sos: np.ndarray, zi: np.ndarray | None = None) -> None:
        self.sos = _normalised(sos)
        self._sections = [_section(tuple(row)) for row in self.sos]
        self.zi = np.zeros((len(self.sos), 2)) if zi is None else np.array(zi, dtype=np.float64)
        if self.zi.shape != (len(self.sos), 2):
            raise ConfigError(
                f"filter state of shape {self.zi.shape}; expected {(len(self.sos), 2)}",
                key="zi",
                value=list(self.zi.shape),
            )

    def process(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, dtype=np.float64)
        if y.ndim != 1:
            raise ConfigError(
                f"filter input of shape {y.shape}; expected one dimension", key="x", value=list(y.shape)
            )
        for k, section in enumerate(self._sections):  # a loop over 1-3 sections, not samples
            y, self.zi[k] = section.run(y, self.zi[k])
        return y


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray | None = None):
    """Causal filtering of a 1-D signal; with ``zi``, returns ``(y, final state)``."""
    filt = SosFilter(sos, zi)
    y = filt.process(x)
    return (y, filt.zi) if zi is not None else y


def sosfiltfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase filtering (forward, then backward) of a 1-D signal, padded at both ends by its
    odd extension and started from the steady state of its first sample each way, as
    ``scipy.signal.sosfiltfilt`` does by default."""
    sos = _normalised(sos)
    x = np.asarray(x, dtype=np.float64)
    trivial = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    pad = 3 * (2 * len(sos) + 1 - trivial)
    if len(x) <= pad:
        raise ConfigError(
            f"{len(x)} samples to filter forward and backward; expected more than {pad} (the padding)",
            key="x",
            value=len(x),
        )
    ext = np.concatenate([2 * x[0] - x[pad:0:-1], x, 2 * x[-1] - x[-2 : -pad - 2 : -1]])
    zi = sosfilt_zi(sos)
    forward, _ = sosfilt(sos, ext, zi * ext[0])
    backward, _ = sosfilt(sos, forward[::-1], zi * forward[-1])
    return backward[::-1][pad:-pad]


def _normalised(sos: np.ndarray) -> np.ndarray:
    sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
    if sos.ndim != 2 or sos.shape[1] != 6 or not np.all(sos[:, 3] != 0):
        raise ConfigError(
            f"second-order sections of shape {sos.shape}; expected (sections, 6) with a0 != 0",
            key="sos",
            value=list(sos.shape),
        )
    return sos / sos[:, 3:4]


def _state_space(section: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(A, B, D) of one transposed direct-form-II biquad (a0 = 1); its output row C is [1, 0]."""
    b0, b1, b2, _, a1, a2 = section
    A = np.array([[-a1, 1.0], [-a2, 0.0]])
    B = np.array([b1 - a1 * b0, b2 - a2 * b0])
    return A, B, float(b0)


def _powers(a1: float, a2: float, n: int) -> np.ndarray:
    """``A^0 .. A^(n-1)`` of a section's state matrix, shape (n, 2, 2).

    By Cayley-Hamilton ``A^k = u_k A + v_k I`` with the scalar recurrence ``u_(k+1) = -a1 u_k +
    v_k``, ``v_(k+1) = -a2 u_k``, run in extended precision. Squaring ``A`` instead loses about
    1e-8 of ``A^512`` for poles near z = 1 (a 0.05 Hz corner at 1 kHz), which the state of a
    large DC level turns into visible error; this stays at float64 rounding."""
    u = np.zeros(n, dtype=np.longdouble)
    v = np.zeros(n, dtype=np.longdouble)
    v[0] = 1
    a1_, a2_ = np.longdouble(a1), np.longdouble(a2)
    for k in range(n - 1):  # once per filter design (cached), not per sample
        u[k + 1] = -a1_ * u[k] + v[k]
        v[k + 1] = -a2_ * u[k]
    A = np.array([[-a1_, 1], [-a2_, 0]], dtype=np.longdouble)
    return u[:, None, None] * A + v[:, None, None] * np.eye(2, dtype=np.longdouble)


@lru_cache(maxsize=64)
def _section(row: tuple[float, ...]) -> _Section:
    """Sections are built once per design: a stream's filter, every window's ECG band-pass."""
    return _Section(np.array(row))


class _Section:
    """One biquad run block by block (module docstring); read-only once built."""

    def __init__(self, section: np.ndarray) -> None:
        _, B, D = _state_space(section)
        powers = _powers(section[4], section[5], BLOCK + 1)  # A^0 .. A^BLOCK, extended precision
        self.powers = powers.astype(np.float64)
        self.to_state = (powers[:BLOCK] @ B.astype(np.longdouble)).astype(np.float64)  # A^n B
        self.impulse = np.concatenate([[D], self.to_state[: BLOCK - 1, 0]])  # taps 0 .. BLOCK-1
        self.from_state = self.powers[:, 0, :]  # C A^n: output n samples after a state
        self._impulse_fft = np.fft.rfft(self.impulse, 2 * BLOCK)
        for table in (self.powers, self.to_state, self.impulse, self._impulse_fft):
            table.flags.writeable = False

    def run(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_blocks, rest = divmod(len(x), BLOCK)
        y = np.empty(len(x))
        z = np.asarray(z, dtype=np.float64)
        if n_blocks:
            blocks = x[: n_blocks * BLOCK].reshape(n_blocks, BLOCK)
            forced = np.fft.irfft(
                np.fft.rfft(blocks, 2 * BLOCK, axis=1) * self._impulse_fft, 2 * BLOCK, axis=1
            )
            pushed = blocks @ self.to_state[::-1]  # each block's own effect on the state after it
            starts = np.empty((n_blocks, 2))
            across = self.powers[BLOCK]
            for j in range(n_blocks):  # one step per block
                starts[j] = z
                z = across @ z + pushed[j]
            y[: n_blocks * BLOCK] = (forced[:, :BLOCK] + starts @ self.from_state[:BLOCK].T).reshape(-1)
        if rest:
            tail = x[n_blocks * BLOCK :]
            y[n_blocks * BLOCK :] = np.convolve(tail, self.impulse[:rest])[:rest] + self.from_state[:rest] @ z
            z = self.powers[rest] @ z + tail @ self.to_state[:rest][::-1]
        return y, z
