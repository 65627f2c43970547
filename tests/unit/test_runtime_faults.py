"""Poisoned and faulty input through the real pipeline (issue 17, items 1-4): non-finite samples
become counted gaps and gated windows, strict JSON, finite sources end, replay times come from
the sample clock, a sensor reboot is a clock_reset and not a phantom gap."""

import json
import time

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle

from bridge_edge.devices.base import Chunk, open_source
from bridge_edge.devices.replay import from_array
from bridge_edge.errors import NonFiniteError
from bridge_edge.runtime.engines import EngineChoice
from bridge_edge.runtime.engines.ort import OrtEngine
from bridge_edge.runtime.outputs import strict_json
from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig
from bridge_edge.runtime.stream_dsp import StreamingPreprocessor
from bridge_edge.signals.preprocess import PreprocessSpec
from bridge_edge.signals.simulator import PatientSimulator

pytest.importorskip("onnx", reason="the tiny test model is written with the onnx package")

FS = 125.0
WINDOW_S, HOP_S = 4.0, 1.0
L, H = int(FS * WINDOW_S), int(FS * HOP_S)
NAN_AT = int(30 * FS)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny"), fs=FS, window_s=WINDOW_S, hop_s=HOP_S)


@pytest.fixture(scope="module")
def afib():
    return PatientSimulator(7, fs_ppg=FS, script=[("afib", 50.0)]).generate(50.0).ppg


class Recorder:
    def __init__(self):
        self.preds, self.events = [], []

    def on_prediction(self, p):
        self.preds.append(p)

    def on_event(self, i, e):
        self.events.append(e)


def run(sources, bundle, **cfg):
    cfg.setdefault("lossless", True)
    cfg.setdefault("sqi_policy", "off")
    engine = OrtEngine(bundle.onnx_path(), "fp32", threads=1)
    pipe = Pipeline(sources, bundle, config=PipelineConfig(**cfg), engine_choice=EngineChoice(engine))
    rec = Recorder()
    pipe.add_listener(rec)
    stats = pipe.run_until_done(timeout_s=60)
    return rec, stats


def write_csv(path, values):
    np.savetxt(path, values, fmt="%.6g", header="ppg", comments="")
    return path


def touches(p, sample):
    return p.window_index * H <= sample < p.window_index * H + L


def test_one_nan_in_a_replay_is_a_counted_gap_gated_windows_and_labels_resume(bundle, afib, tmp_path):
    poisoned = afib.copy()
    poisoned[NAN_AT] = np.nan
    clean_rec, _ = run(
        [open_source(f"replay://{write_csv(tmp_path / 'a.csv', afib)}?fs=125&speed=0")], bundle
    )
    rec, stats = run(
        [open_source(f"replay://{write_csv(tmp_path / 'n.csv', poisoned)}?fs=125&speed=0")], bundle
    )
    assert len(rec.preds) == len(clean_rec.preds) == (len(afib) - L) // H + 1  # the time axis is kept
    hit = [p for p in rec.preds if touches(p, NAN_AT)]
    assert [p.window_index for p in hit] == list(range(NAN_AT // H - 3, NAN_AT // H + 1))
    for p in hit:  # gated: no label, no probabilities, no smoothed label carried across
        assert p.gated == "nonfinite" and p.label is None and p.probs is None
        assert p.smoothed_label is None and p.gap and p.dropped_samples == 1
    later = [p for p in rec.preds if p.window_index > hit[-1].window_index]
    assert later and all(p.gated is None and p.label is not None for p in later)  # labelled again at once
    assert all(np.isfinite(list(p.probs.values())).all() and np.isfinite(p.sqi) for p in later)
    # the filter recovered: once its restart transient has passed, the model sees what it saw before
    clean = {p.window_index: p for p in clean_rec.preds}
    settled = [p for p in later if p.window_index * H > NAN_AT + 2 * FS]
    assert settled
    for p in settled:
        np.testing.assert_allclose(
            list(p.probs.values()), list(clean[p.window_index].probs.values()), atol=0.02
        )
    s = stats.streams[0]
    assert (
        s.nonfinite_samples == 1 and s.nonfinite_runs == 1 and stats.windows_skipped["nonfinite"] == len(hit)
    )
    assert stats.dropped_samples == 1 and s.samples == len(afib) - 1
    (event,) = [e for e in rec.events if e["kind"] == "nonfinite"]
    assert event == {"kind": "nonfinite", "samples": 1, "at_sample": NAN_AT}


def test_an_all_nan_file_gives_only_gated_windows(bundle, tmp_path):
    path = write_csv(tmp_path / "nan.csv", np.full(int(20 * FS), np.nan))
    source = open_source(f"replay://{path}?fs=125&speed=0")
    rec, stats = run([source], bundle, sqi_policy="skip")
    assert len(rec.preds) == (int(20 * FS) - L) // H + 1
    assert all(p.gated == "nonfinite" and p.label is None and p.smoothed_label is None for p in rec.preds)
    assert stats.streams[0].nonfinite_samples == int(20 * FS) and stats.streams[0].samples == 0
    assert source.stats.nonfinite == int(20 * FS)  # the source counts what it delivered too
    assert [e["samples"] for e in rec.events if e["kind"] == "nonfinite"] == [int(20 * FS)]


def test_csv_1e999_is_inf_and_takes_the_same_path(bundle, afib, tmp_path):
    path = tmp_path / "inf.csv"
    lines = [f"{v:.6f}" for v in afib[: int(20 * FS)]]
    lines[int(10 * FS)] = "1e999"
    lines[int(10 * FS) + 1] = "-1e999"
    path.write_text("ppg\n" + "\n".join(lines) + "\n")
    source = open_source(f"replay://{path}?fs=125&speed=0")
    rec, stats = run([source], bundle)
    assert source.stats.nonfinite == 2 and stats.streams[0].nonfinite_samples == 2
    hit = [p for p in rec.preds if touches(p, int(10 * FS)) or touches(p, int(10 * FS) + 1)]
    assert hit and all(p.gated == "nonfinite" for p in hit)
    assert all(p.gated != "nonfinite" for p in rec.preds if p not in hit)


def test_float32_frames_carrying_nan_are_counted_by_the_source_and_gated(bundle, afib):
    from bridge_edge.devices.base import SourceStats
    from bridge_edge.devices.frame import FMT_FLOAT32, encode_frame
    from bridge_edge.devices.serial_streams import FrameStream

    x = afib[: int(16 * FS)].astype(np.float32).copy()
    x[int(8 * FS) : int(8 * FS) + 30] = np.nan  # a NaN burst inside frames
    n = 25
    data = b"".join(
        encode_frame(k, int(k * n * 1e6 / FS), x[k * n : (k + 1) * n, None], FMT_FLOAT32)
        for k in range(len(x) // n)
    )
    stats = SourceStats()
    chunks = FrameStream(FS, 1, np.array([1.0]), stats).feed(data, time.monotonic_ns())
    for c in chunks:
        stats.count_chunk(c)
    assert stats.nonfinite == 30 and stats.gap_samples == 0

    class Frames:
        info = from_array(x, FS).info
        stats = SourceStats()

        def __iter__(self):
            yield from chunks

        def close(self):
            pass

    rec, pstats = run([Frames()], bundle)
    assert pstats.streams[0].nonfinite_samples == 30
    hit = [p for p in rec.preds if any(touches(p, int(8 * FS) + i) for i in range(30))]
    assert hit and all(p.gated == "nonfinite" for p in hit)
    assert all(p.gated is None for p in rec.preds if p.window_index > hit[-1].window_index)


def test_the_streaming_filter_refuses_nan_and_restarts_without_a_transient():
    dsp = StreamingPreprocessor(PreprocessSpec(fs_out=FS), FS)
    with pytest.raises(NonFiniteError) as err:
        dsp.process(np.array([1.0, np.nan, 2.0]))
    assert err.value.count == 1 and err.value.first_index == 1
    dsp.restart(1000.0)  # a large DC level: from rest it would ring for seconds
    out = dsp.process(np.full(500, 1000.0)).values
    assert np.abs(out).max() < 1e-6
    cold = StreamingPreprocessor(PreprocessSpec(fs_out=FS), FS).process(np.full(500, 1000.0)).values
    assert np.abs(cold).max() > 1.0  # what restart() avoids


def test_strict_json_never_prints_nan_or_infinity():
    line = strict_json({"sqi": float("nan"), "hr": float("inf"), "p": [np.float32("-inf"), 0.5], "ok": 1})

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    assert json.loads(line, parse_constant=refuse) == {"sqi": None, "hr": None, "p": [None, 0.5], "ok": 1}


def test_a_replay_at_speed_0_keeps_the_files_time_axis(bundle, afib, tmp_path):
    path = write_csv(tmp_path / "a.csv", afib[: int(20 * FS)])
    rec, _ = run([open_source(f"replay://{path}?fs=125&speed=0")], bundle)
    starts = np.array([p.t_start for p in rec.preds])
    # arrival times would put every window within a few ms of the others: the sample clock does not
    np.testing.assert_allclose(np.diff(starts), HOP_S, atol=1e-6)
    assert all(p.t_end - p.t_start == pytest.approx((L - 1) / FS) for p in rec.preds)


def test_a_paced_replay_ends_the_run(bundle, afib, tmp_path):
    """The issue's repro: a 64 Hz file for a 125 Hz model, paced at 20x. 704 samples end one
    input sample short of window 7, which the old readiness test declared complete: inference
    then spun at 100 % CPU for ever."""
    path = write_csv(tmp_path / "a.csv", afib[:704])
    pipe = Pipeline(
        [open_source(f"replay://{path}?fs=64&speed=20")],
        bundle,
        config=PipelineConfig(sqi_policy="off"),
        engine_choice=EngineChoice(OrtEngine(bundle.onnx_path(), "fp32", threads=1)),
    )
    pipe.start()
    try:
        assert pipe.wait(30.0), "the pipeline did not end after its finite source ended"
    finally:
        pipe.stop()
    assert pipe.hops == 7  # windows 0..6


@pytest.mark.parametrize("fs_in", [64.0, 100.0, 130.0])
def test_a_window_is_ready_exactly_when_the_dsp_can_complete_it(fs_in):
    """The old readiness test was one input sample short at rates that do not divide the model
    rate, so a finished source never completed its last window and inference spun at 100 % CPU."""
    dsp = StreamingPreprocessor(PreprocessSpec(fs_out=FS), fs_in)
    for n_out in (1, 2, 499, 500, 625, 1250, 1251):
        need = dsp.inputs_for(n_out)
        assert dsp.available(need) >= n_out > dsp.available(need - 1) if need > 1 else True


def test_a_device_clock_going_backwards_is_a_clock_reset_not_a_gap(bundle, afib):
    """A sensor reboot restarts device time: the pipeline re-anchors, says clock_reset, and
    predicts exactly the windows the samples make (no time invented)."""
    x = afib[: int(24 * FS)]
    chunk_n = 25
    chunks = []
    for k in range(len(x) // chunk_n):
        idx = k * chunk_n + np.arange(chunk_n)
        if idx[0] >= 12 * FS:  # the sensor rebooted at 12 s: its clock restarts at zero
            idx = idx - int(12 * FS)
        t_device = (idx * 1e9 / FS).astype(np.int64) + (0 if k * chunk_n >= 12 * FS else 10**12)
        chunks.append(Chunk(x[k * chunk_n : (k + 1) * chunk_n, None], time.monotonic_ns(), t_device, k))

    class Rebooting:
        info = from_array(x, FS).info
        stats = from_array(x, FS).stats

        def __iter__(self):
            for c in chunks:
                yield Chunk(c.samples, time.monotonic_ns(), c.t_device_ns, c.seq)

        def close(self):
            pass

    rec, stats = run([Rebooting()], bundle)
    assert [e["kind"] for e in rec.events if e["kind"].startswith("clock")] == ["clock_reset"]
    assert stats.streams[0].clock_resets == 1 and stats.dropped_samples == 0
    assert len(rec.preds) == (len(x) - L) // H + 1
    assert all(a.t_end < b.t_end for a, b in zip(rec.preds, rec.preds[1:]))


def test_a_recording_keeps_nan_and_inf_as_invalid_samples_not_numbers(tmp_path):
    from bridge_edge.devices.recording import read_recording, record_source

    x = np.linspace(-1, 1, 400).astype(np.float32)
    x[[10, 11, 200]] = [np.nan, np.inf, -np.inf]
    record_source(from_array(x, FS, chunk_sizes=(50,)), tmp_path / "rec", None)
    rec = read_recording(tmp_path / "rec")
    got = rec.samples[:, 0]
    assert np.flatnonzero(~np.isfinite(got)).tolist() == [10, 11, 200]  # not 0, not INT32_MAX
    np.testing.assert_allclose(got[np.isfinite(got)], x[np.isfinite(x)], atol=1e-4)
    assert [e["count"] for e in rec.events if e["kind"] == "nonfinite"] == [2, 1]
    source = open_source(f"replay://{tmp_path / 'rec'}?speed=0")
    assert sum(c.n for c in source) == 400 and source.stats.nonfinite == 3
