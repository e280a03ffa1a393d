"""Pictures for the tests: valid pictures of every shape the reader takes, generated (sizes
from 1 px to large, modes L, RGB, RGBA, P and 1, random, two-tone and patterned content, in
every format it decodes; whether each holds a digit is the reader's to say), a drawn seven,
and multipart bodies of them."""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st
from PIL import Image

MODES = ("L", "RGB", "RGBA", "P", "1")
# the formats the reader takes, and the modes each one can store
FORMATS = {
    "PNG": MODES,
    "JPEG": ("L", "RGB"),
    "WEBP": ("L", "RGB", "RGBA"),
    "BMP": ("L", "RGB", "P", "1"),
    "GIF": ("L", "P", "1"),
    "TIFF": MODES,
}
CONTENT_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
}
CONTENTS = ("random", "two_tone", "stripes", "checks", "dot", "line", "block", "frame")


def _content(kind: str, height: int, width: int, seed: int) -> npt.NDArray[np.uint8]:
    """Grey levels of one kind of content; two-tone kinds use two random levels."""
    rng = np.random.default_rng(seed)
    low, high = sorted(int(level) for level in rng.integers(0, 256, size=2))
    grid = np.full((height, width), high, dtype=np.uint8)
    rows, columns = np.indices((height, width))
    if kind == "random":
        return rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    if kind == "two_tone":
        grid[:, : width // 2] = low
    elif kind == "stripes":
        grid[(columns // max(1, int(rng.integers(1, 6)))) % 2 == 0] = low
    elif kind == "checks":
        side = max(1, int(rng.integers(1, 9)))
        grid[((rows // side) + (columns // side)) % 2 == 0] = low
    elif kind == "dot":
        grid[int(rng.integers(0, height)), int(rng.integers(0, width))] = low
    elif kind == "line":
        if rng.integers(0, 2):
            grid[int(rng.integers(0, height)), :] = low
        else:
            grid[:, int(rng.integers(0, width))] = low
    elif kind == "block":
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        grid[top : top + max(1, height // 3), left : left + max(1, width // 3)] = low
    elif kind == "frame":
        grid[[0, -1], :] = low
        grid[:, [0, -1]] = low
    return grid


def encode(grey: npt.NDArray[np.uint8], mode: str, picture_format: str, seed: int) -> bytes:

    image = Image.fromarray(grey)
    if mode == "RGB":
        image = Image.merge("RGB", [image, image.point(lambda v: 255 - v), image])
    elif mode == "RGBA":
        alpha = np.random.default_rng(seed).integers(0, 256, size=grey.shape, dtype=np.uint8)
        image = Image.merge("RGBA", [image, image, image, Image.fromarray(alpha)])
    elif mode == "P":
        image = image.convert("P")
    elif mode == "1":
        image = image.convert("1")
    buffer = io.BytesIO()
    image.save(buffer, format=picture_format)
    return buffer.getvalue()


class GeneratedPicture(NamedTuple):
    content: bytes
    content_type: str
    description: str  # size, mode, format, content and seed: enough to make it again

    def __repr__(self) -> str:  # hypothesis prints failing examples: not megabytes of bytes
        return f"GeneratedPicture({self.description}, {len(self.content)} bytes)"


@st.composite
def valid_pictures(draw: st.DrawFn) -> GeneratedPicture:
    """One valid picture, encoded."""
    picture_format = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[picture_format]))
    side = st.integers(1, 64) | st.sampled_from([300, 1000, 2500])
    height, width = draw(side), draw(side)
    kind = draw(st.sampled_from(CONTENTS))
    seed = draw(st.integers(0, 2**16))
    content = encode(_content(kind, height, width, seed), mode, picture_format, seed)
    description = f"{width} x {height} {mode} {picture_format}, {kind} (seed {seed})"
    return GeneratedPicture(content, CONTENT_TYPES[picture_format], description)


def seven(side: int = 200) -> np.ndarray:
    """A dark '7' on white paper, small and off-centre, as a photo or a canvas gives it."""
    picture = np.full((side, side), 255, dtype=np.uint8)
    picture[30:42, 20:90] = 0
    for row in range(42, 150):
        column = 90 - (row - 42) // 3
        picture[row, column - 6 : column + 6] = 0
    return picture


def png_bytes(picture: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format=format)
    return buffer.getvalue()


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body with one file part per picture, and its content type."""
    boundary = "digits-test-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="picture"; filename="{name}"'
        f"\r\nContent-Type: image/png\r\n\r\n".encode()
        + content
        + b"\r\n"
        for name, content in files
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def one_bit_png(side: int) -> bytes:
    """A white 1-bit PNG of side x side with one dark pixel: kilobytes on the wire (16 KB at
    6,000 a side), megapixels decoded."""
    picture = Image.new("1", (side, side), 1)
    picture.putpixel((side // 2, side // 2), 0)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()
