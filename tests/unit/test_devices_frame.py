"""The docs/sources.md frame: Python encoder/decoder and the firmware's C encoder on shared byte vectors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bridge_edge.devices.frame import FrameDecoder, crc16_ccitt_false, decode_payload, encode_frame

ROOT = Path(__file__).parents[2]
VECTORS = json.loads((ROOT / "tests" / "fixtures" / "frames" / "vectors.json").read_text())
FIRMWARE = ROOT / "devices" / "firmware"


def expected_samples(vector) -> np.ndarray:
    return np.array(vector["samples"], dtype=np.float32 if vector["fmt"] == 3 else np.int64)


def test_crc_check_value():
    assert f"{crc16_ccitt_false(b'123456789'):04x}" == VECTORS["crc_check"]["crc16_ccitt_false"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["id"])
def test_python_encoder_and_decoder_match_the_vectors(vector):
    samples = expected_samples(vector)
    assert (
        encode_frame(vector["seq"], vector["t_device_us"], samples, vector["fmt"]).hex()
        == vector["frame_hex"]
    )
    decoder = FrameDecoder()
    (frame,) = decoder.feed(bytes.fromhex(vector["frame_hex"]))
    assert (frame.seq, frame.t_device_us, frame.fmt) == (vector["seq"], vector["t_device_us"], vector["fmt"])
    np.testing.assert_array_equal(frame.samples, samples)
    assert decoder.counts.corrupt_frames == 0 and decoder.counts.discarded_bytes == 0


@pytest.fixture(scope="module")
def frame_cli(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler (cc/gcc/clang) on this machine; the firmware framing code cannot be built")
    out = tmp_path_factory.mktemp("firmware") / "frame_cli"
    subprocess.run(
        [
            compiler,
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{FIRMWARE}",
            str(FIRMWARE / "frame.c"),
            str(FIRMWARE / "host" / "frame_cli.c"),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def run_cli(cli: Path, lines: list[str]) -> list[str]:
    result = subprocess.run(
        [str(cli)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def spec_line(vector) -> str:
    samples = expected_samples(vector)
    values = " ".join(f"{v:.9g}" if vector["fmt"] == 3 else str(int(v)) for v in samples.ravel())
    n, channels = samples.shape
    return f"{vector['seq']} {vector['t_device_us']} {n} {channels} {vector['fmt']} {values}"


def test_c_encoder_is_byte_identical_to_the_vectors_and_python(frame_cli):
    vectors = VECTORS["vectors"]
    outputs = run_cli(frame_cli, ["crc 123456789"] + [spec_line(v) for v in vectors])
    assert outputs[0] == "29b1"
    for vector, c_hex in zip(vectors, outputs[1:]):
        assert c_hex == vector["frame_hex"], vector["id"]
        (frame,) = FrameDecoder().feed(bytes.fromhex(c_hex))  # and the Python decoder reads C's bytes
        np.testing.assert_array_equal(frame.samples, expected_samples(vector))


def test_c_encoder_matches_python_on_random_frames(frame_cli):
    rng = np.random.default_rng(11)
    specs, python = [], []
    for _ in range(40):
        fmt = int(rng.integers(1, 4))
        n, channels = int(rng.integers(1, 30)), int(rng.integers(1, 5))
        if fmt == 3:
            samples = rng.normal(0, 100, (n, channels)).astype(np.float32)
        else:
            bits = 16 if fmt == 1 else 24
            samples = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), (n, channels))
        seq, t_us = int(rng.integers(0, 2**16)), int(rng.integers(0, 2**32))
        vector = {"seq": seq, "t_device_us": t_us, "fmt": fmt, "samples": samples.tolist()}
        specs.append(spec_line(vector))
        python.append(encode_frame(seq, t_us, samples, fmt).hex())
    assert run_cli(frame_cli, specs) == python


def stream_of(n_frames: int, n: int = 10) -> tuple[list[bytes], np.ndarray]:
    values = np.arange(n_frames * n).reshape(n_frames, n, 1) % 30000
    return [encode_frame(i, i * 1000, values[i], 1) for i in range(n_frames)], values


def test_decoder_resyncs_and_charges_each_corrupt_frame_once():
    frames, _values = stream_of(200)
    rng = np.random.default_rng(3)
    corrupt = set(rng.choice(np.arange(1, 199), 30, replace=False).tolist())
    wire = bytearray()
    for i, frame in enumerate(frames):
        frame = bytearray(frame)
        if i in corrupt:
            frame[int(rng.integers(len(frame)))] ^= int(rng.integers(1, 256))  # magic, header, payload or CRC
        wire += frame
    decoder = FrameDecoder()
    got = []
    for start in range(0, len(wire), 37):  # arbitrary read sizes
        got += decoder.feed(bytes(wire[start : start + 37]))
    assert [f.seq for f in got] == [i for i in range(200) if i not in corrupt]
    assert decoder.counts.corrupt_frames == len(corrupt)


def test_decoder_skips_leading_garbage_and_counts_a_partial_frame_at_flush():
    frames, _ = stream_of(3)
    decoder = FrameDecoder()
    got = decoder.feed(b"Booting...\r\n" + frames[0] + frames[1] + frames[2][:7])
    assert [f.seq for f in got] == [0, 1]
    decoder.flush()
    assert decoder.counts.corrupt_frames == 2  # the banner region and the cut frame
    assert decoder.counts.discarded_bytes == len(b"Booting...\r\n") + 7


def test_a_corrupt_length_field_does_not_stall_the_stream():
    frames, _ = stream_of(3)
    bad = bytearray(frames[0])
    bad[9] = 255  # n = 255: claims a far longer frame
    got = FrameDecoder().feed(bytes(bad) + frames[1] + frames[2])
    assert [f.seq for f in got] == [1, 2]


def test_int24_payload_sign_extension():
    payload = bytes.fromhex("ffff7f000080ffffff010000")
    np.testing.assert_array_equal(decode_payload(payload, 4, 1, 2).ravel(), [8388607, -8388608, -1, 1])


def test_firmware_sketch_type_checks_against_stub_arduino_apis(tmp_path):
    """Not a board build (that needs arduino-cli); catches C/C++ errors in the sketch itself."""
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler on this machine; the sketch cannot be type-checked")
    stubs = ROOT / "tests" / "fixtures" / "firmware_stubs"
    command = [
        compiler,
        "-std=c++11",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{stubs}",
        f"-I{FIRMWARE}",
        "-include",
        str(stubs / "arduino_stubs.h"),
        "-x",
        "c++",
        str(FIRMWARE / "firmware.ino"),
        "-c",
        "-o",
        str(tmp_path / "firmware.o"),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
