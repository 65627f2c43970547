"""Ring buffer: ordering, wraparound, overwrite accounting, allocation-free reads, threads."""

import threading
import tracemalloc

import numpy as np
import pytest

from bridge_edge.errors import ConfigError
from bridge_edge.runtime.ring import RingBuffer


def seq(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose value and time are their absolute index: any tear or duplicate shows."""
    idx = np.arange(a, b)
    return idx.astype(np.float32)[:, None], idx.astype(np.int64)[:, None]


def test_read_new_returns_rows_in_order_across_wraparound():
    ring = RingBuffer(10)
    cur = ring.cursor()
    got = []
    for a in range(0, 95, 7):
        ring.push(*seq(a, a + 7))
        values, times, r = ring.read_new(cur)
        assert r.lost == 0
        got.append(values[:, 0])
        np.testing.assert_array_equal(values[:, 0], times[:, 0])
    np.testing.assert_array_equal(np.concatenate(got), np.arange(0, 98))
    assert ring.overwritten_samples == 0


def test_slow_reader_is_told_what_it_lost_and_overwrites_are_counted():
    ring = RingBuffer(10)
    cur = ring.cursor()
    ring.push(*seq(0, 25))
    values, _, r = ring.read_new(cur)
    assert r.lost == 15 and r.start == 15 and r.n == 10
    np.testing.assert_array_equal(values[:, 0], np.arange(15, 25))
    assert ring.overwritten_samples == 15
    assert cur.lost_total == 15
    ring.push(*seq(25, 30))  # reader is up to date: nothing unread is overwritten
    assert ring.overwritten_samples == 15


def test_overwrites_are_counted_for_the_slowest_reader_only_once():
    ring = RingBuffer(8)
    fast, slow = ring.cursor(), ring.cursor()
    for a in range(0, 40, 4):
        ring.push(*seq(a, a + 4))
        ring.read_new(fast)
    _, _, r = ring.read_new(slow)
    assert r.lost == 32 and ring.overwritten_samples == 32
    assert fast.lost_total == 0


def test_peek_latest_does_not_move_cursors_and_readers_do_not_steal():
    ring = RingBuffer(16)
    a, b = ring.cursor(), ring.cursor()
    ring.push(*seq(0, 12))
    values, _ = ring.peek_latest(5)
    np.testing.assert_array_equal(values[:, 0], np.arange(7, 12))
    assert ring.lag(a) == 12
    va, _, _ = ring.read_new(a)
    vb, _, _ = ring.read_new(b)
    np.testing.assert_array_equal(va, vb)
    assert ring.peek_latest(100)[0].shape == (12, 1)


def test_reads_into_out_allocate_nothing():
    ring = RingBuffer(100_000, channels=2)
    cur = ring.cursor()
    out = np.empty((60_000, 2), np.float32)
    out_t = np.empty((60_000, 1), np.int64)
    ring.push(np.ones((90_000, 2), np.float32), np.zeros((90_000, 1), np.int64))
    ring.read_new(cur, out=out, out_times=out_t, max_n=10)  # warm up code paths
    tracemalloc.start()
    _values, _, r = ring.read_new(cur, out=out, out_times=out_t)
    latest, _ = ring.peek_latest(50_000, out=out, out_times=out_t)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.n == 60_000 and len(latest) == 50_000
    assert peak < 4096, f"reads with out= allocated {peak} bytes"


def test_reset_is_explicit_and_moves_cursors(caplog):
    ring = RingBuffer(10)
    cur = ring.cursor()
    ring.push(*seq(0, 5))
    ring.reset("test")
    assert "reset" in caplog.text and ring.resets == 1
    _, _, r = ring.read_new(cur)
    assert r.n == 0 and r.lost == 0


def test_bad_capacity_is_a_config_error():
    with pytest.raises(ConfigError):
        RingBuffer(0)


def test_one_producer_many_readers_stress_no_torn_or_duplicated_rows():
    """1e6 samples in small chunks, three concurrent readers: every read is a contiguous run
    of the sequence starting exactly where the reader left off plus what it was told it lost."""
    total = 1_000_000
    ring = RingBuffer(4096, channels=2)
    cursors = [ring.cursor() for _ in range(3)]
    done = threading.Event()
    problems: list[str] = []
    seen = [0, 0, 0]
    lost = [0, 0, 0]

    def reader(i: int) -> None:
        out = np.empty((1024, 2), np.float32)
        out_t = np.empty((1024, 1), np.int64)
        expected = 0
        while True:
            finished = done.is_set()
            values, times, r = ring.read_new(cursors[i], out=out, out_times=out_t)
            if r.n:
                first = expected + r.lost
                want = np.arange(first, first + r.n)
                if not (
                    np.array_equal(values[:, 0], want)
                    and np.array_equal(values[:, 1], -want)
                    and np.array_equal(times[:, 0], want)
                ):
                    problems.append(f"reader {i}: torn or duplicated rows at {first}")
                    return
                expected = first + r.n
                seen[i] += r.n
                lost[i] += r.lost
            elif finished:
                return

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 64, size=total // 16)
    pos = 0
    for n in sizes:
        n = int(min(n, total - pos))
        if n <= 0:
            break
        idx = np.arange(pos, pos + n)
        ring.push(np.stack([idx, -idx], axis=1).astype(np.float32), idx[:, None])
        pos += n
    if pos < total:
        idx = np.arange(pos, total)
        ring.push(np.stack([idx, -idx], axis=1).astype(np.float32), idx[:, None])
    done.set()
    for t in threads:
        t.join()
    assert not problems, problems
    for i in range(3):
        assert seen[i] + lost[i] == total  # every sample was either read once or counted lost
        assert lost[i] == cursors[i].lost_total
    # a sample counts as overwritten once if any reader had not read it yet
    assert max(lost) <= ring.overwritten_samples <= sum(lost)
