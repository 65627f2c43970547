"""`bridge-edge demo` end to end in a real headless Chromium, in real time.

Two simulated patients (2 beds x ECG + PPG = 4 traces) run the default bundle through the real
pipeline; the rhythm script is sinus 15 s -> AF 30 s -> sinus. The page must draw all four
traces (canvas pixels), hold >= 30 fps, turn the label of bed 1 from a non-AF label to "afib"
during the episode and raise the AF alarm. The screenshot taken during the episode is the
one the README and docs/monitor.md show. Ctrl-C (SIGINT) must stop the demo cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import monitor_chromium  # tests/system helper: Chromium over the DevTools protocol
import pytest
from ctrl_c import default_sigint
from monitor_chromium import WAVE_PIXELS, median_fps

if not monitor_chromium.chromium_available():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

# The README's screenshot is refreshed only on request, so a test run never edits the docs.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "figures" / "monitor.png"
UPDATE_DOCS = os.environ.get("BRIDGE_EDGE_UPDATE_SCREENSHOT") == "1"
SCRIPT = "sinus:15,afib:30,sinus:30"


class Demo:
    """`bridge-edge demo` as a subprocess; stderr is drained in a thread (it logs)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge_edge.cli", "demo", "--no-browser", "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_sigint,
        )
        self.lines: list[str] = []
        self.url: str | None = None
        self._url_seen = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            match = re.search(r"bridge-edge monitor: (http://\S+)", line)
            if match:
                self.url = match.group(1)
                self._url_seen.set()
        self._url_seen.set()

    def wait_url(self, timeout_s: float) -> str:
        self._url_seen.wait(timeout_s)
        assert self.url, "demo did not start:\n" + "".join(self.lines[-20:])
        return self.url


@pytest.mark.slow
def test_demo_shows_waveforms_and_raises_af_during_the_episode(tmp_path):
    # the AF alarm waits 5 s of AF labels here (30 s by default), so the 30 s episode shows it
    demo = Demo("--beds", "2", "--script", SCRIPT, "--seconds", "120", "--alarm-onset", "5")
    try:
        started = time.monotonic()
        url = demo.wait_url(timeout_s=60)
        with monitor_chromium.Chromium() as browser:
            browser.goto(url)
            browser.wait_for("window.monitorState && monitorState.frames > 50", timeout_s=20)
            assert browser.evaluate("monitorState.traces") == 4
            assert median_fps(browser) >= 30
            lit = browser.evaluate(WAVE_PIXELS)
            assert len(lit) == 4 and min(lit) > 500, lit

            # the label of bed 1 starts as something else and turns afib in the AF episode
            labels_seen = set()
            deadline = started + 75  # AF runs from 15 s to 45 s of simulated time
            while time.monotonic() < deadline:
                label = browser.evaluate("monitorState.label")
                labels_seen.add(label)
                if label == "afib":
                    break
                time.sleep(0.5)
            assert "afib" in labels_seen, f"label never turned afib; saw {labels_seen}"
            assert labels_seen - {"afib", None}, f"label was afib from the start: {labels_seen}"
            alarm = browser.wait_for(
                "monitorState.alarms.find(a => a.code === 'afib' && a.bed === 0)", timeout_s=10
            )
            assert alarm["category"] == "physiological" and alarm["marker"] == "**"
            time.sleep(1.5)  # let the alarm bar and numerics settle for the picture
            screenshot = DOCS_SCREENSHOT if UPDATE_DOCS else tmp_path / "monitor.png"
            browser.screenshot(screenshot)
            assert screenshot.stat().st_size > 10_000
            provenance = browser.evaluate("document.getElementById('provenance').textContent")
            assert "bundle default" in provenance and "engine --" not in provenance
        demo.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.process.wait(timeout=20) == 0, "".join(demo.lines[-20:])
    finally:
        if demo.process.poll() is None:
            demo.process.kill()
