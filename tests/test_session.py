"""The training session: resumable training, snapshots, schedule, evaluation and records."""

from __future__ import annotations

import math
import re
import sqlite3
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pcnbench.session.loop as session_module
from pcnbench.api import FolderSplits, TensorSplits
from pcnbench.counting import count_macs, count_params
from pcnbench.errors import DivergedError, PcnbenchError
from pcnbench.recipe import Recipe
from pcnbench.schedule import lr_at
from pcnbench.session import EpochRecord, Session
from tests.conftest import BASE_SUITE


def image_splits(n: int = 40, seed: int = 0) -> TensorSplits:
    g = torch.Generator().manual_seed(seed)
    return TensorSplits(
        x_train=torch.rand(n, 3, 6, 6, generator=g),
        y_train=torch.randint(0, 4, (n,), generator=g),
        x_test=torch.rand(12, 3, 6, 6, generator=g),
        y_test=torch.randint(0, 4, (12,), generator=g),
        mean=(0.5, 0.4, 0.6),
        std=(0.25, 0.3, 0.2),
    )


def convnet(seed: int = 0) -> nn.Module:
    """Conv, BatchNorm and dropout: buffers and the global RNG both matter for exactness."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(4 * 6 * 6, 4),
    )


def recipe(**overrides: object) -> Recipe:
    settings: dict = {
        "epochs": 5,
        "batch_size": 16,  # 40 samples: 3 steps per epoch, the last one of 8
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "weight_decay": 1e-3,
        "schedule": {"name": "multistep", "milestones": [2, 4], "gamma": 0.1},
        "augmentation": {"crop_padding": 2, "flip": True},
        "eval_every": 0,
    }
    settings.update(overrides)
    schedule = settings["schedule"]
    if "milestones" in schedule:  # keep the default milestones valid for shorter recipes
        kept = [m for m in schedule["milestones"] if m <= settings["epochs"]]
        settings["schedule"] = {**schedule, "milestones": kept}
    return Recipe(**settings)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def session(**overrides: object) -> Session:
    return Session(convnet(), image_splits(), recipe(**overrides), seed=7)


def test_train_in_pieces_equals_one_go() -> None:
    one_go = session()
    one_go.train("end")
    pieces = session()
    pieces.train(until=3)
    assert pieces.step == 9 and pieces.epoch == 3.0
    pieces.train(until="end")
    assert_same_state(state(one_go.model), state(pieces.model))
    mid_epoch = session()
    mid_epoch.train(until="7it")  # stops inside epoch 3, after the first milestone
    assert mid_epoch.step == 7 and mid_epoch.records[-1].epoch == 2
    mid_epoch.train(until="end")
    assert_same_state(state(one_go.model), state(mid_epoch.model))
    assert [r.epoch for r in mid_epoch.records] == [1, 2, 3, 4, 5]


def test_restore_continues_exactly_as_before() -> None:
    s = session()
    s.train(until=2)
    snapshot = s.snapshot()
    s.train(until=4)
    first = state(s.model)
    for _ in range(2):  # a snapshot can be restored more than once (IMP rewinds every level)
        s.restore(snapshot)
        assert s.step == 6
        s.train(until=4)
        assert_same_state(first, state(s.model))
    assert s.steps_trained == 6 + 3 * 6 and s.epochs_trained == 8.0


def test_snapshot_is_not_changed_by_later_training() -> None:
    s = session()
    s.train(until=1)
    snapshot = s.snapshot()
    saved = state(snapshot.model)
    s.train(until=2)
    assert_same_state(saved, state(snapshot.model))


def test_replacing_the_model_builds_a_fresh_optimizer_and_keeps_the_schedule() -> None:
    s = session()
    s.train(until=2)  # the first milestone: lr drops to 0.005 at step 6
    old = s.optimizer
    s.model = convnet(seed=1)
    assert s.optimizer is not old and not s.optimizer.state
    assert all(p.device == torch.device("cpu") for p in s.model.parameters())
    s.train(until="7it")
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(lr_at(6, 3, s.recipe))
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    assert len(s.optimizer.state) == len(list(s.model.parameters()))


def test_lr_schedules() -> None:
    multistep = recipe(schedule={"name": "multistep", "milestones": [2, 4], "gamma": 0.5})
    assert [lr_at(s, 10, multistep) for s in (0, 19, 20, 39, 40, 49)] == pytest.approx(
        [0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125]
    )
    constant = recipe(schedule={"name": "constant"})
    assert lr_at(0, 10, constant) == lr_at(49, 10, constant) == 0.05
    cosine = recipe(schedule={"name": "cosine"})
    assert lr_at(0, 10, cosine) == pytest.approx(0.05)
    assert lr_at(25, 10, cosine) == pytest.approx(0.025)
    assert lr_at(40, 10, cosine) == pytest.approx(0.025 * (1 + math.cos(math.pi * 0.8)))
    warm = recipe(schedule={"name": "multistep", "milestones": [4], "warmup_epochs": 0.5})
    assert [lr_at(s, 10, warm) for s in (0, 1, 4, 5, 39, 40)] == pytest.approx(
        [0.01, 0.02, 0.05, 0.05, 0.05, 0.005]
    )


def test_train_until_before_the_current_step_names_both() -> None:
    s = session()
    s.train(until=3)
    with pytest.raises(ValueError, match=r"until=2\) is step 6 .*current step 9"):
        s.train(until=2)
    with pytest.raises(ValueError, match="beyond the recipe's end at step 15"):
        s.train(until="6ep")
    with pytest.raises(ValueError, match="'500it'"):
        s.train(until="soon")
    s.train(until="9it")  # the current step itself is fine: nothing to do
    assert s.step == 9


def test_epoch_records_follow_the_eval_cadence() -> None:
    seen: list[EpochRecord] = []
    s = Session(convnet(), image_splits(), recipe(eval_every=2), seed=7, on_epoch_end=seen.append)
    s.train(until="end", phase="dense")
    assert seen == s.records
    assert [r.epoch for r in s.records] == [1, 2, 3, 4, 5]
    assert [r.step for r in s.records] == [3, 6, 9, 12, 15]
    assert [r.test_accuracy is not None for r in s.records] == [False, True, False, True, True]
    assert [r.test_loss is not None for r in s.records] == [False, True, False, True, True]
    assert all(r.val_accuracy is None and r.phase == "dense" for r in s.records)
    assert [r.lr for r in s.records] == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.0005])
    assert all(math.isfinite(r.train_loss) and r.seconds >= 0 for r in s.records)


def test_progress_is_reported_sparsely_and_at_epoch_ends() -> None:
    calls: list[tuple[int, int]] = []
    s = Session(
        convnet(),
        image_splits(),
        recipe(epochs=2, batch_size=1),
        seed=0,
        on_progress=lambda *a: calls.append(a),
    )
    s.train("end")
    steps = [step for step, _ in calls]
    assert all(total == 80 for _, total in calls)
    assert steps == sorted(set(steps)) and steps[-1] == 80 and 40 in steps
    assert len(calls) <= 100 + 2


def test_evaluate_accuracy_and_a_trained_model_learns_separable_data() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 4
    y = torch.randint(0, 3, (240,), generator=g)
    x = centers[y] + torch.randn(240, 8, generator=g)
    splits = TensorSplits(x[:180], y[:180], x[180:], y[180:], (0.0,), (1.0,))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    r = Recipe(epochs=4, batch_size=16, optimizer={"lr": 0.05}, eval_every=0)
    s = Session(model, splits, r, seed=0)
    before = s.evaluate()
    assert 0 <= before["accuracy"] <= 1 and before["loss"] > 0
    s.train()
    assert s.evaluate()["accuracy"] > 0.9
    assert s.model.training  # evaluate put the training mode back


def test_validation_split_is_evaluated_and_recorded() -> None:
    s = session(validation_split=0.25, eval_every=1, epochs=2)
    assert s.steps_per_epoch == 2  # 30 of 40 samples left for training
    s.train()
    assert all(0 <= r.val_accuracy <= 1 for r in s.records)
    assert 0 <= s.record()["val_accuracy"] <= 1


def test_record_counts_and_charges_the_current_model() -> None:
    s = session(epochs=2)
    s.train(until=1)
    s.model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    s.train()
    row = s.record(level=3)
    expected_dense = count_params(convnet())
    assert row["dense_params"] == s.dense_params == expected_dense
    assert row["params"] == 3 * 6 * 6 * 4 + 4 and row["macs"] == 3 * 6 * 6 * 4
    assert row["dense_macs"] == count_macs(convnet(), (3, 6, 6))
    assert row["epochs_trained"] == 2.0 and row["step"] == 6 and row["level"] == 3
    assert 0 <= row["accuracy"] <= 1 and row["test_loss"] > 0 and row["val_accuracy"] is None
    assert row["train_time_s"] == pytest.approx(s.train_time_s) and row["train_time_s"] > 0
    assert s.results == [row]


def test_nested_phases_fold_into_the_outer_one_but_evaluation_is_carved_out() -> None:
    s = session(epochs=2, eval_every=1)
    with s.phase("pcn", kind="transform"):
        s.train(until=1)  # evaluates at the end of epoch 1, inside two phases
        s.evaluate()
    s.train()
    s.evaluate()
    assert [(p.name, p.kind) for p in s.phases] == [
        ("eval", "eval"),
        ("eval", "eval"),
        ("pcn", "transform"),
        ("eval", "eval"),
        ("train", "train"),
        ("eval", "eval"),
    ]
    assert [(p.start_step, p.end_step) for p in s.phases if p.kind != "eval"] == [(0, 3), (3, 6)]
    assert s.train_time_s == s.phases[4].wall_s
    assert all(p.wall_s >= 0 and p.cpu_s >= 0 for p in s.phases)


def test_train_time_excludes_the_per_epoch_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    s = session(epochs=2, eval_every=1)
    slow = s._source.eval_batches

    def eval_batches(*args, **kwargs):
        time.sleep(0.5)  # an evaluation far slower than this tiny training
        return slow(*args, **kwargs)

    monkeypatch.setattr(s._source, "eval_batches", eval_batches)
    began = time.perf_counter()
    s.train()
    whole = time.perf_counter() - began
    evals = [p.wall_s for p in s.phases if p.kind == "eval"]
    assert len(evals) == 2 and min(evals) >= 0.5
    # what is left of the call once its two evaluations are carved out is the training
    assert s.train_time_s == pytest.approx(whole - sum(evals), abs=0.05)
    assert s.train_time_s < whole - 1.0


def test_calibration_batches_come_from_the_training_set() -> None:
    s = session()
    batches = list(s.calibration_batches(n=20, batch_size=8))
    assert [b.shape for b in batches] == [(8, 3, 6, 6), (8, 3, 6, 6), (4, 3, 6, 6)]
    assert torch.equal(torch.cat(batches), torch.cat(list(s.calibration_batches(n=20))))


def test_adam_and_adamw_are_built_from_the_recipe() -> None:
    adam = session(optimizer={"name": "adam", "lr": 1e-3, "betas": (0.8, 0.9)})
    assert isinstance(adam.optimizer, torch.optim.Adam)
    assert adam.optimizer.param_groups[0]["betas"] == (0.8, 0.9)
    adamw = session(optimizer={"name": "adamw", "lr": 1e-3})
    assert isinstance(adamw.optimizer, torch.optim.AdamW)
    assert adamw.optimizer.param_groups[0]["weight_decay"] == 1e-3
    adamw.train(until="2it")


class Pairs(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def test_folder_data_trains_in_pieces_like_one_go() -> None:
    t = image_splits()
    folder = FolderSplits(
        Pairs(t.x_train, t.y_train), Pairs(t.x_test, t.y_test), Pairs(t.x_train, t.y_train), 0
    )
    plain = recipe(augmentation={})
    one_go = Session(convnet(), folder, plain, seed=3)
    one_go.train()
    pieces = Session(convnet(), folder, plain, seed=3)
    pieces.train(until="4it")
    pieces.train()
    assert_same_state(state(one_go.model), state(pieces.model))
    assert pieces.input_shape == (3, 6, 6) and 0 <= pieces.evaluate()["accuracy"] <= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_in_pieces_and_restore() -> None:
    def cuda_session() -> Session:
        return Session(convnet(), image_splits(), recipe(), seed=7, device="cuda")

    one_go = cuda_session()
    one_go.train()
    pieces = cuda_session()
    pieces.train(until="7it")
    snapshot = pieces.snapshot()
    pieces.train()
    pieces.restore(snapshot)
    pieces.train()
    for a, b in zip(one_go.model.parameters(), pieces.model.parameters(), strict=True):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a, b)
    assert next(pieces.calibration_batches(8)).device.type == "cuda"
    assert pieces.phases[0].wall_s > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_steps_never_wait_for_the_gpu() -> None:
    s = Session(convnet(), image_splits(), recipe(), seed=7, device="cuda")
    s.train(until=1)
    torch.cuda.set_sync_debug_mode("error")
    try:
        s.train(until="5it")  # within epoch 2: no epoch end, so nothing may read the GPU
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert s.step == 5


def test_finetune_extends_training_with_fixed_or_rewound_learning_rate() -> None:
    fixed = session(epochs=4, eval_every=0)
    fixed.train()
    fixed.finetune(2, lr=0.01)
    assert fixed.step == fixed.total_steps == 6 * fixed.steps_per_epoch
    assert fixed.epochs_trained == 6.0
    assert [r.epoch for r in fixed.records] == [1, 2, 3, 4, 5, 6]
    assert fixed.records[-1].lr == 0.01 and fixed.records[-1].test_accuracy is not None
    rewind = session(epochs=4, eval_every=0)
    rewind.train()
    rewind.finetune(2, lr="rewind")
    spe = rewind.steps_per_epoch
    # replays epochs 3 and 4 of the schedule (milestones 2 and 4 → lr 0.05·0.1 in epoch 3)
    assert [rewind.lr_at(4 * spe + i) for i in (0, spe)] == [
        lr_at(2 * spe, spe, rewind.recipe),
        lr_at(3 * spe, spe, rewind.recipe),
    ]
    with pytest.raises(ValueError, match="replays more epochs than the recipe has"):
        rewind.finetune(9)


def test_finetune_before_the_end_is_an_error() -> None:
    s = session(epochs=3)
    s.train(until=1)
    with pytest.raises(ValueError, match="starts at the end of training"):
        s.finetune(1, lr=0.01)


def test_an_epoch_trained_in_pieces_records_one_loss_over_all_its_batches() -> None:
    whole = session(epochs=2)
    whole.train(until=1)
    pieces = session(epochs=2)
    pieces.train(until="1it")
    pieces.train(until="3it")
    assert len(pieces.records) == 1 == len(whole.records)
    assert pieces.records[0].train_loss == pytest.approx(whole.records[0].train_loss, rel=1e-6)


def test_step_hooks_see_the_step_just_taken() -> None:
    s = session(epochs=1)
    seen: list[int] = []
    s.add_step_hook(lambda: seen.append(s.step))
    s.train()
    assert seen == [1, 2, 3]


def poison(s: Session, at_step: int, value: float = math.nan) -> None:
    """After optimizer step `at_step`, write `value` into the classifier's bias of class 0."""
    fill = torch.full((1,), value, device=s.device)  # made now: on CUDA, a copy would sync

    def hook() -> None:
        if s.step == at_step:
            with torch.no_grad():
                s.model[5].bias[:1].copy_(fill)

    s.add_step_hook(hook)


def test_a_nan_loss_stops_training_naming_its_epoch_and_step(monkeypatch) -> None:
    losses: list[float] = []

    def cross_entropy(out: torch.Tensor, y: torch.Tensor, **kwargs: str) -> torch.Tensor:
        loss = F.cross_entropy(out, y, **kwargs)
        if not kwargs:  # a training step (evaluation sums)
            losses.append(loss.item())
        return loss

    monkeypatch.setattr(session_module, "F", SimpleNamespace(cross_entropy=cross_entropy))
    s = session(optimizer={"name": "sgd", "lr": 1e6, "momentum": 0.9})
    with pytest.raises(DivergedError) as raised:
        s.train()
    first = next(i for i, loss in enumerate(losses) if not math.isfinite(loss))
    step = first + 1  # optimizer steps count from 1
    assert step > 1 and math.isnan(losses[first])
    epoch = (step - 1) // s.steps_per_epoch + 1
    assert str(raised.value) == f"diverged: loss is nan at epoch {epoch}, step {step}"
    assert [r.epoch for r in s.records] == list(range(1, epoch))  # no record of that epoch
    # the epoch is trained to its end (finding out would wait for the GPU every step)
    assert s.step == epoch * s.steps_per_epoch == len(losses)


def test_divergence_in_an_earlier_piece_of_the_epoch_is_named_at_its_end() -> None:
    s = session()  # 3 steps per epoch
    poison(s, at_step=4)  # the loss of step 5, in epoch 2, is the first nan
    s.train(until="5it")  # ends inside epoch 2: nothing is read yet
    assert s.step == 5
    with pytest.raises(DivergedError, match=r"^diverged: loss is nan at epoch 2, step 5$"):
        s.train(until="6it")
    assert [r.epoch for r in s.records] == [1]


def test_the_first_nan_step_travels_with_a_stored_mid_epoch_state() -> None:
    s = session()
    poison(s, at_step=4)
    s.train(until="5it")
    stored = s._capture().cpu()  # what a checkpoint or a trunk state writes
    resumed = session()
    resumed._apply(stored.to(resumed.device))
    with pytest.raises(DivergedError, match=r"^diverged: loss is nan at epoch 2, step 5$"):
        resumed.train(until="6it")


def test_an_infinite_loss_is_named_inf() -> None:
    s = session(optimizer={"name": "sgd", "lr": 0.05})
    poison(s, at_step=4, value=-math.inf)  # class 0 gets probability 0: its samples cost inf
    with pytest.raises(DivergedError, match=r"^diverged: loss is inf at epoch 2, step 5$"):
        s.train()


def test_a_diverged_cell_is_failed_with_the_message_and_the_rest_of_the_suite_runs(
    host, write_suite, tmp_path, capsys
) -> None:
    from pcnbench.cli import main

    # magnitude fine-tunes its third epoch at lr 1e20 (at 1e6 this net's loss stays finite);
    # dense trains at the recipe's lr 0.1
    text = BASE_SUITE.replace(
        "  - dense",
        "  - dense\n  - name: magnitude\n"
        "    params: {sparsity: 0.5, finetune_epochs: 1, finetune_lr: 1e20}",
    )
    out = tmp_path / "out"
    argv = ["run", str(write_suite(text)), "--output", str(out), "--quiet", "--no-report"]
    assert main(argv) == 1
    assert "1 trained, 0 already done, 1 failed" in capsys.readouterr().out
    with sqlite3.connect(out / "results.db") as db:
        cells = {
            m: (status, error)
            for m, status, error in db.execute("SELECT method, status, error FROM cells")
        }
    assert cells["dense"] == ("done", None)
    status, error = cells["magnitude"]
    found = re.fullmatch(r"diverged: loss is (nan|inf) at epoch 3, step (\d+)", error)
    assert status == "failed" and found, error
    assert 9 <= int(found[2]) <= 12  # 4 steps per epoch: epoch 3 is steps 9-12


def test_record_refuses_non_finite_parameters_and_buffers() -> None:
    s = session(epochs=1)
    s.train()
    with torch.no_grad():
        s.model[5].weight[2, :3] = math.nan
    with pytest.raises(
        PcnbenchError, match=r"^cannot record: parameter 5\.weight holds nan/inf \(3 of 576 "
    ):
        s.record()
    with torch.no_grad():
        s.model[5].weight.zero_()
        s.model[1].running_var[1] = math.inf
    with pytest.raises(PcnbenchError, match=r"buffer 1\.running_var holds nan/inf \(1 of 4 "):
        s.record()
    assert s.results == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_divergence_is_found_without_waiting_for_the_gpu_each_step() -> None:
    s = Session(convnet(), image_splits(), recipe(), seed=7, device="cuda")
    s.train(until=1)
    poison(s, at_step=4)
    torch.cuda.set_sync_debug_mode("error")
    try:
        s.train(until="5it")  # diverges inside epoch 2: still nothing may read the GPU
    finally:
        torch.cuda.set_sync_debug_mode("default")
    with pytest.raises(DivergedError, match=r"^diverged: loss is nan at epoch 2, step 5$"):
        s.train()
    with pytest.raises(PcnbenchError, match=r"^cannot record: parameter 0\.weight holds nan/inf"):
        s.record()
