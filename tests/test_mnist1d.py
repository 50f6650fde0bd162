"""MNIST-1D: the generated data is the published set; cnn1d and the residual MLP the paper's."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
import torch
from torch import nn

import pcnbench_plugins.datasets.mnist1d as mnist1d_plugin
from pcnbench.api import DataInfo, ParamError, PcnbenchError, Recipe
from pcnbench.cells import Choice, canonical
from pcnbench.errors import SuiteError
from pcnbench.manager import load_plugins
from pcnbench.session import Session
from pcnbench.suite import load_suite
from pcnbench_plugins.datasets import register_datasets
from pcnbench_plugins.datasets.mnist1d import Mnist1d
from pcnbench_plugins.models import register_models
from pcnbench_plugins.models.conv1d import CNN1d
from pcnbench_plugins.models.mlp import MLP
from tests.conftest import python_output

SERIES = DataInfo(input_shape=(1, 40), num_classes=10)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(plugin: Any, info: DataInfo = SERIES, **params: Any) -> nn.Module:
    return plugin.build(plugin.Params.model_validate(params), info)


@pytest.fixture(scope="module")
def published() -> dict[str, np.ndarray]:
    """The package's generator with its default arguments: the published mnist1d_data.pkl."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state(), random.getstate()
    try:
        return make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state[0])
        random.setstate(state[1])


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> dict:
    """An empty generation cache, so a load really generates."""
    cache: dict = {}
    monkeypatch.setattr(mnist1d_plugin, "_CACHE", cache)
    return cache


# the dataset ----------------------------------------------------------------------------------


def test_default_load_is_the_package_generators_published_arrays(published) -> None:
    splits = Mnist1d().load(Mnist1d.Params())
    assert splits.x_train.shape == (4000, 1, 40) and splits.x_test.shape == (1000, 1, 40)
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    expected = {
        "x": splits.x_train[:, 0],
        "x_test": splits.x_test[:, 0],
        "y": splits.y_train,
        "y_test": splits.y_test,
    }
    for key, ours in expected.items():
        theirs = torch.from_numpy(published[key])
        if key.startswith("x"):
            assert torch.equal(ours, theirs.to(torch.float32)), key  # the float32 rounding
            assert torch.allclose(ours.double(), theirs, rtol=1e-6, atol=1e-6), key
        else:
            assert torch.equal(ours, theirs), key
    assert set(splits.y_train.tolist()) == set(range(10)) == set(splits.y_test.tolist())
    # The generator standardized everything together: the session normalizes with 0 and 1,
    # so the model sees these values as they are.
    assert (splits.mean, splits.std) == ((0.0,), (1.0,))
    both = torch.cat([splits.x_train, splits.x_test]).double()
    assert both.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert both.std(correction=0).item() == pytest.approx(1.0, abs=1e-6)


def test_info_matches_the_loaded_shapes_and_needs_no_generation(fresh_cache) -> None:
    info = Mnist1d().info(Mnist1d.Params(seed=3, num_samples=100))
    assert (info.input_shape, info.num_classes) == ((1, 40), 10)
    assert fresh_cache == {}
    registered: list = []
    register_datasets(registered.append)
    assert "mnist1d" in [dataset.name for dataset in registered]


def test_seed_num_samples_and_train_split_change_the_data() -> None:
    base = Mnist1d().load(Mnist1d.Params(num_samples=100))
    assert base.x_train.shape == (80, 1, 40) and base.x_test.shape == (20, 1, 40)
    assert torch.bincount(torch.cat([base.y_train, base.y_test])).tolist() == [10] * 10
    other_seed = Mnist1d().load(Mnist1d.Params(num_samples=100, seed=7))
    assert not torch.equal(base.x_train, other_seed.x_train)
    halves = Mnist1d().load(Mnist1d.Params(num_samples=100, train_split=0.5))
    assert len(halves.x_train) == len(halves.x_test) == 50
    # the same seed and size shuffle the same series: only the cut moves
    assert torch.equal(
        torch.cat([halves.x_train, halves.x_test]), torch.cat([base.x_train, base.x_test])
    )


def test_load_leaves_numpys_and_pythons_global_rng_where_they_were(fresh_cache) -> None:
    np.random.seed(123)
    random.seed(456)
    np.random.rand(3)  # a stream part way through, not just freshly seeded
    numpy_next, python_next = _next_draws()
    np.random.seed(123)
    random.seed(456)
    np.random.rand(3)
    Mnist1d().load(Mnist1d.Params(num_samples=50))
    assert fresh_cache, "the load must have generated"
    assert _next_draws() == (numpy_next, python_next)


def _next_draws() -> tuple[list[float], list[float]]:
    return np.random.rand(4).tolist(), [random.random() for _ in range(4)]


def test_a_second_load_returns_the_cached_tensors_without_generating(
    fresh_cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    generate = mnist1d_plugin.generate_arrays

    def counted(params: Any) -> dict:
        calls.append(params)
        return generate(params)

    monkeypatch.setattr(mnist1d_plugin, "generate_arrays", counted)
    params = Mnist1d.Params(num_samples=60, seed=1)
    first = Mnist1d().load(params)
    again = Mnist1d().load(Mnist1d.Params(num_samples=60, seed=1))
    assert len(calls) == 1
    assert again.x_train is first.x_train and again.y_test is first.y_test
    Mnist1d().load(Mnist1d.Params(num_samples=60, seed=2))
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"num_samples": 5}, "greater than or equal to 10"),
        ({"num_samples": 5005}, "num_samples must be a multiple of 10"),
        ({"num_samples": 50_000_000}, "less than or equal to 100000"),
        ({"num_samples": 10, "train_split": 0.05}, "leaves 0 for training"),
        ({"train_split": 1.0}, "less than 1"),
        ({"seed": -1}, "greater than or equal to 0"),
        ({"seed": 2**32}, "less than 4294967296"),
        ({"sead": 1}, "Extra inputs are not permitted"),
    ],
)
def test_params_reject_values_the_generator_cannot_use(params: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        Mnist1d.Params(**params)


def test_without_the_package_load_says_to_install_it(
    fresh_cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)  # makes the import fail
    with pytest.raises(PcnbenchError, match=r"pip install mnist1d"):
        Mnist1d().load(Mnist1d.Params(num_samples=20))


def test_validating_a_suite_leaves_mnist1d_unimported() -> None:
    """The generator's package (SciPy, matplotlib) is imported when data is loaded, not before."""
    probe = (
        "import sys\n"
        "from pcnbench.manager import load_plugins\n"
        "from pcnbench.suite import load_suite\n"
        "from tests.test_mnist1d import SUITE\n"
        "assert load_suite('suite.yaml', load_plugins(), text=SUITE).cells\n"
        "print('mnist1d' in sys.modules)\n"
    )
    assert python_output(probe, timeout=120).strip() == "False"


# the models -----------------------------------------------------------------------------------


def test_cnn1d_is_the_papers_convbase_with_5210_params() -> None:
    # conv1 1·25·5+25 = 150; conv2, conv3 25·25·3+25 = 1,900 each; fc 25·5·10+10 = 1,260
    model = build(CNN1d())
    assert count(model) == 5_210
    assert [name for name, _ in model.named_children()] == [
        "conv1",
        "relu1",
        "conv2",
        "relu2",
        "conv3",
        "relu3",
        "flatten",
        "fc",
    ]
    assert model.fc.in_features == 125
    assert model(torch.rand(3, 1, 40)).shape == (3, 10)
    # the flattened length follows the input: 50 → 24 → 12 → 6
    assert build(CNN1d(), DataInfo((2, 50), 4), channels=3).fc.in_features == 18
    assert "cnn1d" in [plugin.name for plugin in _registered_models()]


def _registered_models() -> list:
    found: list = []
    register_models(found.append)
    return found


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            (1, 8, 8),
            r"cnn1d expects series shaped \(channels, length\); the dataset gives \(1, 8, 8\)",
        ),
        ((40,), r"the dataset gives \(40,\)"),
        ((1, 2), "cnn1d needs series of length at least 3; got 2"),
    ],
)
def test_cnn1d_rejects_inputs_that_are_not_series(shape: tuple, message: str) -> None:
    with pytest.raises(ParamError, match=message) as info:
        build(CNN1d(), DataInfo(shape, 10))
    assert info.value.key is None


def test_cnn1d_builds_on_the_shortest_series() -> None:
    assert build(CNN1d(), DataInfo((1, 3), 2))(torch.rand(1, 1, 3)).shape == (1, 2)


def test_residual_mlp_is_the_papers_mlpbase_with_15210_params() -> None:
    # 40·100+100 + 100·100+100 + 100·10+10
    model = build(MLP(), width=100, depth=2, residual=True)
    assert count(model) == 15_210
    assert [name for name, _ in model.named_children()] == [
        "flatten",
        "fc1",
        "relu1",
        "fc2",
        "relu2",
        "fc",
    ]
    assert model(torch.rand(5, 1, 40)).shape == (5, 10)


def test_plain_mlp_is_unchanged_and_its_cell_ids_too() -> None:
    model = build(MLP(), width=100, depth=2)
    assert type(model) is nn.Sequential and count(model) == 15_210
    plain = Choice("mlp", MLP.Params(width=8), 0, {})
    assert canonical(plain, for_id=True) == {"name": "mlp", "params": {"width": 8}}
    residual = Choice("mlp", MLP.Params(width=8, residual=True), 0, {})
    assert canonical(residual, for_id=True)["params"] == {"width": 8, "residual": True}


def test_residual_forward_adds_each_later_layers_input_on_the_same_weights() -> None:
    info = DataInfo((1, 2), 2)
    plain = build(MLP(), info, width=2, depth=3)
    residual = build(MLP(), info, width=2, depth=3, residual=True)
    weights = {
        "fc1": [[1.0, 0.0], [0.0, 1.0]],
        "fc2": [[1.0, 0.0], [0.0, -1.0]],
        "fc3": [[0.0, 1.0], [1.0, 0.0]],
        "fc": [[1.0, 0.0], [0.0, 1.0]],
    }
    state = {}
    for name, weight in weights.items():
        state[f"{name}.weight"] = torch.tensor(weight)
        state[f"{name}.bias"] = torch.zeros(2)
    plain.load_state_dict(state)
    residual.load_state_dict(state)  # the same names: a state dict fits both
    x = torch.tensor([[[1.0, 2.0]]])
    # plain: relu([1, 2]) = [1, 2]; relu([1, -2]) = [1, 0]; relu([0, 1]) = [0, 1]
    assert plain(x).tolist() == [[0.0, 1.0]]
    # residual: [1, 2]; + relu([1, -2]) = [2, 2]; + relu([2, 2]) = [4, 4]
    assert residual(x).tolist() == [[4.0, 4.0]]


def test_residual_mlp_pickles_by_its_module_path(tmp_path: Path) -> None:
    model = build(MLP(), width=4, depth=2, residual=True)
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert type(loaded).__module__ == "pcnbench_plugins.models.mlp"
    x = torch.rand(2, 1, 40)
    assert torch.equal(loaded(x), model(x))


# together -------------------------------------------------------------------------------------

SUITE = """\
name: mnist1d-small
seeds: [0]
datasets:
  - name: mnist1d
models:
  - name: cnn1d
  - name: mlp
    params: {width: 100, depth: 2, residual: true}
methods:
  - dense
  - name: magnitude
    params: {sparsity: 0.5}
recipe:
  epochs: 2
  batch_size: 100
  optimizer: {name: adam, lr: 0.01}
"""


def test_a_suite_on_mnist1d_with_both_paper_models_validates(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE, encoding="utf-8")
    loaded = load_suite(path, load_plugins())
    assert len(loaded.cells) == 4
    assert {cell.model.name for cell in loaded.cells} == {"cnn1d", "mlp"}
    assert {cell.dataset.name for cell in loaded.cells} == {"mnist1d"}


def test_a_suite_feeding_images_to_cnn1d_fails_validation_naming_the_shape(
    tmp_path: Path,
) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.replace("name: mnist1d\n", "name: digits\n"), encoding="utf-8")
    with pytest.raises(SuiteError, match=r"cnn1d expects series shaped"):
        load_suite(path, load_plugins())


def test_cnn1d_learns_mnist1d_in_two_epochs() -> None:
    torch.manual_seed(0)
    model = build(CNN1d())
    recipe = Recipe(epochs=2, batch_size=100, optimizer={"name": "adam", "lr": 0.01}, eval_every=0)
    session = Session(model, Mnist1d().load(Mnist1d.Params()), recipe, seed=0)
    session.train(until="end")
    assert session.evaluate()["accuracy"] > 0.3  # chance is 0.1
