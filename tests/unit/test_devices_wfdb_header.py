"""WFDB headers written by the device's own writer: read back by it and by the reference reader.

Device-side (no torch); the ``wfdb`` checks skip with a reason where only the device extra is
installed (the 3.10 device run, docs/sources.md).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from bridge_edge.devices.base import Chunk, StreamInfo
from bridge_edge.devices.recording import RecordingWriter, read_recording, record_source
from bridge_edge.devices.sim import open as open_sim
from bridge_edge.devices.wfdb_header import (
    Header,
    SignalSpec,
    format_header,
    format_number,
    read_header,
    wfdb_unit,
)
from bridge_edge.errors import DataError


def _wfdb():
    return pytest.importorskip("wfdb", reason="wfdb (dev extra) is not installed: the device extra alone")


def _record_sim(tmp_path, url, seconds):
    out = tmp_path / "rec"
    record_source(open_sim(url), out, seconds=seconds)
    return out


def _loop_record(tmp_path, info, blocks):
    import time

    writer = RecordingWriter(tmp_path / "rec", info)
    for i, block in enumerate(blocks):
        writer.write(Chunk(np.asarray(block, np.float32), time.monotonic_ns(), None, i))
    writer.close()
    return tmp_path / "rec"


@pytest.mark.parametrize(
    "url",
    ["sim://ppg?realtime=0&seed=1", "sim://ecg?realtime=0&seed=2", "sim://ecg+ppg?realtime=0&seed=3&fs=200"],
)
def test_reference_reader_reads_every_sim_recording_with_base_date_and_time(tmp_path, url):
    wfdb = _wfdb()
    out = _record_sim(tmp_path, url, 3.0)
    ours = read_recording(out)
    record = wfdb.rdrecord(str(out / "signal"))
    assert record.fs == ours.meta.fs
    assert record.sig_name == list(ours.meta.channels)
    assert record.sig_len == len(ours.samples)
    np.testing.assert_allclose(record.p_signal, ours.samples, atol=1e-6, rtol=1e-6)
    document = json.loads((out / "recording.json").read_text())
    assert record.base_datetime == dt.datetime.fromisoformat(document["base_datetime_utc"])
    assert record.base_date is not None and record.base_time is not None
    header = read_header(out / "signal.hea")
    assert header.base_datetime == record.base_datetime
    digital = wfdb.rdrecord(str(out / "signal"), physical=False, return_res=32).d_signal
    assert list(record.init_value) == [int(v) for v in digital[0]]


def test_float_data_units_and_odd_names_survive_both_readers(tmp_path):
    wfdb = _wfdb()
    rng = np.random.default_rng(0)
    blocks = [rng.normal(0, 3.0, (50, 2)) for _ in range(4)]
    info = StreamInfo("lsl EEG", 256.0, ("Fp1 left", "x\ty"), ("a.u.", "uV"))
    out = _loop_record(tmp_path, info, blocks)
    record = wfdb.rdrecord(str(out / "signal"))
    assert record.units == ["NU", "uV"]  # "a.u." is not a header token
    assert record.sig_name == ["Fp1 left", "x y"]
    expected = np.concatenate(blocks).astype(np.float32)
    ours = read_recording(out)
    np.testing.assert_array_equal(ours.samples, record.p_signal.astype(np.float32))
    np.testing.assert_allclose(ours.samples, expected, atol=3.0 * 2**-14)


def test_own_reader_refuses_a_corrupted_dat_by_checksum(tmp_path):
    out = _record_sim(tmp_path, "sim://ppg?realtime=0&seed=4", 1.0)
    raw = np.fromfile(out / "signal.dat", "<i4")
    raw[10] += 1
    raw.tofile(out / "signal.dat")
    with pytest.raises(DataError, match="checksum"):
        read_recording(out)


def test_own_reader_refuses_a_truncated_dat(tmp_path):
    out = _record_sim(tmp_path, "sim://ppg?realtime=0&seed=4", 1.0)
    data = (out / "signal.dat").read_bytes()
    (out / "signal.dat").write_bytes(data[:-8])
    with pytest.raises(DataError, match="header declares"):
        read_recording(out)


def test_header_text_is_the_documented_layout(tmp_path):
    header = Header(
        "signal",
        125.0,
        1000,
        (SignalSpec("signal.dat", 1e5, "a.u.", -3, 17, "ppg"),),
        dt.datetime(2026, 12, 3, 9, 5, 7, 250000),
    )
    assert format_header(header) == (
        "signal 1 125 1000 09:05:07.250 03/12/2026\nsignal.dat 32 100000(0)/NU 32 0 -3 17 0 ppg\n"
    )
    (tmp_path / "signal.hea").write_text(format_header(header))
    units_as_written = SignalSpec("signal.dat", 1e5, "NU", -3, 17, "ppg")
    assert read_header(tmp_path / "signal.hea") == Header(
        "signal", 125.0, 1000, (units_as_written,), header.base_datetime
    )


def test_numbers_units_and_bad_names():
    assert format_number(1.0 / 1e-5) == "100000"
    assert format_number(1e6) == "1000000"
    assert format_number(2.0**-3) == "0.125"
    assert wfdb_unit("mV") == "mV" and wfdb_unit("µV") == "NU" and wfdb_unit("a.u.") == "NU"
    with pytest.raises(DataError, match="record name"):
        format_header(Header("bad name", 1.0, 0, ()))


def test_a_header_from_elsewhere_is_refused_with_the_expected_layout(tmp_path):
    (tmp_path / "x.hea").write_text("x 1 250 10\nx.dat 16 200/mV 12 0 0 0 0 ecg\n")
    with pytest.raises(DataError, match="format 16"):
        read_header(tmp_path / "x.hea")
