"""Test configuration shared by every test: ``tests/fixtures`` is importable (stand-in exports,
scripted sensors, firmware stubs), set here once instead of in each test file."""

import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))
