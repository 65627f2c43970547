"""The rhythm suite counts the AF alarms a bedside monitor would raise over each healthy
development recording, from the hops it scores, played in order."""

import numpy as np

from bridge_edge.checks.rhythm_suite import Case, SuiteReport, first_window_end_s, score_cases
from bridge_edge.monitor.alarms import rhythm_alarm_onsets
from bridge_edge.signals.preprocess import preprocess_spec
from bridge_edge.signals.simulator import PatientSimulator

SPEC = preprocess_spec("ppg-v4", 125.0)


def test_dev_recordings_get_an_alarm_count_and_other_cases_none():
    ppg = PatientSimulator(7, fs_ppg=125.0, script=[("sinus", 120.0)], sensor=False).generate(120.0).ppg
    dev = Case("dev_recordings", "sinus", "as_recorded", "sim7", ppg, 125.0)
    other = Case("resequenced", "sinus", "as_recorded", "sim7", ppg, 125.0)
    seen_end_s = []

    def always_af(windows, end_s):
        seen_end_s.append(end_s)
        probs = np.tile([0.1, 0.9], (len(windows), 1))
        return len(rhythm_alarm_onsets(probs, end_s, ["sinus", "afib"]))

    def never_af(windows, end_s):
        return len(rhythm_alarm_onsets(np.tile([0.9, 0.1], (len(windows), 1)), end_s, ["sinus", "afib"]))

    calls = lambda w: np.ones(len(w), bool)  # noqa: E731
    alarmed, other_result = score_cases(
        [dev, other], calls, SPEC, window_s=10.0, hop_s=5.0, af_alarms=always_af
    )
    quiet = score_cases([dev], calls, SPEC, window_s=10.0, hop_s=5.0, af_alarms=never_af)[0]
    assert alarmed.scored > 10 and alarmed.af_alarms == 1  # one alarm: the label never breaks
    assert quiet.af_alarms == 0 and other_result.af_alarms is None
    end_s = seen_end_s[0]
    assert end_s[0] == first_window_end_s(125.0, SPEC, 10.0, 5.0) and np.all(np.diff(end_s) >= 5.0)
    summary = SuiteReport("b 0", "ort", "int8", [alarmed, other_result]).summary()
    assert summary["dev_recordings/af_alarms"] == {"bundle": 1, "recordings": 1}
