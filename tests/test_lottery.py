"""Lottery-ticket IMP: the ceil rule, exact rewinding to step k, one result row per level."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import types
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch.nn.utils import prune

from pcnbench.api import ParamError, Recipe, masked_parameters, parse_steps
from pcnbench.errors import SuiteError
from pcnbench.session import Session
from pcnbench.suite import load_suite
from pcnbench_plugins.lottery import Lottery, LotteryParams, rewind_step
from pcnbench_plugins.pruning import (
    ceil_prune_count,
    current_weights,
    imp_masks,
    prunable_weights,
)
from tests.conftest import BASE_SUITE
from tests.nets import convnet, image_splits


def recipe(epochs: int = 3, **overrides: object) -> Recipe:
    settings: dict = {
        "epochs": epochs,
        "batch_size": 16,  # 48 samples: 3 steps per epoch
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "weight_decay": 1e-2,
        "schedule": {"name": "multistep", "milestones": [2], "gamma": 0.1},
        "augmentation": {"crop_padding": 1, "flip": True},
        "eval_every": 0,
    }
    settings.update(overrides)
    return Recipe(**settings)


def test_ceil_prune_count_rounds_up_the_decimal_product() -> None:
    assert ceil_prune_count(1000, 0.2) == 200
    assert ceil_prune_count(409, 0.2) == 82  # 81.8
    assert ceil_prune_count(10, 0.7) == 7
    assert ceil_prune_count(100, 0.07) == 7  # float's 0.07 × 100 is 7.000000000000001 → 8
    assert ceil_prune_count(25, 0.28) == 7  # float: 7.000000000000001
    assert ceil_prune_count(1, 0.2) == 1


def test_each_level_equals_torch_global_unstructured_and_density_follows_the_ceil_rule() -> None:
    ours = {k: w.detach() for k, w in current_weights(prunable_weights(convnet())).items()}
    theirs = copy.deepcopy(convnet())
    params = [(theirs[i], "weight") for i in (0, 3, 6)]
    masks = None
    remaining = []
    for level in range(5):
        # Retraining moves the surviving weights; pruned ones are zero.
        torch.manual_seed(level)
        weights = {k: torch.randn_like(w) * (masks[k] if masks else 1) for k, w in ours.items()}
        left = sum(int(m.sum()) for m in masks.values()) if masks else 636
        masks = imp_masks(weights, 0.2, masks)
        scores = {(m, "weight"): weights[k] for (m, _), k in zip(params, weights, strict=True)}
        prune.global_unstructured(
            params,
            pruning_method=prune.L1Unstructured,
            importance_scores=scores,
            amount=ceil_prune_count(left, 0.2),
        )
        for (module, _), name in zip(params, masks, strict=True):
            assert torch.equal(masks[name], module.weight_mask), (level, name)
        remaining.append(sum(int(m.sum()) for m in masks.values()))
    # 636 − ⌈0.2·636⌉ = 508, 508 − ⌈101.6⌉ = 406, 406 − ⌈81.2⌉ = 324, 324 − 65, 259 − 52.
    assert remaining == [508, 406, 324, 259, 207]


def spy(session: Session) -> dict[str, list[Any]]:
    """Record what the method does: snapshots taken, state at each train call, rows recorded."""
    seen: dict[str, list[Any]] = {"snapshots": [], "starts": [], "ends": [], "records": []}
    snapshot, train, record = session.snapshot, session.train, session.record

    def spy_snapshot() -> Any:
        snap = snapshot()
        seen["snapshots"].append(snap)
        return snap

    def spy_train(until: int | str = "end", phase: str = "train") -> None:
        seen["starts"].append(
            (
                session.step,
                copy.deepcopy(session.model.state_dict()),
                copy.deepcopy(session.optimizer.state_dict()),
                torch.get_rng_state(),
            )
        )
        train(until, phase)
        seen["ends"].append(copy.deepcopy(session.model.state_dict()))

    def spy_record(**extra: Any) -> dict[str, Any]:
        masked = list(masked_parameters(session.model))
        seen["records"].append([int(m.param[m.mask == 0].count_nonzero()) for m in masked])
        return record(**extra)

    session.snapshot = spy_snapshot  # type: ignore[method-assign]
    session.train = spy_train  # type: ignore[method-assign]
    session.record = spy_record  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("rewind_optimizer", [False, True])
def test_rewinding_restores_the_step_k_state_bit_for_bit_under_the_mask(
    rewind_optimizer: bool,
) -> None:
    session = Session(convnet(), image_splits(), recipe(epochs=3), seed=3)
    seen = spy(session)
    params = LotteryParams(levels=2, rewind="4it", rewind_optimizer=rewind_optimizer)
    Lottery().run(session, params)
    (snap,) = seen["snapshots"]
    assert snap.step == 4
    steps = [start[0] for start in seen["starts"]]
    assert steps == [0, 4, 4, 4]  # to k, level 0 to the end, then each level from k
    kept = snap.model.state_dict()
    trained = seen["ends"][1]  # level 0's final weights, which level 1 prunes
    for level, (_, state, optimizer, rng) in enumerate(seen["starts"][2:], start=1):
        for name in ("0", "3", "6"):
            mask = state[f"{name}.weight_mask"].bool()
            weight = state[f"{name}.weight"]
            assert torch.equal(weight[mask], kept[f"{name}.weight"][mask]), (level, name)
            assert torch.count_nonzero(weight[~mask]) == 0
            assert torch.equal(state[f"{name}.bias"], kept[f"{name}.bias"])
        for stat in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(state[f"1.{stat}"], kept[f"1.{stat}"]), stat
        assert (
            sum(int(state[f"{n}.weight_mask"].sum()) for n in ("0", "3", "6"))
            == [508, 406][level - 1]
        )
        # The RNG is the step-k one too; so are the momentum buffers with `rewind_optimizer`,
        # while by default (OpenLTH) each level starts a fresh optimizer: no momentum at all.
        assert len(snap.optimizer_state["state"]) == 8  # 3 conv/linear weights + biases, BN
        if rewind_optimizer:
            assert optimizer["state"].keys() == snap.optimizer_state["state"].keys()
            for key, value in snap.optimizer_state["state"].items():
                assert torch.equal(
                    optimizer["state"][key]["momentum_buffer"], value["momentum_buffer"]
                )
        else:
            assert optimizer["state"] == {}
        assert torch.equal(rng, snap.rng["torch"])
    # The rewound statistics differ from where the state stood: restoring them was not a no-op.
    assert not torch.equal(trained["1.running_mean"], kept["1.running_mean"])
    assert seen["records"] == [[0, 0, 0], [0, 0, 0]]  # pruned weights still zero at the end


def test_default_levels_train_with_a_fresh_optimizer_and_rewind_optimizer_keeps_momentum() -> None:
    runs = {}
    for rewind_optimizer in (False, True):
        session = Session(convnet(), image_splits(), recipe(epochs=3), seed=3)
        seen = spy(session)
        # Momentum buffers after each step k + 1 = 5: level 0's, then level 1's first step.
        buffers: list[dict[int, torch.Tensor]] = []

        def capture(session: Session = session, buffers: list = buffers) -> None:
            if session.step == 5:
                state = session.optimizer.state_dict()["state"]
                buffers.append({i: s["momentum_buffer"].clone() for i, s in state.items()})

        session.add_step_hook(capture)
        params = LotteryParams(levels=1, rewind="4it", rewind_optimizer=rewind_optimizer)
        Lottery().run(session, params)
        runs[rewind_optimizer] = (seen, buffers, session.results[0])
    (fresh, fresh_buffers, fresh_row), (kept, kept_buffers, kept_row) = runs[False], runs[True]
    # Both modes share level 0 and rewind to the same masked step-k weights at step 4.
    assert fresh_row["level0_accuracy"] == kept_row["level0_accuracy"]
    assert fresh["starts"][2][0] == kept["starts"][2][0] == 4
    for key, value in fresh["starts"][2][1].items():
        assert torch.equal(value, kept["starts"][2][1][key]), key
    # Level 1's first step sees the same gradient g (+ weight decay) in both; SGD's buffer is
    # g when fresh (OpenLTH) and 0.9 · (the step-k buffer) + g when rewound.
    snap = fresh["snapshots"][0].optimizer_state["state"]
    assert len(fresh_buffers) == len(kept_buffers) == 2
    for i, k_buffer in snap.items():
        momentum = k_buffer["momentum_buffer"]
        assert momentum.abs().max() > 1e-3, i  # the momentum the fresh optimizer drops
        torch.testing.assert_close(
            fresh_buffers[1][i] + 0.9 * momentum, kept_buffers[1][i], rtol=1e-5, atol=1e-6
        )
    # ... so the level trains to different weights (the dense level 0 ends identically).
    for key, value in fresh["ends"][1].items():
        assert torch.equal(value, kept["ends"][1][key]), key
    moved = [
        (fresh["ends"][2][k].float() - kept["ends"][2][k].float()).abs().max().item()
        for k in ("0.weight", "3.weight", "6.weight")
    ]
    assert min(moved) > 1e-3, moved


def test_lottery_records_one_row_per_level_with_cumulative_epochs_and_shrinking_params() -> None:
    session = Session(convnet(), image_splits(), recipe(epochs=3), seed=0)
    Lottery().run(session, LotteryParams(levels=3, rewind="2it", exclude=["6"]))
    rows = session.results
    assert [r["level"] for r in rows] == [1, 2, 3]
    # Level 0 trains 3 epochs; each level retrains from step 2: 9 − 2 steps of 3 per epoch.
    assert [r["epochs_trained"] for r in rows] == [(9 + L * 7) / 3 for L in (1, 2, 3)]
    # That is (L + 1)·E − L·k/steps_per_epoch epochs.
    assert [r["epochs_trained"] for r in rows] == pytest.approx(
        [(L + 1) * 3 - L * 2 / 3 for L in (1, 2, 3)], rel=1e-15
    )
    # The head is excluded: 36 + 216 = 252 prunable → 201 → 160 → 128 remain.
    remaining = [201, 160, 128]
    assert [r["density"] for r in rows] == [k / 252 for k in remaining]
    assert [r["dense_params"] - r["params"] for r in rows] == [252 - k for k in remaining]
    assert rows[0]["params"] > rows[1]["params"] > rows[2]["params"]
    assert all(r["rewind_step"] == 2 for r in rows)
    assert len({r["level0_accuracy"] for r in rows}) == 1
    assert set(rows[2]["layer_densities"]) == {"0", "3"}
    assert sum(rows[2]["layer_densities"][k] * n for k, n in (("0", 36), ("3", 216))) == (
        pytest.approx(128)
    )


def test_rewind_to_zero_snapshots_before_any_training() -> None:
    session = Session(convnet(), image_splits(), recipe(epochs=2), seed=0)
    seen = spy(session)
    initial = copy.deepcopy(session.model.state_dict())
    Lottery().run(session, LotteryParams(levels=1))
    (snap,) = seen["snapshots"]
    assert snap.step == 0
    assert all(torch.equal(v, snap.model.state_dict()[k]) for k, v in initial.items())
    assert session.results[-1]["epochs_trained"] == 4
    assert session.results[-1]["rewind_step"] == 0


@pytest.mark.parametrize(
    ("value", "canonical", "step"),
    [
        (0, "0", 0),
        ("0", "0", 0),
        ("0it", "0", 0),
        (2, "2ep", 782),
        ("2", "2ep", 782),
        ("2ep", "2ep", 782),
        ("500it", "500it", 500),
        (" 500 it ", "500it", 500),
    ],
)
def test_rewind_values_have_one_spelling_each(value: Any, canonical: str, step: int) -> None:
    params = LotteryParams(levels=1, rewind=value)
    assert params.rewind == canonical
    assert rewind_step(params.rewind, 391) == step
    assert parse_steps(value).to_step(391) == step  # the one step-spec parser reads it alike


def lottery_suite(rewind: str) -> str:
    return BASE_SUITE.replace(
        "  - dense\n", f"  - name: lottery\n    params:\n      levels: 2\n{rewind}"
    )


def test_rewind_spellings_of_one_point_make_one_cell_id(host, write_suite) -> None:
    def ids(rewind: str) -> list[str]:
        return [c.id for c in load_suite(write_suite(lottery_suite(rewind)), host).cells]

    one = ids("      rewind: 1\n")
    assert ids("      rewind: '1'\n") == one
    assert ids("      rewind: 1ep\n") == one
    assert ids("      rewind: ' 1 ep '\n") == one
    assert ids("      rewind: 3it\n") != one
    # Zero is spelled "0", the default: any zero is the cell that leaves rewind unset.
    zero = ids("")
    assert ids("      rewind: 0\n") == zero
    assert ids("      rewind: 0it\n") == zero
    assert ids("      rewind: 0ep\n") == zero
    assert zero != one
    # The optimizer rewinding added later: its default (false) keeps the ids cells had before.
    assert ids("      rewind: 1\n      rewind_optimizer: false\n") == one
    assert ids("      rewind: 1\n      rewind_optimizer: true\n") != one


def test_levels_are_the_point_keys_and_figures_come_from_lottery_figures(monkeypatch) -> None:
    assert Lottery.point_keys == ("level",)
    calls = []

    def imp_figures(data: Any, colors: Any) -> list[str]:
        calls.append((data, colors))
        return ["figure"]

    # Stands in for the module (and its matplotlib), which the method imports only when called.
    fake = types.ModuleType("pcnbench_plugins.lottery_figures")
    fake.imp_figures = imp_figures  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pcnbench_plugins.lottery_figures", fake)
    data, colors = object(), {"lottery": "#123456"}
    assert Lottery().figures(data, colors) == ["figure"]  # type: ignore[arg-type]
    assert calls == [(data, colors)]


def test_importing_the_method_does_not_import_matplotlib() -> None:
    code = (
        "import sys, pcnbench_plugins.lottery; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
        "assert 'pcnbench_plugins.lottery_figures' not in sys.modules, 'figures imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_check_model_rejects_bad_exclude_patterns_on_a_meta_model() -> None:
    with torch.device("meta"):
        model = convnet()
    Lottery().check_model(LotteryParams(levels=1, exclude="6"), model)
    with pytest.raises(
        ParamError, match="pattern '7' matches no conv, linear or attention layer"
    ) as info:
        Lottery().check_model(LotteryParams(levels=1, exclude="6, 7"), model)
    assert (info.value.key, "(layers: 0, 3, 6)" in info.value.message) == ("exclude", True)
    with pytest.raises(ParamError, match="nothing to prune"):
        Lottery().check_model(LotteryParams(levels=1, exclude="*"), model)


@pytest.mark.parametrize(
    "values",
    [
        {"levels": 0},
        {"levels": 2, "rate": 0},
        {"levels": 2, "rate": 1},
        {"levels": 2, "rewind": "2x"},
        {"levels": 2, "rewind": -1},
        {"levels": 2, "rewind": "1.5ep"},
        {"levels": 2, "rewind": True},
        {"levels": 2, "rewind": None},
        {"levels": 2, "prune": 0.2},
        {},
    ],
)
def test_params_reject_out_of_range_values(values: dict) -> None:
    with pytest.raises(ValidationError):
        LotteryParams(**values)


def test_rewind_must_come_before_the_end_of_training() -> None:
    with pytest.raises(ParamError, match=re.escape("recipe.epochs=3); got 3ep")) as info:
        Lottery().check(LotteryParams(levels=2, rewind="3ep"), recipe(epochs=3))
    assert info.value.key == "rewind"
    Lottery().check(LotteryParams(levels=2, rewind="2ep"), recipe(epochs=3))
    # Iterations depend on the data's size, so they are checked when the session exists.
    Lottery().check(LotteryParams(levels=2, rewind="9it"), recipe(epochs=3))
    session = Session(convnet(), image_splits(), recipe(epochs=3), seed=0)
    with pytest.raises(ParamError, match="9it is step 9, not before the end"):
        Lottery().run(session, LotteryParams(levels=2, rewind="9it"))
    assert session.steps_trained == 0


def test_suite_error_points_at_the_rewind_parameter(host, write_suite) -> None:
    text = BASE_SUITE.replace(
        "  - dense\n", "  - name: lottery\n    params:\n      levels: 2\n      rewind: [1ep, 2ep]\n"
    )
    file = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(file, host)
    assert info.value.path == "methods[0].params.rewind[1]"
    assert info.value.line == text[: text.index("rewind:")].count("\n") + 1
    assert "must be before the end of training" in info.value.message
