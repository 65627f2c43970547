"""`import bridge_edge` and building the CLI must stay light: no torch, bleak, serial, onnxruntime, tensorrt."""

import json
import subprocess
import sys

HEAVY = ("torch", "bleak", "serial", "onnxruntime", "tensorrt", "onnx", "matplotlib", "sklearn")

PROBE = """
import json, sys
import bridge_edge
import bridge_edge.errors
import bridge_edge.cli
bridge_edge.cli.build_parser()
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy})))
"""


def test_import_and_cli_parser_pull_no_heavy_modules():
    code = PROBE.format(heavy=set(HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"import bridge_edge / CLI parser pulled heavy modules: {loaded}"
