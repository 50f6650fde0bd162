"""Layer patterns: one helper for every method, checked at validation and again before training."""

from __future__ import annotations

import re

import pytest
import torch

from pcnbench.api import DataInfo, ParamError, Recipe, layer_names
from pcnbench.cli import main
from pcnbench.errors import SuiteError
from pcnbench.manager import load_plugins
from pcnbench.session import Session
from pcnbench.suite import load_suite
from pcnbench_plugins.lottery import Lottery, LotteryParams
from pcnbench_plugins.lowrank import LowRank, LowRankParams
from pcnbench_plugins.magnitude import Magnitude, MagnitudeParams
from pcnbench_plugins.models.cifar_resnet import ResNet
from pcnbench_plugins.models.mlp import CNN
from tests.nets import convnet, image_splits

RESNET_SUITE = """\
name: patterns
seeds: [0]
datasets:
  - name: synthetic
    params: {{n_train: 64, n_test: 32, shape: [[3, 32, 32]], classes: 10}}
models:
  - name: resnet
    params: {{depth: 8}}
methods:
  - name: {method}
    params:
{params}
recipe:
  epochs: 4
  batch_size: 16
  optimizer: {{name: sgd, lr: 0.1}}
"""

# (method, its params as YAML lines, the misspelled pattern, the layer name the error suggests)
MISSPELLED = [
    ("lowrank", "      at_epoch: 1\n      layers: blocks.*.conv2, fcc", "fcc", "fc"),
    (
        "magnitude",
        "      sparsity: 0.5\n      exclude: [conv, blocks.0.shortcut]",
        "blocks.0.shortcut",
        "",
    ),
    (
        "lottery",
        "      levels: 2\n      exclude: 'blocks.1.conv1, blocks.2.cnv1'",
        "blocks.2.cnv1",
        "blocks.2.conv1",
    ),
]


@pytest.fixture(scope="module")
def plugins():
    """The built-in plugins, loaded the way the CLI loads them."""
    return load_plugins()


def resnet8_layers() -> list[str]:
    with torch.device("meta"):
        model = ResNet().build(ResNet.Params(depth=8), DataInfo((3, 32, 32), 10))
    return layer_names(model)


@pytest.mark.parametrize(
    ("method", "params", "pattern", "suggest"), MISSPELLED, ids=[m[0] for m in MISSPELLED]
)
def test_validation_names_the_pattern_at_file_line_column_and_lists_the_layers(
    plugins, tmp_path, method: str, params: str, pattern: str, suggest: str
) -> None:
    text = RESNET_SUITE.format(method=method, params=params)
    file = tmp_path / f"{method}-typo.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(SuiteError) as info:
        load_suite(file, plugins)
    message = str(info.value)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if pattern in row)
    assert re.match(rf"{re.escape(str(file))}:{line}:\d+: methods\[0\]\.params\.", message), message
    assert f"{method}-typo.yaml" in message
    # the kinds a method's patterns select: pruning and low-rank take attention layers too
    kinds = "conv or linear" if method == "pcn" else "conv, linear or attention"
    assert f"pattern '{pattern}' matches no {kinds} layer" in message
    if suggest:
        assert f"did you mean '{suggest}'?" in message
    layers = resnet8_layers()
    assert f"(layers: {', '.join(layers)})" in message
    assert "blocks.1.shortcut.0" in layers  # real names, nested ones included


def test_pcnbench_validate_exits_2_naming_the_pattern(tmp_path, capsys) -> None:
    method, params, pattern, _ = MISSPELLED[0]
    file = tmp_path / "suite.yaml"
    file.write_text(RESNET_SUITE.format(method=method, params=params), encoding="utf-8")
    assert main(["validate", str(file)]) == 2
    err = capsys.readouterr().err
    text = file.read_text(encoding="utf-8")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if pattern in row)
    assert err.startswith(f"{file}:{line}:") and f"pattern '{pattern}'" in err, err
    assert "Traceback" not in err


def test_good_patterns_validate(plugins, tmp_path) -> None:
    for method, params, pattern, _ in MISSPELLED:
        fixed = params.replace(pattern, "blocks.2.*" if method == "lowrank" else "blocks.2.conv1")
        file = tmp_path / f"{method}.yaml"
        file.write_text(RESNET_SUITE.format(method=method, params=fixed), encoding="utf-8")
        assert load_suite(file, plugins).cells  # the magnitude list is a grid of two


def small_recipe() -> Recipe:
    return Recipe(epochs=2, batch_size=16, optimizer={"name": "sgd", "lr": 0.05}, eval_every=0)


@pytest.mark.parametrize(
    ("method", "params", "key"),
    [
        (Magnitude(), MagnitudeParams(sparsity=0.5, exclude="fc"), "exclude"),
        (Lottery(), LotteryParams(levels=1, exclude="fc"), "exclude"),
    ],
    ids=["magnitude", "lottery"],
)
def test_run_fails_on_a_bad_pattern_before_training(method, params, key: str) -> None:
    session = Session(convnet(), image_splits(), small_recipe(), seed=0)
    with pytest.raises(
        ParamError, match="pattern 'fc' matches no conv, linear or attention layer"
    ) as info:
        method.run(session, params)
    assert info.value.key == key
    assert session.steps_trained == 0


def test_lowrank_run_fails_on_a_bad_pattern_before_training() -> None:
    model = CNN().build(CNN.Params(width=4), DataInfo((1, 4, 4), 4))
    session = Session(model, image_splits(), small_recipe(), seed=0)
    with pytest.raises(
        ParamError, match="pattern 'conv3' matches no conv, linear or attention layer"
    ) as info:
        LowRank().run(session, LowRankParams(at_epoch=1, layers="conv2, conv3"))
    assert info.value.key == "layers"
    assert "(layers: conv1, conv2, fc)" in info.value.message
    assert session.steps_trained == 0
