"""pcnbench from Python: `pcnbench.run` and `pcnbench.load`, the exports other tools read, and
the example notebook executed on a real Jupyter kernel."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

import pcnbench
from pcnbench.claims import judge_claims
from pcnbench.cli import main
from pcnbench.report import load_report_data

REPO = Path(__file__).resolve().parents[1]
TINY = """\
name: tiny
seeds: [0, 1]
datasets: [digits]
models:
  - name: mlp
    params: {width: 32, depth: 1}
methods:
  - dense
  - name: magnitude
    params: {sparsity: 0.5, finetune_epochs: 1}
recipe:
  epochs: 2
  batch_size: 64
  optimizer: {name: sgd, lr: 0.05}
claims:
  - name: pruning keeps accuracy within 50 points
    subject: {method: magnitude}
    baseline: {method: dense}
    expect: {accuracy: ">= -50pp"}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> pcnbench.RunResult:
    """The tiny suite run once from Python (no output asked for)."""
    folder = tmp_path_factory.mktemp("tiny")
    suite = folder / "tiny.yaml"
    suite.write_text(TINY, encoding="utf-8")
    return pcnbench.run(suite, output=folder / "out", jobs=1)


def test_run_from_python_returns_what_it_did_and_prints_nothing(tmp_path: Path, capfd) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY, encoding="utf-8")
    result = pcnbench.run(suite, output=tmp_path / "out", jobs=1, report=False)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert result.ok and len(result.done) == 4 and result.failed == []
    assert result.report is None and result.output == tmp_path / "out"
    again = pcnbench.run(suite, output=tmp_path / "out", jobs=1, report=False)
    assert (again.done, again.skipped) == ([], 4)  # as `pcnbench run`: done cells are skipped
    assert "4 trained, 0 already done, 0 failed (ok)" in repr(result)


def test_bad_input_raises_the_errors_the_command_line_reports(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text(TINY.replace("sparsity: 0.5", "sparsity: 1.5"), encoding="utf-8")
    with pytest.raises(pcnbench.SuiteError) as raised:
        pcnbench.run(suite, output=tmp_path / "out")
    assert main(["validate", str(suite)]) == 2
    assert capsys.readouterr().err.strip() == str(raised.value)
    assert str(raised.value).startswith(f"{suite}:10:")
    with pytest.raises(pcnbench.SuiteError, match="--only 'nothing' matches no cell"):
        pcnbench.run(_tiny(tmp_path), output=tmp_path / "out", only="nothing")


def _tiny(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def test_a_run_with_failed_cells_returns_a_summary_saying_so(tmp_path: Path) -> None:
    # a rewind point past the recipe's end fails at run time, not at validation (a step count)
    text = TINY.replace(
        "  - name: magnitude\n    params: {sparsity: 0.5, finetune_epochs: 1}",
        "  - name: lottery\n    params: {levels: 1, rewind: 100000it}",
    ).replace("subject: {method: magnitude}", "subject: {method: lottery}")
    suite = tmp_path / "failing.yaml"
    suite.write_text(text, encoding="utf-8")
    result = pcnbench.run(suite, output=tmp_path / "out", jobs=1, report=False)
    assert not result.ok and len(result.failed) == 2 and len(result.done) == 2
    frame = result.load().frame
    errors = frame[frame["status"] == "failed"]["error"]
    assert (
        list(errors) == ["100000it is step 100000, not before the end of training at step 46"] * 2
    )


def test_load_gives_proper_dtypes(tiny_run: pcnbench.RunResult) -> None:
    frame = pcnbench.load(tiny_run.output).frame
    for name in ("params", "dense_params", "macs", "dense_macs", "seed", "result"):
        assert frame[name].dtype == "Int64", name
    for name in ("dataset", "model", "method", "status"):
        assert isinstance(frame[name].dtype, pd.CategoricalDtype), name
    for name in ("accuracy", "train_time_s", "coverage", "density"):
        assert frame[name].dtype == "float64", name
    assert str(frame["started_at"].dtype).startswith("datetime64") and frame["started_at"].dt.tz
    assert isinstance(frame["method_params"].iloc[0], dict)
    pruned = frame[frame["method"] == "magnitude"].iloc[0]
    assert pruned["method_params"]["sparsity"] == 0.5
    assert isinstance(pruned["left_dense"], list) and pruned["left_dense"][0]["reason"]
    assert isinstance(pruned["layer_densities"], dict)
    assert list(frame["seed"]) == [0, 1, 0, 1] or sorted(frame["seed"]) == [0, 0, 1, 1]


def test_load_opens_the_database_read_only(tiny_run: pcnbench.RunResult) -> None:
    db = tiny_run.output / "results.db"
    before = (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns)
    listing = sorted(p.name for p in tiny_run.output.iterdir())
    results = pcnbench.load(db)  # the file itself, or its folder
    results.comparison()
    results.claims()
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tiny_run.output.iterdir()) == listing


def test_load_says_what_the_command_line_says_for_a_missing_or_damaged_database(
    tmp_path: Path, capsys
) -> None:
    for make in (lambda p: None, lambda p: (p / "results.db").write_bytes(b"not sqlite" * 20)):
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        make(folder)
        with pytest.raises(pcnbench.PcnbenchError) as raised:
            pcnbench.load(folder)
        assert main(["results", str(folder)]) == 2
        assert capsys.readouterr().err.strip() == f"error: {raised.value}"


def test_comparison_and_claims_are_the_reports_numbers(tiny_run: pcnbench.RunResult) -> None:
    results = pcnbench.load(tiny_run.output)
    ours = results.comparison()
    written = pd.read_csv(tiny_run.output / "comparison.csv")
    for name in ("params", "compression", "accuracy_pct", "accuracy_ci95_pct", "delta_acc_pp"):
        # the CSV writes 6 significant digits
        assert list(ours[name]) == pytest.approx(list(written[name]), rel=1e-5, nan_ok=True)
    claims = results.claims()
    assert len(claims) == 1
    direct = judge_claims(load_report_data(tiny_run.output))
    assert [(c.name, c.verdict, c.points) for c in claims] == [
        (c.name, c.verdict, c.points) for c in direct
    ]


def test_a_report_figure_is_a_matplotlib_figure(tiny_run: pcnbench.RunResult) -> None:
    import matplotlib.figure

    results = pcnbench.load(tiny_run.output)
    names = results.figure_names()
    assert "pareto-digits-parameters" in names
    figure = results.figure("pareto-digits-parameters")
    assert isinstance(figure, matplotlib.figure.Figure) and figure.axes
    with pytest.raises(pcnbench.PcnbenchError, match="did you mean 'pareto-digits-parameters'"):
        results.figure("pareto-digits-parameter")


def test_jupyter_shows_a_short_summary(tiny_run: pcnbench.RunResult) -> None:
    shown = pcnbench.load(tiny_run.output)._repr_html_()
    assert "<code>tiny</code>" in shown and "<td>done</td>" in shown
    assert "claims: 1 supported" in shown


def test_the_default_csv_opens_with_pythons_csv_module(
    tiny_run: pcnbench.RunResult, capsys
) -> None:
    assert main(["results", str(tiny_run.output), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))  # the default field limit (131,072)
    assert len(rows) == 4 and "left_dense" not in rows[0] and "method_params" in rows[0]
    assert "--all-columns keeps them" in err
    assert main(["results", str(tiny_run.output), "--format", "csv", "--all-columns"]) == 0
    assert "left_dense" in next(csv.reader(io.StringIO(capsys.readouterr().out)))


def test_parquet_keeps_the_dtypes(tiny_run: pcnbench.RunResult, tmp_path: Path) -> None:
    target = tmp_path / "results.parquet"
    assert (
        main(["results", str(tiny_run.output), "--format", "parquet", "--output", str(target)]) == 0
    )
    frame = pd.read_parquet(target)
    assert frame["params"].dtype == "Int64" and frame["accuracy"].dtype == "float64"
    assert isinstance(frame["method"].dtype, pd.CategoricalDtype)
    assert json.loads(frame["left_dense"].dropna().iloc[0])[0]["reason"]
    assert list(frame.columns) == list(pcnbench.load(tiny_run.output).frame.columns)


def test_the_example_notebook_runs_on_a_jupyter_kernel(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = REPO / "examples" / "quickstart.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
    # the quickstart with every grid point, claim and seed, cut to 4 epochs (a test's budget)
    suite = yaml.safe_load((REPO / "suites" / "quickstart.yaml").read_text(encoding="utf-8"))
    suite["recipe"].update(epochs=4, eval_every=2)
    suite["recipe"]["schedule"]["milestones"] = [2, 3]
    for method in suite["methods"]:
        params = method.get("params", {}) if isinstance(method, dict) else {}
        for key, value in {"at_epoch": 2, "finetune_epochs": 1, "levels": 1}.items():
            if key in params:
                params[key] = value
    cut = tmp_path / "quickstart.yaml"
    cut.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    env = {"PCNBENCH_SUITE": str(cut)}
    env["PCNBENCH_OUTPUT"] = str(tmp_path / "out")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits them
    try:
        where = tmp_path / "work"
        where.mkdir()
        client = nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(where)}}
        )
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
            texts.append(str(output.get("text") or output.get("data", {}).get("text/plain", "")))
    shown = "\n".join(texts)
    assert "16 trained, 0 already done, 0 failed (ok)" in shown  # every cell of the quickstart
    assert "<Figure" in shown and "PCN keeps dense accuracy" in shown
    assert (tmp_path / "out" / "results.db").is_file()
