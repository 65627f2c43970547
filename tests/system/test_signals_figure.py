"""The simulator figure renders (Agg) to a real PNG."""

from bridge_edge.signals.figure import plot_simulated_pairs


def test_figure_is_a_png(tmp_path):
    out = plot_simulated_pairs(tmp_path / "fig" / "pairs.png", with_verdicts=False)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
