"""Heart Rate Service measurement parsing: flag bits 0-4, HR widths, energy, 0/1/n RR intervals."""

from __future__ import annotations

import numpy as np
import pytest

from bridge_edge.devices.hrs import parse_heart_rate
from bridge_edge.errors import FrameError


def test_uint8_hr_without_rr_or_contact_support():
    m = parse_heart_rate(bytes([0x00, 72]))
    assert m.heart_rate_bpm == 72 and m.contact_detected is None and m.energy_kj is None and len(m.rr_ms) == 0


def test_uint16_hr_with_energy_and_contact():
    m = parse_heart_rate(bytes([0x01 | 0x02 | 0x04 | 0x08, 0x2C, 0x01, 0x10, 0x00]))
    assert m.heart_rate_bpm == 300 and m.contact_detected is True and m.energy_kj == 16


def test_contact_supported_but_not_detected():
    assert parse_heart_rate(bytes([0x04, 60])).contact_detected is False


@pytest.mark.parametrize("rr_raw", [[], [1024], [1024, 768, 512]])
def test_rr_intervals_in_1024ths_become_ms(rr_raw):
    data = bytes([0x10, 60]) + b"".join(v.to_bytes(2, "little") for v in rr_raw)
    np.testing.assert_allclose(parse_heart_rate(data).rr_ms, np.array(rr_raw) * 1000 / 1024)


def test_rr_after_energy_field():
    m = parse_heart_rate(bytes([0x18, 60, 0x05, 0x00, 0x00, 0x02]))
    assert m.energy_kj == 5 and m.rr_ms.tolist() == [500.0]


@pytest.mark.parametrize("data", [b"", b"\x01\x3c", b"\x08\x3c\x01", b"\x10\x3c\x00"])
def test_truncated_measurements_are_rejected(data):
    with pytest.raises(FrameError):
        parse_heart_rate(data)
