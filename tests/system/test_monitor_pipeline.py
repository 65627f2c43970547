"""MonitorFeed as a listener of the real Pipeline (tiny ONNX bundle, in-memory ECG+PPG source),
with a real MonitorServer and a WebSocket client in place of the page."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle
from websockets.sync.client import connect

from bridge_edge.devices.replay import from_array
from bridge_edge.monitor.feed import MonitorFeed, provenance_numbers
from bridge_edge.monitor.frames import decode_block
from bridge_edge.monitor.server import MonitorServer
from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig
from bridge_edge.signals.simulator import PatientSimulator

pytest.importorskip("onnx", reason="the tiny test model is written with the onnx package")

FS = 125.0


def test_pipeline_feeds_the_page_frames_predictions_and_provenance(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "tiny", fs=FS, window_s=2.0, hop_s=0.5)
    rec = PatientSimulator(5, fs_ecg=FS, fs_ppg=FS, script=[("sinus", 7.0)]).generate(7.0)
    samples = np.stack([rec.ecg, rec.ppg], axis=1)
    # real time, as a live sensor: the monitor shows sources as they happen
    source = from_array(samples, FS, chunk_sizes=(25,), channels=("ecg", "ppg"), speed=1.0)
    # short windows score low SQI; infer anyway (flag): this test is about the plumbing
    pipeline = Pipeline([source], bundle, engine="ort", config=PipelineConfig(sqi_policy="flag"))
    with MonitorServer("127.0.0.1", 0) as server:
        feed = MonitorFeed(server, [source.info], provenance={"bundle_name": "tiny"}, stats=pipeline.stats)
        pipeline.add_listener(feed)
        feed.start()
        with connect(f"ws://127.0.0.1:{server.port}/ws", subprotocols=["bridge-edge.v1"]) as ws:
            time.sleep(0.2)
            pipeline.run_until_done(timeout_s=30)
            time.sleep(1.2)  # one more stats tick
            feed.stop()
            blocks, messages = [], []
            while True:
                try:
                    message = ws.recv(timeout=1.0)
                except TimeoutError:
                    break
                if isinstance(message, bytes):
                    blocks.append(decode_block(message))
                else:
                    messages.append(json.loads(message))
    # every sample of both channels reached the page, on a continuous time line
    for channel in (0, 1):
        got = sum(b.samples.size for b in blocks if b.channel == channel)
        assert got == len(samples)
        t0 = np.array([b.t0 for b in blocks if b.channel == channel])
        assert np.allclose(np.diff(t0), 25 / FS, atol=0.01)
    predictions = [m for m in messages if m["type"] == "prediction"]
    assert len(predictions) >= 5 and all(p["bed"] == 0 for p in predictions)
    inferred = [p for p in predictions if p["gated"] is None]  # after the filters' warm-up
    assert inferred and all(set(p["probs"]) == set(bundle.manifest.output.labels) for p in inferred)
    stats = [m for m in messages if m["type"] == "stats"][-1]["pipeline"]
    assert stats["engine"] == "ort" and stats["bundle_name"] == bundle.manifest.name
    assert stats["latency_p50_ms"] > 0 and stats["dropped_samples"] == 0
    assert provenance_numbers(pipeline.stats())["hops"] == len(predictions)
