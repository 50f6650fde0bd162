"""Plugin parameter reference: `describe_plugin`, `param_rows` and the README's generated block."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from pcnbench.api import Locator, Method, ModelPlugin, Params
from pcnbench.describe import (
    BEGIN,
    END,
    WIDTH,
    current_block,
    describe_plugin,
    param_rows,
    reference_markdown,
    replace_block,
)
from pcnbench.errors import PcnbenchError
from pcnbench.hookspecs import hookimpl
from pcnbench.manager import PluginHost, load_plugins

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return load_plugins()


class Example(Params):
    """Every kind of field the reference renders."""

    mode: Literal["fast", "slow"] = Field("fast", description="how to go")
    rate: float = Field(gt=0, le=1, description="a fraction")
    at: int | Literal["end"] = "end"
    names: tuple[str, ...] = ()
    extra: dict[str, int] = Field(default_factory=dict, description="  spread\n over lines ")
    root: Annotated[str, Locator()] = Field("data", description="where it lives")


def test_param_rows_render_types_defaults_constraints_and_descriptions() -> None:
    rows = {row.name: row for row in param_rows(Example)}
    assert list(rows) == ["mode", "rate", "at", "names", "extra", "root"]
    assert (rows["mode"].type, rows["mode"].default) == ("'fast' | 'slow'", "fast")
    assert (rows["rate"].default, rows["rate"].allowed) == ("required", "0 < x ≤ 1")
    assert (rows["at"].type, rows["at"].description) == ("int | 'end'", "")
    assert (rows["names"].type, rows["names"].default) == ("list[str]", "[]")
    assert (rows["extra"].type, rows["extra"].default) == ("dict[str, int]", "{}")
    assert rows["extra"].description == "spread over lines"
    assert rows["root"].description == "where it lives (not in cell ids)"


def test_cnn_lists_width_with_its_default(host: PluginHost) -> None:
    text = describe_plugin(host, "cnn")
    assert text.startswith("cnn: model registered by plugin 'models' (pcnbench ")
    width = next(line for line in text.splitlines() if line.startswith("width "))
    assert width.split()[:4] == ["width", "int", "32", ">"]


def test_a_literal_field_shows_its_allowed_values(host: PluginHost) -> None:
    text = describe_plugin(host, "magnitude")
    schedule = text[text.index("\nschedule ") :].split("\nfinetune_epochs ")[0]
    assert "'oneshot' |" in schedule and "'gradual'" in schedule
    assert "sparsity" in text and "required" in text and "0 < x < 1" in text


def test_an_unknown_name_suggests_the_closest(host: PluginHost) -> None:
    with pytest.raises(PcnbenchError, match=r"unknown plugin 'magnitud'; did you mean 'magnitude'"):
        describe_plugin(host, "magnitud")
    with pytest.raises(PcnbenchError, match=r"did you mean 'torchvision:resnet18'"):
        describe_plugin(host, "torchvison:resnet18")


def test_a_family_member_and_the_family_are_described(host: PluginHost) -> None:
    member = describe_plugin(host, "torchvision:resnet18")
    assert member.startswith("torchvision:resnet18: model registered by plugin 'models'")
    assert "\nweights " in member and "\nkwargs " in member
    family = describe_plugin(host, "torchvision:*")
    assert family.startswith("torchvision:NAME (any of torchvision:*, e.g. torchvision:")


def test_every_plugin_description_fits_80_columns(host: PluginHost) -> None:
    names = {n for info in host.infos.values() for ns in info.registers.values() for n in ns}
    assert {"cnn", "synthetic", "magnitude", "local", "tables", "torchvision:*"} <= names
    for name in sorted(names):
        text = describe_plugin(host, name)
        too_long = [line for line in text.splitlines() if len(line) > WIDTH]
        assert not too_long, (name, too_long)


def test_every_builtin_parameter_has_a_description(host: PluginHost) -> None:
    reference = reference_markdown(host)
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    assert len(rows) > 30
    undescribed = [row for row in rows if row.rstrip(" |").endswith("|")]
    assert not undescribed


def test_a_name_in_two_kinds_shows_each() -> None:
    class Twin(Method):
        """The method named twin."""

        name = "twin"

    class TwinModel(ModelPlugin):
        """The model named twin."""

        name = "twin"
        Params = Example

    class Both:
        @hookimpl
        def register_methods(self, register) -> None:
            register(Twin())

        @hookimpl
        def register_models(self, register) -> None:
            register(TwinModel())

    local = load_plugins(extra=[("both", Both())], entry_points=False)
    text = describe_plugin(local, "twin")
    assert "twin: method registered by plugin 'both' (registered in code)" in text
    assert "twin: model registered by plugin 'both' (registered in code)" in text
    assert "No parameters." in text and "\nmode " in text


def test_replace_block_touches_only_the_text_between_the_markers() -> None:
    text = f"# a\nkeep\n{BEGIN}\nold\n{END}\n## b\nkeep too\n"
    new = replace_block(text, "new\n")
    assert new == f"# a\nkeep\n{BEGIN}\nnew\n{END}\n## b\nkeep too\n"
    assert current_block(new) == "new"
    with pytest.raises(PcnbenchError, match="markers"):
        replace_block("no markers here", "new")


def test_readme_reference_is_up_to_date(host: PluginHost) -> None:
    written = current_block(README.read_text(encoding="utf-8"))
    assert written == reference_markdown(host).strip(), (
        "README.md's plugin parameters are out of date: run "
        "python -m pcnbench.describe --write-readme README.md"
    )


def test_the_plugins_command_describes_one_plugin(capsys) -> None:
    from pcnbench.cli import main

    assert main(["plugins", "cnn"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cnn: model registered by plugin 'models'")
    assert any(line.split()[:3] == ["width", "int", "32"] for line in out.splitlines())
    assert main(["plugins", "cn"]) == 2
    assert "did you mean 'pcn' or 'cnn'?" in capsys.readouterr().err
    assert main(["info", "cnn"]) == 0  # the same command by its other name
    assert capsys.readouterr().out == out
