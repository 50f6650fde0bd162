"""PCN on every layer type: Conv1d/Conv3d exactness, layers left dense, growth and coverage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from pcnbench.api import Coverage, Reason
from pcnbench.counting import count_params
from pcnbench.recipe import Recipe
from pcnbench.session import Session
from pcnbench_plugins.datasets.synthetic import Synthetic
from pcnbench_plugins.pcn import PCN, PCAConv, PCAConv2d, PCALinear, PCNParams, pcn_transform
from pcnbench_plugins.pcn.layers import unsupported
from pcnbench_plugins.pcn.plan import ATTENTION, account
from tests.nets import vision_transformer

pytestmark = pytest.mark.filterwarnings(
    "ignore:pcn.*fewer calibration samples than input features:UserWarning"
)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# An independent Conv1d PCN layer: pad the raw input as the layer would, project every
# position onto the top-k principal components (numpy, float64) and reconstruct it, then
# apply the original kernel by explicit sliding windows.

NUMPY_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def border(conv: nn.Conv1d) -> tuple[int, int]:
    """(left, right) padding of a Conv1d, from its constructor arguments."""
    if conv.padding == "valid":
        return 0, 0
    if conv.padding == "same":
        total = conv.kernel_size[0] - 1
        return total // 2, total - total // 2
    return conv.padding[0], conv.padding[0]


def reference_conv1d(conv: nn.Conv1d, calibration: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """`conv` applied to its padded input projected onto the calibration's top-k components."""
    rows = calibration.transpose(0, 2, 1).reshape(-1, calibration.shape[1])
    mu = rows.mean(0)
    values, vectors = np.linalg.eigh(np.cov(rows, rowvar=False))
    v = vectors[:, np.argsort(values)[::-1][:k]]
    left, right = border(conv)
    padded = np.pad(x, ((0, 0), (0, 0), (left, right)), mode=NUMPY_MODES[conv.padding_mode])
    centered = padded - mu[None, :, None]
    projected = np.einsum("ck,nct->nkt", v, centered)
    reconstructed = np.einsum("ck,nkt->nct", v, projected) + mu[None, :, None]
    w = conv.weight.detach().numpy()
    b = np.zeros(w.shape[0]) if conv.bias is None else conv.bias.detach().numpy()
    (size,), (stride,) = conv.kernel_size, conv.stride
    steps = (reconstructed.shape[2] - size) // stride + 1
    out = np.empty((x.shape[0], w.shape[0], steps))
    for t in range(steps):
        window = reconstructed[:, :, t * stride : t * stride + size]
        out[:, :, t] = np.einsum("ocj,ncj->no", w, window) + b
    return out


CONV1D_CASES = {
    "k3_p1": dict(kernel_size=3, padding=1),
    "k5_s2_p2_nobias": dict(kernel_size=5, stride=2, padding=2, bias=False),
    "k4_same": dict(kernel_size=4, padding="same"),
    "k3_same_reflect": dict(kernel_size=3, padding="same", padding_mode="reflect"),
    "k3_s3_valid": dict(kernel_size=3, stride=3, padding="valid"),
    "k1_s2": dict(kernel_size=1, stride=2),
    "k3_s2_tuple_replicate": dict(kernel_size=3, stride=2, padding=(2,), padding_mode="replicate"),
    "k5_p2_circular": dict(kernel_size=5, padding=2, padding_mode="circular"),
    "k4_s2_p3_reflect": dict(kernel_size=4, stride=2, padding=3, padding_mode="reflect"),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note
@pytest.mark.parametrize("case", list(CONV1D_CASES))
def test_conv1d_transform_matches_an_independent_implementation(case: str) -> None:
    torch.manual_seed(0)
    target = nn.Conv1d(6, 5, **CONV1D_CASES[case])
    model = nn.Sequential(nn.Conv1d(2, 6, 3, padding=1), nn.Tanh(), target).double().eval()
    g = torch.Generator().manual_seed(1)
    calibration = torch.randn(40, 2, 12, dtype=torch.float64, generator=g) + 0.5
    x = torch.randn(5, 2, 12, dtype=torch.float64, generator=g)
    new, report = pcn_transform(model, [calibration[:25], calibration[25:]], keep="d3", grow=True)
    assert isinstance(new[2], PCAConv) and (report.layers["2"].d, report.layers["2"].k) == (6, 3)
    with torch.no_grad():
        inputs = model[1](model[0](torch.cat([calibration, x])))
        got, dense = new[2](inputs[40:]), target(inputs[40:])
    want = reference_conv1d(target, inputs[:40].numpy(), inputs[40:].numpy(), k=3)
    assert got.shape == want.shape == dense.shape
    assert relative_error(got, torch.from_numpy(want)) < 1e-10
    assert relative_error(got, dense) > 1e-3  # three of six components: a different layer


class ConvBase(nn.Module):
    """MNIST-1D's ConvBase: three Conv1d (stride 2) and a linear head on 40-long signals."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 25, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
        self.linear = nn.Linear(125, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, x.shape[-1])
        h1 = self.conv1(x).relu()
        h2 = self.conv2(h1).relu()
        h3 = self.conv3(h2).relu()
        return self.linear(h3.view(h3.shape[0], -1))


def test_full_rank_conv1d_network_computes_the_same_function() -> None:
    torch.manual_seed(0)
    model = ConvBase().double().eval()
    x = torch.randn(300, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    new, report = pcn_transform(model, [x[:150], x[150:]], keep="f1.0", grow=True)
    with torch.no_grad():
        assert relative_error(new(x), model(x)) < 1e-10
    assert {n: (layer.d, layer.k) for n, layer in report.layers.items()} == {
        "conv2": (25, 25),
        "conv3": (25, 25),
        "linear": (125, 125),
    }
    assert isinstance(new.conv2, PCAConv) and isinstance(new.linear, PCALinear)
    assert report.skipped == {"conv1": Reason.FIRST_LAYER}


def test_conv1d_network_at_full_rank_stays_dense_by_default() -> None:
    torch.manual_seed(0)
    model = ConvBase()
    x = torch.randn(300, 40)
    new, report = pcn_transform(model, [x], keep="f1.0")
    # conv: 25·25·3 + 25 dense; V 25·25 + offset 25 + W′ 25·25·3 + b′ 25 transformed.
    assert report.skipped == {
        "conv1": Reason.FIRST_LAYER,
        "conv2": "would add parameters (1,900 dense → 2,550 transformed)",
        "conv3": "would add parameters (1,900 dense → 2,550 transformed)",
        "linear": "would add parameters (1,260 dense → 17,010 transformed)",
    }
    assert report.layers == {} and count_params(new) == count_params(model) == 5_210
    _, report = pcn_transform(model, [x], keep="f0.25")
    assert {n: (layer.d, layer.k) for n, layer in report.layers.items()} == {
        "conv2": (25, 7),
        "conv3": (25, 7),
    }
    assert report.skipped["linear"] == "would add parameters (1,260 dense → 4,362 transformed)"
    grown, _ = pcn_transform(model, [x], keep="f1.0", grow=True)  # the paper's uniform rule
    assert count_params(grown) == 5_210 + 2 * (2_550 - 1_900) + (17_010 - 1_260) == 22_260


def conv3d_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(2, 6, 3, padding=1),
        nn.Tanh(),
        nn.Conv3d(6, 5, (3, 2, 3), stride=(1, 2, 2), padding=(1, 0, 2), padding_mode="replicate"),
        nn.ReLU(),
        nn.Conv3d(5, 4, 3, padding=1, padding_mode="reflect", bias=False),
        nn.Tanh(),
        nn.Conv3d(4, 3, 2, stride=2, padding=1, padding_mode="circular"),
        nn.Flatten(),
    )


def test_full_rank_conv3d_layers_compute_the_same_function() -> None:
    model = conv3d_net().double().eval()
    x = torch.randn(6, 2, 6, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    new, report = pcn_transform(model, [x[:3], x[3:]], keep="f1.0", grow=True)
    with torch.no_grad():
        assert relative_error(new(x), model(x)) < 1e-10
    assert list(report.layers) == ["2", "4", "6"]
    assert all(isinstance(new[i], PCAConv) for i in (2, 4, 6))
    assert new[2].padding == (2, 2, 0, 0, 1, 1)  # as F.pad takes it: the last dimension first
    # W′ is laid out as nn.Conv3d's own weights are, so the outputs are too.
    assert all(new[i].weight.is_contiguous() for i in (2, 4, 6))
    with torch.no_grad():
        assert new[:3](x).is_contiguous()


def test_pca_conv2d_is_the_n_dimensional_layer() -> None:
    assert PCAConv2d is PCAConv


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        (nn.Conv1d(4, 4, 3), None),
        (nn.Conv3d(4, 4, 3), None),
        (nn.Linear(4, 4), None),
        (nn.Conv1d(4, 4, 3, groups=2), "grouped convolution (groups=2)"),
        (nn.Conv2d(4, 4, 3, groups=4), "grouped convolution (groups=4)"),
        (nn.Conv3d(4, 4, 3, dilation=(1, 2, 1)), "dilated convolution (dilation=(1, 2, 1))"),
        (nn.ConvTranspose1d(4, 4, 3), "ConvTranspose1d: not supported by pcn"),
        (nn.ConvTranspose2d(4, 4, 3), "ConvTranspose2d: not supported by pcn"),
        (nn.ConvTranspose3d(4, 4, 3), "ConvTranspose3d: not supported by pcn"),
    ],
)
def test_unsupported_says_why(module: nn.Module, reason: str | None) -> None:
    assert unsupported(module) == reason


class Fork(nn.Module):
    """Two layers reading one tensor (one basis): a bias-free 3×3 conv and a 1×1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.wide = nn.Conv2d(8, 4, 3, padding=1, bias=False)
        self.side = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x).relu()
        return torch.cat([self.wide(h), self.side(h)], 1)


@pytest.mark.parametrize(
    ("keep", "transformed", "reason"),
    [
        # Dense: 8·4·9 + 8·2 + 2 = 306. Transformed: V 8·k + offset k, W′ 4·k·9 + b′ 4 (added),
        # W′ 2·k + b′ 2: 288 at k = 6, 335 at k = 7.
        ("d6", ["wide", "side"], None),
        ("d7", [], "would add parameters (306 dense → 335 transformed)"),
    ],
)
def test_a_shared_basis_is_weighed_once_for_its_whole_group(
    keep: str, transformed: list[str], reason: str | None
) -> None:
    torch.manual_seed(0)
    model = Fork()
    new, report = pcn_transform(model, [torch.randn(4, 3, 6, 6)], keep=keep)
    assert list(report.layers) == transformed
    if reason is None:
        assert new.wide.basis is new.side.basis
        assert count_params(new) == count_params(model) - 306 + 288
    else:
        assert {n: report.skipped[n] for n in ("wide", "side")} == {"wide": reason, "side": reason}
        assert count_params(new) == count_params(model)
        grown, _ = pcn_transform(model, [torch.randn(4, 3, 6, 6)], keep=keep, grow=True)
        assert count_params(grown) == count_params(model) - 306 + 335


def test_undersampled_layers_are_one_warning_naming_the_first_three() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 40), *[m for _ in range(4) for m in (nn.ReLU(), nn.Linear(40, 40))]
    )
    with pytest.warns(UserWarning) as caught:
        _, report = pcn_transform(model, [torch.randn(20, 4)], keep="d4")
    assert [str(w.message) for w in caught] == [
        "pcn: 4 layers saw fewer calibration samples than input features (2, 4, 6, …): only the "
        "top n − 1 components of n samples are determined by the data; calibrate with more samples"
    ]
    assert [layer.undersampled for layer in report.layers.values()] == [True] * 4


class Twice(nn.Module):
    """A layer called twice per forward pass, and a grouped conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(self.stem(x).relu())
        return self.head(self.shared(self.shared(x).relu()).relu())


def test_layers_left_dense_for_their_structure_are_reported_without_warnings() -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new, report = pcn_transform(Twice(), [torch.randn(8, 3, 6, 6)], keep="f0.5")
    assert report.skipped == {
        "stem": Reason.FIRST_LAYER,
        "grouped": "grouped convolution (groups=8)",
        "shared": "called 2 times per forward pass",
    }
    assert list(report.layers) == ["head"] and isinstance(new.head, PCAConv)


class TwoStems(nn.Module):
    """Two layers reading (views of) the network input, then a layer reading their sum."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(2, 8, 3, padding=1)
        self.side = nn.Conv1d(2, 8, 1)
        self.head = nn.Conv1d(8, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2)  # (N, 2, 1, 16) → (N, 2, 16): a view of the input
        return self.head(self.stem(x) + self.side(x))


def test_every_layer_reading_the_input_stays_dense_in_the_transform_and_the_plan() -> None:
    torch.manual_seed(0)
    expected = {"stem": Reason.FIRST_LAYER, "side": "reads the network input"}
    _, report = pcn_transform(TwoStems(), [torch.randn(8, 2, 1, 16)], keep="f0.5")
    assert report.skipped == expected and list(report.layers) == ["head"]
    with torch.device("meta"):
        model = TwoStems()
    plan = PCN().plan_coverage(PCNParams(keep="f0.5"), model, (2, 1, 16))
    assert plan is not None and plan.reduced == 16 * 8 * 3
    assert {n: plan.reason(f"{n}.weight") for n in expected} == expected


class Zoo(nn.Module):
    """One of each kind: Conv1d, BatchNorm, Conv2d, grouped conv, ConvTranspose2d, Conv3d,
    Embedding, LayerNorm, MultiheadAttention and Linear; 5,131 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(2, 8, 3, padding=1)  # 48 + 8
        self.conv1d = nn.Conv1d(8, 8, 3, padding=1)  # 192 + 8
        self.bn = nn.BatchNorm1d(8)  # 8 + 8
        self.conv2d = nn.Conv2d(8, 16, 3, padding=1)  # 1,152 + 16
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)  # 576 + 16
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)  # 512 + 8
        self.conv3d = nn.Conv3d(8, 8, 3, padding=1)  # 1,728 + 8
        self.position = nn.Embedding(64, 8)  # 512
        self.norm = nn.LayerNorm(8)  # 8 + 8
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)  # 192 + 24, 64 + 8
        self.head = nn.Linear(8, 3)  # 24 + 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2)  # (N, 2, 1, 16) → (N, 2, 16)
        x = self.bn(self.conv1d(self.stem(x).relu())).relu()
        x = self.conv2d(x.reshape(-1, 8, 4, 4)).relu()
        x = self.up(self.grouped(x).relu()).relu()  # (N, 8, 8, 8)
        x = self.conv3d(x.reshape(-1, 8, 4, 4, 4)).relu()
        tokens = x.flatten(2).transpose(1, 2)  # (N, 64, 8)
        tokens = self.norm(tokens + self.position(torch.arange(64, device=x.device)))
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.head(attended.mean(1))


ZOO_TOTAL = 5_131
ZOO_WEIGHTS = {  # the weights PCN leaves dense at f0.5, and why
    "stem.weight": (48, Reason.FIRST_LAYER),
    "grouped.weight": (576, "grouped convolution (groups=4)"),
    "up.weight": (512, "ConvTranspose2d: not supported by pcn"),
    "position.weight": (512, Reason.EMBEDDING),
    "attention.in_proj_weight": (192, ATTENTION),
    "attention.out_proj.weight": (64, Reason.NOT_CALLED),
    # V 8·4 + offset 4, W′ 3·4 + b′ 3 = 51 against 8·3 + 3 = 27.
    "head.weight": (24, "would add parameters (27 dense → 51 transformed)"),
    "bn.weight": (8, Reason.NORMALIZATION),
    "norm.weight": (8, Reason.NORMALIZATION),
}


def zoo_session() -> Session:
    data = Synthetic().load(Synthetic.Params(n_train=64, n_test=32, shape=(2, 1, 16), classes=3))
    torch.manual_seed(0)
    recipe = Recipe(epochs=1, batch_size=32, optimizer={"lr": 0.01}, eval_every=0)
    return Session(Zoo(), data, recipe, seed=0, measure_inference=False)


def dense_weights(left_dense: list[dict]) -> dict[str, tuple[int, str]]:
    """The non-bias rows of a `left_dense` column, by tensor."""
    return {
        row["tensor"]: (row["params"], row["reason"])
        for row in left_dense
        if row["reason"] != Reason.BIAS
    }


def test_method_records_the_coverage_of_every_layer_type() -> None:
    session = zoo_session()
    PCN().run(session, PCNParams(at_epoch=1, keep="f0.5", calibration=64))
    (row,) = session.results
    # Reduced: the weights of conv1d (192), conv2d (1,152) and conv3d (1,728).
    assert row["coverage"] == pytest.approx(3_072 / ZOO_TOTAL)
    assert dense_weights(row["left_dense"]) == ZOO_WEIGHTS
    assert [layer["name"] for layer in row["pcn_layers"]] == ["conv1d", "conv2d", "conv3d"]
    assert row["pcn_skipped"] == [
        {"layer": "stem", "reason": Reason.FIRST_LAYER},
        {"layer": "grouped", "reason": "grouped convolution (groups=4)"},
        {"layer": "up", "reason": "ConvTranspose2d: not supported by pcn"},
        {"layer": "attention.out_proj", "reason": Reason.NOT_CALLED},
        {"layer": "head", "reason": "would add parameters (27 dense → 51 transformed)"},
    ]
    assert row["params"] < row["dense_params"] == ZOO_TOTAL


@pytest.mark.parametrize(
    ("params", "reduced", "changed"),
    [
        (PCNParams(keep="f0.5"), 3_072, {}),
        (PCNParams(keep="f0.5", grow=True), 3_072 + 24, {"head.weight": None}),
        (
            PCNParams(keep="f0.5", layers={"conv3d": None, "attention.*": "d2"}),
            192 + 1_152,
            {"conv3d.weight": (1_728, Reason.PATTERN)},
        ),
        # v: the spectrum decides k, so the head counts as reduced.
        (PCNParams(keep="f0.5", layers={"head": "v0.9"}), 3_072 + 24, {"head.weight": None}),
    ],
    ids=["f0.5", "grow", "pattern", "v_rule"],
)
def test_plan_coverage_predicts_it_on_the_meta_device(
    params: PCNParams, reduced: int, changed: dict
) -> None:
    with torch.device("meta"):
        model = Zoo()
    coverage = PCN().plan_coverage(params, model, (2, 1, 16))
    assert coverage is not None and coverage.total == ZOO_TOTAL
    assert coverage.reduced == reduced
    expected = {**ZOO_WEIGHTS, **changed}
    assert dense_weights(coverage.columns()["left_dense"]) == {
        name: row for name, row in expected.items() if row is not None
    }


def test_plan_coverage_is_none_when_the_model_cannot_run_on_the_meta_device() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x)) if bool(x.sum() > 0) else x

    with torch.device("meta"):
        model = DataDependent()
    assert PCN().plan_coverage(PCNParams(), model, (4,)) is None


def test_mobilenet_v3_never_grows_and_the_plan_matches_the_transform() -> None:
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    x = torch.randn(8, 3, 32, 32)
    new, report = pcn_transform(model, [x], keep="f0.5")
    assert count_params(model) == 1_528_106
    assert count_params(new) == 1_228_470  # 21 layers transformed
    reasons = list(report.skipped.values())
    assert len(report.layers) == 21 and sum(r.startswith("would add") for r in reasons) == 21
    assert reasons.count(Reason.FIRST_LAYER) == 1
    depthwise = [n for n, m in model.named_modules() if getattr(m, "groups", 1) > 1]
    assert len(depthwise) == 11 and all(report.skipped[n].startswith("grouped") for n in depthwise)
    with torch.no_grad():
        assert new(x).shape == (8, 10)
    done = account(Coverage(model, "pcn"), model, report.layers, report.skipped)
    with torch.device("meta"):
        meta = torchvision.models.mobilenet_v3_small(num_classes=10)
    plan = PCN().plan_coverage(PCNParams(keep="f0.5"), meta, (3, 32, 32))
    assert plan is not None and plan.left_dense() == done.left_dense()
    assert plan.fraction == done.fraction == pytest.approx(0.6776, abs=1e-4)
    # The paper's uniform rule transforms the 21 layers that grow as well.
    grown = PCN().plan_coverage(PCNParams(keep="f0.5", grow=True), meta, (3, 32, 32))
    assert grown is not None and not any(r.reason.startswith("would") for r in grown.left_dense())
    growing = [n for n, reason in report.skipped.items() if reason.startswith("would add")]
    extra = sum(model.get_submodule(n).weight.numel() for n in growing)
    assert grown.reduced == done.reduced + extra


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return vision_transformer()


def test_vision_transformer_transforms_its_mlp_on_token_inputs() -> None:
    model = tiny_vit().eval()
    x = torch.randn(8, 3, 32, 32)
    new, report = pcn_transform(model, [x], keep="f0.25")
    mlps = [f"encoder.layers.encoder_layer_{i}.mlp.{j}" for i in (0, 1) for j in (0, 3)]
    assert list(report.layers) == mlps
    assert report.skipped == {
        "conv_proj": Reason.FIRST_LAYER,
        "encoder.layers.encoder_layer_0.self_attention.out_proj": Reason.NOT_CALLED,
        "encoder.layers.encoder_layer_1.self_attention.out_proj": Reason.NOT_CALLED,
        # V 32·8 + offset 8, W′ 10·8 + b′ 10 = 354 against 32·10 + 10 = 330.
        "heads.head": "would add parameters (330 dense → 354 transformed)",
    }
    # Each token a sample: 8 images × 5 tokens (4 patches and the class token).
    assert {report.layers[n].samples for n in mlps} == {40}
    assert count_params(new) == 38_746 < count_params(model) == 42_282
    with torch.device("meta"):
        meta = tiny_vit()
    plan = PCN().plan_coverage(PCNParams(keep="f0.25"), meta, (3, 32, 32))
    done = account(Coverage(model, "pcn"), model, report.layers, report.skipped)
    assert plan is not None and plan.left_dense() == done.left_dense()
    assert plan.reason("encoder.layers.encoder_layer_1.self_attention.in_proj_weight") == ATTENTION
    assert plan.reduced == 4 * 32 * 64  # the four MLP weights


def test_full_rank_vision_transformer_computes_the_same_function() -> None:
    model = tiny_vit().double().eval()
    nn.init.normal_(model.heads.head.weight)  # torchvision starts it at zero: outputs all 0
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    new, report = pcn_transform(model, [x], keep="f1.0", grow=True)
    assert len(report.layers) == 5 and all(
        isinstance(new.get_submodule(n), PCALinear) for n in report.layers
    )
    with torch.no_grad():
        assert relative_error(new(x), model(x)) < 1e-10


def conv1d_chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 8, 3, padding=1),  # 48 + 8
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(8, 6, 3, padding=1),  # 144 + 6
        nn.ReLU(),
        nn.Conv1d(6, 4, 3),  # 72 + 4
    )


def test_output_pruning_follows_a_conv1d_chain_and_counts_as_coverage() -> None:
    model = conv1d_chain().eval()
    x = torch.randn(16, 2, 12)
    new, report = pcn_transform(model, [x], keep="d3", prune_outputs=True)
    assert {n: layer.pruned for n, layer in report.layers.items()} == {"4": "0", "6": "4"}
    assert new[0].weight.shape == (3, 2, 3) and new[1].running_mean.shape == (3,)
    assert new[4].weight.shape == (3, 3, 3) and new[4].basis.V.shape == (3, 3)
    with torch.no_grad():
        assert new(x).shape == model(x).shape == (16, 4, 4)
    done = account(Coverage(model, "pcn"), model, report.layers, report.skipped, ["0", "4"])
    with torch.device("meta"):
        meta = conv1d_chain()
    plan = PCN().plan_coverage(PCNParams(keep="d3", prune_outputs=True), meta, (2, 12))
    assert plan is not None and done.reduced == plan.reduced == 48 + 144 + 72
    # Without output pruning the first layer stays as it is.
    plan = PCN().plan_coverage(PCNParams(keep="d3"), meta, (2, 12))
    assert plan is not None and plan.reduced == 144 + 72
    assert plan.reason("0.weight") == Reason.FIRST_LAYER
