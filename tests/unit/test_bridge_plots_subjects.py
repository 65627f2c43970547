"""The per-subject test picture stays a bounded canvas on a large test split."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from bridge_edge.bridge.plots import SUBJECTS_MAX_WIDTH_IN, plot_test_subjects  # noqa: E402


def _rows(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "subject": f"s{i:04d}",
            "windows": 20,
            "afib_windows": 10,
            "bridge": {"afib_recall": float(rng.uniform()), "other_accuracy": float(rng.uniform())},
            "kd": {"afib_recall": None, "other_accuracy": float(rng.uniform())},
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [12, 960])
def test_per_subject_picture_is_at_most_the_capped_width(tmp_path, n):
    from PIL import Image

    path = tmp_path / "subjects.png"
    plot_test_subjects(_rows(n), None, path, "afib")
    width, height = Image.open(path).size
    assert width <= SUBJECTS_MAX_WIDTH_IN * 110 + 1 and height > 300  # saved at 110 dpi
    if n == 12:
        assert width < 8 * 110  # a small split keeps its own width (0.32 in a subject + 2)
