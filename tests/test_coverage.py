"""Coverage: every parameter tensor is reduced or left dense with a reason, on every layer kind.

Pins, with numbers counted by hand: what magnitude and lottery prune (every conv's and
linear's weight, attention's input projections, an Embedding only when `include` selects it),
that masks hold through real training with params and MACs following the masks, that lowrank
reproduces Conv1d/Conv3d layers exactly at full rank and leaves what it cannot factorize dense
with the reason, and that a tiny ViT runs end to end under every method.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from pcnbench.api import (
    DataInfo,
    ModelPlugin,
    Params,
    Reason,
    Recipe,
    TensorSplits,
    masked_parameters,
)
from pcnbench.counting import count_macs, count_params
from pcnbench.hookspecs import hookimpl
from pcnbench.manager import PluginHost, load_plugins
from pcnbench.runner import Runner
from pcnbench.session import Session
from pcnbench.suite import load_suite
from pcnbench_plugins.lottery import Lottery, LotteryParams
from pcnbench_plugins.lowrank import (
    LowRank,
    LowRankParams,
    lowrank_coverage,
    lowrank_transform,
)
from pcnbench_plugins.magnitude import Magnitude, MagnitudeParams
from pcnbench_plugins.pruning import (
    attach_masks,
    current_weights,
    magnitude_masks,
    prunable_weights,
    pruning_coverage,
)
from tests.nets import vision_transformer

FULL = 10**6  # a fixed rank above any layer's: capped at min(m, n), so exact

# ---------------------------------------------------------------------------------------------
# 1. Every layer kind: what pruning reduces and why it leaves the rest dense


class Head(nn.Linear):
    """A Linear subclass: pruned (and counted) like any Linear."""


class Zoo(nn.Module):
    """One layer of every kind; only its parameters matter here (no forward pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(2, 4, 3)  # weight 4·2·3 = 24, bias 4
        self.conv2d = nn.Conv2d(4, 8, 3)  # 8·4·9 = 288, bias 8
        self.bn = nn.BatchNorm2d(8)  # weight 8, bias 8
        self.depthwise = nn.Conv2d(8, 8, 3, groups=8)  # 8·1·9 = 72, bias 8
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)  # (in 8, out 4, 2, 2) = 128, bias 4
        self.conv3d = nn.Conv3d(4, 2, 3)  # 2·4·27 = 216, bias 2
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        # in_proj_weight 48·16 = 768, in_proj_bias 48; out_proj (a Linear) 16·16 = 256, bias 16
        self.cross = nn.MultiheadAttention(16, 2, kdim=8, vdim=6, batch_first=True)
        # q/k/v_proj_weight 16·16 + 16·8 + 16·6 = 480, in_proj_bias 48; out_proj 256, bias 16
        self.ln = nn.LayerNorm(16)  # weight 16, bias 16
        self.embed = nn.Embedding(10, 16)  # 160
        self.fc = nn.Linear(16, 12)  # 192, bias 12
        self.head = Head(12, 5)  # 60, bias 5


ZOO_TOTAL = 3119
ZOO_PRUNED = {  # qualified name → size of every weight magnitude and lottery prune by default
    "conv1d.weight": 4 * 2 * 3,
    "conv2d.weight": 8 * 4 * 3 * 3,
    "depthwise.weight": 8 * 1 * 3 * 3,
    "up.weight": 8 * 4 * 2 * 2,
    "conv3d.weight": 2 * 4 * 3 * 3 * 3,
    "attn.in_proj_weight": 3 * 16 * 16,
    "attn.out_proj.weight": 16 * 16,
    "cross.q_proj_weight": 16 * 16,
    "cross.k_proj_weight": 16 * 8,
    "cross.v_proj_weight": 16 * 6,
    "cross.out_proj.weight": 16 * 16,
    "fc.weight": 16 * 12,
    "head.weight": 12 * 5,
}
ZOO_DENSE = {  # and every other tensor, with its reason
    "conv1d.bias": Reason.BIAS,
    "conv2d.bias": Reason.BIAS,
    "bn.weight": Reason.NORMALIZATION,
    "bn.bias": Reason.BIAS,
    "depthwise.bias": Reason.BIAS,
    "up.bias": Reason.BIAS,
    "conv3d.bias": Reason.BIAS,
    "attn.in_proj_bias": Reason.BIAS,
    "attn.out_proj.bias": Reason.BIAS,
    "cross.in_proj_bias": Reason.BIAS,
    "cross.out_proj.bias": Reason.BIAS,
    "ln.weight": Reason.NORMALIZATION,
    "ln.bias": Reason.BIAS,
    "embed.weight": Reason.EMBEDDING,
    "fc.bias": Reason.BIAS,
    "head.bias": Reason.BIAS,
}


def zoo(seed: int = 0) -> Zoo:
    torch.manual_seed(seed)
    return Zoo()


def reasons(account: Any) -> dict[str, str]:
    return {row.name: row.reason for row in account.left_dense()}


def test_the_zoo_counts_add_up() -> None:
    model = zoo()
    assert sum(p.numel() for p in model.parameters()) == ZOO_TOTAL
    assert sum(ZOO_PRUNED.values()) == 24 + 288 + 72 + 128 + 216 + 768 + 256 + 480 + 256 + 192 + 60
    assert sum(ZOO_PRUNED.values()) == 2740
    biases = 4 + 8 + 8 + 8 + 4 + 2 + 48 + 16 + 48 + 16 + 16 + 12 + 5  # bn and ln biases too
    counted = 2740 + biases + (8 + 16) + 160  # + norm scales + the embedding
    assert counted == ZOO_TOTAL


def test_prunable_weights_are_every_conv_linear_and_attention_projection() -> None:
    weights = prunable_weights(zoo())
    assert list(weights) == [
        "conv1d",
        "conv2d",
        "depthwise",
        "up",
        "conv3d",
        "attn.in_proj_weight",
        "attn.out_proj",
        "cross.q_proj_weight",
        "cross.k_proj_weight",
        "cross.v_proj_weight",
        "cross.out_proj",
        "fc",
        "head",
    ]
    assert [p.qualified for p in weights.values()] == list(ZOO_PRUNED)
    sizes = {p.qualified: getattr(p.module, p.param_name).numel() for p in weights.values()}
    assert sizes == ZOO_PRUNED


@pytest.mark.parametrize("method", ["magnitude", "lottery"])
def test_pruning_coverage_of_every_layer_kind(method: str) -> None:
    account = pruning_coverage(zoo(), method)
    assert account.total == ZOO_TOTAL
    assert account.reduced == 2740
    assert account.fraction == 2740 / 3119
    assert reasons(account) == ZOO_DENSE
    assert all(account.reason(name) is None for name in ZOO_PRUNED)
    columns = account.columns()
    assert columns["coverage"] == 2740 / 3119
    # 16 tensors left dense: all listed (≤ 20), the largest first, the embedding at the top
    assert len(columns["left_dense"]) == 16
    assert columns["left_dense"][0] == {
        "tensor": "embed.weight",
        "params": 160,
        "reason": Reason.EMBEDDING,
    }
    assert sum(row["params"] for row in columns["left_dense"]) == 3119 - 2740


@pytest.mark.parametrize("method", ["magnitude", "lottery"])
def test_include_selects_the_embedding_and_exclude_leaves_layers_dense_by_pattern(
    method: str,
) -> None:
    model = zoo()
    included = pruning_coverage(model, method, include=("embed",))
    assert included.reduced == 2740 + 10 * 16
    assert included.reason("embed.weight") is None
    assert "embed" in prunable_weights(model, include=("embed",))
    assert reasons(included) == {k: v for k, v in ZOO_DENSE.items() if k != "embed.weight"}

    excluded = pruning_coverage(model, method, exclude=("fc", "attn"))
    assert excluded.reduced == 2740 - 192 - 768  # attn.out_proj is a layer of its own
    assert excluded.reason("fc.weight") == Reason.PATTERN
    assert excluded.reason("attn.in_proj_weight") == Reason.PATTERN
    assert excluded.reason("fc.bias") == Reason.BIAS  # a bias keeps its conventional reason
    assert excluded.reason("attn.out_proj.weight") is None
    assert [row.name for row in excluded.unexplained()] == []  # all routine reasons


@pytest.mark.parametrize(
    ("method", "params"),
    [
        (Magnitude(), MagnitudeParams(sparsity=0.8, include="embed", exclude="head")),
        (Lottery(), LotteryParams(levels=3, include="embed", exclude="head")),
    ],
    ids=["magnitude", "lottery"],
)
def test_plan_coverage_counts_the_same_on_a_meta_model(method: Any, params: Any) -> None:
    with torch.device("meta"):
        model = Zoo()
    account = method.plan_coverage(params, model, (2, 8))
    assert account.method == method.name
    assert account.reduced == 2740 + 160 - 60
    assert account.fraction == (2740 + 160 - 60) / 3119
    expected = {k: v for k, v in ZOO_DENSE.items() if k != "embed.weight"}
    assert reasons(account) == {**expected, "head.weight": Reason.PATTERN}
    # the same as on a real model
    assert reasons(method.plan_coverage(params, zoo(), (2, 8))) == reasons(account)


# ---------------------------------------------------------------------------------------------
# 2. Masks hold through training, and params and MACs follow them


def recipe(epochs: int = 2) -> Recipe:
    return Recipe(
        epochs=epochs,
        batch_size=16,  # 48 samples: 3 steps per epoch
        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
        weight_decay=1e-2,  # moves pruned weights off zero unless the mask is re-applied
        eval_every=0,
    )


def splits(shape: tuple[int, ...], n: int = 48, seed: int = 0) -> TensorSplits:
    """`n` random training and 16 test samples of `shape`, 4 classes, per-channel stats."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n + 16, *shape, generator=g)
    y = torch.randint(0, 4, (n + 16,), generator=g)
    channels = shape[0]
    return TensorSplits(x[:n], y[:n], x[n:], y[n:], (0.5,) * channels, (0.25,) * channels)


def conv1d_net(seed: int = 0) -> nn.Sequential:
    """Input (1, 20): Conv1d 1→8 k5 s2 p1 (length 9), 8→8 k3 s2 p1 (length 5), Linear 40→4."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(1, 8, 5, stride=2, padding=1),  # 40 weights, 8 bias
        nn.ReLU(),
        nn.Conv1d(8, 8, 3, stride=2, padding=1),  # 192 weights, 8 bias
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(40, 4),  # 160 weights, 4 bias
    )


class AttentionNet(nn.Module):
    """Input (4 tokens, 8 wide): self-attention (2 heads), then Linear 32→4 on the flattened."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)  # 192 + 24, out 64 + 8
        self.fc = nn.Linear(32, 4)  # 128 + 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.fc(y.flatten(1))


def attention_net(seed: int = 0) -> AttentionNet:
    torch.manual_seed(seed)
    return AttentionNet()


def kept(model: nn.Module) -> dict[str, int]:
    """Weights each mask keeps, by qualified parameter name."""
    return {
        f"{m.module_name}.{m.param_name}": int(m.mask.count_nonzero())
        for m in masked_parameters(model)
    }


def run_magnitude(model: nn.Module, shape: tuple[int, ...]) -> tuple[Session, dict[str, Any]]:
    session = Session(model, splits(shape), recipe(), seed=0, measure_inference=False)
    Magnitude().run(session, MagnitudeParams(sparsity=0.8, finetune_epochs=1))
    return session, session.results[-1]


def assert_masked_weights_are_zero(model: nn.Module) -> None:
    masked = list(masked_parameters(model))
    assert masked
    for m in masked:
        assert int(m.param[m.mask == 0].count_nonzero()) == 0, m.module_name
        # the kept ones trained on (momentum and weight decay moved every one of them)
        assert int(m.param[m.mask == 1].count_nonzero()) == int(m.mask.sum()), m.module_name


def test_magnitude_masks_hold_through_training_a_conv1d_network() -> None:
    session, row = run_magnitude(conv1d_net(), (1, 20))
    assert row["epochs_trained"] == 2 + 1
    model = session.model
    assert_masked_weights_are_zero(model)
    counts = kept(model)
    assert list(counts) == ["0.weight", "2.weight", "5.weight"]
    assert sum(counts.values()) == 392 - round(0.8 * 392) == 78  # 40 + 192 + 160 weights
    assert row["params"] == 78 + (8 + 8 + 4) == 98
    assert row["dense_params"] == 392 + 20
    assert row["density"] == 78 / 392
    assert row["model_density"] == 98 / 412
    assert row["coverage"] == 392 / 412
    assert [r["tensor"] for r in row["left_dense"]] == ["0.bias", "2.bias", "5.bias"]
    # MACs per sample: each weight once per output position, scaled by its layer's density
    assert row["dense_macs"] == 8 * 1 * 5 * 9 + 8 * 8 * 3 * 5 + 40 * 4 == 1480
    k0, k2, k5 = counts.values()
    assert row["macs"] == 9 * k0 + 5 * k2 + 1 * k5
    assert row["macs"] == count_macs(model, (1, 20))


def test_magnitude_masks_hold_through_training_multihead_attention() -> None:
    session, row = run_magnitude(attention_net(), (4, 8))
    model = session.model
    assert_masked_weights_are_zero(model)
    counts = kept(model)
    assert list(counts) == ["attn.in_proj_weight", "attn.out_proj.weight", "fc.weight"]
    assert sum(counts.values()) == 384 - round(0.8 * 384) == 77  # 192 + 64 + 128 weights
    assert row["params"] == 77 + (24 + 8 + 4) == 113
    assert row["dense_params"] == 384 + 36
    assert row["density"] == 77 / 384
    # MACs per sample (4 tokens, width 8, 2 heads of 4): the fused input projection 4·8·24,
    # q·kᵀ and attention·v 2·4·4·4 each, the output projection 4·8·8 and the head 32·4
    assert row["dense_macs"] == 768 + 128 + 128 + 256 + 128 == 1408
    k_in, k_out, k_fc = counts.values()
    assert row["macs"] == 4 * k_in + 256 + 4 * k_out + k_fc
    assert row["macs"] == count_macs(model, (4, 8))


# ---------------------------------------------------------------------------------------------
# 3. lowrank: Conv1d and Conv3d exact at full rank; what it cannot factorize, and why


def conv3d_net(seed: int = 0) -> nn.Sequential:
    """Input (2, 4, 4, 4): Conv3d 2→6 k3 p1, 6→8 k3 s2 p1 (2×2×2), Linear 64→4."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv3d(2, 6, 3, padding=1),  # 324 weights, 6 bias
        nn.ReLU(),
        nn.Conv3d(6, 8, 3, stride=2, padding=1),  # 1296 weights, 8 bias
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 4),  # 256 weights, 4 bias
    )


@pytest.mark.parametrize(
    ("build", "shape", "ranks"),
    [(conv1d_net, (1, 20), [5, 8, 4]), (conv3d_net, (2, 4, 4, 4), [6, 8, 4])],
    ids=["conv1d", "conv3d"],
)
def test_lowrank_full_rank_reproduces_conv1d_and_conv3d_networks(
    build: Any, shape: tuple[int, ...], ranks: list[int]
) -> None:
    model = build().double().eval()
    x = torch.randn(5, *shape, dtype=torch.float64)
    result = lowrank_transform(
        model, FULL, layers=["0", "2", "5"], only_if_smaller=False, input_shape=shape
    )
    assert [(r["name"], r["rank"], r["max_rank"]) for r in result.layers] == [
        (name, rank, rank) for name, rank in zip(["0", "2", "5"], ranks, strict=True)
    ]
    assert result.skipped == {}
    assert all(isinstance(result.model[i], nn.Sequential) for i in (0, 2, 5))
    with torch.no_grad():
        expected, got = model(x), result.model.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    account = lowrank_coverage(model, ["0", "2", "5"], result)
    assert account.reduced == sum(model[i].weight.numel() for i in (0, 2, 5))


def test_lowrank_rank_2_shrinks_conv1d_and_conv3d_networks_by_a_hand_count() -> None:
    one = conv1d_net()
    result = lowrank_transform(one, 2, layers=["0", "2", "5"], input_shape=(1, 20))
    # conv 1→8 k5: 1·2·5 + 2·8 + 8 = 34 for 48; conv 8→8 k3: 8·2·3 + 2·8 + 8 = 72 for 200;
    # linear 40→4: 40·2 + 2·4 + 4 = 92 for 164
    assert [(r["params_before"], r["params_after"]) for r in result.layers] == [
        (48, 34),
        (200, 72),
        (164, 92),
    ]
    assert count_params(one) == 412
    assert count_params(result.model) == 34 + 72 + 92
    first, second = result.model[2]
    assert isinstance(first, nn.Conv1d) and isinstance(second, nn.Conv1d)
    assert (first.kernel_size, first.stride, first.padding) == ((3,), (2,), (1,))
    assert second.kernel_size == (1,)

    three = conv3d_net()
    result = lowrank_transform(three, 2, layers=["2"], input_shape=(2, 4, 4, 4))
    # conv 6→8 k3: 6·2·27 + 2·8 + 8 = 348 for 1304
    assert [(r["params_before"], r["params_after"]) for r in result.layers] == [(1304, 348)]
    assert count_params(three) == 330 + 1304 + 260
    assert count_params(result.model) == 330 + 348 + 260
    first, second = result.model[2]
    assert isinstance(first, nn.Conv3d) and second.kernel_size == (1, 1, 1)


class Mixed(nn.Module):
    """Input (3, 8, 8): what lowrank cannot factorize, between a stem and a head it leaves."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)  # 216 + 8
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # 72 + 8
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)  # 128 + 4 → (4, 16, 16)
        self.pool = nn.AdaptiveAvgPool2d(2)  # (4, 2, 2): 4 tokens of width 4
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)  # 48 + 12, out_proj 16 + 4
        self.mid = nn.Linear(16, 16)  # 256 + 16
        self.head = nn.Linear(16, 10)  # 160 + 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.up(self.depthwise(self.stem(x))))
        tokens = x.flatten(2).transpose(1, 2)
        y, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return self.head(torch.relu(self.mid(y.flatten(1))))


ATTENTION = (
    "attention's input projection is computed inside MultiheadAttention's own forward "
    "(fused, or by a single kernel), which a factorized pair of layers cannot replace"
)
MIXED_DENSE = {
    "stem.weight": "first layer (reads the network input; left dense by default)",
    "depthwise.weight": "grouped convolution (groups=8)",
    "up.weight": "ConvTranspose2d: not supported by lowrank",
    "attn.in_proj_weight": ATTENTION,
    "attn.out_proj.weight": Reason.NOT_CALLED,
    "head.weight": "last layer (makes the logits; left dense by default)",
}


def test_lowrank_leaves_attention_grouped_transposed_and_uncalled_layers_dense() -> None:
    torch.manual_seed(0)
    model = Mixed()
    result = lowrank_transform(model, 4, input_shape=(3, 8, 8))
    assert result.skipped == {
        "depthwise": "grouped convolution (groups=8)",
        "up": "ConvTranspose2d: not supported by lowrank",
        "attn": ATTENTION,
        "attn.out_proj": Reason.NOT_CALLED,
    }
    # mid, 16×16 at rank 4: 16·4 + 4·16 + 16 = 144 for 272
    assert [(r["name"], r["params_before"], r["params_after"]) for r in result.layers] == [
        ("mid", 272, 144)
    ]
    assert count_params(result.model) == count_params(model) - 128
    account = lowrank_coverage(model, None, result)
    assert account.total == 224 + 80 + 132 + 80 + 272 + 170 == 958
    assert account.reduced == 256
    assert account.fraction == 256 / 958
    left = reasons(account)
    assert {name: left[name] for name in MIXED_DENSE} == MIXED_DENSE
    assert set(left) - set(MIXED_DENSE) == {n for n, _ in model.named_parameters() if "bias" in n}
    # at validation, on the meta device, the plan gives every tensor the same reason
    with torch.device("meta"):
        meta = Mixed()
    planned = LowRank().plan_coverage(LowRankParams(rank=4), meta, (3, 8, 8))
    assert (planned.reduced, reasons(planned)) == (256, left)


# ---------------------------------------------------------------------------------------------
# 4. A tiny ViT end to end under every method, through the runner


def tiny_vit(num_classes: int = 10) -> nn.Module:
    """torchvision's ViT at 42,282 parameters."""
    return vision_transformer(num_classes=num_classes)


# conv_proj 32·3·16·16 = 24,576; per encoder layer in_proj 96·32 = 3,072, out_proj 32·32 =
# 1,024, mlp 64·32 + 32·64 = 4,096; head 10·32 = 320: every one pruned by magnitude and lottery
VIT_TOTAL = 42282
VIT_PRUNED = 24576 + 2 * (3072 + 1024 + 4096) + 320
VIT_REST = VIT_TOTAL - VIT_PRUNED  # biases, norms, class token, position embedding


def small_vit() -> nn.Module:
    """Two ViT-B-shaped blocks at width 192 (ViT-Ti's): weights are 99.4% of the model."""
    return vision_transformer(width=192, heads=3, mlp=768)


class TinyVit(ModelPlugin):
    """The tiny ViT as a model a suite names."""

    name = "tiny_vit"
    Params = Params

    def build(self, params: Params, info: DataInfo) -> nn.Module:
        """A tiny ViT for 3×32×32 images."""
        return tiny_vit(info.num_classes)


class TinyVitPlugin:
    """Registers `tiny_vit` in code."""

    @hookimpl
    def register_models(self, register: Any) -> None:
        """Register the tiny ViT."""
        register(TinyVit())


@pytest.fixture(scope="module")
def vit_host() -> PluginHost:
    return load_plugins(extra=[("tiny-vit", TinyVitPlugin())])


VIT_SUITE = """\
name: coverage-vit
seeds: [0]
datasets:
  - name: synthetic
    params: {{n_train: 64, n_test: 32, shape: [[3, 32, 32]], classes: 10}}
models:
  - tiny_vit
methods:
  - {method}
recipe:
  epochs: 2
  batch_size: 16
  optimizer: {{name: sgd, lr: 0.05}}
"""
VIT_METHODS = {
    "dense": "dense",
    "magnitude": "name: magnitude\n    params: {sparsity: 0.8, finetune_epochs: 1}",
    "lottery": "name: lottery\n    params: {levels: 1}",
    "lowrank": "name: lowrank\n    params: {rank: r0.5, finetune_epochs: 1}",
    "pcn": "name: pcn\n    params: {at_epoch: 1, keep: f0.5, calibration: 64}",
}


def run_vit(host: PluginHost, tmp_path: Path, method: str) -> list[dict[str, Any]]:
    suite = tmp_path / "suite.yaml"
    suite.write_text(VIT_SUITE.format(method=VIT_METHODS[method]), encoding="utf-8")
    loaded = load_suite(suite, host)
    summary = Runner(loaded, host, output=tmp_path / "out", metering=False).run()
    with sqlite3.connect(tmp_path / "out" / "results.db") as db:
        db.row_factory = sqlite3.Row
        query = "SELECT r.*, c.status, c.error FROM cells c LEFT JOIN results r USING (cell_id)"
        rows = [dict(row) for row in db.execute(query)]
    assert not summary.failed, [row["error"] for row in rows]
    return rows


@pytest.mark.parametrize(
    "method",
    [
        "dense",
        "magnitude",
        "lottery",
        "lowrank",
        # pcn runs through its public method only (it is being extended to Conv1d and to never
        # growing a layer); it passed when this was written: params ≤ dense, coverage stored.
        "pcn",
    ],
)
def test_tiny_vit_runs_end_to_end_with_a_stored_coverage(
    vit_host: PluginHost, tmp_path: Path, method: str
) -> None:
    (row,) = run_vit(vit_host, tmp_path, method)
    assert (row["status"], row["error"]) == ("done", None)
    assert row["dense_params"] == VIT_TOTAL
    assert row["params"] <= row["dense_params"]
    if method == "dense":
        assert row["params"] == VIT_TOTAL
        return
    left = json.loads(row["left_dense"])
    assert left and all(set(r) == {"tensor", "params", "reason"} for r in left)
    assert 0 < row["coverage"] <= 1
    # every parameter is either reduced or listed (one by one, or summed up by reason)
    assert round(row["coverage"] * VIT_TOTAL) + sum(r["params"] for r in left) == VIT_TOTAL
    if method in ("magnitude", "lottery"):
        assert row["coverage"] == VIT_PRUNED / VIT_TOTAL  # 41,280 of 42,282
    if method == "magnitude":
        # 80% of the pruned tensors go: 8,256 of 41,280 weights stay, exactly 0.2
        assert row["density"] == 0.2
        # the whole model keeps the 1,002 dense rest too (2.4% of it here, not small)
        assert row["model_density"] == (8256 + VIT_REST) / VIT_TOTAL
        assert row["params"] == 8256 + VIT_REST == 9258
        assert abs(row["model_density"] - 0.2) <= 0.01 + VIT_REST / VIT_TOTAL
    if method == "lottery":
        assert row["density"] == (VIT_PRUNED - 8256) / VIT_PRUNED == 0.8  # one level of 20%
        assert row["params"] == VIT_PRUNED - 8256 + VIT_REST
    if method == "lowrank":
        # r0.5 on both MLP linears of both layers (the default leaves conv_proj and the head):
        # 32→64 at rank 16 holds 32·16 + 16·64 + 64 = 1,600 for 2,112; 64→32 at rank 16 holds
        # 64·16 + 16·32 + 32 = 1,568 for 2,080: 1,024 fewer per layer
        assert row["coverage"] == 2 * 4096 / VIT_TOTAL
        assert row["params"] == VIT_TOTAL - 2 * 1024
        by_tensor = {r["tensor"]: r["reason"] for r in left}
        attention = "encoder.layers.encoder_layer_0.self_attention"
        assert by_tensor[f"{attention}.in_proj_weight"] == ATTENTION
        assert by_tensor[f"{attention}.out_proj.weight"] == Reason.NOT_CALLED


# ---------------------------------------------------------------------------------------------
# 5. Global magnitude pruning of real architectures, attention included


@pytest.mark.parametrize(
    ("build", "pruned", "weights"),
    [
        # 1,528,106 params, 1,512,072 of them in 54 pruned weights; after pruning 318,448:
        # params_after / params_before = 0.2084
        (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), 1512072, 54),
        # 42,282 params, 41,280 pruned in 10 weights; after 9,258: ratio 0.2190
        (tiny_vit, VIT_PRUNED, 10),
        # a small ViT of ViT-B's proportions (2 blocks of width 192): 1,040,842 params, weights
        # 99.4% of them, as in ViT-B/16 (99.9%)
        (lambda: small_vit(), 1034112, 10),
    ],
    ids=["mobilenet_v3_small", "tiny_vit", "small_vit"],
)
def test_global_magnitude_keeps_a_fifth_of_every_pruned_tensor_set(
    build: Any, pruned: int, weights: int
) -> None:
    torch.manual_seed(0)
    model = build()
    before = count_params(model)
    layers = prunable_weights(model)
    assert len(layers) == weights
    assert sum(w.numel() for w in current_weights(layers).values()) == pruned
    attach_masks(layers, magnitude_masks(current_weights(layers), 0.8, "global"))
    counts = kept(model)
    assert len(counts) == weights
    assert sum(counts.values()) / pruned == pytest.approx(0.2, abs=0.01)
    assert sum(counts.values()) == pruned - round(0.8 * pruned)
    after = count_params(model)
    assert after == before - round(0.8 * pruned)
    assert pruning_coverage(model, "magnitude").reduced == pruned
    if build is not tiny_vit:  # weights are nearly all of the model: the whole keeps a fifth
        assert after / before == pytest.approx(0.2, abs=0.01)
    if build is tiny_vit:
        assert (before, after) == (42282, 9258)
        # attention's fused input projection is masked too (it was not, before the fix)
        for i in (0, 1):
            name = f"encoder.layers.encoder_layer_{i}.self_attention.in_proj_weight"
            assert name in counts and counts[name] < 3072
            attention = model.get_submodule(name.rsplit(".", 1)[0])
            assert attention.in_proj_weight_mask.shape == (96, 32)


class TiedLM(nn.Module):
    """An embedding whose weight the decoder shares (tied weights, as language models do)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.mid = nn.Linear(16, 16)
        self.decoder = nn.Linear(16, 50, bias=False)
        self.decoder.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.relu(self.mid(self.embed(x))))


def test_a_tied_weight_is_pruned_once_with_one_mask() -> None:
    torch.manual_seed(0)
    model = TiedLM()
    weights = prunable_weights(model, include=("embed",))
    assert list(weights) == ["embed", "mid"]  # the decoder's weight is the embedding's
    masks = magnitude_masks(current_weights(weights), 0.8, "global")
    attach_masks(weights, masks)
    unique = 50 * 16 + 16 * 16
    kept = unique - round(0.8 * unique)
    assert sum(int(m.sum()) for m in masks.values()) == kept
    assert (
        int(torch.count_nonzero(model.embed.weight)) + int(torch.count_nonzero(model.mid.weight))
        == kept
    )
    assert count_params(model) == kept + 16  # the mid bias stays dense
    account = pruning_coverage(model, "magnitude", include=("embed",))
    assert account.total == unique + 16 and account.reduced == unique


def test_a_vits_position_embedding_and_class_token_are_left_dense_by_convention() -> None:
    account = pruning_coverage(tiny_vit(), "magnitude")
    assert account.reason("class_token") == Reason.TOKEN
    assert account.reason("encoder.pos_embedding") == Reason.TOKEN
    assert not [row for row in account.unexplained() if "token" in row.name or "pos" in row.name]


def test_pcn_undersampled_layers_reach_the_user_as_one_warning_line_per_cell(
    vit_host: PluginHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite.yaml"
    # 8 samples × 5 tokens = 40 rows: short for the MLPs' second layers (64 wide); the head
    # reads the class token alone, 8 rows of 32
    method = "name: pcn\n    params: {at_epoch: 1, keep: f0.5, calibration: 8, grow: true}"
    suite.write_text(VIT_SUITE.format(method=method), encoding="utf-8")
    from pcnbench.orchestration import run

    result = run(
        suite, output=tmp_path / "out", meter=False, report=False, verbose=True, host=vit_host
    )
    assert result.ok
    loaded = load_suite(suite, vit_host)
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "calibration samples" in line]
    (cell,) = loaded.cells
    assert said == [
        f"warning: {cell.label}: pcn: 3 layers saw fewer calibration samples than input features "
        "(encoder.layers.encoder_layer_0.mlp.3, encoder.layers.encoder_layer_1.mlp.3, heads.head)"
        ": only the top n − 1 components of n samples are determined by the data; calibrate "
        "with more samples"
    ], err
    assert "UserWarning" not in err
    assert [w for w in result.warnings if "calibration samples" in w] == said
    with sqlite3.connect(tmp_path / "out" / "results.db") as db:
        (stored,) = db.execute("SELECT warnings FROM cells").fetchone()
    assert json.loads(stored) == [said[0].split(": ", 2)[2]]


MOBILENET_SUITE = """\
name: coverage-plan
seeds: [0]
datasets:
  - name: synthetic
    params: {n_train: 64, n_test: 32, shape: [[3, 32, 32]], classes: 10}
models:
  - torchvision:mobilenet_v3_small
methods:
  - dense
  - name: pcn
    params: {at_epoch: 1, keep: f0.5}
  - name: magnitude
    params: {sparsity: 0.8, exclude: "classifier.*"}
  - name: lowrank
    params: {rank: r0.5, finetune_epochs: 1}
recipe:
  epochs: 2
  batch_size: 16
  optimizer: {name: sgd, lr: 0.05}
"""


def test_validate_prints_each_methods_share_and_warns_once_per_model_and_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcnbench.cli import main

    monkeypatch.delenv("COLUMNS", raising=False)  # a pipe: lines whole
    suite = tmp_path / "suite.yaml"
    suite.write_text(MOBILENET_SUITE, encoding="utf-8")
    assert main(["validate", str(suite)]) == 0
    out, err = capsys.readouterr()
    # pcn: as the transform finds it (tests/test_pcn_layers.py); magnitude: the 1,512,072
    # pruned weights but the classifier's 576·1024 + 1024·10 = 599,040, so 913,032 of 1,528,106
    assert "  torchvision:mobilenet_v3_small, pcn: 67.8% of 1,528,106\n" in out
    assert "  torchvision:mobilenet_v3_small, magnitude: 59.7% of 1,528,106\n" in out
    assert "  torchvision:mobilenet_v3_small, lowrank: up to 94.4% of 1,528,106\n" in out
    (warning,) = err.splitlines()  # the classifier's exclusion is the suite's own: no warning
    assert warning.startswith(
        "warning: torchvision:mobilenet_v3_small, pcn will leave 32.2% of the model's "
        "parameters dense beyond the suite's patterns: 27.3% would add parameters: 21 tensors, "
        "the largest features.10.block.2.fc1.weight (82,944); 3.8% grouped convolution: "
    ), warning
