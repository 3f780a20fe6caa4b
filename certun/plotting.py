"""Figure finishing for the tutorials and experiments: legends off the data, save, show.

Needs matplotlib (the ``test`` or ``experiments`` extra); ``import certun`` does not load it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["place_legends", "show_figure"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt  # pyright: ignore[reportMissingImports]
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("certun.plotting needs matplotlib: pip install 'certun[experiments]'"
                          ) from e
    return plt


def place_legends(fig: Any = None) -> Any:
    """Move every legend of ``fig`` (default: the current figure) off the data.

    * Twin axes (several axes on one box): one legend for all their lines, to the right,
      clear of the right-hand axis.
    * Panels side by side (not sharing x): each legend under its panel.
    * Otherwise: each legend beside its axes, on the right.

    Only axes that already have a legend get one. Returns the figure, laid out tightly.
    """
    fig = _pyplot().gcf() if fig is None else fig
    boxes = {tuple(round(b, 3) for b in ax.get_position().bounds) for ax in fig.axes}
    twin = len(fig.axes) > 1 and len(boxes) == 1
    if twin:
        handles, labels = [], []
        for ax in fig.axes:
            h, lab = ax.get_legend_handles_labels()
            handles, labels = handles + h, labels + lab
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        fig.axes[0].legend(handles, labels, fontsize=8, frameon=False, loc="upper left",
                           bbox_to_anchor=(1.18, 1.0))
    panels = [] if twin else [ax for ax in fig.axes if ax.get_legend() is not None]
    side_by_side = len({round(ax.get_position().x0, 2) for ax in fig.axes}) > 1 and not any(
        ax.get_shared_x_axes().joined(ax, other) for ax in fig.axes for other in fig.axes
        if other is not ax)
    for ax in panels:
        handles, labels = ax.get_legend_handles_labels()
        if side_by_side:
            ax.legend(handles, labels, fontsize=8, frameon=False, loc="upper center",
                      bbox_to_anchor=(0.5, -0.2), ncol=2)
        else:
            ax.legend(handles, labels, fontsize=8, frameon=False, loc="upper left",
                      bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def show_figure(name: str, figdir: str | os.PathLike | None = None, *, dpi: int = 90) -> None:
    """Finish the current figure (:func:`place_legends`), save it, then show or close it.

    Args:
      name: file stem; saved as ``figdir/name.png`` when ``figdir`` is given.
      figdir: optional directory for the PNG (the tutorials pass ``$CERTUN_TUTORIAL_FIGDIR``).
      dpi: resolution of the saved PNG.

    In a notebook kernel (``ipykernel`` loaded) the figure is shown; elsewhere it is closed,
    so scripts never block on a window.
    """
    plt = _pyplot()
    fig = place_legends()
    if figdir:
        fig.savefig(os.path.join(os.fspath(figdir), f"{name}.png"), dpi=dpi, bbox_inches="tight")
    if "ipykernel" in sys.modules:
        plt.show()
    else:
        plt.close(fig)
