"""Pictures of digits read the MNIST way: any picture Pillow opens becomes one Kaggle row.

MNIST itself was made this way (LeCun et al.): the digit is cropped to its ink, scaled so its
longer side is 20 pixels keeping the aspect ratio, anti-aliased, and placed in a 28 x 28 frame
with its centre of mass at the centre. A picture squeezed whole into 28 x 28 instead turns a
digit that fills a third of a photo into a smudge of a few pixels.

The steps: decode (first frame, EXIF rotation applied, alpha composited), shrink to at most
``ANALYSIS_SIDE`` pixels, find the ink (Otsu's threshold; the ink is the minority side, whatever
its colour), drop specks of paper texture, crop, scale to the 20-pixel box and centre. Every
picture reader of the project (``digits predict``, the scoring server, the page, the robustness
set) calls ``read_picture``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer.data.kaggle_csv import IMAGE_SIDE
from digit_recognizer.errors import UserError

DIGIT_BOX = 20  # MNIST: the longer side of the digit, in pixels, inside the 28 x 28 frame
ANALYSIS_SIDE = 512  # larger pictures are shrunk first: a digit a third of it is still 170 px
# grey levels between ink and paper below which a picture is blank: faint ink photographed on
# grey paper is 17-21 levels from it, JPEG ringing on a flat picture a few
MIN_CONTRAST = 12
SPECK_SHARE = 0.05  # ink components under this share of the largest are paper texture
MIN_PICTURE_SIDE = 8  # pixels: a smaller picture cannot hold a digit
MIN_DIGIT_SIDE = 3  # pixels (after shrinking to ANALYSIS_SIDE): less ink than this is a dot
SOLID_FILL = 0.9  # ink filling this share of its box, ...
SOLID_ASPECT = 0.25  # ... a box no narrower than this (a "1" is narrower), is a block
PICTURE_TYPES = (
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/bmp",
    "image/gif",
    "image/tiff",
)
PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class PictureError(UserError):
    """A picture that cannot be read as a digit; the message names it and why."""


@dataclass(frozen=True)
class PictureLimits:
    """What a reader accepts before it decodes a single pixel."""

    max_pixels: int  # width x height; larger pictures are refused (decompression bombs too)
    max_bytes: int


def pixel_count(content: bytes) -> int:
    """Width x height from the picture's header, nothing decoded; 0 when it cannot be opened
    (reading it then says why)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as opened:
            width, height = opened.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return 0
    return int(width) * int(height)


def decode_gray(content: bytes, source: str, limits: PictureLimits) -> npt.NDArray[np.float32]:
    """The picture as grey levels 0-255: first frame, upright, alpha composited onto the
    opposite of its strokes' shade (a canvas with a transparent background keeps its ink)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(content) > limits.max_bytes:
        raise PictureError(
            f"{source}: {len(content)} bytes is over the limit of {limits.max_bytes}"
        )
    if not content:
        raise PictureError(f"{source}: empty file, not a picture")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as opened:
                width, height = opened.size
                if width * height > limits.max_pixels:
                    raise PictureError(
                        f"{source}: {width} x {height} pixels is over the limit of "
                        f"{limits.max_pixels} (pictures.max_pixels)"
                    )
                if min(width, height) < MIN_PICTURE_SIDE:
                    raise PictureError(
                        f"{source}: {width} x {height} pixels is too small to hold a digit "
                        f"(at least {MIN_PICTURE_SIDE} a side)"
                    )
                opened.draft("L", (ANALYSIS_SIDE, ANALYSIS_SIDE))  # JPEG: decode smaller
                upright = ImageOps.exif_transpose(opened)
                has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
                    upright.mode == "P" and "transparency" in upright.info
                )
                picture = upright.convert("LA" if has_alpha else "L")
                picture.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.LANCZOS)
                layers = np.asarray(picture, dtype=np.float32)
    except PictureError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PictureError(
            f"{source}: refused as a decompression bomb (too many pixels to decode)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PictureError(f"{source}: not a picture that can be read ({detail})") from None
    if not has_alpha:
        return layers
    gray, alpha = layers[..., 0], layers[..., 1] / 255.0
    drawn = alpha > 0.5
    if drawn.all() or not drawn.any():
        return gray
    backdrop = 255.0 if gray[drawn].mean() < 128 else 0.0
    return gray * alpha + backdrop * (1.0 - alpha)


def otsu_threshold(gray: npt.NDArray[Any]) -> float:
    """The grey level that best separates two classes of pixels (Otsu, 1979)."""
    histogram = np.bincount(np.clip(gray, 0, 255).astype(np.int64).ravel(), minlength=256)
    levels = np.arange(256, dtype=np.float64)
    weight_low = np.cumsum(histogram)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(histogram * levels)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(np.argmax(between)) + 0.5


def _quadratic(
    coefficients: npt.NDArray[np.float64], rows: npt.NDArray[Any], columns: npt.NDArray[Any]
) -> npt.NDArray[np.float32]:
    """c0 + c1 r + c2 c + c3 r^2 + c4 r c + c5 c^2 over the grid of ``rows`` x ``columns``."""
    c0, c1, c2, c3, c4, c5 = (float(value) for value in coefficients)
    surface = (c0 + c1 * rows + c3 * rows * rows) + (c2 * columns + c5 * columns * columns)
    return np.asarray(surface + c4 * (rows * columns), dtype=np.float32)


def even_lighting(gray: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The picture with its paper's uneven light (a gradient, a vignette) taken out: a quadratic
    surface fitted to the paper (the majority side of Otsu's threshold) and subtracted; three
    rounds, each on the paper the previous round's flatter picture shows. Fitted on a grid of
    about 64 x 64 samples, so a 512-pixel picture costs a few milliseconds."""
    height, width = gray.shape
    step = max(1, max(height, width) // 64)
    rows = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    columns = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    sample_rows, sample_columns = rows[::step], columns[:, ::step]
    grid = np.broadcast_arrays(sample_rows, sample_columns)
    r, c = (np.asarray(axis, dtype=np.float64).ravel() for axis in grid)
    design = np.stack([np.ones_like(r), r, c, r * r, r * c, c * c], axis=1)
    sample = gray[::step, ::step].astype(np.float64).ravel()
    flat = sample
    coefficients: npt.NDArray[Any] = np.zeros(6)
    for _ in range(3):
        dark = flat < otsu_threshold(flat)
        paper = dark if dark.mean() > 0.5 else ~dark
        chosen = design[paper]
        # normal equations (6 x 6): a least-squares fit without LAPACK's overhead
        coefficients = np.linalg.solve(
            chosen.T @ chosen + 1e-9 * np.eye(6), chosen.T @ sample[paper]
        )
        fitted = design @ coefficients
        flat = sample - fitted + float(np.median(fitted))  # grey levels stay near 0-255
    surface = _quadratic(coefficients, rows, columns)
    return (gray - surface + float(np.median(surface))).astype(np.float32)


def ink_strength(gray: npt.NDArray[np.float32], source: str) -> npt.NDArray[np.float32]:
    """How much ink each pixel holds, 0 (paper) to 1 (full stroke), whichever the polarity."""
    if float(gray.max() - gray.min()) < MIN_CONTRAST:
        raise PictureError(f"{source}: no digit found (the picture is blank)")
    gray = even_lighting(gray)
    threshold = otsu_threshold(gray)
    dark = gray < threshold
    ink_is_dark = dark.sum() <= dark.size - dark.sum()  # the ink is the minority
    ink_side, paper_side = (dark, ~dark) if ink_is_dark else (~dark, dark)
    if not ink_side.any() or not paper_side.any():
        raise PictureError(f"{source}: no digit found (the picture is one flat tone)")
    paper = float(np.median(gray[paper_side]))
    distance = np.abs(gray - paper)
    full = float(np.median(distance[ink_side]))
    if full < MIN_CONTRAST:
        raise PictureError(f"{source}: no digit found (too little contrast)")
    # paper texture and noise: below three robust deviations of the paper (clean paper: 0),
    # and never above half way to the threshold
    paper_noise = 1.4826 * float(
        np.median(np.abs(distance[paper_side] - np.median(distance[paper_side])))
    )
    floor = min(abs(threshold - paper) / 2, 3 * paper_noise)
    strength = np.clip((distance - floor) / max(full - floor, 1.0), 0.0, 1.0)
    digit = _digit_ink(ink_side)
    problem = _not_a_digit(digit)
    if problem:
        raise PictureError(f"{source}: no digit found ({problem})")
    return strength.astype(np.float32) * _grown(digit)


def _digit_ink(ink: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The ink components of a meaningful size (specks of paper texture dropped)."""
    from scipy import ndimage

    labels, _ = ndimage.label(ink, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    kept = np.flatnonzero(sizes >= SPECK_SHARE * sizes.max()) + 1
    return np.isin(labels, kept)


def _not_a_digit(digit: npt.NDArray[np.bool_]) -> str | None:
    """Why this ink cannot be a digit (a dot, a line one pixel thin, a solid block), if so."""
    rows, columns = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    height, width = int(rows[-1] - rows[0] + 1), int(columns[-1] - columns[0] + 1)
    longer, shorter = max(height, width), min(height, width)
    size = f"{width} x {height} px"
    if longer < MIN_DIGIT_SIDE:
        return f"the ink is a dot, {size}"
    if shorter == 1:
        return f"the ink is a line one pixel thin, {size}"
    fill = float(digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].mean())
    if fill >= SOLID_FILL and shorter >= SOLID_ASPECT * longer:
        return f"the ink is a solid block, {size}, {fill:.0%} filled"
    return None


def _grown(digit: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    """The digit's ink grown by a pixel or more, to keep its anti-aliased edges."""
    from scipy import ndimage

    grown = ndimage.binary_dilation(digit, iterations=1 + max(digit.shape) // 100)
    return grown.astype(np.float32)


def mnist_frame(strength: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Crop to the ink, scale the longer side to 20 px (anti-aliased), centre the mass in 28."""
    from PIL import Image
    from scipy import ndimage

    rows = np.flatnonzero(strength.max(axis=1) > 0)
    columns = np.flatnonzero(strength.max(axis=0) > 0)
    crop = strength[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    height, width = crop.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    box = np.asarray(
        Image.fromarray(crop, mode="F").resize(size, Image.Resampling.LANCZOS), dtype=np.float32
    )
    box = np.clip(box, 0.0, 1.0)
    centre_row, centre_column = ndimage.center_of_mass(box)
    middle = IMAGE_SIDE / 2
    top = int(np.clip(round(middle - centre_row), 0, IMAGE_SIDE - box.shape[0]))
    left = int(np.clip(round(middle - centre_column), 0, IMAGE_SIDE - box.shape[1]))
    frame = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    frame[top : top + box.shape[0], left : left + box.shape[1]] = box
    return np.round(frame * 255).astype(np.uint8)


def read_picture(content: bytes, source: str, limits: PictureLimits) -> npt.NDArray[np.uint8]:
    """A picture's bytes as a Kaggle row (784 pixels, white digit on black, 0-255)."""
    strength = ink_strength(decode_gray(content, source, limits), source)
    if not strength.any():
        raise PictureError(f"{source}: no digit found (the picture is blank)")
    return mnist_frame(strength).reshape(-1)
