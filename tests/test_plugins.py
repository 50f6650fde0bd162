"""Plugins: third-party distributions load like the built-ins; plugin errors name the plugin."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pcnbench
from pcnbench.api import Method, ModelPlugin
from pcnbench.cli import main
from pcnbench.errors import PluginError
from pcnbench.hookspecs import hookimpl
from pcnbench.manager import load_plugins
from pcnbench.runner import Runner
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE

REPO = Path(__file__).resolve().parents[1]


def env_with(*paths: Path) -> dict[str, str]:
    """This environment with `paths` first on PYTHONPATH and a console wide enough for tables."""
    env = dict(os.environ)
    inherited = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), *inherited])
    env.update(COLUMNS="250", PYTHONIOENCODING="utf-8", NO_COLOR="1")
    return env


def pcnbench_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `python -m pcnbench.cli ARGS` from the repository root in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "pcnbench.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table printed to text, as lists of stripped cell strings."""
    rows = []
    for line in text.splitlines():
        if line.startswith(("│", "|")):
            rows.append([cell.strip() for cell in re.split(r"[│|]", line)[1:-1]])
    return rows


class Registers:
    """An in-code plugin registering the given methods and models."""

    def __init__(self, *objs: object) -> None:
        self.objs = objs

    @hookimpl
    def register_methods(self, register) -> None:
        for obj in self.objs:
            if not isinstance(obj, ModelPlugin):
                register(obj)

    @hookimpl
    def register_models(self, register) -> None:
        for obj in self.objs:
            if isinstance(obj, ModelPlugin):
                register(obj)


def named_method(name: str) -> Method:
    """A Method instance with the given name (never run)."""
    method = Method()
    method.name = name
    return method


def test_method_name_registered_by_two_plugins_names_both_and_the_method() -> None:
    plugins = [
        ("first", Registers(named_method("twin"))),
        ("second", Registers(named_method("twin"))),
    ]
    with pytest.raises(PluginError) as err:
        load_plugins(extra=plugins, entry_points=False)
    message = str(err.value)
    assert "method 'twin'" in message
    assert "'first'" in message
    assert "'second'" in message


def test_third_party_method_cannot_shadow_builtin_dense() -> None:
    with pytest.raises(PluginError) as err:
        load_plugins(extra=[("shadow", Registers(named_method("dense")))])
    message = str(err.value)
    assert "method 'dense'" in message
    assert "'dense'" in message.replace("method 'dense'", "")  # the built-in plugin is named
    assert "'shadow'" in message


@pytest.mark.parametrize(
    "registered",
    [object(), named_method(""), "dense"],
    ids=["not_a_method", "method_without_name", "a_string"],
)
def test_registering_a_non_method_names_the_plugin(registered: object) -> None:
    with pytest.raises(PluginError) as err:
        load_plugins(extra=[("sloppy", Registers(registered))], entry_points=False, strict=True)
    message = str(err.value)
    assert "plugin 'sloppy'" in message
    assert "pcnbench.api.Method" in message
    # by default the plugin is recorded as failed, with the same message, and skipped
    host = load_plugins(extra=[("sloppy", Registers(registered))], entry_points=False)
    (failed,) = host.failures()
    assert failed.name == "sloppy" and "pcnbench.api.Method" in (failed.error or "")


def test_model_registered_as_method_is_rejected() -> None:
    class Model(ModelPlugin):
        name = "wide"

    class Misfiled:
        @hookimpl
        def register_methods(self, register) -> None:
            register(Model())

    with pytest.raises(PluginError, match=r"plugin 'misfiled' .*pcnbench\.api\.Method"):
        load_plugins(extra=[("misfiled", Misfiled())], entry_points=False, strict=True)
    host = load_plugins(extra=[("misfiled", Misfiled())], entry_points=False)
    assert "wide" not in host.methods and "pcnbench.api.Method" in (
        host.infos["misfiled"].error or ""
    )


def test_hook_that_raises_names_plugin_hook_and_error() -> None:
    class Raiser:
        @hookimpl
        def register_models(self, register) -> None:
            raise RuntimeError("kaboom")

    with pytest.raises(PluginError) as err:
        load_plugins(extra=[("raiser", Raiser())], entry_points=False, strict=True)
    message = str(err.value)
    assert "plugin 'raiser'" in message
    assert "register_models" in message
    assert "RuntimeError: kaboom" in message
    assert isinstance(err.value.__cause__, RuntimeError)
    # by default: recorded, warned about, and the other plugins still load
    host = load_plugins(extra=[("raiser", Raiser())])
    assert "dense" in host.methods
    (failed,) = host.failures()
    assert failed.name == "raiser" and isinstance(failed.cause, RuntimeError)
    assert "raised in register_models: RuntimeError: kaboom" in (failed.error or "")
    assert "plugin 'raiser'" in host.failure_warning()
    assert "register_models: RuntimeError: kaboom" in host.failure_warning()


def test_two_plugins_with_one_name_are_rejected() -> None:
    plugins = [("same", Registers(named_method("a"))), ("same", Registers(named_method("b")))]
    with pytest.raises(PluginError, match=r"plugin name 'same'.* already used"):
        load_plugins(extra=plugins, entry_points=False)


def test_in_code_plugin_cannot_take_a_builtin_plugin_name() -> None:
    with pytest.raises(PluginError, match=r"plugin name 'dense'.*already used.*\(from pcnbench\)"):
        load_plugins(extra=[("dense", Registers(named_method("other")))])


def test_implementing_an_unknown_hook_names_plugin_and_hook() -> None:
    class Typo:
        @hookimpl
        def register_method(self, register) -> None:  # missing "s"
            register(named_method("never"))

    with pytest.raises(
        PluginError, match=r"plugin 'typo'.* implements unknown hook 'register_method'"
    ):
        load_plugins(extra=[("typo", Typo())], entry_points=False, strict=True)
    host = load_plugins(extra=[("typo", Typo())], entry_points=False)
    assert "implements unknown hook 'register_method'" in (host.infos["typo"].error or "")
    assert "never" not in host.methods and not host.pm.has_plugin("typo")


def test_hook_with_wrong_signature_is_a_plugin_error() -> None:
    class WrongSignature:
        @hookimpl
        def register_methods(self, register, extra) -> None:
            """Asks for an argument the hook spec does not have."""

    with pytest.raises(PluginError, match="'wrong'"):
        load_plugins(extra=[("wrong", WrongSignature())], entry_points=False)


@pytest.fixture
def broken_site(tmp_path: Path) -> Path:
    """A sys.path entry holding distribution brokenplug 1.0 whose entry point fails to import."""
    site = tmp_path / "broken-site"
    info = site / "brokenplug-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pcnbench]\nbroken = brokenplug_mod\n")
    (site / "brokenplug_mod.py").write_text('raise ImportError("boom")\n')
    return site


def test_plugin_that_fails_to_import_is_listed_and_only_warns_for_suites_not_using_it(
    broken_site: Path,
) -> None:
    env = env_with(broken_site)

    listed = pcnbench_cli("plugins", env=env)
    assert listed.returncode == 2, listed.stdout + listed.stderr  # a broken environment
    (broken,) = (row for row in table_rows(listed.stdout) if row[0] == "broken")
    assert broken[1:3] == ["brokenplug", "1.0"]
    assert "import of brokenplug_mod failed: ImportError: boom" in broken[3]
    # the other plugins still load and are listed
    assert {"dense", "models", "datasets"} <= {row[0] for row in table_rows(listed.stdout)}
    assert "warning: plugin 'broken' (brokenplug 1.0)" in listed.stderr

    # a suite that does not use it runs: one warning on stderr, the plan on stdout
    validated = pcnbench_cli("validate", "suites/quickstart.yaml", env=env)
    assert validated.returncode == 0, validated.stderr
    # besides the plan's own coverage warnings ("… will leave N% … dense …")
    (warning,) = [w for w in validated.stderr.splitlines() if " will leave " not in w]
    assert warning.startswith("warning: plugin 'broken' (brokenplug 1.0): ")
    assert "import of brokenplug_mod failed: ImportError: boom" in warning
    assert "Traceback" not in validated.stderr + validated.stdout
    assert "suite 'quickstart'" in validated.stdout


def _suite_naming(tmp_path: Path, method: str) -> tuple[Path, bytes]:
    path = tmp_path / "needs.yaml"
    path.write_text(BASE_SUITE.replace("  - dense", f"  - {method}"), encoding="utf-8")
    return path, path.read_bytes()


def test_suite_naming_what_a_failed_plugin_may_provide_names_the_plugin(
    broken_site: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(str(broken_site))
    suite, before = _suite_naming(tmp_path, "brokenmethod")
    for command in (["validate", str(suite)], ["run", str(suite), "--output", str(tmp_path / "o")]):
        assert main(command) == 2
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        assert len(lines) == 2, captured.err  # the warning, then the one error
        assert lines[0].startswith("warning: plugin 'broken' (brokenplug 1.0)")
        error = lines[1]
        assert error.startswith(f"{suite}:10:5: methods[0].name: unknown method 'brokenmethod'")
        assert "plugin 'broken' (brokenplug 1.0): import of brokenplug_mod failed" in error
        assert "ImportError: boom" in error and "may be the one providing it" in error
        assert "Traceback" not in captured.err + captured.out and captured.out == ""
    assert suite.read_bytes() == before and not (tmp_path / "o").exists()


@pytest.fixture
def raising_site(tmp_path: Path) -> Path:
    """A sys.path entry holding distribution raiseplug 2.0 whose register_methods raises."""
    site = tmp_path / "raising-site"
    info = site / "raiseplug-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: raiseplug\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[pcnbench]\nraiser = raiseplug_mod\n")
    (site / "raiseplug_mod.py").write_text(
        "from pcnbench.hookspecs import hookimpl\n\n\n"
        "@hookimpl\n"
        "def register_methods(register):\n"
        '    raise RuntimeError("kaboom")\n'
    )
    return site


def test_plugin_whose_register_hook_raises_warns_and_fails_only_suites_needing_it(
    raising_site: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(str(raising_site))
    monkeypatch.setenv("COLUMNS", "250")
    fine, _ = _suite_naming(tmp_path, "dense")
    assert main(["validate", str(fine)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "warning: plugin 'raiser' (raiseplug 2.0): plugin 'raiser' raised in register_methods: "
        "RuntimeError: kaboom; it is skipped, and only suites naming what it provides fail\n"
    )
    assert ": 1 cell, " in captured.out

    needs, before = _suite_naming(tmp_path, "fancy")
    assert main(["validate", str(needs)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"{needs}:10:5: methods[0].name: unknown method 'fancy'")
    assert "plugin 'raiser' (raiseplug 2.0): plugin 'raiser' raised in register_methods" in error
    assert needs.read_bytes() == before

    assert main(["plugins"]) == 2
    captured = capsys.readouterr()
    (row,) = (row for row in table_rows(captured.out) if row[0] == "raiser")
    assert row[1:3] == ["raiseplug", "2.0"] and row[3].startswith("[failed] plugin 'raiser'")
    assert captured.err.count("warning:") == 1


def test_plugins_command_marks_a_failed_plugin(
    broken_site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(broken_site))
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["plugins"]) == 2
    captured = capsys.readouterr()
    (broken,) = (row for row in table_rows(captured.out) if row[0] == "broken")
    assert broken[3].startswith("[failed] import of brokenplug_mod")
    assert captured.err.count("warning: plugin 'broken' (brokenplug 1.0)") == 1


def test_builtins_load_through_entry_points_of_the_pcnbench_distribution() -> None:
    host = load_plugins()
    for name, kind, registered in [
        ("dense", "methods", "dense"),
        ("models", "models", "mlp"),
        ("datasets", "datasets", "synthetic"),
    ]:
        info = host.infos[name]
        assert (info.distribution, info.error) == ("pcnbench", None)
        assert info.version == pcnbench.__version__
        assert registered in info.registers[kind]
        assert getattr(host, kind).plugin_of(registered) == name
    assert host.pm.get_plugin("dense").__name__ == "pcnbench_plugins.dense"


def plugin_references(source: str) -> list[str]:
    """Imports of, and module-name strings naming, `pcnbench_plugins` in Python source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(node.module or "")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)  # importlib.import_module("pcnbench_plugins...")
    return [name for name in found if name.split(".")[0] == "pcnbench_plugins"]


def test_core_package_never_imports_a_plugin() -> None:
    assert plugin_references("from pcnbench_plugins.dense import Dense") == [
        "pcnbench_plugins.dense"
    ]
    assert plugin_references("import importlib\nimportlib.import_module('pcnbench_plugins')")
    files = sorted(Path(pcnbench.__file__).parent.rglob("*.py"))
    assert {"api.py", "manager.py", "runner.py", "session.py"} <= {f.name for f in files}
    offenders = {
        str(f.relative_to(REPO)): refs
        for f in files
        if (refs := plugin_references(f.read_text(encoding="utf-8")))
    }
    assert offenders == {}


class Recorder:
    """A logger plugin: records every lifecycle call; also offers a method that crashes."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @hookimpl
    def register_methods(self, register) -> None:
        register(Crash())

    @hookimpl
    def on_cell_start(self, cell) -> None:
        self.calls.append(("start", cell.id))

    @hookimpl
    def on_epoch_end(self, cell, record) -> None:
        self.calls.append(("epoch", cell.id, record.epoch, record.step))

    @hookimpl
    def on_cell_end(self, cell, status, results) -> None:
        self.calls.append(("end", cell.id, status, results))


class Crash(Method):
    """Trains one epoch, then fails."""

    name = "crash"

    def run(self, session, params) -> None:
        session.train(until=1)
        raise RuntimeError("crashed after epoch 1")


def run_with_recorder(tmp_path: Path, suite_text: str) -> tuple[Recorder, list, object]:
    """Run `suite_text` with a Recorder plugin; return it, the suite's cells and the summary."""
    recorder = Recorder()
    host = load_plugins(extra=[("recorder", recorder)])
    path = tmp_path / "suite.yaml"
    path.write_text(suite_text, encoding="utf-8")
    loaded = load_suite(path, host)
    summary = Runner(loaded, host, output=tmp_path / "out").run()
    return recorder, loaded.cells, summary


def test_lifecycle_hooks_fire_in_order_for_every_cell(tmp_path: Path) -> None:
    text = BASE_SUITE.replace("seeds: [0]", "seeds: [0, 1]") + "device: cpu\n"
    recorder, cells, summary = run_with_recorder(tmp_path, text)
    epochs, steps_per_epoch = 2, 4  # 64 samples in batches of 16

    assert len(cells) == 2
    assert summary.done == [c.id for c in cells]
    assert sum(call[0] == "epoch" for call in recorder.calls) == epochs * len(cells)
    expected = []
    for cell in cells:
        expected += [("start", cell.id)]
        expected += [("epoch", cell.id, e, e * steps_per_epoch) for e in range(1, epochs + 1)]
        expected += [("end", cell.id, "done")]
    assert [call[:4] if call[0] != "end" else call[:3] for call in recorder.calls] == expected

    for call in recorder.calls:
        if call[0] == "end":
            (row,) = call[3]
            assert row["epochs_trained"] == 2.0
            assert row["step"] == epochs * steps_per_epoch
            assert 0.0 <= row["accuracy"] <= 1.0
            assert row["params"] == row["dense_params"] > 0


def test_failed_cell_reports_failed_with_no_results_and_run_goes_on(tmp_path: Path) -> None:
    text = BASE_SUITE.replace("  - dense\n", "  - crash\n  - dense\n") + "device: cpu\n"
    recorder, cells, summary = run_with_recorder(tmp_path, text)
    crash, dense = cells
    assert (crash.method.name, dense.method.name) == ("crash", "dense")
    assert summary.failed == [crash.id]
    assert summary.done == [dense.id]
    # end calls keep their results only when there are none (compared whole), else status only
    calls = [call[:3] if call[0] != "end" or call[3] else call for call in recorder.calls]
    assert calls == [
        ("start", crash.id),
        ("epoch", crash.id, 1),
        ("end", crash.id, "failed", []),
        ("start", dense.id),
        ("epoch", dense.id, 1),
        ("epoch", dense.id, 2),
        ("end", dense.id, "done"),
    ]
    (row,) = recorder.calls[-1][3]
    assert (row["epochs_trained"], row["step"]) == (2.0, 8)
