"""Shared fixtures: the real plugin host plus a test-only method with a recipe-dependent check."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from pcnbench.api import Method, Params
from pcnbench.errors import ParamError
from pcnbench.hookspecs import hookimpl
from pcnbench.manager import PluginHost, load_plugins


def python_output(code: str, timeout: float = 300, **run: Any) -> str:
    """What `code` prints in a fresh interpreter, which must exit 0 (else its stderr fails)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, **run
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


BASE_SUITE = """\
name: t
seeds: [0]
datasets:
  - name: synthetic
    params: {n_train: 64, n_test: 32}
models:
  - name: mlp
    params: {width: 8, depth: 1}
methods:
  - dense
recipe:
  epochs: 2
  batch_size: 16
  optimizer: {name: sgd, lr: 0.1}
"""


class EarlyParams(Params):
    """Parameters of the test-only `early` method."""

    at_epoch: int = Field(1, ge=0)
    keep: float = Field(0.5, gt=0, le=1)


class Early(Method):
    """Test-only method: trains to `at_epoch`, records, trains to the end, records again."""

    name = "early"
    Params = EarlyParams

    def check(self, params: EarlyParams, recipe) -> None:
        """`at_epoch` must fall inside training."""
        if params.at_epoch > recipe.epochs:
            raise ParamError("at_epoch", f"must be ≤ recipe.epochs (got {params.at_epoch})")

    def check_model(self, params: EarlyParams, model) -> None:
        """`keep` must leave at least one unit of the narrowest linear layer."""
        widths = [m.out_features for m in model.modules() if hasattr(m, "out_features")]
        if widths and params.keep * min(widths) < 1:
            raise ParamError("keep", f"keeps no unit of a {min(widths)}-wide layer")

    def run(self, session, params: EarlyParams) -> None:
        """Two results from one cell."""
        session.train(until=params.at_epoch)
        session.record(stage="early")
        session.train(until="end")
        session.record(stage="end")


class EarlyPlugin:
    """A plugin object registered in code (not through an entry point)."""

    @hookimpl
    def register_methods(self, register) -> None:
        """Register the test method."""
        register(Early())


@pytest.fixture(scope="session")
def host() -> PluginHost:
    """Built-in plugins plus the test-only `early` method."""
    return load_plugins(extra=[("test-early", EarlyPlugin())])


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write YAML text (dedented) to a suite file and return its path."""

    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


class BoomParams(Params):
    """Parameters of the test-only `boom` method."""

    # "train": raise after one epoch; "interrupt": simulate Ctrl-C; "die": SIGKILL the process
    when: str = "train"


class Boom(Method):
    """Test-only method that fails (or is interrupted) mid-cell."""

    name = "boom"
    Params = BoomParams

    def run(self, session, params: BoomParams) -> None:
        """Train one epoch, then fail the way `when` says."""
        session.train(until=1)
        if params.when == "interrupt":
            raise KeyboardInterrupt
        if params.when == "die":  # only ever run in a worker process
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("boom: deliberate failure for the test")


class BoomPlugin:
    """Registers the failing test method."""

    @hookimpl
    def register_methods(self, register) -> None:
        """Register `boom`."""
        register(Boom())


class AtExitParams(Params):
    """Parameters of the test-only `atexit` method."""

    note: str  # a file each process that ran the method appends a line to as it exits


class AtExit(Method):
    """Test-only method: registers an exit handler in its process, then trains one epoch."""

    name = "atexit"
    Params = AtExitParams

    def run(self, session, params: AtExitParams) -> None:
        """Register the handler, train, record."""
        import atexit
        import os

        def note() -> None:
            with open(params.note, "a", encoding="utf-8") as f:
                f.write(f"{os.getpid()}\n")

        atexit.register(note)
        session.train(until=1)
        session.record()


class AtExitPlugin:
    """Registers the exit-handler test method."""

    @hookimpl
    def register_methods(self, register) -> None:
        """Register `atexit`."""
        register(AtExit())


@pytest.fixture(scope="session")
def host_with_boom() -> PluginHost:
    """Built-in plugins plus the test-only `early` and `boom` methods."""
    return load_plugins(extra=[("test-early", EarlyPlugin()), ("test-boom", BoomPlugin())])


@pytest.fixture
def skip_cifar_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torchvision's CIFAR check that files exist, not that they match the real md5 sums."""
    import torchvision.datasets.cifar

    # The md5 sums are those of the real 170 MB archive's files; generated stand-ins cannot
    # match them. Both `_check_integrity` and `_load_meta` call this module-level function.
    monkeypatch.setattr(
        torchvision.datasets.cifar,
        "check_integrity",
        lambda fpath, md5=None: os.path.isfile(fpath),
    )
