"""Streams bench: rows and plot assembled from the runtime's measurement functions.

The runtime's functions run real-time trials (tens of seconds each); their own tests live with
the runtime. Here they are replaced by recorded-shape results so the bench's bookkeeping —
trials, the answer with its percentiles, unmeasured engines — is checked quickly.
"""

from types import SimpleNamespace

import pytest

from bridge_edge.bench import plots, streams, table
from bridge_edge.bench.results import BenchReport
from bridge_edge.bench.runtime_pipeline import StageSplit
from bridge_edge.bench.subject import Subject
from bridge_edge.runtime.engine_batch import EngineBatch


@pytest.fixture
def fake_runtime(monkeypatch):
    from bridge_edge.bench import runtime_pipeline as runtime_bench

    def trial(n, ok, p99):
        return SimpleNamespace(
            streams=n,
            keeps_up=ok,
            hops=10 * n if ok else 5 * n,
            expected_hops=10 * n,
            total_p99_ms=p99,
            lost_samples=0 if ok else 40,
            reason="keeps up" if ok else "lost",
            hop_lag_p50_ms=10.0,
            hop_lag_p99_ms=p99,
            mean_batch=1.5,
            split=StageSplit(1.0, 2.0, n * 3.0, n * 7.0, 5.0, 9.0),  # the wait grows with the load
            engine_batch=None,
        )

    calls = {}

    def max_realtime_streams(
        bundle, engine, precision, seconds, threads, limit, start=1, batch_wait_s=0.0, engine_batch=None
    ):
        calls["max"] = (engine, precision, seconds, threads, limit)
        calls["batch_wait_s"] = batch_wait_s
        return SimpleNamespace(
            max_streams=6,
            trials=[
                trial(1, True, 20.0),
                trial(2, True, 25.0),
                trial(4, True, 40.0),
                trial(8, False, 3000.0),
                trial(6, True, 90.0),
            ],
        )

    def pipeline_latency(
        bundle, engine, precision, streams, seconds, speed, threads, batch_wait_s=0.0, engine_batch=None
    ):
        calls["latency"] = (streams, speed)
        calls.setdefault("confirm_runs", []).append(streams)
        return SimpleNamespace(
            engine=engine,
            precision=precision,
            hops=60,
            dropped_samples=0,
            total_p50_ms=30.0,
            total_p99_ms=88.0,
            infer_p50_ms=5.0,
            infer_p99_ms=9.0,
            lag_p99_ms=95.0,
            hop_lag_p50_ms=31.0,
            hop_lag_p99_ms=89.0,
            mean_batch=3.25,
            split=StageSplit(1.5, 2.5, 20.0, 70.0, 5.0, 9.0),
            engine_batch=EngineBatch(4, "measured", {1: 7.5, 2: 7.4, 4: 7.2, 8: 11.3}),
        )

    monkeypatch.setattr(runtime_bench, "max_realtime_streams", max_realtime_streams)
    monkeypatch.setattr(runtime_bench, "pipeline_latency", pipeline_latency)
    monkeypatch.setattr(
        runtime_bench, "ingest_throughput", lambda seconds: SimpleNamespace(samples_per_s=1.5e6)
    )
    monkeypatch.setattr(
        streams,
        "_engine_reason",
        lambda subject, engine, precision, threads: None if engine == "ort" else "not installed",
    )
    return calls


def test_streams_rows_trials_answer_and_unmeasured(fake_runtime, tmp_path):
    subject = Subject("tiny", {}, 1250, 125.0, 2.0, {}, ["sinus", "afib"], bundle=object())
    cfg = streams.StreamsConfig(engines=("ort", "trt"), precisions=("int8",), trial_seconds=20.0, threads=2)
    report = BenchReport("streams", machine={})
    streams.run(subject, cfg, report)
    trials = [r for r in report.rows if r["kind"] == "trial"]
    assert [r["streams"] for r in trials] == [1, 2, 4, 8, 6] and trials[3]["keeps_up"] is False
    (best,) = [r for r in report.rows if r["kind"] == "max" and r["status"] == "ok"]
    assert best["max_realtime_streams"] == 6 and best["e2e_p99_ms"] == 88.0 and best["lag_p99_ms"] == 95.0
    assert fake_runtime["latency"] == (6, 1.0)  # percentiles at the answer, in real time
    assert fake_runtime["max"] == ("ort", "int8", 20.0, 2, 512)
    assert best["capped"] is False and best["confirmed"] is True and best["reason"] is None
    assert best["hop_lag_p50_ms"] == 31.0 and best["hop_lag_p99_ms"] == 89.0 and best["mean_batch"] == 3.25
    assert trials[3]["hop_lag_p99_ms"] == 3000.0
    # each trial and the answer carry where a hop's time went
    assert [r["wait_p99_ms"] for r in trials] == [7.0, 14.0, 28.0, 56.0, 42.0]
    assert (best["preprocess_p50_ms"], best["wait_p50_ms"], best["infer_p50_ms"]) == (1.5, 20.0, 5.0)
    assert fake_runtime["batch_wait_s"] == pytest.approx(0.1 * 2.0)  # a tenth of the 2 s hop
    (trt,) = [r for r in report.rows if r["engine"] == "trt"]
    assert trt["status"] == "unmeasured" and trt["reason"] == "not installed"
    text = "\n".join(table.streams_section(report))
    assert "| ort | int8 | 6 | 30 / 88 / 89 / 95 | 3.25 (at most 4, measured) |" in text
    assert "unmeasured: not installed" in text
    assert plots.streams_vs_lag(report.rows, tmp_path / "s.png", "t").stat().st_size > 1000
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size[0] > 1200  # two panels: lag, and the stage split


def test_the_thread_split_searches_every_count_and_keeps_the_one_with_most_streams(
    fake_runtime, monkeypatch, tmp_path
):
    from bridge_edge.bench import runtime_pipeline as runtime_bench

    answers = {1: 6, 2: 9, 3: 9}  # a tie between 2 and 3 engine threads goes to 2: a core for ingest
    searched = []
    recorded = runtime_bench.max_realtime_streams
    recorded_latency = runtime_bench.pipeline_latency
    missed = set()  # thread counts whose run at the answer misses the 2 s hop

    def latency(
        bundle, engine, precision, streams, seconds, speed, threads, batch_wait_s=0.0, engine_batch=None
    ):
        result = recorded_latency(bundle, engine, precision, streams, seconds, speed, threads)
        return SimpleNamespace(**{**vars(result), "total_p99_ms": 3000.0}) if threads in missed else result

    monkeypatch.setattr(runtime_bench, "pipeline_latency", latency)

    def by_threads(
        bundle, engine, precision, seconds, threads, limit, start=1, batch_wait_s=0.0, engine_batch=None
    ):
        searched.append(threads)
        return SimpleNamespace(**{**vars(recorded(bundle, engine, precision, seconds, threads, limit, start)),
                                  "max_streams": answers[threads]})  # fmt: skip

    monkeypatch.setattr(runtime_bench, "max_realtime_streams", by_threads)
    args = SimpleNamespace(
        engines=("ort",), precisions=("int8",), trial_seconds=20.0, threads=3, thread_split=True
    )
    cfg = streams.StreamsConfig.full(args)
    assert cfg.searched_threads() == (1, 2, 3)
    subject = Subject("tiny", {}, 1250, 125.0, 2.0, {}, ["sinus", "afib"], bundle=object())
    report = BenchReport("streams", machine={})
    streams.run(subject, cfg, report)
    assert searched == [1, 2, 3]
    maxima = [r for r in report.rows if r["kind"] == "max"]
    assert [(r["threads"], r["max_realtime_streams"]) for r in maxima] == [(1, 6), (2, 9), (3, 9)]
    assert {r["threads"] for r in report.rows if r["kind"] == "trial"} == {1, 2, 3}
    (split,) = [r for r in report.rows if r["kind"] == "split"]
    assert (split["threads"], split["max_realtime_streams"]) == (2, 9)
    assert report.summary["thread_split"] == {
        "ort int8": {"threads": 2, "streams_by_threads": answers, "confirmed_threads": [1, 2, 3]}
    }
    text = "\n".join(table.streams_section(report))
    assert "| ort (2 threads) | int8 | 9 |" in text and "thread split: 2 engine threads" in text
    assert "streams by threads 1: 6, 2: 9, 3: 9" in text
    assert plots.streams_vs_lag(report.rows, tmp_path / "s.png", "t").stat().st_size > 1000
    # an answer the run at that count does not confirm loses to a confirmed one
    missed.add(2)
    report = BenchReport("streams", machine={})
    streams.run(subject, cfg, report)
    two = next(r for r in report.rows if r["kind"] == "max" and r["threads"] == 2)
    assert two["confirmed"] is False and "end-to-end p99 3000 ms exceeds the 2000 ms hop" in two["reason"]
    (split,) = [r for r in report.rows if r["kind"] == "split"]
    assert split["threads"] == 3 and report.summary["thread_split"]["ort int8"]["confirmed_threads"] == [1, 3]
    assert "| ort (2 threads) | int8 | 9 (not confirmed) |" in "\n".join(table.streams_section(report))
    # without --thread-split: the one count asked for, no split row
    one = streams.StreamsConfig.full(SimpleNamespace(**{**vars(args), "thread_split": False}))
    assert one.searched_threads() == (3,)


def test_an_answer_that_misses_when_run_again_steps_down_to_a_count_that_keeps_up_twice(
    fake_runtime, monkeypatch
):
    from bridge_edge.bench import runtime_pipeline as runtime_bench

    recorded = runtime_bench.pipeline_latency

    def misses_above_4(bundle, engine, precision, streams, seconds, speed, threads, **kw):
        result = recorded(bundle, engine, precision, streams, seconds, speed, threads, **kw)
        return SimpleNamespace(**{**vars(result), "total_p99_ms": 2500.0 if streams > 4 else 88.0})

    monkeypatch.setattr(runtime_bench, "pipeline_latency", misses_above_4)
    subject = Subject("tiny", {}, 1250, 125.0, 2.0, {}, ["sinus", "afib"], bundle=object())
    report = BenchReport("streams", machine={})
    streams.run(subject, streams.StreamsConfig(precisions=("int8",), trial_seconds=20.0), report)
    (best,) = [r for r in report.rows if r["kind"] == "max"]
    # the search's 6 kept up in its trial, missed when run again; 4, the next count that kept up, held
    assert fake_runtime["confirm_runs"] == [6, 4]
    assert (best["max_realtime_streams"], best["search_max_streams"], best["confirmed"]) == (4, 6, True)
    assert (
        best["reason"]
        == "6 kept up in the search but not when run again: end-to-end p99 2500 ms exceeds the 2000 ms hop"
    )
    assert best["engine_batch"] == 4 and best["engine_batch_how"] == "measured"
    text = "\n".join(table.streams_section(report))
    assert (
        "| ort | int8 | 4 (6 kept up once, not confirmed) |" in text and "3.25 (at most 4, measured)" in text
    )
    # nothing confirms within CONFIRM_TRIES counts: the search's answer, marked not confirmed
    fake_runtime["confirm_runs"].clear()
    monkeypatch.setattr(
        runtime_bench,
        "pipeline_latency",
        lambda *a, **kw: SimpleNamespace(**{**vars(recorded(*a, **kw)), "total_p99_ms": 2500.0}),
    )
    report = BenchReport("streams", machine={})
    streams.run(subject, streams.StreamsConfig(precisions=("int8",), trial_seconds=20.0), report)
    (best,) = [r for r in report.rows if r["kind"] == "max"]
    assert fake_runtime["confirm_runs"] == [6, 4, 2][: streams.CONFIRM_TRIES]
    assert (best["max_realtime_streams"], best["confirmed"]) == (6, False)


def test_a_search_from_a_higher_start_still_bisects_to_the_knee(monkeypatch):
    from types import SimpleNamespace

    from bridge_edge.bench import runtime_pipeline as runtime_bench

    tried = []

    def trial(bundle, engine, precision, n, seconds, threads, batch_wait_s, engine_batch=None):
        tried.append(n)
        return SimpleNamespace(streams=n, keeps_up=n <= 40, reason="")

    monkeypatch.setattr(runtime_bench, "_trial", trial)
    bundle = SimpleNamespace(manifest=SimpleNamespace(precisions=["fp32", "int8"]))
    result = runtime_bench.max_realtime_streams(bundle, "ort", "int8", 20.0, 2, limit=64, start=8)
    assert tried[:4] == [8, 16, 32, 64]  # the quick search: four doublings reach 64
    assert 36 <= result.max_streams <= 40 and all(n > 8 for n in tried[1:])


def test_max_streams_raises_the_search_cap_from_the_command_line():
    from bridge_edge.cli import build_parser

    args = build_parser().parse_args(["bench", "streams", "--max-streams", "2048", "--start", "256"])
    cfg = streams.StreamsConfig.full(args)
    assert (cfg.limit, cfg.start) == (2048, 256)
    default = streams.StreamsConfig.full(build_parser().parse_args(["bench", "streams"]))
    assert default.limit == streams.StreamsConfig.limit == 512
