"""The monitor page in a real headless Chromium, fed by a small in-test driver (no bundle needed).

The driver plays the pipeline's part: it calls the real MonitorFeed's listener hooks with ECG-
and PPG-like blocks (2 beds x 2 traces) and scripted predictions. The page is then checked the
way a person would: pixels on the canvases, the label, the alarm bar, the HR numeric.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import monitor_chromium  # tests/system helper: Chromium over the DevTools protocol
import numpy as np
import pytest
from monitor_chromium import WAVE_PIXELS, median_fps

from bridge_edge.devices.base import Chunk, StreamInfo
from bridge_edge.monitor.alarms import AlarmRules
from bridge_edge.monitor.feed import MonitorFeed
from bridge_edge.monitor.server import MonitorServer

if not monitor_chromium.chromium_available():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

FS = 500.0  # 4 traces x 500 Hz, the soak case of docs/monitor.md
BURST_S = 0.56
HOSTILE_NAME = '<img src=x onerror="window.pwned=1">bed'


def ecg_like(t: np.ndarray, hr_bpm: float) -> np.ndarray:
    """A QRS-ish spike train in mV (vectorised; shape only has to look like a trace)."""
    phase = (t * hr_bpm / 60.0) % 1.0
    return 1.2 * np.exp(-(((phase - 0.3) / 0.012) ** 2)) + 0.2 * np.exp(-(((phase - 0.55) / 0.05) ** 2))


def ppg_like(t: np.ndarray, hr_bpm: float) -> np.ndarray:
    phase = (t * hr_bpm / 60.0) % 1.0
    return np.exp(-(((phase - 0.4) / 0.12) ** 2)) + 0.3 * np.exp(-(((phase - 0.7) / 0.1) ** 2))


class FakePipeline:
    """Calls the feed's hooks like the runtime would: 40 ms chunks (bed 2: 0.56 s bursts), one
    prediction a second per bed."""

    def __init__(self, feed: MonitorFeed, afib_after_s: float) -> None:
        self.feed = feed
        self.afib_after_s = afib_after_s
        self.silent_beds: set[int] = set()
        self.motion_beds: set[int] = set()  # their windows are gated "low_sqi", cause "motion"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        start = time.monotonic()
        n = int(FS * 0.04)
        sent = 0
        next_prediction = start + 1.0
        burst: list[np.ndarray] = []  # bed 2 arrives like a Polar H10: one burst every ~0.56 s
        while not self._stop.is_set():
            t = (sent + np.arange(n)) / FS
            for bed in range(2):
                block = np.stack([ecg_like(t, 70 + 10 * bed), ppg_like(t - 0.2, 70 + 10 * bed)], axis=1)
                if bed == 1:
                    burst.append(block)
                    if len(burst) * n < BURST_S * FS:
                        continue
                    block = np.concatenate(burst)
                    burst.clear()
                if bed in self.silent_beds:
                    continue
                chunk = Chunk(samples=block.astype(np.float32), t_host_ns=time.monotonic_ns())
                self.feed.on_chunk(bed, None, chunk)
            sent += n
            now = time.monotonic()
            if now >= next_prediction:
                next_prediction += 1.0
                afib = now - start > self.afib_after_s
                for bed in range(2):
                    probs = (
                        {"sinus": 0.1, "afib": 0.9} if afib and bed == 0 else {"sinus": 0.95, "afib": 0.05}
                    )
                    moving = bed in self.motion_beds
                    self.feed.on_prediction(
                        SimpleNamespace(
                            stream=SimpleNamespace(index=bed),
                            t_end=time.time(),
                            label=None if moving else max(probs, key=probs.get),
                            smoothed_label=max(probs, key=probs.get),
                            smoothed_probs=probs,
                            sqi=0.9,
                            hr_bpm=72.0 + bed,
                            # bed 1 agrees with the model; bed 2's timing says irregular while
                            # the model says sinus: shown, never alarmed on
                            rr_af_score=(0.25 if afib else 0.02) if bed == 0 else 0.30,
                            # bed 1 before its AF: the runtime's regular-rhythm rule moved AF
                            af_ruled_out=bed == 0 and not afib,
                            gated="low_sqi" if moving else None,
                            sqi_cause="motion" if moving else None,
                            dropped_samples=0,
                            gap=False,
                        )
                    )
            self._stop.wait(max(0.0, start + sent / FS - time.monotonic()))


ALARM_ONSET_S = 3.0  # the AF alarm waits this long after the label turns afib (30 s by default)
AFIB_AFTER_S = 10.0  # the driver's bed 1 turns afib this long after the start: after the page is up
RECORD_RHYTHM_TEXTS = """
window.rhythmTexts = [];
const el = document.querySelectorAll('.bed')[0].querySelector('.rhythm-value');
new MutationObserver(() => { if (!rhythmTexts.includes(el.textContent)) rhythmTexts.push(el.textContent); })
  .observe(el, {childList: true, characterData: true, subtree: true});
const note = document.querySelectorAll('.bed')[0].querySelector('.timing-note');
window.timingNotes = [note.textContent];
new MutationObserver(() => { if (!timingNotes.includes(note.textContent)) timingNotes.push(note.textContent); })
  .observe(note, {childList: true, characterData: true, subtree: true});
"""


@pytest.fixture
def monitor():
    server = MonitorServer("127.0.0.1", 0, token="test-token-123")
    beds = [
        StreamInfo(HOSTILE_NAME, FS, ("ecg", "ppg"), ("mV", "a.u.")),
        StreamInfo("sim bed 2", FS, ("ecg", "ppg"), ("mV", "a.u.")),
    ]
    feed = MonitorFeed(
        server,
        beds,
        provenance={"bundle_name": "test", "bundle_version": "0"},
        playout_delay_s=1.0,
        rules=AlarmRules(onset_s=ALARM_ONSET_S),
    )
    driver = FakePipeline(feed, afib_after_s=AFIB_AFTER_S)
    server.start()
    feed.start()
    driver.start()
    yield server, driver
    driver.stop()
    feed.stop()
    server.stop()


def test_page_draws_four_traces_labels_alarms_and_blanks_stale_hr(monitor):
    server, driver = monitor
    with monitor_chromium.Chromium() as browser:
        browser.goto(server.url)
        browser.wait_for("window.monitorState && monitorState.frames > 100", timeout_s=20)
        assert browser.evaluate("monitorState.traces") == 4
        # every text bed 1's rhythm shows, from now on (the AF episode starts later)
        browser.evaluate(RECORD_RHYTHM_TEXTS)

        # waveforms are on the canvases (pixels, not DOM), on every trace
        browser.wait_for("monitorState.fps > 0", timeout_s=5)
        assert median_fps(browser) >= 30
        lit = browser.evaluate(WAVE_PIXELS)
        assert len(lit) == 4 and min(lit) > 500, lit
        # the playout delay absorbs bursts: no block arrived after its first sample was due
        assert browser.evaluate("monitorState.lateBlocks") == 0

        # the stream's text is never markup
        assert browser.evaluate("window.pwned === undefined")
        assert "<img" in browser.evaluate("document.querySelector('.bed-name').textContent")

        # the label turns afib; the bed says when its alarm will sound, then the AF alarm appears
        browser.wait_for("monitorState.label === 'afib'", timeout_s=25)
        alarm = browser.wait_for(
            "monitorState.alarms.find(a => a.code === 'afib' && a.category === 'physiological')", timeout_s=5
        )
        assert alarm["priority"] == "medium" and alarm["marker"] == "**"
        texts = browser.evaluate("window.rhythmTexts")
        # bed 1's note said the rule ruled AF out while it did, and stopped saying so at its AF
        notes = browser.evaluate("window.timingNotes")
        assert "AF ruled out: regular beats" in notes and notes[-1] != "AF ruled out: regular beats"
        assert any(t.startswith("afib (alarm in ") for t in texts) and "afib" in texts, texts
        assert "** Bed 1 AF" in browser.evaluate(
            "document.getElementById('alarms-physiological').textContent"
        )
        assert (
            browser.evaluate("document.querySelectorAll('.bed')[0].querySelector('.hr-value').textContent")
            == "72"
        )

        # the pulse-timing indicator: a small read-out, marked where model and timing disagree
        timing = browser.evaluate("monitorState.timing")
        assert timing[0]["irregular"] is True and timing[0]["disagrees"] is False
        assert timing[1]["irregular"] is True and timing[1]["disagrees"] is True
        bed2 = "document.querySelectorAll('.bed')[1].querySelector('.timing-block')"
        assert browser.evaluate(bed2 + ".textContent").split() == [
            "pulse",
            "timing",
            "irregular",
            "0.30",
            "model",
            "and",
            "timing",
            "disagree",
        ]
        assert not any(
            a["bed"] == 1 and a["category"] == "physiological"
            for a in browser.evaluate("monitorState.alarms")
        )
        if os.environ.get("MONITOR_SCREENSHOT"):
            browser.screenshot(Path(os.environ["MONITOR_SCREENSHOT"]))

        # bed 2's patient moves: its windows are gated, and the bed says why it shows no new rhythm
        driver.motion_beds.add(1)
        browser.wait_for(
            "document.querySelectorAll('.bed')[1].querySelector('.rhythm-value').textContent"
            " === 'sinus (unscored: motion)'",
            timeout_s=4,
        )

        # bed 2 goes silent: a technical "no signal" alarm, its HR blanks to ---
        driver.silent_beds.add(1)
        browser.wait_for(
            "monitorState.alarms.some(a => a.bed === 1 && a.code.startsWith('stale:'))", timeout_s=6
        )
        browser.wait_for(
            "document.querySelectorAll('.bed')[1].querySelector('.hr-value').textContent === '---'",
            timeout_s=3,
        )
        assert browser.evaluate("monitorState.hr[1]") is None

        # audio pause: the button pauses alarm audio for 2 minutes and says so
        browser.evaluate("document.getElementById('audio').click()")
        assert browser.evaluate("monitorState.audioPaused") is True
        # 2:00 when the button is drawn in the click's millisecond, 1:59 (or a little less) after
        text = browser.evaluate("document.getElementById('audio').textContent")
        assert text == "AUDIO PAUSED 2:00" or text.startswith("AUDIO PAUSED 1:5"), text


def test_page_without_the_token_gets_no_data(monitor):
    server, _ = monitor
    with monitor_chromium.Chromium() as browser:
        browser.goto(server.url.split("?")[0])  # the page, but no ?token=
        browser.wait_for(
            "window.monitorState && monitorState.alarms.some(a => a.code === 'connection')", timeout_s=10
        )
        time.sleep(1.0)
        assert browser.evaluate("monitorState.frames") == 0
        assert browser.evaluate("monitorState.connected") is False
