"""Accuracy on pictures people hand over, per kind: the picture reader the project had before
(the whole picture squeezed to 28 x 28, polarity guessed from the border) against the MNIST way
(data/pictures.py), with the same trained model on the same pictures.

    python -m benchmarks.robustness_readers --model models/cnn.keras --per-kind 1000

The pictures are the robustness stage's: the evaluation split rendered with the seed from
params.yaml. A last row, "other writers", is a different handwriting set: scikit-learn's own
copy of the UCI optical digits (1,797 digits by 43 writers, 8 x 8 pixels, no download),
smoothed up to MNIST's 20-pixel box and photographed like the `paper` kind. Nothing here is
chosen on these numbers; they are reported, in reports/benchmarks/robustness_readers.json.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.common import write_report
from digit_recognizer.config import load_params
from digit_recognizer.data.kaggle_csv import IMAGE_SIDE
from digit_recognizer.data.robustness import KINDS, png_bytes, read_rendered, render
from digit_recognizer.data.splits import evaluation_split


def squeezed(content: bytes) -> npt.NDArray[np.uint8]:
    """The previous reader: the whole picture resized to 28 x 28, inverted when the border is
    light (serving.png_pixels until this round)."""
    from PIL import Image

    with Image.open(io.BytesIO(content)) as image:
        gray = image.convert("L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray, dtype=np.uint8)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return (255 - pixels if border.mean() > 127 else pixels).reshape(-1)


def mnist_way(content: bytes) -> npt.NDArray[np.uint8]:
    return read_rendered(content, "benchmark")


def other_writers() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """scikit-learn's optical digits as 28 x 28 rows: each 8 x 8 digit (grey levels 0-16)
    smoothed up to 20 x 20 and placed in the middle of the frame."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = []
    for image in digits.images:
        small = Image.fromarray((image * 255 / 16).astype(np.float32), mode="F")
        box = np.asarray(small.resize((20, 20), Image.Resampling.BICUBIC))
        frame = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
        frame[4:24, 4:24] = box
        rows.append(np.clip(frame, 0, 255).astype(np.uint8).reshape(-1))
    return np.stack(rows), digits.target.astype(np.int64)


def accuracies(
    model: object, pictures: list[bytes], labels: npt.NDArray[np.integer]
) -> dict[str, npt.NDArray[np.bool_]]:
    """Which pictures each reader gets right, by name."""
    hits = {}
    for name, reader in (
        ("before", squeezed),
        ("after", lambda content: read_rendered(content, "benchmark")),
    ):
        rows = np.stack([reader(picture) for picture in pictures]).astype(np.float32)
        predicted = model.predict(rows.reshape(-1, 28, 28, 1), verbose=0).argmax(axis=1)  # type: ignore[attr-defined]
        hits[name] = np.asarray(predicted == labels)
    return hits


def main() -> None:
    import keras

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/cnn.keras"))
    parser.add_argument("--per-kind", type=int, default=1000)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    arguments = parser.parse_args()
    params = load_params(arguments.params)
    split, source = evaluation_split(Path(params.paths.prepared_dir))
    assert source.labels is not None
    model = keras.models.load_model(arguments.model, compile=False)
    rng = np.random.default_rng(params.seed)
    print(f"{arguments.model} on {arguments.per_kind} pictures per kind from the {split} split")
    print(f"{'kind':<10} {'before':>8} {'MNIST way':>10}")
    totals: dict[str, list[npt.NDArray[np.bool_]]] = {"before": [], "after": []}
    per_kind: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        count = min(arguments.per_kind, len(source))
        chosen = np.sort(rng.choice(len(source), size=count, replace=False))
        pictures = [png_bytes(render(source.images[index], kind, rng)) for index in chosen]
        labels = source.labels[chosen]
        hits = accuracies(model, pictures, labels)
        for name, right in hits.items():
            totals[name].append(right)
        per_kind[kind] = {name: round(float(right.mean()), 4) for name, right in hits.items()}
        print(f"{kind:<10} {hits['before'].mean():>8.2%} {hits['after'].mean():>10.2%}")
    overall = {name: float(np.concatenate(right).mean()) for name, right in totals.items()}
    print(f"{'overall':<10} {overall['before']:>8.2%} {overall['after']:>10.2%}")
    writers, writer_labels = other_writers()
    photos = [png_bytes(render(row, "paper", rng)) for row in writers]
    hits = accuracies(model, photos, writer_labels)
    print(
        f"{'other writers':<10} {hits['before'].mean():>8.2%} {hits['after'].mean():>10.2%}"
        f"  ({len(photos)} photographed optical digits)"
    )
    results = {
        "model": str(arguments.model),
        "split": split,
        "per_kind": per_kind,
        "pictures_per_kind": count,
        "overall": {name: round(value, 4) for name, value in overall.items()},
        "other_writers": {name: round(float(right.mean()), 4) for name, right in hits.items()},
        "other_writers_pictures": len(photos),
    }
    print(f"written {write_report(Path.cwd(), 'robustness_readers', results)}")


if __name__ == "__main__":
    main()
