"""Magnitude pruning: masks equal torch.nn.utils.prune's, stay enforced, follow Zhu & Gupta."""

from __future__ import annotations

import copy
import itertools
import re

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn.utils import prune

from pcnbench.api import MaskEnforcer, ParamError, Recipe, masked_parameters
from pcnbench.errors import SuiteError
from pcnbench.session import Session
from pcnbench.suite import load_suite
from pcnbench_plugins.magnitude import Magnitude, MagnitudeParams
from pcnbench_plugins.pruning import (
    attach_masks,
    current_weights,
    layer_densities,
    magnitude_masks,
    prunable_weights,
    zhu_gupta_sparsity,
    zhu_gupta_update_steps,
)
from tests.conftest import BASE_SUITE
from tests.nets import convnet, image_splits


def recipe(epochs: int = 4, **overrides: object) -> Recipe:
    settings: dict = {
        "epochs": epochs,
        "batch_size": 16,  # 48 samples: 3 steps per epoch
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "weight_decay": 1e-2,
        "eval_every": 0,
    }
    settings.update(overrides)
    return Recipe(**settings)


def weights_of(model: nn.Module, exclude: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    return current_weights(prunable_weights(model, exclude))


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.83, 0.97])
def test_global_mask_equals_torch_global_unstructured(sparsity: float) -> None:
    ours = convnet()
    theirs = copy.deepcopy(ours)
    masks = magnitude_masks(weights_of(ours), sparsity, "global")
    layers = [(theirs[i], "weight") for i in (0, 3, 6)]
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=sparsity)
    for (name, mask), (module, _) in zip(masks.items(), layers, strict=True):
        assert torch.equal(mask, module.weight_mask), name
    assert sum(int((m == 0).sum()) for m in masks.values()) == round(sparsity * 636)
    # One threshold: every pruned |w| is below every kept |w|, across layers.
    w = torch.cat([p.detach().abs().flatten() for p in weights_of(ours).values()])
    m = torch.cat([mask.flatten() for mask in masks.values()])
    assert w[m == 0].max() < w[m == 1].min()


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.9])
def test_layerwise_masks_prune_every_layer_exactly_like_l1_unstructured(sparsity: float) -> None:
    ours = convnet()
    theirs = copy.deepcopy(ours)
    masks = magnitude_masks(weights_of(ours), sparsity, "layer")
    for (name, mask), i in zip(masks.items(), (0, 3, 6), strict=True):
        prune.l1_unstructured(theirs[i], "weight", amount=sparsity)
        assert torch.equal(mask, theirs[i].weight_mask), name
        assert int((mask == 0).sum()) == round(sparsity * mask.numel())


def test_masks_only_grow_and_count_earlier_pruning_towards_the_target() -> None:
    weights = weights_of(convnet())
    first = magnitude_masks(weights, 0.3, "global")
    # Weights change after pruning: the next mask ranks the current ones, old zeros stay zero.
    torch.manual_seed(1)
    moved = {k: (w.detach() + 0.1 * torch.randn_like(w)) * first[k] for k, w in weights.items()}
    second = magnitude_masks(moved, 0.6, "global", first)
    assert all(torch.all(second[k] <= first[k]) for k in weights)
    assert sum(int((m == 0).sum()) for m in second.values()) == round(0.6 * 636)
    per_layer = magnitude_masks(moved, 0.6, "layer", first)
    assert [int((m == 0).sum()) for m in per_layer.values()] == [22, 130, 230]


def test_exclude_leaves_matching_layers_dense_and_accepts_a_comma_separated_string() -> None:
    params = MagnitudeParams(sparsity=0.5, exclude="6, 0")
    assert params.exclude == ("6", "0")
    assert MagnitudeParams(sparsity=0.5, exclude=["6"]).exclude == ("6",)
    assert list(prunable_weights(convnet(), params.exclude)) == ["3"]
    with pytest.raises(
        ParamError, match="pattern 'fc' matches no conv, linear or attention layer"
    ) as info:
        prunable_weights(convnet(), ("6", "fc"))
    assert info.value.key == "exclude"
    assert "(layers: 0, 3, 6)" in info.value.message
    with pytest.raises(ParamError, match="nothing to prune") as info:
        prunable_weights(convnet(), ("*",))
    assert info.value.key == "exclude"


def test_check_model_rejects_bad_exclude_patterns_on_a_meta_model() -> None:
    with torch.device("meta"):
        model = convnet()
    Magnitude().check_model(MagnitudeParams(sparsity=0.5, exclude="6"), model)
    with pytest.raises(
        ParamError, match="pattern 'fc' matches no conv, linear or attention layer"
    ) as info:
        Magnitude().check_model(MagnitudeParams(sparsity=0.5, exclude="6, fc"), model)
    assert (info.value.key, "(layers: 0, 3, 6)" in info.value.message) == ("exclude", True)
    with pytest.raises(ParamError, match="nothing to prune"):
        Magnitude().check_model(MagnitudeParams(sparsity=0.5, exclude="[036]"), model)


def test_pruned_weights_stay_zero_through_50_steps_with_momentum_and_weight_decay() -> None:
    session = Session(convnet(), image_splits(), recipe(epochs=40), seed=0)
    enforce = MaskEnforcer(session)
    session.add_step_hook(enforce)
    session.train(until="2it")  # momentum buffers hold every weight's past gradient
    layers = prunable_weights(session.model)
    masks = magnitude_masks(weights_of(session.model), 0.7, "global")
    attach_masks(layers, masks)
    enforce.refresh()
    session.train(until="27it")
    # A replaced model (new identity, its own masks) is enforced too: the hook re-reads pairs.
    session.model = copy.deepcopy(session.model)
    session.train(until="52it")
    for name, weight in current_weights(prunable_weights(session.model)).items():
        assert torch.count_nonzero(weight[masks[name] == 0]) == 0, name
        assert torch.count_nonzero(weight[masks[name] == 1]) == int(masks[name].sum())
    assert session.steps_trained == 52
    assert layer_densities(session.model) == {
        name: int(m.sum()) / m.numel() for name, m in masks.items()
    }


@pytest.mark.parametrize(
    "values",
    [
        {"sparsity": 0.7, "finetune_epochs": 2},
        {"sparsity": 0.7, "scope": "layer", "finetune": "lr_rewind", "finetune_epochs": 2},
        {"sparsity": 0.8, "schedule": "gradual", "start_epoch": 1, "end_epoch": 3, "frequency": 2},
        {"sparsity": 0.8, "schedule": "gradual", "end_epoch": 2, "finetune_epochs": 1},
    ],
    ids=["oneshot", "oneshot-layer-rewind", "gradual", "gradual-finetune"],
)
def test_magnitude_run_keeps_its_own_masked_weights_at_zero(values: dict) -> None:
    # Momentum 0.9 and weight decay move every weight each step: without the method's own
    # step hook the pruned weights come back to life between mask updates and in fine-tuning.
    session = Session(convnet(), image_splits(), recipe(epochs=4), seed=0)
    revived: list[tuple[int, int]] = []  # (step, pruned weights not zero) after train() calls
    train = session.train

    def spy(until: int | str = "end", phase: str = "train") -> None:
        train(until, phase)
        masked = list(masked_parameters(session.model))
        if masked:
            alive = sum(int(m.param[m.mask == 0].count_nonzero()) for m in masked)
            revived.append((session.step, alive))

    session.train = spy  # type: ignore[method-assign]
    params = MagnitudeParams(**values)
    Magnitude().run(session, params)
    assert revived and all(alive == 0 for _, alive in revived), revived
    masked = list(masked_parameters(session.model))
    pruned = sum(int((m.mask == 0).sum()) for m in masked)
    assert pruned == round(params.sparsity * 636)
    assert sum(int(m.param[m.mask == 0].count_nonzero()) for m in masked) == 0
    # The kept weights did train on: only the pruned ones are held at zero.
    assert sum(int(m.param[m.mask == 1].count_nonzero()) for m in masked) == 636 - pruned
    row = session.results[-1]
    assert row["epochs_trained"] == 4 + (values.get("finetune_epochs") or 0)


def test_zhu_gupta_schedule_values_at_start_midpoint_and_end() -> None:
    s_i, s_f, t0, end = 0.1, 0.9, 100, 500
    assert zhu_gupta_sparsity(100, s_i, s_f, t0, end) == pytest.approx(0.1, abs=1e-15)
    # Halfway the cubic has covered 1 − (1/2)³ = 7/8 of the way.
    assert zhu_gupta_sparsity(300, s_i, s_f, t0, end) == pytest.approx(0.9 - 0.8 / 8, abs=1e-15)
    assert zhu_gupta_sparsity(500, s_i, s_f, t0, end) == 0.9
    assert zhu_gupta_sparsity(50, s_i, s_f, t0, end) == pytest.approx(0.1, abs=1e-15)
    assert zhu_gupta_sparsity(900, s_i, s_f, t0, end) == 0.9
    assert zhu_gupta_update_steps(100, 500, 100) == [100, 200, 300, 400, 500]
    assert zhu_gupta_update_steps(0, 10, 4) == [0, 4, 8, 10]


def test_oneshot_end_to_end_counts_pruned_weights_finetune_epochs_and_masked_macs() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    session = Session(mlp, image_splits(), recipe(epochs=4), seed=0)
    params = MagnitudeParams(sparsity=0.7, finetune_epochs=2, exclude="3")
    Magnitude().run(session, params)
    row = session.results[-1]
    pruned = round(0.7 * 16 * 32)  # only the first linear layer is prunable
    assert row["params"] == row["dense_params"] - pruned
    # A linear layer does one multiply-accumulate per weight per sample.
    assert (row["dense_macs"], row["macs"]) == (16 * 32 + 32 * 4, 16 * 32 - pruned + 32 * 4)
    assert row["epochs_trained"] == 4 + 2
    assert row["prune_epoch"] == 4
    assert row["density"] == pytest.approx(1 - pruned / 512)
    assert row["sparsity"] == pytest.approx(pruned / 512)
    assert row["layer_densities"] == {"1": (512 - pruned) / 512}
    assert (row["scope"], row["schedule"], row["finetune_epochs"]) == ("global", "oneshot", 2)
    assert 0 <= row["accuracy_after_prune"] <= 1
    ours = [(p.name, p.kind) for p in session.phases if p.name in ("train", "prune", "finetune")]
    assert ours == [("train", "train"), ("prune", "transform"), ("finetune", "train")]


def test_oneshot_lr_rewind_replays_the_last_epochs_and_zero_finetuning_records_the_prune() -> None:
    rewinding = recipe(epochs=4, schedule={"name": "multistep", "milestones": [2], "gamma": 0.1})
    session = Session(convnet(), image_splits(), rewinding, seed=0)
    params = MagnitudeParams(sparsity=0.5, finetune="lr_rewind", finetune_epochs=3)
    Magnitude().run(session, params)
    assert session.results[-1]["epochs_trained"] == 4 + 3
    # Epochs 5–7 replay the learning rates of epochs 2–4 (0.05, then 0.005 from epoch 3).
    lrs = [r.lr for r in session.records if r.phase == "finetune"]
    assert lrs == pytest.approx([0.05, 0.005, 0.005])
    session = Session(convnet(), image_splits(), recipe(epochs=4), seed=0)
    Magnitude().run(session, MagnitudeParams(sparsity=0.5, scope="layer", finetune_epochs=0))
    row = session.results[-1]
    assert row["epochs_trained"] == 4
    assert row["accuracy"] == row["accuracy_after_prune"]
    assert row["layer_densities"] == {"0": 18 / 36, "3": 108 / 216, "6": 192 / 384}


def test_gradual_follows_the_cubic_schedule_with_growing_masks() -> None:
    session = Session(convnet(), image_splits(), recipe(epochs=6), seed=0)
    pruned_at: dict[int, torch.Tensor] = {}
    train = session.train

    def spy(until: int | str = "end", phase: str = "train") -> None:
        # The masks as they stand when training resumes after each update.
        masks = [m.mask.clone() for m in masked_parameters(session.model)]
        if masks:
            pruned_at[session.step] = torch.cat([m.flatten() for m in masks]) == 0
        train(until, phase)

    session.train = spy  # type: ignore[method-assign]
    params = MagnitudeParams(
        sparsity=0.8, schedule="gradual", start_epoch=1, end_epoch=5, frequency=5
    )
    Magnitude().run(session, params)
    # Epochs 1 and 5 at 3 steps per epoch: updates at steps 3, 8, 13 and the window's end, 15.
    assert list(pruned_at) == [3, 8, 13, 15]  # the mask set at step t is in force from t on
    expected = [round(zhu_gupta_sparsity(t, 0.0, 0.8, 3, 15) * 636) for t in (3, 8, 13, 15)]
    assert expected == [0, 408, 506, 509]  # 636 · 0.8 · (1 − (1 − (t − 3)/12)³), rounded
    assert [int(p.sum()) for p in pruned_at.values()] == expected
    steps = list(pruned_at.values())
    assert all(torch.all(a <= b) for a, b in itertools.pairwise(steps))  # masks only grow
    row = session.results[-1]
    assert row["epochs_trained"] == 6
    assert row["params"] == row["dense_params"] - 509
    assert row["prune_epoch"] == 5
    # One training phase for the whole schedule, however many pieces it was trained in.
    assert [p.name for p in session.phases if p.kind == "train"] == ["train"]


@pytest.mark.parametrize(
    ("values", "key", "message"),
    [
        ({"schedule": "gradual", "end_epoch": 9}, "end_epoch", "≤ recipe.epochs=8 (got 9)"),
        ({"schedule": "gradual", "start_epoch": 4}, "start_epoch", "=4 (default: half the"),
        ({"schedule": "gradual", "start_epoch": 6, "end_epoch": 6}, "start_epoch", "before"),
        ({"finetune": "lr_rewind", "finetune_epochs": 9}, "finetune_epochs", "≤ recipe.epochs"),
        ({"finetune": "lr_rewind"}, "finetune_epochs", "got 10"),
    ],
)
def test_check_rejects_values_that_conflict_with_the_recipe(
    values: dict, key: str, message: str
) -> None:
    with pytest.raises(ParamError, match=re.escape(message)) as info:
        Magnitude().check(MagnitudeParams(sparsity=0.5, **values), recipe(epochs=8))
    assert info.value.key == key


def test_check_accepts_a_window_and_rewinding_inside_the_recipe() -> None:
    for values in (
        {"schedule": "gradual", "start_epoch": 4},  # default end: half of 20 epochs
        {"schedule": "gradual", "start_epoch": 19, "end_epoch": 20},
        {"finetune": "lr_rewind", "finetune_epochs": 20},
        {"finetune_epochs": 50},  # a fixed learning rate may fine-tune longer than the recipe
    ):
        Magnitude().check(MagnitudeParams(sparsity=0.5, **values), recipe(epochs=20))


@pytest.mark.parametrize(
    "values",
    [
        {"sparsity": 0},
        {"sparsity": 1},
        {"sparsity": 0.5, "scope": "row"},
        {"sparsity": 0.5, "schedule": "cubic"},
        {"sparsity": 0.5, "initial_sparsity": 0.6},
        {"sparsity": 0.5, "frequency": 0},
        {"sparsity": 0.5, "finetune_epochs": -1},
        {"sparsity": 0.5, "finetune_lr": 0},
        {"sparsity": 0.5, "pattern": "x"},
        {},
    ],
)
def test_params_reject_out_of_range_values(values: dict) -> None:
    with pytest.raises(ValidationError):
        MagnitudeParams(**values)


def test_suite_error_points_at_the_offending_parameter(host, write_suite) -> None:
    text = BASE_SUITE.replace(
        "  - dense\n",
        "  - name: magnitude\n    params: {sparsity: 0.5, schedule: gradual, end_epoch: 3}\n",
    )
    file = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(file, host)
    assert info.value.path == "methods[0].params.end_epoch"
    assert info.value.line == text[: text.index("end_epoch: 3")].count("\n") + 1
    assert "must be ≤ recipe.epochs=2 (got 3)" in info.value.message
