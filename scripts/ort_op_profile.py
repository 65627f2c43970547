"""Where ONNX Runtime spends a model file's time, by operator type (docs/benchmarks.md).

ORT's own profiler over ``--runs`` batch-1 calls on one thread; prints ms per call and share per
operator type, largest first. For #19's question of which nodes an int8 file still runs in float.

    python3 scripts/ort_op_profile.py MODEL.onnx [MODEL.onnx ...] [--runs 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort


def op_times_ms(path: str, runs: int, threads: int) -> dict[str, tuple[float, int]]:
    """{operator type: (ms per call, nodes)} over ``runs`` calls on one random window."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="ort-profile-"), "run")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    length = feed.shape[-1]
    x = np.random.default_rng(0).standard_normal((1, length)).astype(np.float32)
    for _ in range(runs):
        session.run(None, {feed.name: x})
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    total, calls = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            total[e["args"]["op_name"]] += e["dur"]
            calls[e["args"]["op_name"]] += 1
    return {op: (us / runs / 1000, calls[op] // runs) for op, us in total.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for path in args.models:
        times = op_times_ms(path, args.runs, args.threads)
        whole = sum(ms for ms, _ in times.values())
        print(f"{path}: {whole:.2f} ms per call in kernels")
        for op, (ms, nodes) in list(times.items())[:14]:
            print(f"  {op:28s} {ms:6.2f} ms  {100 * ms / whole:5.1f} %  ({nodes} nodes)")


if __name__ == "__main__":
    main()
