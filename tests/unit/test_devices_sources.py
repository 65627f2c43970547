"""loop://, sim://, replay:// (recordings, CSV, WFDB, WESAD), pacing, `record` and the URL registry."""

from __future__ import annotations

import itertools
import json
import pickle
import sys
import threading

import numpy as np
import pytest

from bridge_edge.cli import main
from bridge_edge.devices.base import SCHEMES, open_source
from bridge_edge.devices.pacing import Pacer
from bridge_edge.devices.recording import read_recording, record_source
from bridge_edge.errors import DatasetNotFoundError, SourceURLError


def take(source, n_chunks):
    chunks = list(itertools.islice(iter(source), n_chunks))
    source.close()
    return chunks


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(SourceURLError, match="serial://, ble://, replay://, sim://, loop://"):
        open_source("http://example.com/stream")


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_handler_opens_with_its_grammar(scheme):
    import importlib

    module = importlib.import_module(SCHEMES[scheme])
    assert module.GRAMMAR.startswith(f"{scheme}://")
    assert module.__doc__.split("Grammar::")[0] and "Grammar::" in module.__doc__


def test_pacer_absolute_schedule_holds_the_rate_over_60_s_despite_oversleeping():
    now = [0.0]
    rng = np.random.default_rng(0)

    def sleep(seconds):  # every sleep overshoots by 0-3 ms, like a busy scheduler
        now[0] += seconds + rng.uniform(0, 0.003)

    pacer = Pacer(1.0, clock=lambda: now[0], sleep=sleep)
    fs, chunk = 125.0, 5
    due_times = []
    for k in range(1, int(60 * fs / chunk) + 1):
        pacer.wait_until(k * chunk / fs)
        due_times.append(now[0])
    rate = (len(due_times) - 1) * chunk / (due_times[-1] - due_times[0])
    assert abs(rate / fs - 1) < 1e-3


def test_pacer_speed_zero_never_sleeps():
    pacer = Pacer(0.0, clock=lambda: 0.0, sleep=lambda s: pytest.fail("slept"))
    pacer.wait_until(100.0)


def test_pacer_start_delay_holds_the_first_item_back_and_keeps_the_schedule():
    now = [10.0]

    def sleep(seconds):
        now[0] += seconds

    pacer = Pacer(2.0, clock=lambda: now[0], sleep=sleep, start_delay_s=0.5)
    pacer.wait_until(1.0)  # the first item: due after the delay only
    assert now[0] == pytest.approx(10.5)
    pacer.wait_until(3.0)  # 2 s of stream time later at speed 2
    assert now[0] == pytest.approx(11.5)


def test_from_array_streams_the_replay_source_stamped_like_a_live_sensor():
    from bridge_edge.devices.replay import PlaybackSource, from_array
    from bridge_edge.errors import DataError

    x = np.arange(20.0).reshape(10, 2)
    source = from_array(x, 50.0, chunk_sizes=(3, 1), channels=("a", "b"), gaps={2: 7}, name="mem")
    assert isinstance(source, PlaybackSource) and not source.info.sample_clock
    chunks = list(source)
    assert [c.n for c in chunks] == [3, 1, 3, 1, 2]  # sizes in turn, the last one short
    assert [c.seq for c in chunks] == [0, 1, 2, 3, 4] and [c.gap_before for c in chunks] == [0, 0, 7, 0, 0]
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), x)
    assert all(c.t_device_ns is None for c in chunks)
    assert (source.stats.samples, source.stats.chunks, source.stats.gaps, source.stats.gap_samples) == (
        10,
        5,
        1,
        7,
    )
    # the schedule runs on the stream's time axis: a gap's missing samples take their time too
    np.testing.assert_allclose(source.plan.offsets_s, np.array([3, 4, 14, 15, 17]) / 50.0)
    with pytest.raises(DataError, match="no samples"):
        from_array(np.zeros((0, 1)), 50.0)
    with pytest.raises(DataError, match="2 columns for channels"):
        from_array(x, 50.0)


def test_loop_source_push_from_another_thread():
    source = open_source("loop://test?fs=100&channels=a,b&resolution=0.5,1")
    assert source.info.resolution == (0.5, 1.0)

    def producer():
        for k in range(3):
            source.push(np.full((4, 2), k), seq=k, gap_before=k)
        source.end()

    threading.Thread(target=producer).start()
    chunks = list(source)
    assert [c.seq for c in chunks] == [0, 1, 2] and source.stats.gap_samples == 3
    assert chunks[2].samples.dtype == np.float32 and chunks[2].samples.shape == (4, 2)


def test_sim_source_streams_the_simulator_continuously():
    from bridge_edge.signals.simulator import PatientSimulator

    source = open_source("sim://ecg+ppg?fs=250&seed=4&script=sinus:5,afib:5&speed=0&chunk=0.1")
    chunks = take(source, 30)  # 3 s, across three 1 s simulator blocks
    samples = np.concatenate([c.samples for c in chunks])
    reference = PatientSimulator(4, fs_ecg=250, fs_ppg=250, script=[("sinus", 5), ("afib", 5)]).generate(3.0)
    np.testing.assert_allclose(
        samples[:, 0], reference.ecg[: len(samples)], atol=0.5e-3 + 1e-6
    )  # 1 µV ADC step
    assert [c.seq for c in chunks] == list(range(30))
    t_device = np.concatenate([c.t_device_ns for c in chunks])
    np.testing.assert_array_equal(np.diff(t_device), 4_000_000)
    assert source.info.channels == ("ecg", "ppg") and source.info.units == ("mV", "a.u.")


@pytest.mark.parametrize(
    "url, message",
    [
        ("sim://eeg", "unknown signal 'eeg'"),
        ("sim://ppg?rhythm=vtach", "not one of sinus|brady|tachy|afib|ectopy"),
        ("sim://ppg?script=sinus:ten", "script='sinus:ten'"),
        ("sim://ppg?rhythm=afib&script=sinus:5", "not both"),
        ("sim://ppg?speed=-1", "speed=-1.0 must be >= 0"),
        ("sim://ppg?speed=nan", "speed=nan must be >= 0"),
        ("sim://ppg?fs=inf", "fs=inf must be > 0"),
        ("sim://ppg?fs=0", "fs=0.0 must be > 0"),
        ("replay:///nowhere.csv?fs=100&lol=1", "unknown option 'lol'"),
        ("loop://x", "missing fs"),
    ],
)
def test_bad_urls_restate_the_grammar(url, message):
    with pytest.raises(SourceURLError, match=message) as err:
        open_source(url)
    assert "://" in err.value.grammar


@pytest.mark.parametrize(
    "query, message",
    [
        ("fs=inf", "fs=inf must be > 0"),
        ("fs=nan", "fs=nan must be > 0"),
        ("fs=-5", "fs=-5.0 must be > 0"),
        ("fs=0", "fs=0.0 must be > 0"),
        ("fs=100&speed=inf", "speed=inf must be >= 0"),
    ],
)
def test_replay_refuses_a_rate_or_speed_that_is_not_finite_and_positive(tmp_path, query, message):
    csv = tmp_path / "x.csv"
    csv.write_text("1\n2\n3\n")
    with pytest.raises(SourceURLError, match=message):
        open_source(f"replay://{csv}?{query}")


def test_record_then_replay_is_bit_exact_with_seq_gaps_and_events(tmp_path):
    source = open_source("loop://sensor?fs=200&channels=ecg,ppg&units=mV,a.u.&resolution=0.001,0.25")
    rng = np.random.default_rng(1)
    pushed = []

    def producer():
        for k in range(20):
            ints = rng.integers(-5000, 5000, (7, 2))
            samples = (ints * np.array([0.001, 0.25])).astype(np.float32)
            pushed.append(samples)
            t_device = (k * 7 + np.arange(7)) * 5_000_000
            source.push(samples, t_device_ns=t_device, seq=k, gap_before=3 if k == 10 else 0)
            if k == 10:
                source.event("disconnect", reason="test")
        source.end()

    threading.Thread(target=producer).start()
    meta = record_source(source, tmp_path / "rec")
    assert meta.exact and meta.scale == (0.001, 0.25)

    replayed = open_source(f"replay://{tmp_path / 'rec'}?speed=0")
    chunks = list(replayed)
    np.testing.assert_array_equal(
        np.concatenate([c.samples for c in chunks]), np.concatenate(pushed)
    )  # bit-exact
    assert [c.seq for c in chunks] == list(range(20)) and [c.n for c in chunks] == [7] * 20
    assert [c.gap_before for c in chunks] == [3 if k == 10 else 0 for k in range(20)]
    np.testing.assert_array_equal(chunks[1].t_device_ns, (7 + np.arange(7)) * 5_000_000)

    lines = [json.loads(line) for line in (tmp_path / "rec" / "events.jsonl").read_text().splitlines()]
    chunk_line = next(line for line in lines if line["kind"] == "chunk")
    assert set(chunk_line) >= {"seq", "t_device_ns", "t_host_ns", "n", "gap_before"}
    assert [line["kind"] for line in lines].count("disconnect") == 1

    # the WFDB half is readable by the standard tools, at the sensor's resolution
    wfdb = pytest.importorskip("wfdb", reason="wfdb (dev extra) is not installed: the device extra alone")
    record = wfdb.rdrecord(str(tmp_path / "rec" / "signal"))
    assert record.fs == 200 and record.sig_name == ["ecg", "ppg"] and record.units == ["mV", "NU"]
    np.testing.assert_allclose(record.p_signal, np.concatenate(pushed), atol=1e-9)


def test_replay_loops_with_device_time_continuing(tmp_path):
    path = tmp_path / "ppg.csv"
    path.write_text("time,ppg\n" + "\n".join(f"{i / 50},{i}" for i in range(10)) + "\n")
    source = open_source(f"replay://{path}?fs=50&column=ppg&speed=0&loop=1&chunk=0.1")
    chunks = take(source, 5)  # 2 chunks per pass of 10 samples
    values = np.concatenate([c.samples for c in chunks]).ravel()
    np.testing.assert_array_equal(values, [*range(10), *range(10), *range(5)])
    t_device = np.concatenate([c.t_device_ns for c in chunks])
    np.testing.assert_array_equal(np.diff(t_device), 20_000_000)
    assert source.info.channels == ("ppg",)


def test_replay_csv_errors(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a\tb\n1\t2\n")
    with pytest.raises(SourceURLError, match="needs fs"):
        open_source(f"replay://{path}")
    with pytest.raises(SourceURLError, match="column 'c' not found"):
        open_source(f"replay://{path}?fs=10&column=c")
    with pytest.raises(DatasetNotFoundError, match="nothing to replay"):
        open_source(f"replay://{tmp_path / 'missing.edf'}")


def test_replay_wfdb_record(tmp_path):
    wfdb = pytest.importorskip("wfdb", reason="wfdb (dev extra) is not installed: the device extra alone")

    signal = np.stack([np.sin(np.arange(360) / 10), np.cos(np.arange(360) / 10)], axis=1)
    wfdb.wrsamp(
        "rec",
        fs=360,
        units=["mV", "mV"],
        sig_name=["MLII", "V5"],
        p_signal=signal,
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    source = open_source(f"replay://{tmp_path / 'rec.hea'}?channels=V5&speed=0")
    samples = np.concatenate([c.samples for c in source])
    assert source.info.fs == 360 and source.info.channels == ("V5",)
    np.testing.assert_allclose(samples[:, 0], signal[:, 1], atol=1e-3)
    with pytest.raises(SourceURLError, match="contradicts the WFDB header"):
        open_source(f"replay://{tmp_path / 'rec'}?fs=250")


def test_replay_of_a_foreign_wfdb_record_without_wfdb_names_the_package(tmp_path, monkeypatch):
    from bridge_edge.errors import DependencyMissingError

    (tmp_path / "rec.hea").write_text("rec 1 360 10\nrec.dat 16 200/mV 12 0 0 0 0 MLII\n")
    (tmp_path / "rec.dat").write_bytes(bytes(20))
    monkeypatch.setitem(sys.modules, "wfdb", None)
    with pytest.raises(DependencyMissingError, match="needs the wfdb package"):
        open_source(f"replay://{tmp_path / 'rec.hea'}")


def test_replay_wesad_subject_pickle_without_running_code(tmp_path):
    subject = {
        "signal": {
            "chest": {"ECG": np.linspace(-1, 1, 700 * 2).reshape(-1, 1)},
            "wrist": {"BVP": np.arange(128, dtype=float).reshape(-1, 1)},
        },
        "label": np.ones(700 * 2, int),
        "subject": "S99",
    }
    path = tmp_path / "S99.pkl"
    path.write_bytes(pickle.dumps(subject, protocol=2))
    ppg = open_source(f"replay://{path}?speed=0")
    np.testing.assert_array_equal(np.concatenate([c.samples for c in ppg]).ravel(), np.arange(128))
    assert ppg.info.fs == 64
    ecg = open_source(f"replay://{path}?stream=ecg&speed=0")
    assert ecg.info.fs == 700 and sum(c.n for c in ecg) == 1400


def test_record_command_writes_wfdb_and_summary(tmp_path, capsys):
    out = tmp_path / "rec"
    assert (
        main(
            ["record", "--source", "sim://ppg?seed=2&speed=0", "--out", str(out), "--seconds", "2", "--json"]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["samples"] == 250 and summary["exact"] is True
    recording = read_recording(out)
    assert recording.samples.shape == (250, 1) and recording.meta.fs == 125


def test_record_command_bad_url_is_one_line_error(tmp_path, capsys):
    assert main(["record", "--source", "sim://ppg?fs=abc", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected sim://" in err


def test_devices_command_lists_serial_ports_as_json(capsys):
    assert main(["devices", "--json"]) == 0
    for line in capsys.readouterr().out.splitlines():
        assert json.loads(line)["kind"] == "serial"


def test_recording_falls_back_to_float_storage_when_data_is_off_the_declared_grid(tmp_path):
    source = open_source("loop://f32?fs=10&resolution=1")
    source.push(np.array([[0.5], [1.25], [-3.75]]))
    source.end()
    meta = record_source(source, tmp_path / "rec")
    assert not meta.exact
    np.testing.assert_array_equal(read_recording(tmp_path / "rec").samples.ravel(), [0.5, 1.25, -3.75])


def test_samples_off_the_grid_after_the_first_chunk_make_the_recording_inexact(tmp_path):
    source = open_source("loop://sensor?fs=10&resolution=0.5")
    source.push(np.array([[1.0], [1.5], [2.0]]))  # on the 0.5 grid: the first chunk picks it
    source.push(np.full((600, 1), 0.3))  # 600 samples off the grid: rounded to 0.5
    source.end()
    meta = record_source(source, tmp_path / "rec")
    doc = json.loads((tmp_path / "rec" / "recording.json").read_text())
    assert doc["requantised"] == 600 and type(doc["requantised"]) is int
    assert doc["exact"] is False and meta.exact is False


def test_every_event_kind_in_devices_and_runtime_is_listed_and_others_are_refused():
    """EVENT_KINDS is the whole vocabulary of the event stream: every literal kind a source, the
    clock model or the pipeline emits is in it, and SourceStats.event refuses any other."""
    import ast
    from pathlib import Path

    import bridge_edge
    from bridge_edge.devices.base import EVENT_KINDS, SourceStats

    root = Path(bridge_edge.__file__).parent
    emitted = set()
    for path in [*(root / "devices").rglob("*.py"), *(root / "runtime").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "event" and node.args:
                if isinstance(node.args[0], ast.Constant):
                    emitted.add(node.args[0].value)
            if isinstance(node, ast.Dict):
                emitted |= {
                    v.value
                    for k, v in zip(node.keys, node.values)
                    if isinstance(k, ast.Constant) and k.value == "kind" and isinstance(v, ast.Constant)
                }
    emitted -= {"chunk", "ble", "serial"}  # recording's chunk lines; device listing rows
    assert {"gap", "nonfinite", "stale", "source_error", "disconnect"} <= emitted
    assert emitted <= set(EVENT_KINDS)
    with pytest.raises(ValueError, match="unknown source event kind"):
        SourceStats().event("reboot")
