"""How many windows one engine call carries: measured on the CPU, the engine's own limit elsewhere.

Cross-stream batching (``runtime/batching.py``) gathers the windows that become ready together,
up to 64. On a CPU, a bigger call is not cheaper per window: ONNX Runtime's int8 model costs
7.4-7.7 ms a window at batches 1-4 and 11.3-11.5 ms from batch 8 at one thread on an AMD EPYC,
and 4.6 ms at batch 1 against 5.9 ms at batch 8 on an Intel Xeon (docs/runtime.md, "Engine
batch"). So before its first window the pipeline times the engine at a few call sizes on the
machine it runs on and splits each gathered batch into calls of the size that was cheapest per
window. GPU engines (TensorRT, torch on CUDA) take the whole gathered batch: their cost per
window falls with the batch, and TensorRT splits at its profile's limit itself.

The measurement takes about 1.5 s for the default bundle on one core of the 2-core build machine
and is kept for the life of the process per bundle and engine configuration, so pipelines opened
again (tests, the bench's trials) do not pay it again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from bridge_edge.errors import ConfigError
from bridge_edge.runtime.batching import MAX_GATHERED

CANDIDATE_SIZES = (1, 2, 4, 8, 16)
WINDOWS_PER_SIZE = 16  # windows timed per call size and round (at least one call)
ROUNDS = 2  # interleaved rounds; the cheaper round counts, so a burst elsewhere does not decide
CLOSE_ENOUGH = 1.05  # a smaller call within 5 % of the cheapest wins: same throughput, less latency

_measured: dict[tuple, EngineBatch] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class EngineBatch:
    """Windows per engine call, and how that number was reached."""

    size: int
    how: str  # "set" (PipelineConfig.engine_batch), "measured" (on this CPU), "device" (a GPU engine)
    per_window_ms: dict[int, float] = field(default_factory=dict)  # measured: cost by call size

    def calls(self, n: int) -> list[slice]:
        """The engine calls ``n`` gathered windows are split into, in order."""
        return [slice(i, min(i + self.size, n)) for i in range(0, n, self.size)]


def choose_engine_batch(engine, window_len: int, requested: int | None, key: tuple = ()) -> EngineBatch:
    """``requested`` windows per call when given; else measured on a CPU engine (kept per
    ``key`` + engine description for the process), or the gathered maximum on a GPU."""
    if requested is not None:
        if not isinstance(requested, int) or requested < 1:
            raise ConfigError(
                f"engine batch {requested!r}; expected a whole number of windows >= 1",
                key="engine_batch",
                value=requested,
                expected=">= 1",
            )
        return EngineBatch(min(requested, MAX_GATHERED), "set")
    if engine.device != "cpu":
        return EngineBatch(MAX_GATHERED, "device")
    cache_key = (*key, engine.name, engine.precision, engine.description, window_len)
    with _lock:  # one measurement at a time: two at once would time each other
        if cache_key not in _measured:
            _measured[cache_key] = measure_engine_batch(engine, window_len)
        return _measured[cache_key]


def measure_engine_batch(engine, window_len: int, sizes: tuple[int, ...] = CANDIDATE_SIZES) -> EngineBatch:
    """Time ``engine.infer`` per window at each call size on random windows (the model's cost
    does not depend on the values) and pick the cheapest, preferring the smaller of near ties."""
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((max(max(sizes), WINDOWS_PER_SIZE), window_len)).astype(np.float32)
    for s in sizes:  # the first call at a new shape allocates; keep it out of the timing
        engine.infer(windows[:s])
    best = dict.fromkeys(sizes, float("inf"))
    for _ in range(ROUNDS):
        for s in sizes:
            calls = max(1, WINDOWS_PER_SIZE // s)
            t0 = time.perf_counter()
            for _ in range(calls):
                engine.infer(windows[:s])
            best[s] = min(best[s], (time.perf_counter() - t0) * 1e3 / (calls * s))
    return EngineBatch(cheapest_size(best), "measured", {s: round(v, 3) for s, v in best.items()})


def cheapest_size(per_window_ms: dict[int, float]) -> int:
    """The call size cheapest per window; of sizes within 5 % of it, the smallest (the same
    throughput, and the first windows of a gathered batch are emitted sooner)."""
    cheapest = min(per_window_ms.values())
    return min(s for s, ms in per_window_ms.items() if ms <= cheapest * CLOSE_ENOUGH)
