"""Pure parsers for the text formats hobby sketches print (docs/sources.md).

Each parser takes a block of complete lines (bytes, ending at a newline) and returns the samples
plus what it threw away. Whole blocks are matched with one compiled regular expression and
converted with numpy, so there is no Python loop per line. Every pattern is linear in the line
length: each quantifier can give back characters only where the next token cannot start, so a
failing line is rejected in one pass (the old number pattern, digits, optional dot, digits,
could split a digit run many ways and backtracked cubically on a long line). ``cut_long_lines``
bounds a line at ``MAX_LINE_BYTES`` before any parser sees it.

- ``csv``: one sample per line, channels separated by comma or tab (Arduino Serial Plotter /
  Edge Impulse data-forwarder convention). Header and malformed lines are skipped and counted.
- ``sparkfun``: MAX3010x example sketches: `` R[<red>] IR[<ir>] G[<green>]`` (Example1),
  ``red=<n>, ir=<n>[, HR=..., ...]`` (Example8), ``IR=<n>, BPM=<f>, ...`` (Example5) and bare
  integers (Example4, IR). Banner lines ("Initializing...") are skipped and counted.
- ``ad8232``: one ``analogRead`` integer per line; ``!`` means a lead is off. A ``!`` line stands
  in for a sample that was not measured: it becomes part of the next segment's gap and is counted.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

import numpy as np

TEXT_FORMATS = ("csv", "sparkfun", "ad8232")
SPARKFUN_FIELDS = ("red", "ir", "green")

MAX_LINE_BYTES = 1024  # longer lines are cut and counted (no sketch prints lines this long)
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"  # one way to match any digit run
_SEP = r"(?:[ \t]*,[ \t]*|[ ]*\t[ \t]*)"  # a comma, or a tab, with blanks around it
# An ADC reading has at most 15 digits; capping the capture keeps the string arrays the parsers
# build (rows x columns x longest field) small even when a line holds a long digit run.
_INT = r"-?\d{1,15}"
# Each branch ends the line itself: a free-text tail ([^\r\n]*) is never followed by another
# blank-eating quantifier, which made a line of tabs with a stray '\r' quadratic.
_SPARKFUN = re.compile(
    rf"^[ \t]*(?:R\[({_INT})\][ \t]*IR\[({_INT})\](?:[ \t]*G\[({_INT})\])?[ \t]*"  # Example1
    rf"|red=({_INT}),[ \t]*ir=({_INT})(?:,[^\r\n]*|[ \t]*)"  # Example8
    rf"|IR=({_INT}),[ \t]*BPM=[^\r\n]*"  # Example5
    rf"|({_INT})[ \t]*)\r?$",  # Example4
    re.MULTILINE,
)
_NON_BLANK = re.compile(r"^[ \t\r]*\S", re.MULTILINE)
_AD8232 = re.compile(rf"^[ \t]*(?:({_INT})|(!))[ \t]*\r?$", re.MULTILINE)


@dataclass(frozen=True)
class ParsedLines:
    samples: np.ndarray  # (m, channels) float64
    skipped: int  # lines that were not samples (banners, headers, garbage)
    # Segments of consecutive samples: (start, stop, missing samples right before start).
    # Only ad8232 lead-off markers split a block; other formats give one segment.
    segments: tuple[tuple[int, int, int], ...]
    lead_off: int = 0


def split_lines(buffer: bytes) -> tuple[bytes, bytes]:
    """(complete lines, unfinished rest) of a byte buffer."""
    cut = buffer.rfind(b"\n") + 1
    return buffer[:cut], buffer[cut:]


def _text(block: bytes) -> tuple[str, int]:
    """The block as text and its number of non-blank lines."""
    text = block.decode("ascii", errors="replace")
    return text, len(_NON_BLANK.findall(text))


def _one_segment(samples: np.ndarray, skipped: int) -> ParsedLines:
    return ParsedLines(samples, skipped, ((0, len(samples), 0),) if len(samples) else ())


@dataclass(frozen=True)
class CutLines:
    block: bytes  # the block without its over-long lines
    lines: int  # lines cut
    bytes: int  # bytes cut, newlines included


def cut_long_lines(block: bytes, limit: int = MAX_LINE_BYTES) -> CutLines:
    """Drop every complete line longer than ``limit`` bytes (newline excluded) from a block."""
    if len(block) <= limit:  # no line can be longer than the block (the usual serial read)
        return CutLines(block, 0, 0)
    ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else ends
    long = np.flatnonzero(ends - starts > limit)
    if not len(long):
        return CutLines(block, 0, 0)
    keep_from = np.concatenate([[0], ends[long] + 1])  # one slice per kept run, not per line
    keep_to = np.concatenate([starts[long], [len(block)]])
    kept = b"".join(block[a:b] for a, b in zip(keep_from.tolist(), keep_to.tolist()))
    return CutLines(kept, len(long), len(block) - len(kept))


def parse_csv(block: bytes, channels: int) -> ParsedLines:
    """Lines of exactly `channels` numbers separated by ',' or tab (spaces allowed around them)."""
    pattern = _csv_pattern(channels)
    text, lines = _text(block)
    rows = pattern.findall(text)
    samples = np.array(rows, dtype=np.float64).reshape(len(rows), channels)
    return _one_segment(samples, lines - len(rows))


@functools.lru_cache(maxsize=16)
def _csv_pattern(channels: int) -> re.Pattern:
    return re.compile(r"^[ \t]*" + _SEP.join([f"({_NUM})"] * channels) + r"[ \t]*\r?$", re.MULTILINE)


def parse_sparkfun(block: bytes, fields: tuple[str, ...] = ("ir",)) -> ParsedLines:
    """Any mix of the MAX3010x example outputs; `fields` picks and orders red/ir/green."""
    text, lines = _text(block)
    rows = np.array(_SPARKFUN.findall(text), dtype=str).reshape(-1, 7)
    by_field = {
        "red": _first_present(rows[:, [0, 3]]),
        "ir": _first_present(rows[:, [1, 4, 5, 6]]),
        "green": rows[:, 2],
    }
    wanted = np.stack([by_field[f] for f in fields], axis=1) if len(rows) else np.empty((0, len(fields)), str)
    complete = np.all(wanted != "", axis=1)
    samples = wanted[complete].astype(np.float64).reshape(-1, len(fields))
    return _one_segment(samples, lines - len(samples))


def _first_present(columns: np.ndarray) -> np.ndarray:
    present = columns != ""
    pick = np.argmax(present, axis=1)
    return columns[np.arange(len(columns)), pick]


def parse_ad8232(block: bytes) -> ParsedLines:
    """Integers and '!' lead-off markers; each run of markers becomes the gap before the next segment."""
    text, lines = _text(block)
    rows = np.array(_AD8232.findall(text), dtype=str).reshape(-1, 2)
    off = rows[:, 1] == "!"
    values = rows[~off, 0].astype(np.float64).reshape(-1, 1)
    if not off.any():  # no lead-off marker (the usual block): one segment, as below would give
        return _one_segment(values, lines - len(rows))
    # missing[i] = markers right before the i-th value; trailing markers carry to the next block
    sample_index = np.cumsum(~off) - 1  # index of the last value at or before each row
    before = np.bincount(sample_index[off] + 1, minlength=len(values) + 1)
    starts = np.flatnonzero(before[:-1]) if len(values) else np.empty(0, int)
    bounds = np.concatenate([[0], starts[starts > 0], [len(values)]]).astype(int)
    segments = tuple((int(a), int(b), int(before[a])) for a, b in itertools.pairwise(bounds) if b > a)
    trailing = int(before[len(values)]) if len(values) else int(off.sum())
    parsed = ParsedLines(values, lines - len(rows), segments, lead_off=int(off.sum()))
    return parsed if not trailing else _with_trailing(parsed, trailing)


def _with_trailing(parsed: ParsedLines, trailing: int) -> ParsedLines:
    # Markers after the last value: an empty segment at the end carries them forward.
    return ParsedLines(
        parsed.samples,
        parsed.skipped,
        parsed.segments + ((len(parsed.samples),) * 2 + (trailing,),),
        parsed.lead_off,
    )
