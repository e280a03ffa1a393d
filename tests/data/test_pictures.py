"""The picture reader: every format and polarity people send becomes the MNIST frame, and a bad
picture is one line naming it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from PIL import Image, ImageDraw
from scipy import ndimage

from digit_recognizer.data.pictures import PictureError, PictureLimits, read_picture
from digit_recognizer.data.robustness import KINDS, build_robustness_set, render
from tests.helpers.pictures import GeneratedPicture, valid_pictures
from tests.helpers.project import synthetic_digits

LIMITS = PictureLimits(max_pixels=4_000_000, max_bytes=5_000_000)


def drawn_seven(size: int = 280, *, ink: int = 0, paper: int = 255) -> Image.Image:
    """A '7' drawn with thick strokes in the top-left part of a larger canvas."""
    picture = Image.new("L", (size, size), paper)
    pen = ImageDraw.Draw(picture)
    scale = size / 280
    width = round(16 * scale)
    pen.line([(40 * scale, 40 * scale), (130 * scale, 40 * scale)], fill=ink, width=width)
    pen.line([(130 * scale, 40 * scale), (70 * scale, 190 * scale)], fill=ink, width=width)
    return picture


def encoded(picture: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=format, **options)
    return buffer.getvalue()


def frame_of(content: bytes) -> np.ndarray:
    return read_picture(content, "test picture", LIMITS).reshape(28, 28).astype(np.float64)


def distance(frame: np.ndarray, reference: np.ndarray) -> float:
    """Mean grey-level difference, forgiving a one-pixel shift (rounding the centre of mass)."""
    return min(
        float(np.abs(np.roll(frame, (down, right), axis=(0, 1)) - reference).mean())
        for down in (-1, 0, 1)
        for right in (-1, 0, 1)
    )


def test_a_small_digit_far_from_the_centre_fills_the_mnist_box_at_the_centre() -> None:
    # given a 7 in the top-left of a 280 px canvas, dark ink on white
    frame = frame_of(encoded(drawn_seven(), "PNG"))
    # then it is white on black, its longer side 20 px, its centre of mass at the centre
    rows, columns = np.flatnonzero(frame.max(axis=1) > 0), np.flatnonzero(frame.max(axis=0) > 0)
    assert frame.max() == 255 and frame[0, 0] == 0, "ink is white on a black background"
    assert 19 <= max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1 <= 21
    centre = ndimage.center_of_mass(frame)
    assert abs(centre[0] - 14) <= 1 and abs(centre[1] - 14) <= 1, centre


@pytest.mark.parametrize(
    ("format", "options"),
    [
        ("PNG", {}),
        ("JPEG", {"quality": 85}),
        ("WEBP", {}),
        ("BMP", {}),
        ("GIF", {}),
        ("TIFF", {}),
    ],
)
def test_every_common_format_reads_the_same_digit(format: str, options: dict) -> None:
    reference = frame_of(encoded(drawn_seven(), "PNG"))
    frame = frame_of(encoded(drawn_seven().convert("RGB"), format, **options))
    assert distance(frame, reference) < 6, f"{format} differs from the PNG"


def test_polarity_is_read_from_the_picture_not_assumed() -> None:
    dark_on_light = frame_of(encoded(drawn_seven(ink=0, paper=255), "PNG"))
    light_on_dark = frame_of(encoded(drawn_seven(ink=255, paper=0), "PNG"))
    assert distance(dark_on_light, light_on_dark) < 2


def test_a_canvas_with_a_transparent_background_keeps_its_strokes_in_either_colour() -> None:
    reference = frame_of(encoded(drawn_seven(), "PNG"))
    for stroke in (0, 255):
        strokes = drawn_seven(ink=255, paper=0)  # the alpha: opaque where drawn
        canvas = Image.merge("LA", (Image.new("L", strokes.size, stroke), strokes))
        frame = frame_of(encoded(canvas, "PNG"))
        assert distance(frame, reference) < 2, f"strokes of grey {stroke}"


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation() -> None:
    upright = frame_of(encoded(drawn_seven(), "PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    sideways = drawn_seven().transpose(Image.Transpose.ROTATE_90)
    frame = frame_of(encoded(sideways.convert("RGB"), "JPEG", quality=95, exif=exif))
    assert distance(frame, upright) < 8


def test_noisy_unevenly_lit_paper_leaves_no_specks() -> None:
    rng = np.random.default_rng(0)
    paper = np.asarray(drawn_seven(ink=60, paper=210), dtype=np.float64)
    light = np.linspace(-30, 30, 280)[None, :]
    photo = np.clip(paper + light + rng.normal(0, 10, paper.shape), 0, 255).astype(np.uint8)
    frame = frame_of(encoded(Image.fromarray(photo), "JPEG", quality=80))
    reference = frame_of(encoded(drawn_seven(), "PNG"))
    assert distance(frame, reference) < 10
    assert frame[:, :4].max() < 40 and frame[:, -4:].max() < 40, "paper texture is not ink"


def test_faint_ink_on_grey_noisy_paper_is_still_a_digit() -> None:
    # given a 7 in faint ink, 20 grey levels from grey paper photographed with noise (as a
    # soft pencil gives it: readable, yet once refused as "too little contrast")
    rng = np.random.default_rng(1)
    paper = np.asarray(drawn_seven(ink=130, paper=150), dtype=np.float64)
    photo = np.clip(paper + rng.normal(0, 4, paper.shape), 0, 255).astype(np.uint8)
    # when it is read, then it is the same 7 as in black ink
    frame = frame_of(encoded(Image.fromarray(photo), "PNG"))
    assert distance(frame, frame_of(encoded(drawn_seven(), "PNG"))) < 12


def test_an_mnist_digit_saved_as_a_picture_reads_back_almost_unchanged() -> None:
    digits = synthetic_digits(2, 0).images.astype(np.uint8)
    digits[digits < 50] = 0  # the synthetic noise is not part of the digit
    for row in digits[:5]:
        frame = frame_of(encoded(Image.fromarray(row.reshape(28, 28)), "PNG"))
        assert frame.max() == 255 and np.count_nonzero(frame) > 20


def degenerate(content: str) -> Image.Image:
    """64 x 64 white paper with one thing on it that cannot be a digit."""
    paper = np.full((64, 64), 255, dtype=np.uint8)
    if content == "dot":
        paper[30, 40] = 0
    elif content == "line":
        paper[20, :] = 0
    elif content == "halves":
        paper[:, :32] = 0
    elif content == "square":
        paper[10:30, 10:30] = 0
    return Image.fromarray(paper)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"not a picture at all", "not a picture that can be read"),
        (encoded(Image.new("L", (64, 64), 255), "PNG"), "no digit found"),
        (encoded(Image.new("L", (64, 64), 0), "JPEG"), "no digit found"),
        (encoded(drawn_seven(), "PNG")[:200], "not a picture that can be read"),
        (encoded(Image.new("1", (2500, 2000)), "PNG"), "over the limit of 4000000"),
        (encoded(Image.fromarray(np.array([[255, 0, 255]], np.uint8)), "PNG"), "too small"),
        (encoded(degenerate("dot"), "PNG"), "the ink is a dot, 1 x 1 px"),
        (encoded(degenerate("line"), "GIF"), "the ink is a line one pixel thin, 64 x 1 px"),
        (encoded(degenerate("halves"), "BMP"), "the ink is a solid block, 32 x 64 px"),
        (encoded(degenerate("square"), "PNG"), "the ink is a solid block, 20 x 20 px"),
        (encoded(Image.new("RGBA", (64, 64), (0, 0, 0, 255)), "PNG"), "no digit found"),
    ],
)
def test_a_bad_picture_is_one_line_naming_it(content: bytes, message: str) -> None:
    with pytest.raises(PictureError) as raised:
        read_picture(content, "upload.png", LIMITS)
    text = str(raised.value)
    assert text.startswith("upload.png: ") and message in text and "\n" not in text, text


def test_narrow_strokes_are_still_digits() -> None:
    # a "1" drawn as a bar, and a thin-penned "1" on a photo, are narrow but not lines
    for top, bottom, left, right, side in [(10, 46, 26, 30, 56), (50, 450, 250, 254, 512)]:
        paper = np.full((side, side), 255, dtype=np.uint8)
        paper[top:bottom, left:right] = 0
        frame = frame_of(encoded(Image.fromarray(paper), "PNG"))
        assert frame.max() == 255


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(valid_pictures())
def test_every_valid_picture_is_read_or_refused_in_one_line(picture: GeneratedPicture) -> None:
    what = picture.description
    try:
        row = read_picture(picture.content, "generated.png", LIMITS)
    except PictureError as refused:
        assert str(refused).startswith("generated.png: ") and "\n" not in str(refused), what
    else:
        assert row.shape == (784,) and row.dtype == np.uint8, what


def test_a_picture_over_the_byte_limit_is_refused_before_decoding() -> None:
    with pytest.raises(PictureError, match="over the limit of 100"):
        read_picture(encoded(drawn_seven(), "PNG"), "big.png", PictureLimits(10**6, 100))


def test_the_robustness_set_is_seeded_and_has_every_kind() -> None:
    source = synthetic_digits(3, 0)
    assert source.labels is not None
    first = build_robustness_set(source, 4, seed=7)
    second = build_robustness_set(source, 4, seed=7)
    assert np.array_equal(first.table.images, second.table.images), "same seed, same set"
    assert [int((first.kinds == kind).sum()) for kind in KINDS] == [4] * len(KINDS)
    assert np.array_equal(np.asarray(first.table.labels), source.labels[first.source_rows])
    with pytest.raises(ValueError, match="unknown robustness kind"):
        render(source.images[0], "sideways", np.random.default_rng(0))
