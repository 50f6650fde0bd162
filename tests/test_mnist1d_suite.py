"""suites/mnist1d.yaml: it validates, names the paper's models and recipe, declares a claim
against a published figure and a method claim, and a cut-down copy runs end to end."""

from __future__ import annotations

from pathlib import Path

import yaml

from pcnbench.cli import main
from pcnbench.manager import load_plugins
from pcnbench.schema import ReferenceBaseline
from pcnbench.store import Store
from pcnbench.suite import load_suite

SUITE = Path(__file__).resolve().parent.parent / "suites" / "mnist1d.yaml"


def test_the_mnist1d_suite_validates_with_the_papers_models_and_recipe() -> None:
    loaded = load_suite(SUITE, load_plugins())
    recipe = loaded.suite.recipe
    assert (recipe.epochs * 4000 // recipe.batch_size, recipe.batch_size) == (6000, 100)
    assert (recipe.optimizer.name, recipe.optimizer.lr, recipe.weight_decay) == ("adam", 0.01, 0)
    assert loaded.suite.seeds == [0, 1, 2]
    models = {(m.name, m.label) for m in loaded.models}
    assert ("cnn1d", "cnn1d(channels=25)") in models
    assert ("mlp", "mlp(width=100,depth=2,residual=true)") in models
    methods = {c.method.name for c in loaded.cells if c.model.name == "cnn1d"}
    assert methods == {"dense", "pcn", "magnitude", "lottery", "lowrank"}
    against = [c for c in loaded.suite.claims if isinstance(c.baseline, ReferenceBaseline)]
    among = [c for c in loaded.suite.claims if not isinstance(c.baseline, ReferenceBaseline)]
    assert against and among
    labels = {r.label: r for r in loaded.suite.references}
    assert labels["ConvBase (mnist1d notebook)"].accuracy == 0.923
    assert labels["MLPBase (mnist1d notebook)"].accuracy == 0.651
    assert labels["CNN (Greydanus & Kobak 2024)"].params == 5210


def test_a_cut_down_copy_runs_every_cell_and_judges_its_claims(tmp_path: Path, capsys) -> None:
    suite = yaml.safe_load(SUITE.read_text(encoding="utf-8"))
    suite.update(name="mnist1d-cut", seeds=[0, 1])
    suite["recipe"].update(epochs=2, eval_every=0)
    suite["executor"] = {"name": "local", "jobs": 1}
    for method in suite["methods"]:
        params = method.get("params", {}) if isinstance(method, dict) else {}
        for key in ("at_epoch", "finetune_epochs", "levels"):
            if key in params:
                params[key] = 1
    path = tmp_path / "mnist1d.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(path), "--output", str(out), "--quiet", "--no-report"]) == 0
    store = Store.open_existing(out)
    try:
        frame = store.results_frame()
    finally:
        store.close()
    assert set(frame["status"]) == {"done"}
    assert len(frame["cell_id"].unique()) == 22
    capsys.readouterr()
    assert main(["claims", str(out)]) in (0, 1)  # two epochs decide nothing; all are judged
    said = capsys.readouterr().out
    assert "not evaluated" not in said, said
    assert "vs reference 'ConvBase (mnist1d notebook)'" in said
