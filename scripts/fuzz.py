#!/usr/bin/env python3
"""Long fuzz runs of every parser that reads untrusted bytes (docs/sources.md, "Fuzzing").

    nice -n 19 python3 scripts/fuzz.py [--n 1000000] [--targets frame,csv,...] [--seed 0] [--out FILE]

Each input is a mutation of a valid seed (flipped bits, "interesting" bytes, long repeated runs,
cut, spliced and duplicated ranges) or plain random bytes, at most --max-len bytes. Per target it
reports: tried, ok, typed errors (a BridgeEdgeError: the wanted answer to bad input), other
exceptions (a bug), hangs (an input slower than --hang-ms of wall time, confirmed by re-running
it 3 times and keeping the least CPU time, so a loaded machine's scheduling is not a hang), the
slowest time and the rate. --budget-s caps a target's time: the report then says how many it did. JSON on stdout (and in --out); exit 1 on any other exception or hang.
The hypothesis tests in tests/unit/test_fuzz_properties.py are the bounded version that CI runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge_edge.devices import frame as framing  # noqa: E402
from bridge_edge.devices import pmd  # noqa: E402
from bridge_edge.devices.base import SourceStats  # noqa: E402
from bridge_edge.devices.serial_formats import (  # noqa: E402
    parse_ad8232,
    parse_csv,
    parse_sparkfun,
    split_lines,
)
from bridge_edge.devices.serial_streams import FrameStream, TextStream  # noqa: E402
from bridge_edge.errors import BridgeEdgeError  # noqa: E402
from bridge_edge.export.bundle_checks import manifest_problems  # noqa: E402
from bridge_edge.export.manifest import Manifest  # noqa: E402
from bridge_edge.signals import preprocess  # noqa: E402, F401 - imported here, not inside the timing

INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xA5, 0x5A, 10, 13, 9, 32] + list(b",.-+eE!R[]IG=x0123456789")


class Mutator:
    """Inputs from seeds: a few random edits each, or (1 in 16) random bytes."""

    def __init__(self, seeds: list[bytes], rng: random.Random, max_len: int) -> None:
        self.seeds, self.rng, self.max_len = seeds, rng, max_len

    def __call__(self) -> bytes:
        rng = self.rng
        if rng.random() < 1 / 16:
            return rng.randbytes(rng.randrange(self.max_len))
        data = bytearray(rng.choice(self.seeds))
        for _ in range(rng.randrange(1, 9)):
            self._edit(data)
        return bytes(data[: self.max_len])

    def _edit(self, data: bytearray) -> None:
        rng, n = self.rng, len(data)
        op = rng.randrange(7)
        at = rng.randrange(n + 1)
        if op == 0 and n:  # flip a bit
            data[at % n] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            data[at % n] = rng.choice(INTERESTING)
        elif op == 2:  # a long run of one interesting byte (digit runs, blanks, magic)
            data[at:at] = bytes([rng.choice(INTERESTING)]) * rng.randrange(1, 1200)
        elif op == 3 and n:  # delete a range
            del data[at : at + rng.randrange(1, 64)]
        elif op == 4:  # splice another seed in
            data[at:at] = rng.choice(self.seeds)
        elif op == 5 and n:  # duplicate a range several times
            piece = data[at : at + rng.randrange(1, 32)]
            data[at:at] = piece * rng.randrange(1, 40)
        else:  # a random integer of random width, little-endian
            width = rng.choice((1, 2, 4, 8))
            data[at:at] = rng.getrandbits(8 * width).to_bytes(width, "little")


# -- targets: seeds and one run ---------------------------------------------------------------------


def _pieces(data: bytes) -> list[bytes]:
    """The same bytes in 1-3 arrivals, cut where the data says (deterministic per input)."""
    if len(data) < 3:
        return [data]
    a, b = sorted((data[0] * 7 % len(data), data[-1] * 13 % len(data)))
    return [data[:a], data[a:b], data[b:]]


def frame_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    seeds = []
    for fmt in (framing.FMT_INT16, framing.FMT_INT24, framing.FMT_FLOAT32):
        for channels in (1, 2, 3):
            frames = [
                framing.encode_frame(s, s * 10_000, rng.integers(-3000, 3000, (10, channels)), fmt)
                for s in range(4)
            ]
            seeds.append(b"".join(frames))
    seeds.append(framing.MAGIC + framing.HEADER.pack(1, 0, 0, 255, 2, 1) + seeds[0])  # a fake header
    return seeds


def run_frame(data: bytes) -> None:
    stream = FrameStream(100.0, 1 + data[0] % 2 if data else 1, np.ones(2)[:1], SourceStats())
    for piece in _pieces(data):
        stream.feed(piece, 0)
    stream.on_disconnect()


TEXT_SEEDS = {
    "csv": [b"ppg,ecg\r\n1,2\r\n3\t4\n 5 , -6.5e-1\n", b"1.5,2,3\n-4,5e3,.6\n", b"100\n101\n102\n"],
    "sparkfun": [
        b"Initializing...\r\n R[100] IR[200] G[300]\r\n",
        b"red=5, ir=6, HR=70, HRvalid=1, SPO2=98, SPO2Valid=1\r\nred=7, ir=8\r\n",
        b"IR=77, BPM=60.50, Avg BPM=61 No finger?\r\n12345\r\n",
    ],
    "ad8232": [b"512\n!\n!\n500\n501\n", b"Booting\n512\n!\n600\n601\n"],
}


def _text_runner(fmt: str) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        channels = 1 + (data[0] % 3 if data else 0)
        block = split_lines(data)[0]
        if fmt == "csv":
            parse_csv(block, channels)
            names = tuple(f"c{i}" for i in range(channels))
        elif fmt == "sparkfun":
            names = ("red", "ir", "green")[:channels]
            parse_sparkfun(block, names)
        else:
            parse_ad8232(block)
            names = ("ecg",)
        stream = TextStream(fmt, 100.0, names, SourceStats())
        for piece in _pieces(data):
            stream.feed(piece, 0)
        stream.on_disconnect()

    return run


def pmd_seeds() -> list[bytes]:
    vectors = json.loads((ROOT / "tests" / "fixtures" / "polar_pmd.json").read_text())
    return [bytes.fromhex(v["frame_hex"]) for v in vectors["frames"] + vectors["rejected_frames"]]


def run_pmd(data: bytes) -> None:
    previous = int.from_bytes(data[-8:], "little") if len(data) > 20 and data[-1] & 1 else None
    measurement = (None, "ecg", "ppg", "acc")[data[-1] % 4] if data else None
    pmd.parse_frame(data, previous_timestamp_ns=previous, sample_rate_hz=130.0, measurement=measurement)


MANIFEST_TEXT = (ROOT / "bridge_edge" / "assets" / "bundles" / "default" / "manifest.json").read_text()
MANIFEST_BASE = json.loads(MANIFEST_TEXT)  # parsed once; _structural never changes it
LEAVES = [None, True, 0, -1, 1e308, float("nan"), "", "../../x", "a b", [], {}, [[]], "fp32", 1250, "batch"]


def _structural(rng: random.Random) -> dict:
    """The default manifest with 1-4 values anywhere replaced (or keys deleted).

    Copy on write: each dict or list on the way down to an edit is copied (shallow) before it
    is changed, so MANIFEST_BASE is shared, not re-parsed or deep-copied per input."""
    doc = dict(MANIFEST_BASE)
    for _ in range(rng.randrange(1, 5)):
        parent, key = None, None
        node = doc
        while isinstance(node, (dict, list)) and node and (parent is None or rng.random() < 0.6):
            parent, key = node, rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            node = parent[key]
            if isinstance(node, (dict, list)):
                node = parent[key] = copy.copy(node)
        if parent is None:
            continue
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[key]
        else:
            parent[key] = copy.deepcopy(rng.choice(LEAVES))
    return doc


def run_manifest(data: bytes) -> None:
    """Odd first byte: a structural mutation seeded by the input; else the bytes as JSON text.

    A structural mutation goes to ``Manifest.from_dict`` as a dict: ``Manifest.parse`` is
    ``json.loads`` + ``from_dict``, and a JSON round trip of such a dict gives it back equal
    (string keys; NaN stays NaN), so the round trip only cost time. The bytes go to ``parse``."""
    if data and data[0] & 1:
        manifest = Manifest.from_dict(_structural(random.Random(data)))
    else:
        manifest = Manifest.parse(data)
    manifest_problems(manifest)


TARGETS: dict[str, tuple[Callable[[], list[bytes]], Callable[[bytes], None]]] = {
    "frame": (frame_seeds, run_frame),
    "csv": (lambda: TEXT_SEEDS["csv"], _text_runner("csv")),
    "sparkfun": (lambda: TEXT_SEEDS["sparkfun"], _text_runner("sparkfun")),
    "ad8232": (lambda: TEXT_SEEDS["ad8232"], _text_runner("ad8232")),
    "pmd": (pmd_seeds, run_pmd),
    "manifest": (lambda: [MANIFEST_TEXT.encode()], run_manifest),
}


# -- the loop -------------------------------------------------------------------------------------


def fuzz_target(
    name: str, n: int, seed: int, max_len: int, hang_ms: float, budget_s: float | None = None, progress=None
) -> dict:
    make_seeds, run = TARGETS[name]
    seeds = make_seeds()
    mutate = Mutator(seeds, random.Random(f"{name}-{seed}"), max_len)
    for warm in seeds[:3]:  # imports and caches happen here, outside the timing
        _run_once(run, warm)
    counts = {"tried": 0, "ok": 0, "typed_errors": 0, "other_exceptions": 0, "hangs": 0}
    examples: list[dict] = []
    slowest_ms = 0.0
    t_start = time.perf_counter()
    for i in range(n):
        if budget_s is not None and time.perf_counter() - t_start > budget_s:
            break
        if progress is not None and i and i % 20_000 == 0:
            progress(_summary(counts, slowest_ms, t_start, max_len, examples, partial=True))
        data = mutate()
        counts["tried"] += 1
        outcome, elapsed = _run_once(run, data)
        if elapsed * 1e3 > hang_ms:  # confirm: the least CPU time of three more runs
            elapsed = min(_run_once(run, data, clock=time.thread_time)[1] for _ in range(3))
            if elapsed * 1e3 > hang_ms:
                counts["hangs"] += 1
                _keep(examples, "hang", data, f"{elapsed * 1e3:.1f} ms of CPU")
        slowest_ms = max(slowest_ms, elapsed * 1e3)
        if isinstance(outcome, BridgeEdgeError):
            counts["typed_errors"] += 1
        elif isinstance(outcome, BaseException):
            counts["other_exceptions"] += 1
            _keep(examples, "exception", data, "".join(traceback.format_exception_only(outcome)).strip())
        else:
            counts["ok"] += 1
    return _summary(counts, slowest_ms, t_start, max_len, examples)


def _summary(
    counts: dict, slowest_ms: float, t_start: float, max_len: int, examples: list, partial=False
) -> dict:
    seconds = time.perf_counter() - t_start
    return {
        **counts,
        "slowest_ms": round(slowest_ms, 3),
        "seconds": round(seconds, 1),
        "inputs_per_s": round(counts["tried"] / max(seconds, 1e-9), 1),
        "max_len": max_len,
        "partial": partial,
        "examples": examples,
    }


def _run_once(
    run: Callable[[bytes], None], data: bytes, clock: Callable[[], float] = time.perf_counter
) -> tuple[BaseException | None, float]:
    t0 = clock()
    try:
        run(data)
        outcome = None
    except Exception as err:  # noqa: BLE001 - classifying every exception is the point
        outcome = err
    return outcome, clock() - t0


def _keep(examples: list[dict], kind: str, data: bytes, detail: str) -> None:
    if len(examples) < 20:
        examples.append({"kind": kind, "detail": detail, "input_hex": data[:2048].hex()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma list of {', '.join(TARGETS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-len", type=int, default=4096, help="longest input, bytes")
    parser.add_argument("--hang-ms", type=float, default=10.0)
    parser.add_argument("--budget-s", type=float, default=None, help="stop a target after this long")
    parser.add_argument("--out", type=Path, help="also write the JSON report here (rewritten as it goes)")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # sources log every skipped frame; the counts are the report
    names = [t for t in args.targets.split(",") if t]
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    report: dict = {"n_per_target": args.n, "seed": args.seed, "hang_ms": args.hang_ms, "targets": {}}

    def write(name: str, result: dict) -> None:
        report["targets"][name] = result
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")

    for name in names:
        result = fuzz_target(
            name,
            args.n,
            args.seed,
            args.max_len,
            args.hang_ms,
            args.budget_s,
            lambda r, name=name: write(name, r),
        )
        write(name, result)
        print(
            f"{name}: {json.dumps({k: v for k, v in report['targets'][name].items() if k != 'examples'})}",
            file=sys.stderr,
        )
    print(json.dumps(report, indent=2))
    bad = any(t["other_exceptions"] or t["hangs"] for t in report["targets"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
