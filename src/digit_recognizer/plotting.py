"""Saving matplotlib figures atomically, without pyplot's global state or a display."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from digit_recognizer.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_figure(figure: Figure, path: Path) -> None:
    if figure.get_layout_engine() is None:  # figures that chose a layout keep it
        figure.tight_layout()
    with atomic_path(path) as temporary, temporary.open("wb") as stream:
        figure.savefig(stream, format="png", dpi=100)
