"""The paper suites (cifar10, cifar10_vgg16, imagenet): their key values, and a cut-down run of
each on generated data in the real on-disk formats.

A run copies the shipped suite and cuts only sizes (seeds, epochs and the epoch counts tied to
them, batch size, class count); models, methods, layer patterns, calibration counts, exclude
rules and the rest of the recipe are the shipped suite's.
"""

from __future__ import annotations

import copy
import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pcnbench.cli import main
from pcnbench.store import Store

SUITES = Path(__file__).resolve().parent.parent / "suites"

# Per method, the parameters that count epochs, levels or steps: the only method keys a cut
# copy changes (to fit 2 epochs of a few batches).
METHOD_CUTS: dict[str, dict[str, Any]] = {
    "pcn": {"at_epoch": 1},
    "lowrank": {"at_epoch": 1, "finetune_epochs": 1},
    "magnitude": {"finetune_epochs": 1},
    "lottery": {"levels": 1, "rewind": "1it"},
}


def _suite(name: str) -> dict[str, Any]:
    return yaml.safe_load((SUITES / f"{name}.yaml").read_text(encoding="utf-8"))


def _cut_method(entry: Any) -> Any:
    if isinstance(entry, str):
        return entry
    out = copy.deepcopy(entry)
    params = out.get("params", {})
    for key, value in METHOD_CUTS.get(out["name"], {}).items():
        if key in params and params[key] != "end":  # `end` is a place, not a size
            params[key] = value
    return out


def _cut(suite: dict[str, Any], root: Path, out: Path, batch_size: int) -> dict[str, Any]:
    """The suite with sizes cut and its dataset read from `root`; nothing else changed."""
    cut = copy.deepcopy(suite)
    cut["seeds"] = [0]
    for entry in cut["datasets"]:
        entry["params"]["root"] = str(root)
        if entry["name"] == "imagenet":
            entry["params"].update(num_classes=2, workers=0)
        else:
            entry["params"]["download"] = False
    cut["methods"] = [_cut_method(m) for m in cut["methods"]]
    recipe = cut["recipe"]
    recipe.update(epochs=2, batch_size=batch_size, eval_every=0)
    recipe["schedule"]["milestones"] = [1]
    cut.update(device="cpu", executor="local", output=str(out))
    cut.pop("resources", None)
    cut.pop("checkpoints", None)
    cut.pop("references", None)  # published figures: not part of what runs
    return cut


def _sizes_removed(suite: dict[str, Any]) -> dict[str, Any]:
    """The suite without the keys `_cut` may change: what must be identical after a cut."""
    rest = copy.deepcopy(suite)
    for key in ("seeds", "datasets", "output", "device", "executor", "resources"):
        rest.pop(key, None)
    for key in ("checkpoints", "references"):
        rest.pop(key, None)
    for key in ("epochs", "batch_size", "eval_every"):
        rest["recipe"].pop(key)
    rest["recipe"]["schedule"].pop("milestones")
    for entry in rest["methods"]:
        if isinstance(entry, dict):
            for key in METHOD_CUTS.get(entry["name"], {}):
                entry.get("params", {}).pop(key, None)
    return rest


def _write_cifar10(root: Path, per_batch: int = 4, test: int = 4) -> None:
    """cifar-10-batches-py as torchvision reads it: Python 2 pickles of uint8 planes."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(name: str, n: int) -> None:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        entry = {"batch_label": name, "labels": labels, "data": data, "filenames": [""] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)

    for i in range(1, 6):
        batch(f"data_batch_{i}", per_batch)
    batch("test_batch", test)
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)


def _write_imagenet(root: Path) -> None:
    """root/{train,val}/<wnid>/*.JPEG: two classes, one training and one validation image each."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 1), ("val", 1)):
        for wnid in ("n01440764", "n01443537"):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG")


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, int]:
    """(cells, epochs planned) as `pcnbench validate` prints them."""
    capsys.readouterr()
    assert main(["validate", str(path)]) == 0
    text = capsys.readouterr().out
    found = re.search(r": ([\d,]+) cells, ([\d,]+) epochs planned", text)
    assert found, text
    return int(found[1].replace(",", "")), int(found[2].replace(",", ""))


def _run(suite: dict[str, Any], path: Path, only: str) -> Any:
    """Write `suite` to `path`, run the cells matching `only`, return the stored results."""
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    argv = ["run", str(path), "--only", only, "--quiet", "--no-report", "--no-meter"]
    assert main(argv) == 0
    return Store(Path(suite["output"]) / "results.db", readonly=True).results_frame()


def test_shipped_paper_suites_validate_with_the_official_setups(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _validate(SUITES / "cifar10.yaml", capsys) == (84, 22_548)
    assert _validate(SUITES / "cifar10_vgg16.yaml", capsys) == (6, 960)
    assert _validate(SUITES / "imagenet.yaml", capsys) == (2, 180)

    cifar = _suite("cifar10")
    assert cifar["recipe"]["epochs"] == 164 and cifar["recipe"]["batch_size"] == 128
    deep = [m for m in cifar["models"] if m["params"]["depth"] == [56, 110]]
    assert deep and deep[0]["params"]["width"] == 1
    methods = {m if isinstance(m, str) else m["name"] for m in cifar["methods"]} - {"dense"}
    for depth in (56, 110):  # dense only on the deeper baselines
        assert {
            r["method"] for r in cifar["exclude"] if r["model"]["params"]["depth"] == depth
        } == methods

    vgg = _suite("cifar10_vgg16")
    assert vgg["models"] == [{"name": "vgg", "params": {"depth": 16}}]
    recipe = vgg["recipe"]
    assert (recipe["epochs"], recipe["batch_size"], recipe["optimizer"]["lr"]) == (160, 256, 0.1)
    assert recipe["schedule"]["milestones"] == [80, 120]
    assert vgg["methods"][1]["params"]["at_epoch"] == 1

    imagenet = _suite("imagenet")
    assert imagenet["models"][0]["name"] == "torchvision:resnet50"
    recipe = imagenet["recipe"]
    assert (recipe["epochs"], recipe["batch_size"], recipe["optimizer"]["lr"]) == (90, 256, 0.1)
    assert recipe["schedule"]["milestones"] == [30, 60]
    pcn = imagenet["methods"][1]["params"]
    assert (pcn["at_epoch"], pcn["calibration"]) == (18, 75_000)


def test_dry_runs_need_no_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # data/ and data/imagenet/ do not exist here
    for name in ("cifar10", "cifar10_vgg16", "imagenet"):
        assert main(["run", str(SUITES / f"{name}.yaml"), "--dry-run"]) == 0
        assert "to run, 0 already done" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, no output folder


@pytest.mark.parametrize("name", ["cifar10", "cifar10_vgg16"])
def test_cifar_suites_run_cut_down_on_generated_cifar10_batches(
    name: str, tmp_path: Path, skip_cifar_md5: None
) -> None:
    _write_cifar10(tmp_path / "data")
    suite = _suite(name)
    cut = _cut(suite, tmp_path / "data", tmp_path / "out", batch_size=8)
    assert _sizes_removed(cut) == _sizes_removed(suite)
    # one PCN cell per model family (its dense trunk trains first)
    only = "*pcn*" if name == "cifar10_vgg16" else "*depth=20,width=1) · pcn(at_epoch=1,keep=f0.25*"
    results = _run(cut, tmp_path / f"{name}.yaml", only)
    assert (results["status"] == "done").all() and len(results) >= 1
    assert results["accuracy"].between(0, 1).all()
    if name == "cifar10_vgg16":
        row = results.iloc[0]
        assert row["transform_epoch"] == 1 and row["params"] < row["dense_params"]


def test_imagenet_suite_runs_cut_down_on_generated_image_folders(tmp_path: Path) -> None:
    _write_imagenet(tmp_path / "imagenet")
    suite = _suite("imagenet")
    cut = _cut(suite, tmp_path / "imagenet", tmp_path / "out", batch_size=2)
    assert _sizes_removed(cut) == _sizes_removed(suite)
    results = _run(cut, tmp_path / "imagenet.yaml", "*pcn*")
    row = results.iloc[0]
    assert row["status"] == "done" and row["method"] == "pcn"
    assert row["transform_epoch"] == 1 and row["params"] < row["dense_params"]
    layers = row["pcn_layers"]
    layers = json.loads(layers) if isinstance(layers, str) else layers
    transformed = {layer["name"] for layer in layers}
    assert transformed and all(name.startswith("layer4.") for name in transformed)
