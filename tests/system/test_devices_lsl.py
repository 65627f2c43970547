"""Lab Streaming Layer in and out, on loopback with the real liblsl (pylsl's wheel carries it).

Device-side: no torch. Skipped with the reason where pylsl is not installed or cannot load
liblsl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

try:
    import pylsl
except (ImportError, RuntimeError) as err:  # RuntimeError: pylsl without a loadable liblsl
    pytest.skip(f"pylsl cannot run here: {err} (pip install 'bridge-edge[lsl]')", allow_module_level=True)

from bridge_edge.devices.base import open_source
from bridge_edge.devices.sim import open as open_sim

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FS = 125.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_outlet(name: str, channels=("ppg", "ecg"), units=("a.u.", "mV"), fs=FS, type_="PPG"):
    info = pylsl.StreamInfo(name, type_, len(channels), fs, "float32", unique("src"))
    chans = info.desc().append_child("channels")
    for label, unit in zip(channels, units):
        c = chans.append_child("channel")
        c.append_child_value("label", label)
        c.append_child_value("unit", unit)
    return pylsl.StreamOutlet(info)


class Collector:
    """Iterates a source on a thread and keeps its chunks."""

    def __init__(self, source):
        self.source, self.chunks = source, []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for chunk in self.source:
            self.chunks.append(chunk)

    def samples(self) -> int:
        return sum(c.n for c in self.chunks)

    def wait(self, condition, what: str, limit_s: float = 180.0):
        deadline = time.monotonic() + limit_s
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(0.02)

    def stop(self):
        self.source.close()
        self.thread.join(5)


def push(outlet, values: np.ndarray, index: np.ndarray, t0: float):
    """Push samples with explicit LSL timestamps ``t0 + index / FS`` (so gaps are exact)."""
    outlet.push_chunk(np.ascontiguousarray(values, np.float32), list(t0 + index / FS))


def test_rate_channels_units_and_timestamps_come_from_the_stream(tmp_path):
    name = unique("bx-in")
    outlet = make_outlet(name)
    source = open_source(f"lsl://{name}?type=PPG&channels=ppg&timeout=10&gap=0.1")
    assert source.info.fs == FS and source.info.channels == ("ppg",) and source.info.units == ("a.u.",)
    collector = Collector(source)
    assert outlet.wait_for_consumers(10)
    values = np.stack([np.arange(250.0), -np.arange(250.0)], axis=1)
    t0 = pylsl.local_clock()
    push(outlet, values[:100], np.arange(100), t0)
    push(outlet, values[130:250], np.arange(130, 250), t0)  # 30 samples never sent
    collector.wait(lambda: collector.samples() == 220, "220 samples")
    collector.stop()
    got = np.concatenate([c.samples for c in collector.chunks])
    np.testing.assert_array_equal(got[:, 0], np.r_[values[:100, 0], values[130:, 0]])
    stamps = np.concatenate([c.t_device_ns for c in collector.chunks])
    expected = np.round((t0 + np.r_[np.arange(100), np.arange(130, 250)] / FS) * 1e9)
    np.testing.assert_allclose(stamps, expected, atol=1e3)  # LSL stamps, as ns, to the microsecond
    assert source.stats.gaps == 1 and source.stats.gap_samples == 30
    assert [c.gap_before for c in collector.chunks if c.gap_before] == [30]


def test_outage_is_a_counted_gap_and_the_stream_is_found_again_by_name():
    name = unique("bx-outage")
    outlet = make_outlet(name)
    source = open_source(f"lsl://{name}?watchdog=0.5&timeout=10")
    collector = Collector(source)
    assert outlet.wait_for_consumers(10)
    t0 = pylsl.local_clock()
    values = np.ones((400, 2))
    push(outlet, values[:200], np.arange(200), t0)
    collector.wait(lambda: collector.samples() == 200, "the first 200 samples")
    del outlet  # the sender goes away
    collector.wait(lambda: source.stats.disconnects >= 1, "a disconnect")
    outlet = make_outlet(name)  # and comes back under the same name
    collector.wait(lambda: source.stats.reconnects >= 1, "a reconnect by name")
    assert outlet.wait_for_consumers(10)
    push(outlet, values[250:], np.arange(250, 400), t0)  # 50 samples lost in the outage
    collector.wait(lambda: collector.samples() == 350, "the samples after the outage")
    collector.stop()
    kinds = [e["kind"] for e in source.stats.events]
    assert kinds.index("disconnect") < kinds.index("reconnect")
    assert source.stats.gap_samples == 50 and source.stats.gaps == 1


def test_unknown_stream_times_out_with_what_is_visible():
    from bridge_edge.errors import DeviceTimeoutError

    with pytest.raises(DeviceTimeoutError, match="no LSL stream named"):
        open_source(f"lsl://{unique('nobody')}?timeout=0.5")


def _stream_sim_to(outlet, stop: threading.Event):
    """A paced sensor that stamps every sample from its own clock (as BrainFlow does), so a stall
    of this thread on a loaded host delays samples without moving their stamps."""
    sim = open_sim("sim://ppg?rhythm=afib&seed=3")  # real time, like a sensor
    t0 = pylsl.local_clock()
    for chunk in sim:
        outlet.push_chunk(np.ascontiguousarray(chunk.samples[:, 0:1]), list(t0 + chunk.t_device_ns / 1e9))
        if stop.is_set():
            sim.close()


def test_run_streams_an_lsl_outlet_to_json_hops():
    name = unique("bx-ppg")
    outlet = make_outlet(name, channels=("ppg",), units=("a.u.",))
    stop = threading.Event()
    pusher = threading.Thread(target=_stream_sim_to, args=(outlet, stop), daemon=True)
    pusher.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bridge_edge.cli", "run", "--source", f"lsl://{name}", "--json",
             "--seconds", "26"],
            capture_output=True, text=True, timeout=600, env=ENV, check=False,
        )  # fmt: skip
    finally:
        stop.set()
        pusher.join(5)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hops = [h for h in map(json.loads, filter(str.strip, proc.stdout.splitlines())) if "summary" not in h]
    assert len(hops) >= 2, proc.stderr[-2000:]
    assert {h["stream"] for h in hops} == {f"lsl {name}"}
    assert all(h["label"] in h["probs"] for h in hops if h["probs"])
    assert all(h["dropped_samples"] == 0 for h in hops)


def test_lsl_out_predictions_reach_an_inlet():
    name = unique("bx-pred")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge_edge.cli", "run", "--source", "sim://ppg?rhythm=afib&seed=3&speed=4",
         "--lsl-out", name, "--json", "--seconds", "14"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        found = pylsl.resolve_byprop("name", name, 1, 300.0)
        assert found, "the --lsl-out stream never appeared"
        inlet = pylsl.StreamInlet(found[0])
        info = inlet.info(10.0)
        inlet.open_stream(10.0)
        received = []
        while proc.poll() is None or received == []:
            samples, _ = inlet.pull_chunk(timeout=0.5)
            received += samples
            if proc.poll() is not None and not samples:
                break
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert info.type() == "Predictions" and info.nominal_srate() == pytest.approx(1 / 5.0)
    labels = []
    node = info.desc().child("labels").child("label")
    while not node.empty():
        labels.append(node.child_value())
        node = node.next_sibling()
    assert info.channel_count() == len(labels) + 1 and "afib" in labels
    hops = [h for h in map(json.loads, filter(str.strip, stdout.splitlines())) if "summary" not in h]
    assert received, "no prediction reached the inlet"
    by_probs = {tuple(np.float32([h["probs"][x] for x in labels])): h for h in hops if h["probs"]}
    inferred = [s for s in received if not np.isnan(s[0])]
    assert inferred, "only gated hops reached the inlet"
    for sample in received:
        probs, index = np.float32(sample[:-1]), int(sample[-1])
        if np.isnan(probs).all():  # a hop without a model call (warm-up, gap, low SQI)
            assert index == -1 and any(h["probs"] is None for h in hops)
            continue
        hop = by_probs[tuple(probs)]  # every sample is one of the hops printed as JSON
        assert labels[index] == hop["label"]
