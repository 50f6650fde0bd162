"""Start-up cost: loading plugins imports no torch; validating, no torchvision or torch compiler.

Each check runs in a fresh interpreter, since this test process has imported torch long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pcnbench.api import Family, ModelPlugin, Params
from pcnbench.errors import PluginError, SuiteError
from pcnbench.hookspecs import hookimpl
from pcnbench.manager import load_plugins
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE, python_output

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision")


def imported_after(code: str) -> dict[str, bool]:
    """Run `code` in a fresh interpreter; say which of HEAVY it left imported."""
    probe = textwrap.dedent(code) + (
        f"\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))\n"
    )
    return json.loads(python_output(probe, cwd=REPO).strip().splitlines()[-1])


def test_loading_the_plugins_imports_neither_torch_nor_torchvision() -> None:
    found = imported_after(
        """
        from pcnbench.manager import load_plugins
        host = load_plugins()
        assert not host.failures(), host.failure_warning()
        assert {"dense", "pcn", "magnitude", "lottery", "lowrank"} <= set(host.methods.names())
        assert "mlp" in host.models
        """
    )
    assert found == dict.fromkeys(HEAVY, False)


# suites/quickstart.yaml: every built-in method on an MLP over digits
QUICKSTART = """\
name: quickstart
seeds: [0, 1]
datasets: [digits]
models:
  - name: mlp
    params: {width: 512, depth: 2}
methods:
  - dense
  - name: pcn
    params: {at_epoch: 3, keep: [f0.0625, v0.99], layers: {fc: null}, calibration: 1000}
  - name: magnitude
    params: {sparsity: [0.9, 0.95], scope: global, finetune_epochs: 5}
  - name: lottery
    params: {levels: 3, rate: 0.5, rewind: 1ep}
  - name: lowrank
    params: {at_epoch: 3, rank: [r0.0625, r0.25]}
recipe:
  epochs: 15
  batch_size: 64
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
  weight_decay: 5e-4
  schedule: {name: multistep, milestones: [8, 12], gamma: 0.1}
  eval_every: 3
"""


def validate_quickstart(tmp_path: Path) -> str:
    """Code that loads the plugins and validates QUICKSTART, written to a file in `tmp_path`."""
    suite = tmp_path / "quickstart.yaml"
    suite.write_text(QUICKSTART, encoding="utf-8")
    return f"""
        from pcnbench.manager import load_plugins
        from pcnbench.suite import load_suite
        loaded = load_suite({str(suite)!r}, load_plugins())
        assert len(loaded.cells) == 16, len(loaded.cells)
        """


def test_validating_a_suite_imports_no_torchvision(tmp_path: Path) -> None:
    assert imported_after(validate_quickstart(tmp_path))["torchvision"] is False


def test_validating_a_suite_skips_torchs_compiler_stack(tmp_path: Path) -> None:
    # the model check needs torch (1.4 s to import) but not its compiler (1.3 s more): torch's
    # meta kernels import it on a model's first forward, so models are probed on the CPU
    code = validate_quickstart(tmp_path).rstrip(" ") + (
        "        import sys\n"
        "        heavy = ('torch._dynamo', 'torch.fx.experimental.symbolic_shapes')\n"
        "        assert not [name for name in heavy if name in sys.modules]\n"
    )
    assert "torch" in imported_after(code)


TORCHVISION_SUITE = """\
name: tv
seeds: [0]
datasets:
  - name: synthetic
    params: {{n_train: 64, n_test: 32, shape: [[3, 32, 32]]}}
models:
  - name: {model}
methods:
  - dense
recipe:
  epochs: 2
  batch_size: 16
  optimizer: {{name: sgd, lr: 0.1}}
"""


def test_a_torchvision_model_still_validates(host, write_suite) -> None:
    loaded = load_suite(write_suite(TORCHVISION_SUITE.format(model="torchvision:resnet18")), host)
    assert [c.model.name for c in loaded.cells] == ["torchvision:resnet18"]
    assert host.models.plugin_of("torchvision:resnet18") == "models"
    assert "torchvision:resnet18" in host.models.names()


def test_an_unknown_torchvision_model_is_an_unknown_name_with_a_suggestion(
    host, write_suite
) -> None:
    text = TORCHVISION_SUITE.format(model="torchvision:resnet19")
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(text), host)
    assert info.value.path == "models[0].name"
    assert "unknown model 'torchvision:resnet19'; did you mean 'torchvision:resnet18'?" in str(
        info.value
    )
    with pytest.raises(SuiteError, match="unknown model 'torchvision:nosuch'"):
        load_suite(write_suite(TORCHVISION_SUITE.format(model="torchvision:nosuch")), host)


def test_an_unrelated_unknown_name_lists_a_family_by_its_prefix(host, write_suite) -> None:
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(TORCHVISION_SUITE.format(model="mlpp")), host)
    assert "did you mean 'mlp'?" in info.value.message
    assert "torchvision:*" in info.value.message


class TinyParams(Params):
    """No parameters."""


class Tiny(ModelPlugin):
    """A family member: `tiny:<n>`."""

    Params = TinyParams

    def __init__(self, size: str) -> None:
        self.name = f"tiny:{size}"

    def build(self, params: TinyParams, info: object) -> object:
        """Never built here."""
        raise NotImplementedError


class FamilyPlugin:
    """Registers a family whose listing is counted."""

    def __init__(self, members: list[str], prefix: str = "tiny:") -> None:
        self.members = members
        self.prefix = prefix
        self.listed = 0

    def list_members(self) -> list[str]:
        """The members, counting each listing."""
        self.listed += 1
        return self.members

    @hookimpl
    def register_models(self, register) -> None:
        """Register the family."""
        register(Family(self.prefix, self.list_members, Tiny))


def test_a_family_is_listed_only_when_a_member_is_asked_for() -> None:
    plugin = FamilyPlugin(["1", "2"])
    host = load_plugins(extra=[("tiny", plugin)], entry_points=False)
    assert plugin.listed == 0
    assert host.infos["tiny"].registers == {"models": ["tiny:*"]}
    assert "mlp" not in host.models
    assert plugin.listed == 0  # a name outside the prefix asks nothing of the family
    assert "tiny:2" in host.models and "tiny:3" not in host.models
    model = host.models.get("tiny:2")
    assert model.name == "tiny:2" and host.models.get("tiny:2") is model
    assert host.models.plugin_of("tiny:1") == "tiny"
    assert host.models.names() == ["tiny:1", "tiny:2"]
    assert plugin.listed == 1
    with pytest.raises(KeyError):
        host.models.get("tiny:3")


def test_a_family_member_of_the_wrong_name_is_a_plugin_error() -> None:
    plugin = FamilyPlugin(["1"], prefix="small:")  # Tiny names itself tiny:1
    host = load_plugins(extra=[("tiny", plugin)], entry_points=False)
    with pytest.raises(PluginError, match=r"expected a pcnbench\.api\.ModelPlugin instance named"):
        host.models.get("small:1")


def test_two_plugins_registering_one_family_prefix_conflict() -> None:
    with pytest.raises(PluginError, match="registered by two plugins: 'a' and 'b'"):
        load_plugins(
            extra=[("a", FamilyPlugin(["1"])), ("b", FamilyPlugin(["2"]))], entry_points=False
        )


def test_a_family_whose_listing_fails_is_a_plugin_error_only_when_asked_for() -> None:
    plugin = FamilyPlugin(["1"])

    def broken() -> list[str]:
        raise ImportError("no module named 'tinylib'")

    plugin.list_members = broken  # type: ignore[method-assign]
    host = load_plugins(extra=[("tiny", plugin)], entry_points=False)
    assert not host.failures()
    assert "other" not in host.models
    assert "unknown model 'other'" in host.models.unknown_message("other")
    with pytest.raises(PluginError, match=r"plugin 'tiny' could not list its models 'tiny:\*'"):
        _ = "tiny:1" in host.models


def test_the_console_script_exits_with_main_s_code_after_all_output(tmp_path: Path) -> None:
    # every command ends the process without tearing the interpreter down: nothing may be lost
    suite = tmp_path / "quickstart.yaml"
    suite.write_text(QUICKSTART, encoding="utf-8")
    command = [sys.executable, "-m", "pcnbench.cli", "validate", str(suite)]
    # a pipe's lines stay whole; GNU readline, loaded by pytest, exports COLUMNS to children
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith("16 cells, 344 epochs planned")
    assert lines[-1].startswith("  mlp(width=512,depth=2), lowrank: up to ")  # the last, flushed
    suite.write_text(QUICKSTART.replace("at_epoch: 3, keep", "at_epoch: 30, keep"), "utf-8")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert done.returncode == 2 and "at_epoch: must be ≤ recipe.epochs" in done.stderr


TWO_CELLS = BASE_SUITE.replace("seeds: [0]", "seeds: [0, 1]") + "executor: {name: local, jobs: 2}\n"


def _console(tmp_path: Path, argv: list[str], before: str = "") -> subprocess.CompletedProcess:
    """`pcnbench ARGV` through the console script, after `before` ran in the same process."""
    code = (
        "import sys\n"
        + textwrap.dedent(before)
        + f"sys.argv = ['pcnbench', *{argv!r}]\n"
        + "from pcnbench.cli import console\n"
        + "console()\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO, env=env
    )


def test_a_run_exits_at_once_yet_runs_the_exit_handlers_and_leaves_no_temporary_files(
    tmp_path: Path,
) -> None:
    suite = tmp_path / "two.yaml"
    suite.write_text(TWO_CELLS, encoding="utf-8")
    marker = tmp_path / "handler-ran"
    before = f"""
        import atexit
        atexit.register(lambda: open({str(marker)!r}, "w").write("yes"))
    """
    out = tmp_path / "out"
    done = _console(tmp_path, ["run", str(suite), "--output", str(out), "--no-report"], before)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("2 trained, 0 already done, 0 failed")
    assert marker.read_text() == "yes"  # a plugin's exit handler still runs
    # the worker pool's temporary files (its server's socket folder) are removed
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_command_with_a_thread_still_running_waits_for_it(tmp_path: Path) -> None:
    suite = tmp_path / "two.yaml"
    suite.write_text(TWO_CELLS, encoding="utf-8")
    marker = tmp_path / "thread-done"
    before = f"""
        import threading, time
        def late():
            time.sleep(1.0)
            open({str(marker)!r}, "w").write("yes")
        threading.Thread(target=late).start()
    """
    done = _console(tmp_path, ["validate", str(suite)], before)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "yes"
