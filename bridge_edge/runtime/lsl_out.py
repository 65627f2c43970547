"""``run --lsl-out NAME``: predictions as a Lab Streaming Layer stream (docs/runtime.md).

One LSL sample per hop per input stream: the class probabilities in the bundle's label order,
then the index of the predicted label (float32 channels; a gated hop, with no model call, is
NaN probabilities and index -1). The sample is stamped with the window's last input sample,
moved onto LSL's clock, so LabRecorder stores the predictions beside the raw signal on one
time axis. Stream type ``Predictions``, nominal rate 1 / hop; channel labels ``p_<label>`` and
``label_index``, the labels again under ``desc/labels``. One outlet per input stream: ``NAME``
for a single stream, ``NAME-<i>`` for several. ``pylsl`` is imported lazily.
"""

from __future__ import annotations

import time

import numpy as np

from bridge_edge.devices.lsl import import_pylsl
from bridge_edge.runtime.outputs import Prediction

STREAM_TYPE = "Predictions"


def prediction_sample(pred: Prediction, labels: list[str]) -> np.ndarray:
    """Probabilities in label order + label index; NaN and -1 for a hop without a model call."""
    if pred.probs is None or pred.label is None:
        return np.concatenate([np.full(len(labels), np.nan, np.float32), [-1.0]]).astype(np.float32)
    probs = [pred.probs[label] for label in labels]
    return np.asarray([*probs, labels.index(pred.label)], np.float32)


class LslPredictionOutlet:
    """A pipeline listener that pushes every prediction to its stream's LSL outlet."""

    def __init__(self, name: str, labels: list[str], hop_s: float, n_streams: int, bundle: str = "") -> None:
        lsl = import_pylsl()
        self.labels = list(labels)
        self._lsl = lsl
        self._unix_minus_lsl = time.time() - lsl.local_clock()
        self.outlets = []
        for i in range(n_streams):
            stream_name = name if n_streams == 1 else f"{name}-{i}"
            info = lsl.StreamInfo(
                stream_name,
                STREAM_TYPE,
                len(self.labels) + 1,
                1.0 / hop_s,
                "float32",
                f"bridge-edge-{stream_name}",
            )
            desc = info.desc()
            channels = desc.append_child("channels")
            for label in [f"p_{x}" for x in self.labels] + ["label_index"]:
                channel = channels.append_child("channel")
                channel.append_child_value("label", label)
                channel.append_child_value("unit", "probability" if label.startswith("p_") else "index")
            label_list = desc.append_child("labels")
            for label in self.labels:
                label_list.append_child_value("label", label)
            desc.append_child_value("bundle", bundle)
            self.outlets.append(lsl.StreamOutlet(info))

    def on_prediction(self, pred: Prediction) -> None:
        stamp = pred.t_end - self._unix_minus_lsl  # unix -> LSL local_clock
        self.outlets[pred.stream.index].push_sample(prediction_sample(pred, self.labels), stamp)

    def close(self) -> None:
        self.outlets.clear()  # liblsl closes an outlet when its last reference goes
