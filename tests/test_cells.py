"""Matrix expansion and cell identity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

from pcnbench.api import Locator, Params
from pcnbench.cells import Choice, cell_config, cell_id, expand, locator_fields, select
from pcnbench.execution import trunk_group
from pcnbench.recipe import Recipe
from pcnbench.store import Store
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE, EarlyParams

CIFAR10_SUITE = Path(__file__).resolve().parents[1] / "suites" / "cifar10.yaml"


def test_list_params_expand_into_cartesian_grid(host, write_suite):
    text = BASE_SUITE.replace("{width: 8, depth: 1}", "{width: [8, 16, 32], depth: [1, 2]}")
    text = text.replace("seeds: [0]", "seeds: 2")
    cells = load_suite(write_suite(text), host).cells
    assert len(cells) == 3 * 2 * 2
    widths = sorted({(c.model.params.width, c.model.params.depth) for c in cells})
    assert widths == [(w, d) for w in (8, 16, 32) for d in (1, 2)]
    assert len({c.id for c in cells}) == 12


def test_entry_exclude_removes_matching_grid_points(host, write_suite):
    text = BASE_SUITE.replace(
        "{width: 8, depth: 1}",
        "{width: [8, 16], depth: [1, 2]}\n    exclude: [{width: 16, depth: 2}]",
    )
    cells = load_suite(write_suite(text), host).cells
    assert sorted((c.model.params.width, c.model.params.depth) for c in cells) == [
        (8, 1),
        (8, 2),
        (16, 1),
    ]


def test_suite_exclude_removes_combinations_across_axes(host, write_suite):
    text = BASE_SUITE.replace("  - dense", "  - dense\n  - name: early\n    params: {at_epoch: 1}")
    text = text.replace("{width: 8, depth: 1}", "{width: [8, 16]}")
    text += "exclude:\n  - {model: {name: mlp, params: {width: 16}}, method: early}\n"
    cells = load_suite(write_suite(text), host).cells
    pairs = sorted((c.model.params.width, c.method.name) for c in cells)
    assert pairs == [(8, "dense"), (8, "early"), (16, "dense")]


def test_cell_id_is_stable_and_ignores_key_order_and_spelled_out_defaults(host, write_suite):
    a = load_suite(write_suite(BASE_SUITE, "a.yaml"), host).cells
    reordered = BASE_SUITE.replace("{width: 8, depth: 1}", "{depth: 1, width: 8}").replace(
        "optimizer: {name: sgd, lr: 0.1}", "optimizer: {lr: 0.1, name: sgd, momentum: 0.9}"
    )
    b = load_suite(write_suite(reordered, "b.yaml"), host).cells
    assert [c.id for c in a] == [c.id for c in b]
    # pinned: the same cell must get this id on every machine and every release
    assert a[0].id == "3e50b0dacc2531aa"


def test_cell_id_changes_when_anything_that_matters_changes(host, write_suite):
    base = load_suite(write_suite(BASE_SUITE, "a.yaml"), host).cells[0].id
    for old, new in [
        ("width: 8", "width: 9"),
        ("seeds: [0]", "seeds: [1]"),
        ("epochs: 2", "epochs: 3"),
        ("lr: 0.1", "lr: 0.2"),
        ("n_train: 64", "n_train: 65"),
    ]:
        other = load_suite(write_suite(BASE_SUITE.replace(old, new), "b.yaml"), host).cells[0].id
        assert other != base, (old, new)


def test_adding_an_optional_field_with_default_keeps_old_ids():
    recipe = Recipe(epochs=3)

    class Grown(EarlyParams):
        new_knob: float = Field(0.25)

    old = Choice("early", EarlyParams(at_epoch=1), 0, {"at_epoch": 1})
    new = Choice("early", Grown(at_epoch=1), 0, {"at_epoch": 1})
    data = Choice("synthetic", EarlyParams(), 0, {})
    ids = [
        cell_id(cell_config(data, data, method, 0, recipe, for_id=True)) for method in (old, new)
    ]
    assert ids[0] == ids[1]
    changed = Choice("early", Grown(at_epoch=1, new_knob=0.5), 0, {})
    assert cell_id(cell_config(data, data, changed, 0, recipe, for_id=True)) != ids[0]


def test_config_has_defaults_filled_and_id_does_not_depend_on_device_or_output(host, write_suite):
    one = load_suite(write_suite(BASE_SUITE, "a.yaml"), host).cells[0]
    assert one.config["recipe"]["weight_decay"] == 0.0
    assert one.config["model"]["params"] == {"width": 8, "depth": 1, "residual": False}
    moved = BASE_SUITE + "device: cpu\noutput: elsewhere\ndeterministic: true\n"
    two = load_suite(write_suite(moved, "b.yaml"), host).cells[0]
    assert one.id == two.id


def test_only_selects_by_label_substring_glob_or_id(host, write_suite):
    text = BASE_SUITE.replace("{width: 8, depth: 1}", "{width: [8, 16]}").replace(
        "seeds: [0]", "seeds: [0, 1]"
    )
    cells = load_suite(write_suite(text), host).cells
    assert len(select(cells, "width=16")) == 2
    assert len(select(cells, "*seed 1")) == 2
    assert select(cells, cells[3].id[:8]) == [cells[3]]
    assert select(cells, None) == cells
    assert select(cells, "nothing-matches") == []


def test_cifar10_suite_lists_the_same_ids_with_another_root_and_no_download(
    host, write_suite, tmp_path
):
    text = CIFAR10_SUITE.read_text(encoding="utf-8")
    here = "params: {root: data, download: true}"
    assert text.count(here) == 1
    moved_text = text.replace(here, "params: {root: /mnt/elsewhere/cifar, download: false}")
    cells = load_suite(write_suite(text, "a.yaml"), host).cells
    moved = load_suite(write_suite(moved_text, "b.yaml"), host).cells
    assert len(cells) == len(moved) == 84  # 78 + dense ResNet-56 and ResNet-110 × 3 seeds
    assert [c.id for c in moved] == [c.id for c in cells]
    # pinned: `download: true` no longer counts, so this is also the id with no dataset params
    assert cells[0].id == "75d93425da0a11c7"
    # the dense trunk shared between methods (and its cache key) does not move either
    assert [trunk_group(c) for c in moved] == [trunk_group(c) for c in cells]
    # the stored configuration still says where the data was and whether it was downloaded
    assert cells[0].config["dataset"] == {
        "name": "cifar10",
        "params": {"root": "data", "download": True},
    }
    store = Store(tmp_path / "results.db")
    run = store.begin_run("cifar10", "b.yaml", "00" * 32, moved_text, ["pcnbench"], {})
    store.start_cell(moved[0], run, "cpu")
    row = store.db.execute(
        "SELECT config, dataset_params FROM cells WHERE cell_id = ?", (cells[0].id,)
    ).fetchone()
    store.close()
    stored = {"root": "/mnt/elsewhere/cifar", "download": False}
    assert json.loads(row["config"])["dataset"]["params"] == stored
    assert json.loads(row["dataset_params"]) == stored


class _Mirror(BaseModel):
    """A nested model with a locating field of its own."""

    url: Annotated[str, Locator()] = "https://example.org"
    retries: int = 3


class _ThirdParty(Params):
    """Parameters of a third-party plugin: two real settings and three locating ones."""

    size: int = 10
    cache_dir: Annotated[str, Locator()] = "~/.cache/thirdparty"
    fetch: Annotated[bool, Locator] = False  # the bare class works as a marker too
    shards: Annotated[int, Field(ge=1), Locator()] = 1
    mirror: _Mirror = _Mirror()


def test_locator_fields_of_any_params_are_left_out_of_ids_and_kept_in_the_config():
    assert locator_fields(_ThirdParty) == {"cache_dir", "fetch", "shards"}
    assert locator_fields(EarlyParams) == frozenset()
    recipe = Recipe(epochs=3)
    here = _ThirdParty(size=5)
    there = _ThirdParty(
        size=5, cache_dir="/scratch", fetch=True, shards=4, mirror=_Mirror(url="http://m")
    )

    def ident(dataset: Params, model: Params, method: Params) -> str:
        axes = [Choice("t", params, 0, {}) for params in (dataset, model, method)]
        return cell_id(cell_config(*axes, 0, recipe, for_id=True))

    base = ident(here, here, here)
    # a marked field is left out of the id on every axis: dataset, model and method alike
    assert ident(there, here, here) == base
    assert ident(here, there, here) == base
    assert ident(here, here, there) == base
    assert ident(there, there, there) == base
    # unmarked fields still count, nested ones included
    assert ident(here, _ThirdParty(size=6), here) != base
    other_retries = _ThirdParty(size=5, mirror=_Mirror(url="http://m", retries=4))
    assert ident(here, here, other_retries) != base
    axes = [Choice("t", p, 0, {}) for p in (there, here, other_retries)]
    for_id = cell_config(*axes, 0, recipe, for_id=True)
    assert for_id["dataset"]["params"] == {"size": 5}
    assert for_id["method"]["params"] == {"size": 5, "mirror": {"retries": 4}}
    (cell,) = expand(
        "s",
        [Choice("t", there, 0, {})],
        [Choice("t", here, 0, {})],
        [Choice("t", here, 0, {})],
        [0],
        recipe,
    )
    assert cell.id == base
    assert cell.config["dataset"]["params"] == {
        "size": 5,
        "cache_dir": "/scratch",
        "fetch": True,
        "shards": 4,
        "mirror": {"url": "http://m", "retries": 3},
    }
