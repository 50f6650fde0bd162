"""Numbers a cell may not store: a diverged training, a model holding nan, unenforced masks."""

from __future__ import annotations

import math
import sqlite3

import torch

from pcnbench import api
from pcnbench.hookspecs import hookimpl
from pcnbench.runner import Runner
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE


class PoisonParams(api.Params):
    """After optimizer step `at_step`, a nan goes into the first weight."""

    at_step: int = 5


class Poison(api.Method):
    """Test-only: trains with a nan written into the model mid-training (a diverging method)."""

    name = "poison"
    Params = PoisonParams

    def run(self, session: api.Session, params: PoisonParams) -> None:
        """Train to the end with the nan written in, then record."""

        def hook() -> None:
            if session.step == params.at_step:
                with torch.no_grad():
                    next(session.model.parameters())[0, 0] = math.nan

        session.add_step_hook(hook)
        session.train()
        session.record()


class Leaky(api.Method):
    """Test-only: masks half of every linear weight but never re-applies the masks."""

    name = "leaky"

    def run(self, session: api.Session, params: api.Params) -> None:
        """Train one epoch, mask, train on without a step hook, record."""
        session.train(until=1)
        for module in session.model.modules():
            if isinstance(module, torch.nn.Linear):
                mask = torch.ones_like(module.weight)
                mask[:, ::2] = 0
                api.set_mask(module, "weight", mask)
        session.train()
        session.record()


class NumbersPlugin:
    """Registers `poison` and `leaky` in code."""

    @hookimpl
    def register_methods(self, register) -> None:
        """Register the two test methods."""
        register(Poison())
        register(Leaky())


def run_suite(methods: str, write_suite, tmp_path) -> dict[str, tuple[str, str | None]]:
    """Run BASE_SUITE with `methods` in place of dense; method → (status, error)."""
    host = api.load_plugins([("test-numbers", NumbersPlugin())])
    loaded = load_suite(write_suite(BASE_SUITE.replace("  - dense", methods)), host)
    out = tmp_path / "out"
    # no trunk sharing: poison's step hook edits weights without leaving a mark the trunk
    # tracker sees, so dense's cached trunk would be restored in place of its training
    Runner(loaded, host, output=out, metering=False, share=False).run()
    with sqlite3.connect(out / "results.db") as db:
        return {m: (s, e) for m, s, e in db.execute("SELECT method, status, error FROM cells")}


def test_a_diverged_cell_fails_naming_the_step_and_the_others_are_done(write_suite, tmp_path):
    cells = run_suite("  - dense\n  - poison", write_suite, tmp_path)
    # 64 samples in batches of 16: 4 steps an epoch; the loss of step 6 is the first nan
    assert cells == {
        "dense": ("done", None),
        "poison": ("failed", "diverged: loss is nan at epoch 2, step 6"),
    }


def test_a_cell_whose_masks_are_not_enforced_fails_at_record(write_suite, tmp_path):
    cells = run_suite("  - leaky\n  - dense", write_suite, tmp_path)
    status, error = cells["leaky"]
    # fc1 is 8×64 and its mask removes every other input column: 256 weights, all trained on
    assert status == "failed" and cells["dense"] == ("done", None)
    assert error.startswith(
        "cannot record: fc1.weight holds 256 nonzero weights at the 256 positions its mask removes"
    )
    assert "Traceback" not in error and "MaskEnforcer" in error
