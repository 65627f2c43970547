"""Benchmarks (docs/benchmarks.md): latency, concurrent streams, training cost and power; JSON rows and plots.

- ``commands``: the ``bridge-edge bench latency|streams|training|power`` CLI; one handler each.
- ``latency``, ``streams``, ``training``, ``power_bench``: one module per benchmark.
- ``subject``: the model measured (a bundle, plus a run dir for torch) and ``open_engine``, the
  one place an engine is opened (through the runtime's ``select_engine``).
- ``power/``: energy sources, one backend per module (INA3221 hwmon, tegrastats, RAPL, NVML).
- ``flops`` (ONNX FLOP counter), ``roofline`` (this machine's sgemm limit), ``machine`` (the
  ``machine`` object), ``results`` (rows, percentiles, the JSON file), ``plots``, ``table``
  (the README table; ``scripts/bench_table.py``).
"""
