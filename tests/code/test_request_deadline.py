"""A request's deadline stops its work between pictures and between batches of rows."""

from __future__ import annotations

import pytest

from digit_recognizer.data.pictures import PictureLimits
from digit_recognizer.serving.bodies import Deadline, PastDeadline, RequestBudget, request_rows
from tests.helpers.pictures import multipart, png_bytes, seven

BUDGET = RequestBudget(
    picture=PictureLimits(max_pixels=10_000_000, max_bytes=1_000_000),
    max_request_pixels=10_000_000,
    max_parts=64,
    max_rows=5_000,
)


class Clock:
    """A clock that moves one second each time a deadline reads it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_the_pictures_after_the_deadline_are_not_read() -> None:
    # given a multipart body of five pictures and a deadline the clock passes at the third
    clock = Clock()
    deadline = Deadline.starting_now(2.5, clock)
    body, content_type = multipart([("seven.png", png_bytes(seven()))] * 5)
    # when it is read, then it stops there, saying why, and the clock was read no more
    with pytest.raises(PastDeadline, match=r"over 2\.5 s \(serve\.request_timeout_seconds\)"):
        request_rows(content_type, body, BUDGET, deadline)
    assert clock.now == 4.0  # started, then three looks: the third found it past


def test_within_the_deadline_every_picture_is_read() -> None:
    deadline = Deadline.starting_now(60.0)
    body, content_type = multipart([("seven.png", png_bytes(seven()))] * 5)
    rows = request_rows(content_type, body, BUDGET, deadline)
    assert rows is not None and rows.shape == (5, 784)
    assert 0 < deadline.remaining() <= 60.0
