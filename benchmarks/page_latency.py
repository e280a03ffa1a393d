"""How long the page takes to answer a drawn digit, as a person sees it: from the end of a
mouse stroke to the answer on screen (the page's own clock: canvas to PNG, POST /explain, the
reader, the model, drawing the bars and the 28 x 28 frame). Loopback only, bounded in count.

    digits serve &   # the champion
    python -m benchmarks.page_latency --url http://127.0.0.1:5001/ --strokes 60

Drives Debian's chromium through Playwright (apt-get install chromium). Writes
reports/benchmarks/page_latency.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

from benchmarks.common import write_report

# a 7, in canvas pixels: one stroke of three points
SEVEN = [(60, 50), (210, 50), (110, 240)]


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:5001/")
    parser.add_argument("--strokes", type=int, default=60)
    arguments = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("page_latency: needs Debian's chromium (apt-get install chromium)")
    latencies = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(arguments.url)
        pad = page.locator("#pad").bounding_box()
        assert pad is not None
        for stroke in range(1, arguments.strokes + 1):
            page.click("#clear")
            page.mouse.move(pad["x"] + SEVEN[0][0], pad["y"] + SEVEN[0][1])
            page.mouse.down()
            for x, y in SEVEN[1:]:
                page.mouse.move(pad["x"] + x, pad["y"] + y, steps=8)
            page.mouse.up()
            page.wait_for_function(f"document.body.dataset.answered >= {stroke}")
            latencies.append(float(page.locator("body").get_attribute("data-latency-ms") or 0))
        digit = page.locator("#digit").text_content()
        browser.close()
    ordered = sorted(latencies[3:])  # the first answers warm the server and the browser
    p50, p90 = statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]
    print(
        f"page: {len(ordered)} strokes, answer after the stroke ends: p50 {p50:.1f} ms, "
        f"p90 {p90:.1f} ms (the model read the 7 as {digit})"
    )
    results = {
        "strokes": len(ordered),
        "p50_ms": round(p50, 2),
        "p90_ms": round(p90, 2),
        "seven_read_as": digit,
    }
    print(f"written {write_report(Path.cwd(), 'page_latency', results)}")


if __name__ == "__main__":
    main()
