"""certun.plotting: legends end up off the data, figures are saved where asked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from certun.plotting import place_legends, show_figure  # noqa: E402


def _bbox(artist, fig):
    fig.canvas.draw()
    return artist.get_window_extent(fig.canvas.get_renderer())


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_one_panel_legend_moves_beside_the_axes():
    fig, ax = plt.subplots()
    x = np.linspace(0, 1, 50)
    ax.plot(x, x, label="a")
    ax.plot(x, 1 - x, label="b")
    ax.legend(loc="center")  # on the data
    assert _overlap(_bbox(ax.get_legend(), fig), ax.get_window_extent())
    place_legends(fig)
    leg, box = _bbox(ax.get_legend(), fig), ax.get_window_extent()
    assert not _overlap(leg, box) and leg.x0 >= box.x1  # to the right


def test_side_by_side_panels_get_legends_underneath_and_twins_one_legend():
    fig, (a1, a2) = plt.subplots(1, 2)
    for ax in (a1, a2):
        ax.plot([0, 1], [0, 1], label="line")
        ax.legend(loc="center")
    place_legends(fig)
    for ax in (a1, a2):
        leg, box = _bbox(ax.get_legend(), fig), ax.get_window_extent()
        assert not _overlap(leg, box) and leg.y1 <= box.y0  # below
    fig2, b1 = plt.subplots()
    b2 = b1.twinx()
    b1.plot([0, 1], [0, 1], label="left")
    b2.plot([0, 1], [1, 0], label="right")
    b1.legend()
    b2.legend()
    place_legends(fig2)
    assert b2.get_legend() is None
    labels = [t.get_text() for t in b1.get_legend().get_texts()]
    assert labels == ["left", "right"]


def test_show_figure_saves_and_closes(tmp_path):
    plt.plot([0, 1], [0, 1], label="x")
    plt.legend()
    show_figure("demo", tmp_path)
    png = (tmp_path / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []  # not in a kernel: closed
