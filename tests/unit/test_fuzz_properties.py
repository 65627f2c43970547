"""Property tests over untrusted input, bounded for CI (a few seconds each); scripts/fuzz.py runs
the same parsers for millions of inputs. Bad input may only ever raise a BridgeEdgeError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_edge.devices import frame, pmd
from bridge_edge.devices.base import SourceStats
from bridge_edge.devices.serial_formats import MAX_LINE_BYTES, parse_ad8232, parse_csv, parse_sparkfun
from bridge_edge.devices.serial_streams import FrameStream, TextStream
from bridge_edge.errors import BridgeEdgeError, BundleError, FrameError
from bridge_edge.export.bundle_checks import manifest_problems
from bridge_edge.export.manifest import Manifest

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROOT = Path(__file__).resolve().parents[2]
PMD_SEEDS = [
    bytes.fromhex(v["frame_hex"])
    for section in ("frames", "rejected_frames")
    for v in json.loads((ROOT / "tests" / "fixtures" / "polar_pmd.json").read_text())[section]
]


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(edges, edges[1:])]


# -- binary frames ----------------------------------------------------------------------------------

good_frame = st.builds(
    lambda seq, n, ch, fmt, seed: frame.encode_frame(
        seq, seq * 1000, np.random.default_rng(seed).integers(-2000, 2000, (n, ch)), fmt
    ),
    st.integers(0, 0xFFFF),
    st.integers(1, 20),
    st.integers(1, 3),
    st.sampled_from([frame.FMT_INT16, frame.FMT_INT24, frame.FMT_FLOAT32]),
    st.integers(0, 2**32 - 1),
)


@FAST
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=5), st.integers(1, 3))
def test_frame_stream_takes_any_bytes_in_any_pieces(data, points, channels):
    stats = SourceStats()
    stream = FrameStream(100.0, channels, np.ones(channels), stats)
    for piece in cuts(data, points):
        stream.feed(piece, 0)
        assert len(stream.decoder._buf) <= len(data)
    stream.on_disconnect()
    assert stats.corrupt_frames >= 0 and stream.decoder.counts.discarded_bytes <= len(data)


@FAST
@given(
    st.lists(
        st.tuples(good_frame, st.binary(max_size=40).map(lambda b: b.replace(b"\xa5", b"\x00"))), max_size=8
    ),
    st.lists(st.integers(0, 5000), max_size=6),
)
def test_every_good_frame_is_recovered_between_garbage_in_any_pieces(frames_and_garbage, points):
    stream = b"".join(f + g for f, g in frames_and_garbage)
    decoder = frame.FrameDecoder()
    got = []
    for piece in cuts(stream, points):
        got += decoder.feed(piece)
    decoder.flush()
    assert [f.seq for f in got] == [frame.HEADER.unpack_from(f, 2)[1] for f, _ in frames_and_garbage]
    assert decoder.counts.discarded_bytes == sum(len(g) for _, g in frames_and_garbage)


# -- text formats -----------------------------------------------------------------------------------

text_bytes = st.one_of(
    st.binary(max_size=2000),
    st.lists(
        st.sampled_from(
            [
                b"1",
                b"23",
                b"-",
                b".",
                b"e",
                b",",
                b"\t",
                b" ",
                b"\r",
                b"\n",
                b"!",
                b"R[",
                b"]",
                b"IR=",
                b"red=",
            ]
        ),
        max_size=400,
    ).map(b"".join),
)


@FAST
@given(text_bytes, st.integers(1, 4))
def test_text_parsers_take_any_block(data, channels):
    block = data[: data.rfind(b"\n") + 1]
    lines = block.count(b"\n")
    for parsed in (parse_csv(block, channels), parse_sparkfun(block, ("red", "ir")), parse_ad8232(block)):
        assert len(parsed.samples) <= lines and 0 <= parsed.skipped <= lines
        assert all(0 <= a <= b <= len(parsed.samples) for a, b, _ in parsed.segments)


@FAST
@given(text_bytes, st.lists(st.integers(0, 2000), max_size=5), st.sampled_from(["csv", "sparkfun", "ad8232"]))
def test_text_stream_bounds_its_buffer_for_any_bytes(data, points, fmt):
    names = {"csv": ("a", "b"), "sparkfun": ("ir",), "ad8232": ("ecg",)}[fmt]
    stream = TextStream(fmt, 100.0, names, SourceStats())
    for piece in cuts(data * 3, points):
        for chunk in stream.feed(piece, 0):
            assert chunk.samples.shape[1] == len(names) and chunk.gap_before >= 0
        assert len(stream._rest) <= MAX_LINE_BYTES
    stream.on_disconnect()


@FAST
@given(st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=3), max_size=30))
def test_csv_round_trips_what_a_sketch_prints(rows):
    block = b"".join((",".join(repr(v) for v in row) + "\r\n").encode() for row in rows)
    parsed = parse_csv(block, 3)
    np.testing.assert_array_equal(parsed.samples, np.array(rows, float).reshape(-1, 3))
    assert parsed.skipped == 0


# -- Polar PMD --------------------------------------------------------------------------------------


@FAST
@given(
    st.one_of(
        st.binary(max_size=600),
        st.tuples(st.sampled_from(PMD_SEEDS), st.integers(0, 599), st.binary(min_size=1, max_size=9)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
        ),
    ),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    st.sampled_from([None, "ecg", "ppg", "acc"]),
)
def test_pmd_parse_frame_takes_any_bytes(data, previous, measurement):
    try:
        parsed = pmd.parse_frame(
            data, previous_timestamp_ns=previous, sample_rate_hz=130.0, measurement=measurement
        )
    except FrameError:
        return
    assert len(parsed.samples) == len(parsed.timestamps_ns) > 0


# -- manifests and bundles --------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def minimal(tmp_path_factory):
    from export_standin import minimal_bundle

    return minimal_bundle(tmp_path_factory.mktemp("fuzz") / "mini")


def _mutated(raw: dict, path: list, value) -> dict:
    raw = json.loads(json.dumps(raw))
    node = raw
    for key in path[:-1]:
        node = node[key] if isinstance(node, dict) and key in node else node
    if isinstance(node, dict):
        node[path[-1]] = value
    return raw


@FAST
@given(st.data())
def test_manifest_loading_takes_any_value_anywhere(minimal, data):
    raw = json.loads((minimal / "manifest.json").read_text())
    keys = list(raw)
    top = data.draw(st.sampled_from(keys))
    sub = list(raw[top]) if isinstance(raw[top], dict) else []
    path = [top] + ([data.draw(st.sampled_from(sub))] if sub and data.draw(st.booleans()) else [])
    mutated = _mutated(raw, path, data.draw(json_value))
    try:
        manifest = Manifest.from_dict(mutated)
    except BundleError:
        return
    assert isinstance(manifest_problems(manifest), list)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400) | json_value.map(lambda v: json.dumps(v).encode()))
def test_bundle_loading_of_any_manifest_bytes_is_typed(minimal, tmp_path_factory, text):
    from bridge_edge.export.bundle import inspect_bundle, load_bundle

    work = tmp_path_factory.mktemp("b") / "mini"
    shutil.copytree(minimal, work)
    (work / "manifest.json").write_bytes(text)
    for load in (load_bundle, inspect_bundle):
        try:
            load(work)
        except BridgeEdgeError:
            pass
