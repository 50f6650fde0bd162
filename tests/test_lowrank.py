"""Low-rank SVD factorization: exactness, Eckart–Young optimality, rank rules and the method."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from pcnbench.api import DataInfo, ParamError, Recipe, select_layers
from pcnbench.counting import count_params
from pcnbench.errors import SuiteError
from pcnbench.session import Session
from pcnbench.suite import load_suite
from pcnbench_plugins.datasets.synthetic import Synthetic
from pcnbench_plugins.lowrank import (
    LowRank,
    LowRankParams,
    RankRule,
    choose_rank,
    default_layers,
    factorize_layer,
    lowrank_layers,
    lowrank_transform,
    parse_rank,
)
from pcnbench_plugins.models.cifar_resnet import ResNet
from pcnbench_plugins.models.mlp import CNN
from tests.conftest import BASE_SUITE

FULL = 10**6  # a fixed rank above any layer's: capped at min(m, n)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def spatial_matrix(w: torch.Tensor) -> torch.Tensor:
    """Jaderberg's rearrangement built column by column: rows (i, y), columns (o, x)."""
    out_channels, _, _, kw = w.shape
    return torch.stack(
        [w[o, :, :, x].reshape(-1) for o in range(out_channels) for x in range(kw)], dim=1
    )


def effective_weight(pair: nn.Sequential, scheme: str) -> torch.Tensor:
    """The single weight the two factor layers compute together."""
    first, second = pair[0].weight.detach(), pair[1].weight.detach()
    if first.dim() == 2:
        return second @ first
    if scheme == "channel":
        out_channels, rank = second.shape[:2]
        return (second.reshape(out_channels, rank) @ first.reshape(rank, -1)).reshape(
            out_channels, first.shape[1], *first.shape[2:]
        )
    # W[o, i, y, x] = Σ_k H[o, k, x] V[k, i, y]
    return torch.einsum("okx,kiy->oiyx", second[:, :, 0, :], first[:, :, :, 0])


CONVS = {
    "3x3_stride2_pad1": dict(kernel_size=3, stride=2, padding=1),
    "3x5_mixed": dict(kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
}


def make_conv(geometry: str, bias: bool, out_channels: int = 6, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(5, out_channels, bias=bias, **CONVS[geometry]).double()


@pytest.mark.parametrize("bias", [True, False])
def test_linear_full_rank_is_exact(bias: bool) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(7, 5, bias=bias).double()
    x = torch.randn(11, 7, dtype=torch.float64)
    done = factorize_layer(layer, FULL)
    first, second = done.module
    assert (first.in_features, first.out_features, first.bias) == (7, 5, None)
    assert (second.in_features, second.out_features) == (5, 5)
    assert (second.bias is not None) == bias
    assert relative_error(done.module(x), layer(x)) < 1e-12


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("geometry", list(CONVS))
@pytest.mark.parametrize("bias", [True, False])
def test_conv_full_rank_is_exact(scheme: str, geometry: str, bias: bool) -> None:
    conv = make_conv(geometry, bias)
    x = torch.randn(3, 5, 9, 10, dtype=torch.float64)
    done = factorize_layer(conv, FULL, scheme)
    expected = conv(x)
    got = done.module(x)
    assert got.shape == expected.shape
    assert relative_error(got, expected) < 1e-5
    assert relative_error(got, expected) < 1e-12  # float64: only rounding is left
    kh, kw = conv.kernel_size
    first, second = done.module
    if scheme == "channel":
        assert done.rank == min(6, 5 * kh * kw)
        assert (first.kernel_size, second.kernel_size) == ((kh, kw), (1, 1))
    else:
        assert done.rank == min(5 * kh, 6 * kw)
        assert (first.kernel_size, second.kernel_size) == ((kh, 1), (1, kw))


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("rank", [1, 3])
def test_conv_rank_r_error_is_the_eckart_young_optimum(scheme: str, rank: int) -> None:
    conv = make_conv("3x5_mixed", bias=True, out_channels=8)
    w = conv.weight.detach()
    matrix = w.reshape(8, -1) if scheme == "channel" else spatial_matrix(w)
    sigma = torch.linalg.svdvals(matrix)
    done = factorize_layer(conv, rank, scheme)
    w_r = effective_weight(done.module, scheme)
    discarded = float(sigma[rank:].square().sum())
    assert done.rank == rank
    assert float((w - w_r).square().sum()) == pytest.approx(discarded, rel=1e-9)
    assert done.energy == pytest.approx(1 - discarded / float(sigma.square().sum()), rel=1e-12)
    # The two layers compute exactly the conv with the truncated weight, bias included.
    x = torch.randn(2, 5, 9, 10, dtype=torch.float64)
    reference = F.conv2d(x, w_r, conv.bias, conv.stride, conv.padding, conv.dilation)
    assert relative_error(done.module(x), reference) < 1e-12


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_linear_rank_r_error_is_the_eckart_young_optimum(rank: int) -> None:
    torch.manual_seed(1)
    layer = nn.Linear(9, 6).double()
    sigma = torch.linalg.svdvals(layer.weight.detach())
    done = factorize_layer(layer, rank)
    error = float((layer.weight.detach() - effective_weight(done.module, "channel")).square().sum())
    assert error == pytest.approx(float(sigma[rank:].square().sum()), rel=1e-9)


def test_factors_split_singular_values_evenly() -> None:
    torch.manual_seed(2)
    layer = nn.Linear(6, 4, bias=False).double()
    done = factorize_layer(layer, 3)
    first, second = done.module
    # √σ on each side: both factors have the same per-component norms, √σ_k.
    expected = done.singular_values[:3].sqrt()
    assert torch.allclose(first.weight.norm(dim=1), expected, rtol=1e-12)
    assert torch.allclose(second.weight.norm(dim=0), expected, rtol=1e-12)


def test_rank_rules_on_a_known_spectrum() -> None:
    sigma = torch.tensor([4.0, 3.0, 2.0, 1.0])  # σ² = 16, 9, 4, 1; total 30
    cases = {
        "e0.5": 1,  # 16/30 = 0.53
        "e0.8": 2,  # 25/30 = 0.83
        "e0.9": 3,  # 29/30 = 0.97
        "e0.9666": 3,
        "e0.97": 4,
        "e1": 4,
        "r0.25": 1,
        "r0.5": 2,
        "r0.51": 3,
        "r1": 4,
        3: 3,
        "2": 2,
        99: 4,
    }
    got = {rule: choose_rank(sigma, rule) for rule in cases}
    assert got == cases
    # 0.28 · 25 is 7.000000000000001 in binary; the ratio rule still gives 7.
    assert choose_rank(torch.ones(25), "r0.28") == 7
    # Exactly 90% of the energy in the first component is enough.
    assert choose_rank(torch.tensor([3.0, 1.0]), "e0.9") == 1
    assert choose_rank(torch.zeros(5), "e0.9") == 1


def test_energy_rule_on_a_layer_with_a_planted_spectrum() -> None:
    torch.manual_seed(3)
    u, _ = torch.linalg.qr(torch.randn(8, 4, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(12, 4, dtype=torch.float64))
    layer = nn.Linear(12, 8, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(u @ torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0]).double()) @ v.T)
    done = factorize_layer(layer, "e0.9")
    assert done.rank == 3
    assert done.energy == pytest.approx(29 / 30, rel=1e-12)


@pytest.mark.parametrize("bad", ["e0", "e1.5", "r0", "r-0.1", "x3", "e", "0", 0, -2, True, 0.5])
def test_parse_rank_rejects_bad_rules(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_rank(bad)  # type: ignore[arg-type]


def test_parse_rank_reads_each_kind() -> None:
    assert parse_rank("e0.9") == RankRule("energy", 0.9)
    assert parse_rank(" r0.25 ") == RankRule("ratio", 0.25)
    assert parse_rank("e1e-1") == RankRule("energy", 0.1)
    assert parse_rank(16) == RankRule("fixed", 16)
    assert parse_rank("16") == RankRule("fixed", 16)


def test_layers_without_saving_stay_dense_and_are_listed() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)
    )
    dense = count_params(model)
    # r0.25 keeps rank 16 of 64 for the 64×64 layer (16·128 = 2048 < 4096: saves) and rank 1 of
    # 4 for the 4×64 head (1·68 = 68 < 256: saves); rank 60 saves nowhere.
    result = lowrank_transform(model, "r0.25", layers=["2", "4"])
    assert [row["name"] for row in result.layers] == ["2", "4"]
    assert result.layers[0] == {
        "name": "2",
        "shape": [64, 64],
        "rank": 16,
        "max_rank": 64,
        "energy": pytest.approx(result.layers[0]["energy"]),
        "params_before": 64 * 64 + 64,
        "params_after": 16 * 64 + 64 * 16 + 64,
    }
    assert 0 < result.layers[0]["energy"] < 1
    assert count_params(result.model) == dense - (4160 - 2112) - (260 - (64 + 4 + 4))
    assert result.skipped == {}
    assert isinstance(model[2], nn.Linear)  # the original is untouched

    result = lowrank_transform(model, 60, layers=["2", "4"])
    assert result.layers == []
    assert result.skipped == {
        "2": "rank 60 of 64 saves no parameters (7,744 factorized ≥ 4,160 dense)",
        "4": "rank 4 of 4 saves no parameters (276 factorized ≥ 260 dense)",
    }
    assert isinstance(result.model[2], nn.Linear)
    assert count_params(result.model) == dense


def test_a_factorization_of_equal_size_stays_dense() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4, bias=False))
    result = lowrank_transform(model, 2, layers=["1"])  # 2 · (4 + 4) = 16 = 4 · 4
    assert result.skipped == {"1": "rank 2 of 4 saves no parameters (16 factorized ≥ 16 dense)"}


def test_spatial_scheme_counts_its_own_factor_sizes() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3, bias=False))
    # Spatial matrix is (16·3) × (32·3); rank 8 → 8·16·3 + 32·8·3 = 1152 < 4608.
    result = lowrank_transform(model, 8, "spatial", layers=["1"])
    (row,) = result.layers
    assert (row["name"], row["rank"], row["max_rank"]) == ("1", 8, 48)
    assert (row["params_before"], row["params_after"]) == (4608, 1152)


def test_grouped_conv_stays_dense_and_is_accounted_for_without_a_warning() -> None:
    model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coverage says it, once per cell, not a warning
        result = lowrank_transform(model, 1, layers=["1", "2"])
    assert result.skipped == {"1": "grouped convolution (groups=2)"}
    assert [row["name"] for row in result.layers] == ["2"]


def test_default_layers_skip_the_first_and_patterns_select() -> None:
    model = ResNet().build(ResNet.Params(), DataInfo((3, 32, 32), 10))
    default = lowrank_layers(model)
    assert default == default_layers(model)
    assert "conv" not in default
    assert default[0] == "blocks.0.conv1"
    assert default[-1] == "blocks.8.conv2"
    assert len(default) == 18 + 2  # 18 block convs and 2 shortcut convs: neither stem nor fc
    chosen = lowrank_layers(model, ["blocks.*.conv2", "fc"])
    assert chosen == select_layers(model, ["blocks.*.conv2", "fc"])
    assert len(chosen) == 10
    assert chosen[-1] == "fc"
    with pytest.raises(
        ParamError, match="pattern 'head' matches no conv, linear or attention layer"
    ) as info:
        lowrank_layers(model, ["head"])
    assert info.value.key == "layers"
    assert "(layers: conv, blocks.0.conv1, blocks.0.conv2, " in info.value.message
    # The transform selects with the same helper, so it fails the same way.
    with pytest.raises(
        ParamError, match="pattern 'head' matches no conv, linear or attention layer"
    ):
        lowrank_transform(model, "e0.9", layers=["blocks.*.conv2", "head"])


def test_check_model_rejects_a_pattern_on_a_meta_model_without_reading_weights() -> None:
    with torch.device("meta"):
        model = ResNet().build(ResNet.Params(), DataInfo((3, 32, 32), 10))
    LowRank().check_model(LowRankParams(layers="blocks.*.conv2, fc"), model)
    LowRank().check_model(LowRankParams(), model)  # the default selection names no pattern
    with pytest.raises(ParamError) as info:
        LowRank().check_model(LowRankParams(layers="fc, blocks.0.conv3"), model)
    assert info.value.key == "layers"
    assert info.value.message.startswith(
        "pattern 'blocks.0.conv3' matches no conv, linear or attention layer; "
        "did you mean 'blocks.0.conv2'? (layers: conv, blocks.0.conv1, "
    )


def test_resnet20_full_rank_is_exact_and_energy_rule_shrinks_it() -> None:
    torch.manual_seed(6)
    model = ResNet().build(ResNet.Params(), DataInfo((3, 32, 32), 10)).double().eval()
    # Non-trivial BatchNorm statistics, so the check covers more than the identity.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    for scheme in ("channel", "spatial"):
        full = lowrank_transform(model, FULL, scheme, layers=["*"], only_if_smaller=False)
        assert len(full.layers) == 22  # the stem conv and fc too
        with torch.no_grad():
            assert relative_error(full.model(x), model(x)) < 1e-10
    dense = count_params(model)
    reduced = lowrank_transform(model, "e0.9")
    assert count_params(reduced.model) < dense
    saved = sum(row["params_before"] - row["params_after"] for row in reduced.layers)
    assert count_params(reduced.model) == dense - saved
    assert all(row["energy"] >= 0.9 for row in reduced.layers)


def test_params_parse_and_normalize() -> None:
    p = LowRankParams(at_epoch=5, rank="e0.90", layers="blocks.*.conv1, fc")
    assert (p.at_epoch, p.rank, p.layers) == (5, "e0.9", ("blocks.*.conv1", "fc"))
    assert LowRankParams(layers=["fc"]).layers == ("fc",)
    assert LowRankParams(rank="16").rank == 16
    assert LowRankParams(finetune_lr=1).finetune_lr == 1.0
    defaults = LowRankParams()
    assert (defaults.at_epoch, defaults.finetune_epochs, defaults.finetune_lr) == (
        "end",
        10,
        "rewind",
    )
    for bad, match in [
        ({"at_epoch": "later"}, "or 'end'"),
        ({"at_epoch": -1}, "or 'end'"),
        ({"at_epoch": True}, "or 'end'"),
        ({"rank": 0.9}, "write e0.9"),
        ({"rank": "f0.5"}, "expected 'e<τ>'"),
        ({"scheme": "depthwise"}, "channel"),
        ({"layers": ""}, "names no layer pattern"),
        ({"layers": [1]}, "comma-separated"),
        ({"finetune_lr": 0}, "'rewind'"),
        ({"finetune_epochs": -1}, "greater than or equal to 0"),
    ]:
        with pytest.raises(ValidationError, match=match):
            LowRankParams(**bad)


def test_check_rejects_settings_that_conflict_with_the_recipe() -> None:
    method, recipe = LowRank(), Recipe(epochs=20)
    method.check(LowRankParams(at_epoch=19), recipe)
    method.check(LowRankParams(at_epoch=0), recipe)
    method.check(LowRankParams(at_epoch="end", finetune_epochs=20), recipe)
    method.check(LowRankParams(at_epoch="end", finetune_epochs=30, finetune_lr=0.01), recipe)
    cases = [
        (dict(at_epoch=20), "at_epoch", "must be < recipe.epochs=20"),
        (dict(at_epoch=5, finetune_epochs=3), "finetune_epochs", "only with at_epoch: end"),
        (dict(at_epoch=0, finetune_lr=0.01), "finetune_lr", "only with at_epoch: end"),
        (dict(finetune_epochs=21), "finetune_epochs", "the recipe has only 20"),
    ]
    for values, key, match in cases:
        with pytest.raises(ParamError, match=match) as info:
            method.check(LowRankParams(**values), recipe)
        assert info.value.key == key


def test_suite_error_points_at_the_offending_value(host, write_suite) -> None:
    text = BASE_SUITE.replace("  - dense", "  - name: lowrank\n    params: {at_epoch: [1, 2]}")
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(text), host)
    error = info.value
    assert error.path == "methods[0].params.at_epoch[1]"
    assert "must be < recipe.epochs=2" in error.message
    assert error.line == text.splitlines().index("    params: {at_epoch: [1, 2]}") + 1


def small_session(epochs: int = 3) -> Session:
    data = Synthetic().load(Synthetic.Params(n_train=64, n_test=32, shape=(1, 8, 8)))
    torch.manual_seed(0)
    model = CNN().build(CNN.Params(width=8), DataInfo((1, 8, 8), 4))
    recipe = Recipe(
        epochs=epochs,
        batch_size=16,
        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
        schedule={"name": "constant"},
        eval_every=0,
    )
    return Session(model, data, recipe, seed=0)


@pytest.mark.parametrize(
    ("at_epoch", "finetune", "epochs_trained"), [(0, 0, 3), (1, 0, 3), ("end", 2, 5), ("end", 0, 3)]
)
def test_method_run_records_a_smaller_model(at_epoch, finetune: int, epochs_trained: int) -> None:
    session = small_session()
    values = {"at_epoch": at_epoch, "rank": "r0.25", "scheme": "channel"}
    if at_epoch == "end":
        values["finetune_epochs"] = finetune
    params = LowRankParams(**values)
    LowRank().check(params, session.recipe)
    LowRank().run(session, params)
    (row,) = session.results
    assert row["params"] < row["dense_params"]
    assert row["transform_epoch"] == (3 if at_epoch == "end" else at_epoch)
    assert row["epochs_trained"] == epochs_trained
    assert row["step"] == epochs_trained * session.steps_per_epoch
    # conv2 (16 × 72) at rank 4; by default the input conv and the classifier stay as they are.
    assert [(r["name"], r["rank"]) for r in row["lowrank_layers"]] == [("conv2", 4)]
    assert row["lowrank_skipped"] == {}
    saved = sum(r["params_before"] - r["params_after"] for r in row["lowrank_layers"])
    assert row["params"] == row["dense_params"] - saved
    assert 0 <= row["acc_before_transform"] <= 1 and 0 <= row["acc_after_transform"] <= 1
    (transform,) = [p for p in session.phases if p.name == "lowrank_factorize"]
    assert transform.kind == "transform"
    assert transform.start_step == (3 if at_epoch == "end" else at_epoch) * session.steps_per_epoch
    assert isinstance(session.model.conv2, nn.Sequential)


def test_spatial_method_run_trains_the_factorized_layers() -> None:
    session = small_session(epochs=2)
    LowRank().run(session, LowRankParams(at_epoch=1, rank=2, scheme="spatial", layers="conv2"))
    (row,) = session.results
    vertical, horizontal = session.model.conv2
    assert (vertical.kernel_size, horizontal.kernel_size) == ((3, 1), (1, 3))
    assert [r["name"] for r in row["lowrank_layers"]] == ["conv2"]
    # 2·8·3 + 16·2·3 weights + 16 bias, instead of 16·8·9 + 16.
    assert row["dense_params"] - row["params"] == (1152 + 16) - (48 + 96 + 16)
    assert math.isfinite(row["test_loss"])
