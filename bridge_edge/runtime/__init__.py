"""Runtime: ring buffer, clocks, streaming DSP, windows, engines (ort, trt, torch), pipeline."""
