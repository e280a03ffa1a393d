"""The page `digits serve` answers GET / with, in a real browser: Debian's chromium driven by
Playwright draws digits with mouse strokes and reads what the page shows.

The served model is a real registered Keras model whose weights are three templates: the
MNIST frames the picture reader makes of a 1, a 7 and a 0 drawn with the same strokes in
Python. The page must carry the drawing to the reader and the answer back for the template
of the drawn digit to win; the accuracy on real handwriting is the robustness set's business.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digit_recognizer import tracking
from digit_recognizer.cli import main
from digit_recognizer.config import MlflowConfig, load_params
from digit_recognizer.data.pictures import PictureLimits, read_picture
from digit_recognizer.models.pyfunc import register_keras_model
from digit_recognizer.monitoring.log import PredictionLog, log_url
from tests.e2e.test_serving import DIGITS, serve_params, start, stop
from tests.helpers.servers import free_port, wait_for

CHROMIUM = shutil.which("chromium")
LINE_WIDTH = 24  # the page's pen on its 280 x 280 canvas
# Strokes in canvas pixels, one list of points per stroke.
STROKES = {
    1: [[(140, 40), (140, 240)]],
    7: [[(60, 50), (210, 50), (110, 240)]],
    0: [[(140, 40), (200, 90), (205, 180), (140, 240), (80, 180), (75, 90), (140, 40)]],
}


# What the person answers to each drawn digit's reading: "Right", or the digit it really is.
CORRECTIONS = {0: 6}


def template(strokes: list[list[tuple[int, int]]]) -> np.ndarray:
    canvas = Image.new("L", (280, 280), 255)
    pen = ImageDraw.Draw(canvas)
    for points in strokes:
        pen.line(points, fill=0, width=LINE_WIDTH, joint="curve")
        for x, y in (points[0], points[-1]):
            radius = LINE_WIDTH // 2
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    frame = read_picture(buffer.getvalue(), "template", PictureLimits(10**6, 10**7))
    return frame.astype(np.float32) / np.linalg.norm(frame)


def register_template_model(root: Path) -> str:
    """A Keras model scoring each digit by its template's match: only 0, 1 and 7 can win."""
    import keras

    weights = np.zeros((784, 10), dtype=np.float32)
    bias = np.full(10, -50.0, dtype=np.float32)
    for digit, strokes in STROKES.items():
        weights[:, digit] = template(strokes) * 0.2
        bias[digit] = 0.0
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    )
    model.layers[-1].set_weights([weights, bias])
    store = tracking.Store.for_project(MlflowConfig(), root)
    with (
        tracking.run(store, "train-templates", {"stage": "train", "family": "ann"}) as run_id,
        tempfile.TemporaryDirectory() as folder,
    ):
        model.save(Path(folder) / "templates.keras")
        logged = register_keras_model(
            Path(folder) / "templates.keras",
            "digit-recognizer",
            {"family": "ann", "run_id": run_id},
        )
    return logged.version


@pytest.fixture
def page_url(
    prepared_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'page.db'}")
    serve_params(poll_seconds=0.5)
    version = register_template_model(prepared_project)
    assert main(["promote", "--version", version, "--force"]) == 0
    port = free_port()
    process = start(
        [*DIGITS, "serve", "--port", str(port)], prepared_project, f"http://127.0.0.1:{port}/ping"
    )
    yield f"http://127.0.0.1:{port}/"
    stop(process)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_digits_drawn_with_the_mouse_are_read_and_the_version_is_shown(page_url: str) -> None:
    from playwright.sync_api import FilePayload, expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"]
        )
        page = browser.new_page()
        page.goto(page_url)
        expect(page.locator("#version")).to_have_text("1")
        pad = page.locator("#pad").bounding_box()
        assert pad is not None
        latencies = []
        for answered, (digit, strokes) in enumerate(STROKES.items(), start=1):
            page.click("#clear")
            # when a person draws the digit stroke by stroke (one answer per stroke's end)
            for points in strokes:
                page.mouse.move(pad["x"] + points[0][0], pad["y"] + points[0][1])
                page.mouse.down()
                for x, y in points[1:]:
                    page.mouse.move(pad["x"] + x, pad["y"] + y, steps=8)
                page.mouse.up()
            # then the page shows the digit, ten bars, the frame the model saw, the version
            expect(page.locator("#digit")).to_have_text(str(digit))
            expect(page.locator("#bars .bar")).to_have_count(10)
            expect(page.locator("#version")).to_have_text("1")
            assert page.locator("#bars .bar.best").get_attribute("data-digit") == str(digit)
            seen = page.evaluate(
                "Array.from(document.getElementById('seen').getContext('2d')"
                ".getImageData(0, 0, 28, 28).data)"
            )
            assert max(seen[0::4]) == 255, "the 28 x 28 frame the model saw is drawn"
            latencies.append(float(page.locator("body").get_attribute("data-latency-ms") or 0))
            assert int(page.locator("body").get_attribute("data-answered") or 0) >= answered
            # and the person says whether it was right: "Right", or "Wrong, it is: N"
            expect(page.locator("#feedback")).to_be_visible()
            said = CORRECTIONS.get(digit, digit)
            if said == digit:
                page.click("#right")
            else:
                page.click(f"#digits button[data-digit='{said}']")
            expect(page.locator("#thanks")).to_have_text(f"Thank you: kept as a {said}.")
            expect(page.locator("#feedback")).to_be_hidden()
        # and a bad picture dropped on the page is one line, not a broken page
        bad: FilePayload = {"name": "x.png", "mimeType": "image/png", "buffer": b"no"}
        page.set_input_files("#file", files=[bad])
        expect(page.locator("#error")).to_contain_text("not a picture that can be read")
        browser.close()
    print(f"page: answers in {sorted(latencies)[len(latencies) // 2]:.0f} ms (median)")
    # then the log holds every answer of the page, and the label the person gave each
    log = PredictionLog(log_url(load_params(Path("params.yaml")).monitoring, Path.cwd()))
    window = log.window(since=None, last=None)
    assert set(window.input_kinds) == {"page"}
    assert sorted(window.corrected.values()) == sorted(CORRECTIONS.get(d, d) for d in STROKES)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
@pytest.mark.usefixtures("prepared_project")
def test_the_link_digits_ui_prints_opens_on_the_training_runs_and_their_data(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from playwright.sync_api import expect, sync_playwright

    from digit_recognizer.data.splits import split_path
    from tests.helpers.project import REPOSITORY

    # given the project's store with a training run that logged its data, as train does
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    params = load_params(Path("params.yaml"))
    store = tracking.Store.for_project(params.mlflow, project)
    prepared = Path(params.paths.prepared_dir)
    with tracking.run(store, "train-cnn", {"stage": "train", "family": "cnn"}):
        tracking.log_datasets(
            [
                (split_path(prepared, "train"), "training"),
                (split_path(prepared, "validation"), "validation"),
            ]
        )
        tracking.log_metrics({"final_validation_accuracy": 0.5})
    # when digits ui starts, it prints the page to open
    port = free_port()
    ui = subprocess.Popen(
        [*DIGITS, "ui", "--port", str(port)],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert ui.stdout is not None
        printed = ui.stdout.readline().strip()
        assert printed.startswith("open http://127.0.0.1:"), printed
        link = printed.removeprefix("open ")
        wait_for(f"http://127.0.0.1:{port}/health", ui)
        # then in a browser it shows the training runs, with the data each used
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"]
            )
            page = browser.new_page()
            page.goto(link)
            expect(page.get_by_text("train-cnn")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Dataset", exact=True)).to_be_visible()
            expect(page.get_by_text("train (", exact=False).first).to_be_visible()
            assert "Token Usage" not in page.inner_text("body")  # not the GenAI overview
            browser.close()
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(timeout=60)
