"""Mixed traffic for `digits serve` (run by benchmarks/load.py): single Kaggle rows as JSON and
as CSV, a digit drawn as a PNG, four of them in one multipart body, and the page's /explain.
Every status but 200 is a failure named by its status, so 503s are counted apart."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
from locust import FastHttpUser, task
from PIL import Image

with np.load(Path("prepared/test.npz")) as arrays:
    IMAGES = arrays["images"][:200].astype(np.uint8)
COLUMNS = ",".join(f"pixel{index}" for index in range(784))


def drawn(row: np.ndarray) -> bytes:
    """The digit dark on light, 112 x 112, as a canvas gives it."""
    picture = Image.fromarray(255 - row.reshape(28, 28)).resize((112, 112))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


PICTURES = [drawn(row) for row in IMAGES]
BOUNDARY = "load-benchmark"


def multipart(pictures: list[bytes]) -> bytes:
    return (
        b"".join(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="p"; filename="{n}.png"\r\n'
            "Content-Type: image/png\r\n\r\n".encode()
            + picture
            + b"\r\n"
            for n, picture in enumerate(pictures)
        )
        + f"--{BOUNDARY}--\r\n".encode()
    )


class Client(FastHttpUser):
    # no wait: each user keeps one request in flight, so users = concurrency

    def post(self, path: str, body: bytes, content_type: str, name: str) -> None:
        with self.client.post(
            path,
            data=body,  # type: ignore[arg-type]  # bytes are sent as they are (its docstring)
            headers={"Content-Type": content_type},
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")

    @task(4)
    def json_row(self) -> None:
        row = IMAGES[random.randrange(len(IMAGES))]
        body = json.dumps({"inputs": [row.tolist()]}).encode()
        self.post("/invocations", body, "application/json", "json row")

    @task(2)
    def csv_row(self) -> None:
        row = IMAGES[random.randrange(len(IMAGES))]
        body = f"{COLUMNS}\n{','.join(map(str, row.tolist()))}\n".encode()
        self.post("/invocations", body, "text/csv", "csv row")

    @task(2)
    def png(self) -> None:
        self.post("/invocations", random.choice(PICTURES), "image/png", "png")

    @task(1)
    def four_pictures(self) -> None:
        body = multipart(random.sample(PICTURES, 4))
        self.post(
            "/invocations", body, f"multipart/form-data; boundary={BOUNDARY}", "multipart of 4"
        )

    @task(1)
    def explain(self) -> None:
        self.post("/explain", random.choice(PICTURES), "image/png", "page /explain")
