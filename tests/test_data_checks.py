"""Each dataset a run needs is checked once, before any cell trains: one located error, exit 2."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated
from urllib.error import URLError

import pytest

from pcnbench.api import (
    DataInfo,
    DatasetMissingError,
    DatasetPlugin,
    Locator,
    Params,
    TensorSplits,
)
from pcnbench.cli import main
from pcnbench.errors import SuiteError
from pcnbench.hookspecs import hookimpl
from pcnbench.manager import load_plugins
from pcnbench.runner import Runner
from pcnbench.suite import load_suite
from pcnbench_plugins.datasets.torchvision_sets import Cifar10
from tests.test_datasets import _write_cifar10, _write_image_folder

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def suite_text(dataset: str, *, seeds: str = "[0, 1]", extra_dataset: str = "") -> str:
    """A 2 seeds × 2 widths suite on `dataset` (YAML lines of one `datasets` entry)."""
    return f"""\
name: data
seeds: {seeds}
datasets:
{dataset}{extra_dataset}
models:
  - name: mlp
    params: {{width: [4, 8], depth: 1}}
methods:
  - dense
recipe:
  epochs: 1
  batch_size: 16
  optimizer: {{name: sgd, lr: 0.1}}
device: cpu
"""


def cifar_entry(root: Path, download: bool) -> str:
    """A cifar10 dataset entry reading from `root`."""
    flag = "true" if download else "false"
    return f"  - name: cifar10\n    params: {{root: '{root}', download: {flag}}}\n"


def run_cli(tmp_path: Path, text: str, *extra: str) -> tuple[int, Path]:
    """Write the suite and run it (checking its bytes stay as written); (exit code, output)."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(text, encoding="utf-8")
    before = suite.read_bytes()
    out = tmp_path / "out"
    argv = ["run", str(suite), "--output", str(out), "--quiet", "--no-meter", "--no-report"]
    code = main([*argv, *extra])
    assert suite.read_bytes() == before
    return code, out


@pytest.fixture
def prepare_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every Cifar10.prepare call (params), still running the real one."""
    calls: list[object] = []
    real = Cifar10.prepare

    def spy(self: Cifar10, params: object) -> None:
        calls.append(params)
        real(self, params)

    monkeypatch.setattr(Cifar10, "prepare", spy)
    return calls


@pytest.fixture
def skip_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let torchvision accept generated CIFAR files (their md5 sums cannot match the real ones)."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath)
    )


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of a run that stopped with exit 2; no traceback."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    # a run may first warn (e.g. of an oversubscribed machine); then comes the one error
    (line,) = [line for line in captured.err.splitlines() if not line.startswith("warning:")]
    return line


def test_absent_cifar_without_download_stops_before_training_with_one_error(
    tmp_path: Path, prepare_calls: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    code, out = run_cli(tmp_path, suite_text(cifar_entry(root, download=False)))
    assert code == 2
    error = one_error(capsys)
    assert error.startswith(f"{tmp_path / 'suite.yaml'}:4:5: datasets[0]: cifar10: ")
    assert f"files not found in {root / 'cifar-10-batches-py'}: missing data_batch_1" in error
    assert "Set `download: true` in the suite's dataset params" in error
    assert CIFAR_URL in error
    assert len(prepare_calls) == 1  # 4 cells, one dataset grid point
    assert not (out / "results.db").exists()  # no cell ran, no run was recorded
    assert not root.exists()


def test_offline_download_is_tried_once_and_the_advice_fits_download_true(
    tmp_path: Path,
    prepare_calls: list[object],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torchvision.datasets.cifar

    tries: list[object] = []

    def offline(*args: object, **kwargs: object) -> None:
        tries.append(args)
        raise URLError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    root = tmp_path / "data"
    code, out = run_cli(tmp_path, suite_text(cifar_entry(root, download=True)))
    assert code == 2
    error = one_error(capsys)
    assert error.startswith(f"{tmp_path / 'suite.yaml'}:4:5: datasets[0]: cifar10: ")
    assert f"downloading into {root / 'cifar-10-batches-py'} failed" in error
    assert "network unreachable" in error and "offline" in error
    assert f"place the extracted python-version archive from {CIFAR_URL} there" in error
    assert "download: true" not in error  # the suite already says so
    assert len(tries) == 1 and len(prepare_calls) == 1
    assert not (out / "results.db").exists()


@pytest.mark.parametrize("download", [False, True])
def test_corrupt_cifar_files_are_reported_once_with_advice_fitting_the_suite(
    tmp_path: Path, download: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    # every file is present, none matches torchvision's md5 sums: nothing is downloaded
    root = tmp_path / "data"
    _write_cifar10(root)
    files = {p: p.read_bytes() for p in (root / "cifar-10-batches-py").iterdir()}
    code, _ = run_cli(tmp_path, suite_text(cifar_entry(root, download=download)))
    assert code == 2
    error = one_error(capsys)
    folder = root / "cifar-10-batches-py"
    assert f"torchvision could not read the files in {folder}" in error
    assert "corrupted" in error
    if download:
        assert "Delete the folder so that `download: true` fetches them again" in error
    else:
        assert "Delete the folder and set `download: true`" in error
    assert {p: p.read_bytes() for p in folder.iterdir()} == files


def test_cifar_files_in_place_pass_the_check_and_train(
    tmp_path: Path, skip_md5: None, prepare_calls: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    _write_cifar10(root)
    code, _ = run_cli(tmp_path, suite_text(cifar_entry(root, download=False), seeds="[0]"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 trained, 0 already done, 0 failed" in captured.out
    assert len(prepare_calls) == 1


def test_only_datasets_of_cells_that_will_train_are_checked(
    tmp_path: Path, prepare_calls: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    synthetic = "  - name: synthetic\n    params: {n_train: 32, n_test: 16}\n"
    absent = cifar_entry(tmp_path / "absent", download=False)
    text = suite_text(synthetic, seeds="[0]", extra_dataset=absent)
    code, _ = run_cli(tmp_path, text, "--only", "synthetic")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 trained" in captured.out and prepare_calls == []


def test_imagenet_without_a_val_folder_stops_with_the_folder_and_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "imagenet" / "train" / "n01440764").mkdir(parents=True)
    entry = f"  - name: imagenet\n    params: {{root: '{tmp_path / 'imagenet'}'}}\n"
    code, _ = run_cli(tmp_path, suite_text(entry))
    assert code == 2
    error = one_error(capsys)
    assert error.startswith(f"{tmp_path / 'suite.yaml'}:4:5: datasets[0]: imagenet: ")
    assert f"no folder {tmp_path / 'imagenet' / 'val'}" in error
    assert "<root>/val/<class>/<image>" in error


def test_imagenet_num_classes_not_matching_the_folders_is_located_at_the_param(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_image_folder(tmp_path / "imagenet", {"train": 1, "val": 1})
    entry = f"  - name: imagenet\n    params: {{root: '{tmp_path / 'imagenet'}', num_classes: 5}}\n"
    code, _ = run_cli(tmp_path, suite_text(entry))
    assert code == 2
    error = one_error(capsys)
    assert error.startswith(f"{tmp_path / 'suite.yaml'}:5:")
    assert "datasets[0].params.num_classes: is 5 but" in error
    assert "holds 2 class folders" in error


class CountedParams(Params):
    """A grid param and a locator."""

    n: int = 1
    root: Annotated[str, Locator()] = "nowhere"


class Counted(DatasetPlugin):
    """Records prepare calls; has no data for n == 3; `boom` raises a plain exception."""

    name = "counted"
    Params = CountedParams

    def __init__(self) -> None:
        self.prepared: list[int] = []

    def info(self, params: CountedParams) -> DataInfo:
        """Tiny images."""
        return DataInfo(input_shape=(1, 2, 2), num_classes=2)

    def prepare(self, params: CountedParams) -> None:
        """Record the call; refuse n == 3 (and raise a bug at n == 4)."""
        self.prepared.append(params.n)
        if params.n == 3:
            raise DatasetMissingError(f"no data for n=3 in {params.root}; put it there")
        if params.n == 4:
            raise RuntimeError("oops")

    def load(self, params: CountedParams) -> TensorSplits:
        """Never reached in these tests."""
        raise AssertionError("a cell trained")


class CountedPlugin:
    """Registers one Counted instance."""

    def __init__(self) -> None:
        self.dataset = Counted()

    @hookimpl
    def register_datasets(self, register) -> None:
        register(self.dataset)


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        ("[1, 2, 3]", ":4:5: datasets[0]: counted: no data for n=3 in /data/x; put it there"),
        (
            "[1, 4]",
            ":4:5: datasets[0]: dataset 'counted' (plugin 'counted') raised in prepare: "
            "RuntimeError: oops",
        ),
    ],
)
def test_prepare_runs_once_per_distinct_dataset_grid_point_before_any_cell(
    tmp_path: Path, grid: str, expected: str
) -> None:
    plugin = CountedPlugin()
    host = load_plugins(extra=[("counted", plugin)])
    entry = f"  - name: counted\n    params: {{n: {grid}, root: /data/x}}\n"
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text(entry), encoding="utf-8")
    loaded = load_suite(suite, host)
    with pytest.raises(SuiteError) as raised:
        Runner(loaded, host, output=tmp_path / "out", metering=False).run()
    assert str(raised.value) == f"{suite}{expected}"
    assert plugin.dataset.prepared == [int(n) for n in grid.strip("[]").split(",")]
    assert not (tmp_path / "out" / "results.db").exists()


def test_the_default_prepare_does_nothing() -> None:
    assert DatasetPlugin().prepare(None) is None
