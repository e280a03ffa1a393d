"""The robustness set: evaluation digits turned into pictures of the kinds people hand over,
then read back through the one picture reader, as ``digits predict`` and the server read them.

Built at prepare time from the evaluation split (test.csv when labelled, else the holdout),
seeded, so every model is scored on the same images; nothing is chosen or trained on it. Each
kind changes one thing a person changes:

- ``offcentre``: anywhere on a larger canvas, 30-80 % of its height;
- ``rotated``: turned 5-20 degrees either way;
- ``thick`` / ``thin``: strokes grown or worn by a fraction of a pixel at MNIST scale;
- ``paper``: dark ink on light, uneven, noisy paper, like a photo;
- ``inverted``: black ink on white.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.data.kaggle_csv import IMAGE_SIDE, DigitTable
from digit_recognizer.data.pictures import PictureError, PictureLimits, read_picture
from digit_recognizer.errors import UserError
from digit_recognizer.files import atomic_path

KINDS = ("offcentre", "rotated", "thick", "thin", "paper", "inverted")
UPSCALE = 4  # pictures are drawn at 4x MNIST's resolution: strokes change by quarter pixels
# Rendered pictures are small and trusted; the limits only keep the reader's contract.
RENDERED_LIMITS = PictureLimits(max_pixels=1_000_000, max_bytes=10_000_000)

Picture = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class RobustnessSet:
    """Kaggle rows as the reader produced them, their labels, and each row's kind."""

    table: DigitTable
    kinds: npt.NDArray[np.str_]
    source_rows: npt.NDArray[np.int64]  # which evaluation image each picture was drawn from


def _upscaled(row: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    from PIL import Image

    digit = Image.fromarray(row.reshape(IMAGE_SIDE, IMAGE_SIDE))
    side = IMAGE_SIDE * UPSCALE
    return np.asarray(digit.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)


def _disc(radius: int) -> npt.NDArray[np.bool_]:
    span = np.arange(-radius, radius + 1)
    return np.asarray(span[:, None] ** 2 + span[None, :] ** 2 <= radius**2)


def _on_canvas(
    ink: npt.NDArray[np.float32], rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], int]:
    """The digit scaled to 30-80 % of a 100-320 px canvas's height, placed anywhere on it."""
    from PIL import Image

    canvas_side = int(rng.integers(100, 321))
    digit_rows = np.flatnonzero(ink.max(axis=1) > 32)
    digit_height = max(1, digit_rows[-1] - digit_rows[0] + 1) if digit_rows.size else ink.shape[0]
    scale = rng.uniform(0.3, 0.8) * canvas_side / digit_height
    side = max(8, min(canvas_side, round(ink.shape[0] * scale)))
    resized = np.asarray(
        Image.fromarray(ink, mode="F").resize((side, side), Image.Resampling.BILINEAR)
    )
    canvas = np.zeros((canvas_side, canvas_side), dtype=np.float32)
    top, left = (int(rng.integers(0, canvas_side - side + 1)) for _ in range(2))
    canvas[top : top + side, left : left + side] = resized
    return canvas, canvas_side


def render(row: npt.NDArray[np.uint8], kind: str, rng: np.random.Generator) -> Picture:
    """One evaluation digit as a picture of ``kind`` (grey levels, any size)."""
    from PIL import Image
    from scipy import ndimage

    ink = _upscaled(row)
    if kind == "offcentre":
        canvas, _ = _on_canvas(ink, rng)
        picture = canvas
    elif kind == "rotated":
        angle = float(rng.uniform(5, 20) * rng.choice([-1, 1]))
        turned = Image.fromarray(ink, mode="F").rotate(
            angle, resample=Image.Resampling.BICUBIC, expand=True
        )
        picture = np.asarray(turned)
    elif kind == "thick":
        picture = ndimage.grey_dilation(ink, footprint=_disc(int(rng.integers(3, 6))))
    elif kind == "thin":
        picture = ndimage.grey_erosion(ink, footprint=_disc(int(rng.integers(1, 3))))
    elif kind == "paper":
        canvas, side = _on_canvas(ink, rng)
        paper = rng.uniform(170, 235)
        darkest = rng.uniform(20, 90)
        across = np.linspace(-1, 1, side, dtype=np.float32)
        light = rng.uniform(-20, 20) * across[None, :] + rng.uniform(-20, 20) * across[:, None]
        noise = rng.normal(0, rng.uniform(4, 12), canvas.shape)
        blurred = ndimage.gaussian_filter(canvas, sigma=rng.uniform(0.5, 1.5))
        picture = paper + light + noise - (paper - darkest) * blurred / 255.0
    elif kind == "inverted":
        picture = 255.0 - ink
    else:
        raise ValueError(f"unknown robustness kind {kind!r}; expected one of {KINDS}")
    return np.clip(np.round(picture), 0, 255).astype(np.uint8)


def png_bytes(picture: Picture) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def read_rendered(content: bytes, source: str) -> npt.NDArray[np.uint8]:
    """A rendered picture read by the project's reader; a blank frame where it finds no digit
    (scored as the model then answers, never skipped)."""
    try:
        return read_picture(content, source, RENDERED_LIMITS)
    except PictureError:
        return np.zeros(IMAGE_SIDE * IMAGE_SIDE, dtype=np.uint8)


def read_as_picture(row: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A Kaggle row as the picture door brings it: drawn dark on light, read back."""
    plain = render(row, "inverted", np.random.default_rng(0))  # "inverted" draws no random
    return read_rendered(png_bytes(plain), "a digit drawn as a picture")


def build_robustness_set(source: DigitTable, images_per_kind: int, seed: int) -> RobustnessSet:
    """``images_per_kind`` pictures of every kind, each of a different evaluation image within
    a kind, encoded as PNG and read back by the project's picture reader."""
    assert source.labels is not None, "the robustness set is drawn from a labelled split"
    rng = np.random.default_rng(seed)
    count = min(images_per_kind, len(source))
    rows, labels, kinds, origins = [], [], [], []
    for kind in KINDS:
        chosen = np.sort(rng.choice(len(source), size=count, replace=False))
        for index in chosen:
            picture = render(source.images[index], kind, rng)
            rows.append(read_rendered(png_bytes(picture), f"robustness {kind} #{index}"))
            labels.append(source.labels[index])
            kinds.append(kind)
            origins.append(index)
    return RobustnessSet(
        DigitTable(np.stack(rows).astype(np.uint8), np.asarray(labels, dtype=np.uint8)),
        np.asarray(kinds),
        np.asarray(origins, dtype=np.int64),
    )


ROBUSTNESS_SPLIT = "robustness"


def robust_accuracies(
    robustness: RobustnessSet, predicted: npt.NDArray[np.int64]
) -> dict[str, float]:
    """``robust_accuracy`` over the whole set and ``robust_accuracy_<kind>`` for each kind."""
    correct = np.asarray(predicted == robustness.table.labels)
    scores = {"robust_accuracy": float(correct.mean())}
    for kind in KINDS:
        of_kind = robustness.kinds == kind
        if of_kind.any():
            scores[f"robust_accuracy_{kind}"] = float(correct[of_kind].mean())
    return scores


def save_robustness_set(path: Path, robustness: RobustnessSet) -> None:
    assert robustness.table.labels is not None
    with atomic_path(path) as temporary, temporary.open("wb") as stream:
        np.savez(
            stream,
            images=robustness.table.images,
            labels=robustness.table.labels,
            kinds=robustness.kinds,
            source_rows=robustness.source_rows,
        )


def load_robustness_set(path: Path) -> RobustnessSet:
    if not path.exists():
        raise UserError(f"{path}: not found; run the robustness stage first (dvc repro robustness)")
    with np.load(path) as arrays:
        return RobustnessSet(
            DigitTable(arrays["images"], arrays["labels"]), arrays["kinds"], arrays["source_rows"]
        )


def plot_examples(source: DigitTable, seed: int, path: Path, per_kind: int = 8) -> None:
    """Each kind's pictures beside what the reader makes of them (the model's input)."""
    from matplotlib.figure import Figure

    from digit_recognizer.plotting import save_figure

    rng = np.random.default_rng(seed)
    figure = Figure(figsize=(per_kind * 2.2, len(KINDS) * 1.3 + 0.5))
    grid = figure.subplots(len(KINDS), per_kind * 2, squeeze=False)
    for row, kind in enumerate(KINDS):
        for column, index in enumerate(rng.choice(len(source), size=per_kind, replace=False)):
            picture = render(source.images[index], kind, rng)
            seen = read_rendered(png_bytes(picture), kind)
            for offset, image in enumerate((picture, seen.reshape(IMAGE_SIDE, IMAGE_SIDE))):
                axes = grid[row, column * 2 + offset]
                axes.imshow(image, cmap="gray", vmin=0, vmax=255)
                axes.set_xticks([])
                axes.set_yticks([])
            grid[row, 0].set_ylabel(kind, fontsize=9)
    figure.suptitle("robustness set: each picture, then the 28 x 28 the model reads")
    save_figure(figure, path)
