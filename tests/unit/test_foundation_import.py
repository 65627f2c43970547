"""`import bridge_edge` and building the CLI must stay light: no torch, bleak, serial, onnxruntime, tensorrt."""

import json
import subprocess
import sys

HEAVY = (
    "torch",
    "bleak",
    "serial",
    "onnxruntime",
    "tensorrt",
    "onnx",
    "matplotlib",
    "sklearn",
    "pylsl",
    "shtab",
    "wfdb",
    "pandas",
    "cuda",
)

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


def test_the_device_suite_imports_the_installed_package():
    """scripts/test-device-py310.sh runs the tests against the wheel it installed, not the checkout."""
    import os

    import pytest

    expected = os.environ.get("BRIDGE_EDGE_EXPECT_INSTALLED")
    if not expected:
        pytest.skip("not the device suite (BRIDGE_EDGE_EXPECT_INSTALLED unset)")
    import bridge_edge
    from bridge_edge.bridge.recipe import load_recipe
    from bridge_edge.resources import data_dir

    assert bridge_edge.__file__.startswith(expected), bridge_edge.__file__
    assert str(data_dir("recipes")).startswith(expected)  # package data, not the repo's recipes/
    assert load_recipe("default").source_path.startswith(expected)


def test_the_installed_default_bundle_verifies_without_its_workstation_files():
    """The wheel leaves the torch reference and calibration windows out (docs/bundles.md,
    "Workstation files"); the installed default bundle still verifies, every model through its
    golden self-test, and says which listed files are absent."""
    import os

    import pytest

    expected = os.environ.get("BRIDGE_EDGE_EXPECT_INSTALLED")
    if not expected:
        pytest.skip("not the device suite (BRIDGE_EDGE_EXPECT_INSTALLED unset)")
    from bridge_edge.export.bundle import load_bundle
    from bridge_edge.export.selftest import WORKSTATION_FILES

    bundle = load_bundle("default", selftest="all")
    assert str(bundle.path).startswith(expected)
    assert bundle.verified and not bundle.has_torch_weights()
    assert sorted(bundle.absent) == sorted(n for n in bundle.manifest.files if n in WORKSTATION_FILES)
    assert bundle.absent, "the wheel carried the workstation files"
