"""Clock mapping: drift is fitted (not accumulated), jumps re-anchor, host-stamped fs is estimated."""

import numpy as np

from bridge_edge.runtime.clock import ClockMapper

NS = 1e9


def observations(n: int, period_s: float, drift_ppm: float, seed: int = 0, delay_ms: float = 5.0):
    """(device ns, arrival ns, true host ns) per chunk: the device clock runs drift_ppm fast."""
    rng = np.random.default_rng(seed)
    true_host = 1_000 * NS + np.arange(n) * period_s * NS
    device = 1_700_000_000 * NS + (true_host - true_host[0]) * (1 + drift_ppm * 1e-6)
    arrival = true_host + rng.exponential(delay_ms * 1e6, n)  # radio + OS delay, always positive
    return device, arrival.astype(np.int64), true_host


def test_100_ppm_drift_is_fitted_and_mapping_does_not_walk_away():
    device, arrival, true_host = observations(1500, 1.0, drift_ppm=100.0)
    clock = ClockMapper(130.0, device_clock=True)
    events = []
    for x, y in zip(device, arrival):
        events += clock.observe(x, int(y))
    s = clock.stats()
    assert events == []
    # host = device / (1 + 1e-4): slope - 1 = -99.99 ppm
    assert abs(s.drift_ppm - (-100.0)) < 5.0, s
    assert 1.0 < s.jitter_ms < 10.0  # exponential(5 ms) arrival noise is reported, not absorbed
    err_ms = (clock.map(device[-200:]) - true_host[-200:]) / 1e6
    # the fit sits on the mean arrival delay (5 ms) everywhere: no 100 ppm walk (150 ms after 25 min)
    assert np.all(np.abs(err_ms - 5.0) < 3.0), err_ms.max()


def test_device_clock_reset_to_2019_is_detected_and_re_anchored():
    device, arrival, true_host = observations(400, 0.5, drift_ppm=0.0, delay_ms=2.0)
    reset_at = 200
    jan_2019 = 1_546_300_800 * NS
    device = device.copy()
    device[reset_at:] = jan_2019 + (device[reset_at:] - device[reset_at])
    clock = ClockMapper(130.0, device_clock=True)
    events = []
    for x, y in zip(device, arrival):
        events += clock.observe(x, int(y))
    jumps = [e for e in events if e["kind"] == "clock_reset"]
    assert len(jumps) == 1 and jumps[0]["backwards"]
    assert jumps[0]["jump_s"] < -200 * 86400  # years back
    assert clock.stats().jumps == 1
    # after re-anchoring, device times of the new epoch map onto the right host times
    err_ms = (clock.map(device[-50:]) - true_host[-50:]) / 1e6
    assert np.all(np.abs(err_ms) < 10.0), err_ms


def test_forward_jump_is_detected_too():
    device, arrival, _ = observations(100, 0.5, drift_ppm=0.0)
    device = device.copy()
    device[60:] += 3600 * NS
    clock = ClockMapper(130.0, device_clock=True)
    events = [e for x, y in zip(device, arrival) for e in clock.observe(x, int(y))]
    assert [e["kind"] for e in events] == ["clock_jump"] and not events[0]["backwards"]


def test_host_stamped_stream_estimates_fs_and_reports_a_mismatch():
    for true_fs, expect_event in ((129.6, False), (140.0, True)):
        clock = ClockMapper(130.0, device_clock=False)
        chunk = 13
        events = []
        rng = np.random.default_rng(1)
        for k in range(1, 400):
            last_index = k * chunk - 1
            x = last_index * NS / 130.0  # nominal sample clock
            arrival = 5 * NS + last_index / true_fs * NS + rng.exponential(2e6)
            events += clock.observe(x, int(arrival))
        s = clock.stats()
        assert abs(s.fs_estimated - true_fs) < 0.05, s
        assert any(e["kind"] == "rate_mismatch" for e in events) == expect_event
