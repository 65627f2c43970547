"""Polar PMD decoding against Polar's own SDK test vectors (tests/fixtures/polar_pmd.json): 100 %."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bridge_edge.devices import pmd, pmd_control
from bridge_edge.errors import FrameError

VECTORS = json.loads((Path(__file__).parents[1] / "fixtures" / "polar_pmd.json").read_text())


def by_id(section):
    return pytest.mark.parametrize("case", VECTORS[section], ids=[c["id"] for c in VECTORS[section]])


@by_id("frames")
def test_every_frame_decodes_exactly(case):
    expected = case["expected"]
    frame = pmd.parse_frame(
        bytes.fromhex(case["frame_hex"]),
        previous_timestamp_ns=case["previous_timestamp_ns"],
        sample_rate_hz=case["sample_rate_hz"],
        factor=case["factor"],
        measurement=case["kind"],
    )
    assert frame.measurement == case["kind"]
    assert frame.timestamp_ns == expected["frame_timestamp_ns"]
    assert list(frame.channel_names) == expected["channel_names"]
    assert frame.samples.shape == (len(expected["samples"]), len(expected["channel_names"]))
    assert frame.samples.tolist() == expected["samples"]
    assert frame.timestamps_ns.tolist() == expected["timestamps_ns"]
    assert sorted(frame.other_fields) == sorted(expected["other_fields"])
    for name, values in expected["other_fields"].items():
        assert np.asarray(frame.other_fields[name]).tolist() == values


@by_id("frames")
def test_byte_zero_routes_to_the_same_parser_unless_it_lies(case):
    data = bytes.fromhex(case["frame_hex"])
    if pmd.parse_header(data).measurement != case["kind"]:  # ppg-raw-t14 starts with 0xA5
        with pytest.raises(FrameError):
            pmd.parse_frame(data, previous_timestamp_ns=case["previous_timestamp_ns"], sample_rate_hz=130)
        return
    frame = pmd.parse_frame(
        data,
        previous_timestamp_ns=case["previous_timestamp_ns"],
        sample_rate_hz=case["sample_rate_hz"],
        factor=case["factor"],
    )
    assert frame.samples.tolist() == case["expected"]["samples"]


@by_id("rejected_frames")
def test_rejected_frames_are_rejected_with_the_named_reason(case):
    with pytest.raises(FrameError) as err:
        pmd.parse_frame(bytes.fromhex(case["frame_hex"]), previous_timestamp_ns=100, measurement=case["kind"])
    assert err.value.reason == case["expected_error"]


@by_id("delta_payloads")
def test_delta_payloads(case):
    samples = pmd.decode_delta(bytes.fromhex(case["payload_hex"]), case["channels"], case["resolution_bits"])
    if case["reference_sample_only"]:
        samples = samples[:1]
    assert samples.tolist() == case["expected"]["samples"]


@by_id("timestamp_interpolation")
def test_timestamp_rule(case):
    args = (
        case["frame_timestamp_ns"],
        case["sample_count"],
        case["previous_timestamp_ns"],
        case["sample_rate_hz"],
    )
    if "error" in case["expected"]:
        with pytest.raises(FrameError) as err:
            pmd.sample_timestamps(*args)
        assert err.value.reason == case["expected"]["error"]
    else:
        assert pmd.sample_timestamps(*args).tolist() == case["expected"]["timestamps_ns"]


@by_id("headers")
def test_header_split(case):
    header = pmd.parse_header(bytes.fromhex(case["frame_hex"]))
    expected = case["expected"]
    assert header.measurement == case["kind"]
    assert (
        header.measurement_type,
        header.timestamp_ns,
        header.frame_type,
        header.compressed,
        header.payload.hex(),
    ) == (
        expected["measurement_type"],
        expected["timestamp_ns"],
        expected["frame_type"],
        expected["compressed"],
        expected["payload_hex"],
    )


def test_previous_timestamp_is_tracked_per_measurement_and_frame_type():
    case = VECTORS["previous_timestamp_tracking"][0]
    chain = pmd.PreviousTimestamps()
    seen = {}
    for index, frame_hex in enumerate(case["frames_hex"]):
        header = pmd.parse_header(bytes.fromhex(frame_hex))
        seen[index] = (header.timestamp_ns, chain.swap(header) or 0)
    for expected in case["expected_acc_frames"]:
        assert seen[expected["frame_index"]] == (expected["timestamp_ns"], expected["previous_timestamp_ns"])


@by_id("control_point")
def test_control_point(case):
    data, expected = bytes.fromhex(case["bytes_hex"]), case["expected"]
    if case["direction"] == "client_to_device":
        measurement = pmd.MEASUREMENTS[expected["measurement_type"]]
        security = None
        tail = data[2:]
        if "security_key_hex" in expected:
            security = (expected["security_strategy"], bytes.fromhex(expected["security_key_hex"]))
            tail = tail[: -(3 + 16)]
        settings = {name: values[0] for name, values in pmd_control.parse_settings(tail).items()}
        request = pmd_control.start_request(
            measurement, settings, offline=expected["offline"], security=security
        )
        assert request == data
        assert request[1:2].hex() == case.get("asserted_byte_1_hex", request[1:2].hex())
        return
    message = pmd_control.parse_cp_message(data)
    if "stopped_measurement_types" in expected:
        assert isinstance(message, pmd_control.MeasurementStopped)
        assert list(message.measurement_types) == expected["stopped_measurement_types"]
        return
    assert (
        message.op_code,
        message.op_code_name,
        message.measurement_type,
        message.status,
        message.status_name,
        message.more,
        message.parameters.hex(),
    ) == (
        expected["op_code"],
        expected["op_code_name"],
        expected["measurement_type"],
        expected["status"],
        expected["status_name"],
        expected["more"],
        expected["parameters_hex"],
    )
    if "factor_float32" in expected:
        assert (
            pmd_control.factor_from(pmd_control.parse_settings(message.parameters))
            == expected["factor_float32"]
        )


@by_id("settings")
def test_settings(case):
    parsed = pmd_control.parse_settings(bytes.fromhex(case["bytes_hex"]))
    assert {k: sorted(v) for k, v in parsed.items()} == {k: sorted(v) for k, v in case["expected"].items()}
    for absent in case.get("expected_absent", []):
        assert absent not in parsed
    if "selected_input" in case:
        assert pmd_control.encode_settings(case["selected_input"]).hex() == case["bytes_hex"]


def test_h10_ecg_commands_are_byte_exact():
    assert pmd_control.start_request("ecg", pmd_control.H10_ECG_SETTINGS) == bytes.fromhex(
        "02000001820001010e00"
    )
    assert pmd_control.stop_request("ecg") == bytes.fromhex("0300")


def test_all_statuses_are_named():
    for status in range(15):
        response = pmd_control.parse_cp_message(bytes([0xF0, 2, 0, status, 0]))
        assert response.status_name == pmd_control.STATUSES[status] and "UNKNOWN" not in response.status_name


def test_truncated_and_garbage_frames_are_rejected_not_crashing():
    with pytest.raises(FrameError) as err:
        pmd.parse_frame(b"\x00\x01\x02")
    assert err.value.reason == "too_short"
    with pytest.raises(FrameError) as err:  # ECG type 0 payload not a multiple of 3
        pmd.parse_frame(bytes.fromhex("0000943577000000000001020304"), previous_timestamp_ns=100)
    assert err.value.reason == "bad_length"
