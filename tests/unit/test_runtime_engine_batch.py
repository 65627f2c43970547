"""The engine batch (runtime/engine_batch.py): on a CPU the pipeline times its engine at a few
call sizes and splits every gathered batch into calls of the size cheapest per window.

Engines are real ONNX Runtime sessions on a tiny bundle. To give the measurement a known answer,
``PricedEngine`` adds a sleep per window that depends on the call size (a cost profile far
larger than the tiny model's own cost, so a loaded machine cannot reorder it); the tests assert
which size wins, never how long anything took.
"""

import time

import numpy as np
import pytest
from counting_engine import counting_ort
from tiny_bundle import make_tiny_bundle

from bridge_edge.cli import main
from bridge_edge.devices.replay import from_array
from bridge_edge.errors import ConfigError
from bridge_edge.runtime.batching import MAX_GATHERED
from bridge_edge.runtime.engine_batch import (
    CANDIDATE_SIZES,
    EngineBatch,
    cheapest_size,
    choose_engine_batch,
    measure_engine_batch,
)
from bridge_edge.runtime.engines import EngineChoice
from bridge_edge.runtime.engines.base import Engine
from bridge_edge.runtime.engines.ort import OrtEngine
from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig
from bridge_edge.runtime.report import summary_lines
from bridge_edge.signals.simulator import PatientSimulator

FS = 125.0
WINDOW_S, HOP_S = 4.0, 1.0
L = int(FS * WINDOW_S)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny"), fs=FS, window_s=WINDOW_S, hop_s=HOP_S)


@pytest.fixture(scope="module")
def ppg():
    return PatientSimulator(7, fs_ppg=FS, script=[("sinus", 16.0)]).generate(16.0).ppg


class PricedEngine(Engine):
    """A real engine that also sleeps ``ms_per_window[call size]`` per window of each call."""

    def __init__(self, inner: Engine, ms_per_window: dict[int, float], device: str = "cpu"):
        self.inner, self.ms_per_window, self.device = inner, ms_per_window, device
        self.name, self.precision, self.description = inner.name, inner.precision, f"priced {id(self)}"
        self.calls = 0

    def infer(self, batch):
        self.calls += 1
        time.sleep(self.ms_per_window[len(batch)] * len(batch) / 1e3)
        return self.inner.infer(batch)


def priced(bundle, ms_per_window, device="cpu"):
    return PricedEngine(OrtEngine(bundle.onnx_path(), "fp32", threads=1), ms_per_window, device)


# --- the choice -----------------------------------------------------------------------------------


def test_the_cheapest_size_per_window_wins_and_near_ties_go_to_the_smaller():
    assert cheapest_size({1: 8.0, 2: 7.4, 4: 8.4, 8: 11.3, 16: 11.1}) == 2
    assert cheapest_size({1: 7.7, 2: 7.4, 4: 8.4, 8: 11.3, 16: 11.1}) == 1  # within 5 %
    assert cheapest_size({1: 7.5, 2: 7.2, 4: 7.2, 8: 7.6, 16: 10.9}) == 1  # 7.5 is within 5 % of 7.2
    assert cheapest_size({1: 4.0, 2: 3.0, 4: 2.0, 8: 1.0, 16: 1.02}) == 8  # a GPU-like profile
    assert cheapest_size({1: 2.0, 2: 2.0, 4: 2.0, 8: 2.0, 16: 2.0}) == 1


def test_measurement_finds_the_size_a_cost_profile_makes_cheapest(bundle):
    # a CPU whose cost per window jumps past batch 4 (as ORT int8 does on the AMD EPYC)
    cliff = priced(bundle, {1: 2.0, 2: 2.0, 4: 1.0, 8: 3.0, 16: 3.0})
    eb = measure_engine_batch(cliff, L)
    assert eb.how == "measured" and eb.size == 4
    assert list(eb.per_window_ms) == list(CANDIDATE_SIZES)
    assert eb.per_window_ms[4] < eb.per_window_ms[8] and eb.per_window_ms[4] < eb.per_window_ms[1]
    # cost falling with the batch: the largest candidate
    falling = priced(bundle, {1: 4.0, 2: 3.0, 4: 2.0, 8: 1.5, 16: 0.5})
    assert measure_engine_batch(falling, L).size == 16


def test_a_measurement_is_kept_per_engine_and_bundle_for_the_process(bundle):
    engine = priced(bundle, {1: 0.5, 2: 0.5, 4: 0.5, 8: 0.5, 16: 0.5})
    first = choose_engine_batch(engine, L, None, key=("tiny", "1"))
    calls = engine.calls
    assert first.how == "measured" and calls > 0
    assert choose_engine_batch(engine, L, None, key=("tiny", "1")) is first and engine.calls == calls
    choose_engine_batch(engine, L, None, key=("other bundle", "1"))  # another bundle: measured again
    assert engine.calls > calls


def test_a_set_size_and_a_gpu_engine_are_not_measured(bundle):
    gpu = priced(bundle, {}, device="cuda:0")  # would raise on any call: no price for any size
    assert choose_engine_batch(gpu, L, None) == EngineBatch(MAX_GATHERED, "device")
    cpu = priced(bundle, {})
    assert choose_engine_batch(cpu, L, 3) == EngineBatch(3, "set")
    assert choose_engine_batch(cpu, L, 500).size == MAX_GATHERED  # never more than one flush holds
    assert gpu.calls == cpu.calls == 0
    assert EngineBatch(4, "set").calls(10) == [slice(0, 4), slice(4, 8), slice(8, 10)]


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4"])
def test_an_engine_batch_below_one_or_not_whole_is_refused(bundle, bad):
    with pytest.raises(ConfigError) as exc:
        choose_engine_batch(priced(bundle, {}), L, bad)
    assert exc.value.key == "engine_batch" and ">= 1" in str(exc.value)


@pytest.mark.parametrize("argv", [["run", "--source", "sim://ppg"], ["bench", "streams"]])
def test_the_cli_refuses_an_engine_batch_of_zero(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--engine-batch", "0"])
    assert exc.value.code == 2 and "--engine-batch" in capsys.readouterr().err


# --- in the pipeline ------------------------------------------------------------------------------


def run_streams(bundle, ppg, engine, n, **cfg):
    sources = [from_array(np.roll(ppg, 100 * i), FS, chunk_sizes=(len(ppg),), name=f"s{i}") for i in range(n)]
    config = PipelineConfig(sqi_policy="off", lossless=True, regular_rhythm_rule=False, **cfg)
    pipe = Pipeline(sources, bundle, config=config, engine_choice=EngineChoice(engine))
    before = len(engine.batches)  # the measurement's own calls, if any
    preds = []
    pipe.add_listener(type("L", (), {"on_prediction": lambda self, p: preds.append(p)})())
    stats = pipe.run_until_done(timeout_s=120)
    return preds, stats, engine.batches[before:]


def test_gathered_windows_run_in_calls_of_the_set_size_and_predict_as_one_call(bundle, ppg):
    split_preds, stats, batches = run_streams(bundle, ppg, counting_ort(bundle), 6, engine_batch=2)
    whole_preds, whole_stats, whole = run_streams(bundle, ppg, counting_ort(bundle), 6, engine_batch=64)
    assert max(whole) > 2  # the replays are read at once: a flush gathers more than 2 windows
    assert max(batches) <= 2 and sum(batches) == stats.inferred_windows == whole_stats.inferred_windows
    assert len(batches) == stats.infer_calls > whole_stats.infer_calls
    assert stats.engine_batch == EngineBatch(2, "set")
    key = [(p.stream.index, p.window_index) for p in split_preds]
    assert sorted(key) == sorted((p.stream.index, p.window_index) for p in whole_preds)
    for i in range(6):  # each stream's predictions still in order
        mine = [w for s, w in key if s == i]
        assert mine == sorted(mine)
    by_key = {(p.stream.index, p.window_index): p for p in whole_preds}
    for p in split_preds:
        if p.probs is not None:
            want = by_key[(p.stream.index, p.window_index)].probs
            np.testing.assert_allclose([p.probs[k] for k in want], list(want.values()), atol=1e-5)


def test_by_default_a_cpu_engine_is_measured_and_calls_never_exceed_its_size(bundle, ppg):
    preds, stats, batches = run_streams(bundle, ppg, counting_ort(bundle), 6)
    eb = stats.engine_batch
    assert (
        eb.how == "measured" and eb.size in CANDIDATE_SIZES and set(eb.per_window_ms) == set(CANDIDATE_SIZES)
    )
    assert batches and max(batches) <= eb.size and sum(batches) == stats.inferred_windows
    line = next(ln for ln in summary_lines(stats) if "engine calls" in ln)
    assert f"at most {eb.size} a call" in line and "ms a window by call size" in line
    assert stats.as_json()["engine_batch"]["size"] == eb.size
