"""Where the CPU goes at N paced real-time streams: the inference thread against the ingest threads
(docs/benchmarks.md, "Concurrent streams").

Runs the pipeline `bench streams` runs (the default bundle's int8 file on ORT, N simulated PPG
streams at 125 Hz in 5-sample chunks, starts spread over one hop) and, after the first windows,
reads each thread's CPU time from /proc (Linux) over a steady stretch. Printed: cores used by
the inference thread (streaming DSP, window reading, the engine's calling thread), the ingest
threads (one per stream) and the rest (ORT's other intra-op threads, the main thread), and each
per window inferred.

    python3 scripts/streams_cpu_split.py --streams 320 --threads 2 [--engine-batch 64]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from bridge_edge.bench.runtime_pipeline import paced_sources
from bridge_edge.export.bundle import load_bundle
from bridge_edge.runtime.pipeline import Pipeline, PipelineConfig

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) of each of this process's threads, by native id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICKS_PER_S
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    ap.add_argument(
        "--engine-batch", type=int, default=None, help="default: measured (runtime/engine_batch.py)"
    )
    ap.add_argument("--warmup-s", type=float, default=15.0, help="before measuring: the first windows")
    ap.add_argument("--measure-s", type=float, default=20.0)
    args = ap.parse_args()
    bundle = load_bundle("default")
    hop_s = float(bundle.manifest.input.hop_s)
    seconds = args.warmup_s + args.measure_s + hop_s
    config = PipelineConfig(
        threads=args.threads, sqi_policy="off", batch_wait_s=0.1 * hop_s, engine_batch=args.engine_batch
    )
    pipe = Pipeline(
        paced_sources(args.streams, seconds, 125.0, stagger_s=hop_s), bundle, "ort", "int8", config=config
    )
    pipe.start()
    time.sleep(args.warmup_s)
    names = {t.native_id: t.name for t in threading.enumerate()}
    cpu0, wall0, windows0, calls0 = thread_cpu_s(), time.monotonic(), pipe.inferred_windows, pipe.infer_calls
    time.sleep(args.measure_s)
    cpu1, wall1, windows1, calls1 = thread_cpu_s(), time.monotonic(), pipe.inferred_windows, pipe.infer_calls
    pipe.stop()
    wall, windows = wall1 - wall0, max(windows1 - windows0, 1)
    used = {tid: cpu1[tid] - cpu0.get(tid, 0.0) for tid in cpu1}
    inference = sum(s for tid, s in used.items() if names.get(tid) == "inference")
    ingest = sum(s for tid, s in used.items() if names.get(tid, "").startswith("ingest-"))
    rest = sum(used.values()) - inference - ingest
    eb = pipe.engine_batch
    print(f"{args.streams} streams, {args.threads} ORT thread(s), engine batch {eb.size} ({eb.how})")
    print(f"{windows} windows in {calls1 - calls0} engine calls over {wall:.1f} s")
    for name, s in (("inference thread", inference), ("ingest threads", ingest), ("other threads", rest)):
        print(f"  {name:17s} {s / wall:5.2f} cores  {s / windows * 1e3:6.1f} ms CPU a window")
    print(f"  hop lag p99 {pipe.stats().hop_lag.p99_ms:.0f} ms (the hop is {hop_s * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
