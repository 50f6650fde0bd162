"""The third-party examples in examples/: pip-installed, run and validated through the CLI; the
plugin guide (docs/plugins.md) kept in step with the API it documents."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

import pcnbench.api
import pcnbench.hookspecs
from pcnbench.api import derive_seed
from tests.test_plugins import env_with, pcnbench_cli, table_rows

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
HALFWAY = EXAMPLES / "pcnbench-example"
RANDOM_PRUNE = EXAMPLES / "pcnbench-random-prune"
GUIDE = REPO / "docs" / "plugins.md"

# synthetic n_train 64 in batches of 16 → 4 steps per epoch, 8 in 2 epochs
HALFWAY_SUITE = """\
name: thirdparty
seeds: [0]
datasets:
  - name: synthetic
    params: {n_train: 64, n_test: 32}
models:
  - name: mlp
    params: {width: 8, depth: 1}
methods:
  - dense
  - name: halfway
    params: {fraction: [0.5, 1.0]}
recipe:
  epochs: 2
  batch_size: 16
  optimizer: {name: sgd, lr: 0.1}
device: cpu
"""

# synthetic samples are 1×8×8 with 4 classes: the mlp is fc1 = Linear(64, 16), fc = Linear(16, 4)
LINEAR_LAYERS = {"fc1": (16, 64), "fc": (4, 16)}  # name → (out, in)

RANDOM_PRUNE_SUITE = """\
name: randomprune
seeds: [0]
datasets:
  - name: synthetic
    params: {n_train: 64, n_test: 32}
models:
  - name: mlp
    params: {width: 16, depth: 1}
methods:
  - dense
  - name: random_prune
    params: {sparsity: [0.3, 0.9], at_epoch: 1, exclude: fc}
  - name: random_prune
    params: {sparsity: 0.5}
recipe:
  epochs: 2
  batch_size: 16
  optimizer: {name: sgd, lr: 0.1}
device: cpu
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both example distributions pip-installed (offline, from copies) into one folder."""
    root = tmp_path_factory.mktemp("examples")
    # Built from copies so that setuptools' build/ and egg-info never land in the source tree.
    sources = [shutil.copytree(src, root / src.name) for src in (HALFWAY, RANDOM_PRUNE)]
    target = root / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target),
         *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    return target


def run_suite(text: str, tmp_path: Path, site: Path) -> list[dict]:
    """Run a suite with `pcnbench run` (no report) and return `pcnbench results --format json`."""
    env = env_with(site)
    suite = tmp_path / "suite.yaml"
    suite.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    ran = pcnbench_cli("run", str(suite), "--output", str(out), "--quiet", "--no-report", env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = pcnbench_cli("results", str(out), "--format", "json", env=env)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_third_party_plugin_installs_and_runs(site: Path, tmp_path: Path) -> None:
    assert (site / "pcnbench_example.py").is_file()
    entry_points = (site / "pcnbench_example-0.3.0.dist-info" / "entry_points.txt").read_text()
    assert re.search(r"^example\s*=\s*pcnbench_example$", entry_points, re.MULTILINE)
    env = env_with(site)

    listed = pcnbench_cli("plugins", env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert ["example", "pcnbench-example", "0.3.0", "methods: halfway"] in table_rows(listed.stdout)
    assert [
        "random_prune",
        "pcnbench-random-prune",
        "0.1.0",
        "methods: random_prune",
    ] in table_rows(listed.stdout)

    suite = tmp_path / "suite.yaml"
    suite.write_text(HALFWAY_SUITE, encoding="utf-8")
    out = tmp_path / "out"
    ran = pcnbench_cli("run", str(suite), "--output", str(out), "--quiet", env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "3 trained, 0 already done, 0 failed" in ran.stdout

    shown = pcnbench_cli("results", str(out), "--format", "json", env=env)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert sorted(r["method"] for r in rows) == ["dense", "halfway", "halfway"]
    assert {r["status"] for r in rows} == {"done"}
    halfway = sorted(
        (json.loads(r["method_params"])["fraction"], r["epochs_trained"], r["trained_fraction"])
        for r in rows
        if r["method"] == "halfway"
    )
    assert halfway == [(0.5, 1.0, 0.5), (1.0, 2.0, 1.0)]
    (dense,) = (r for r in rows if r["method"] == "dense")
    assert dense["epochs_trained"] == 2.0
    assert dense["trained_fraction"] is None
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)


def expected_counts(sparsity: float, exclude: tuple[str, ...]) -> dict[str, float]:
    """params, MACs and density of the pruned mlp, from its layer sizes alone."""
    sizes = {name: out * inp for name, (out, inp) in LINEAR_LAYERS.items()}
    pruned = [name for name in sizes if name not in exclude]
    kept = {n: size - round(sparsity * size) if n in pruned else size for n, size in sizes.items()}
    biases = sum(out for out, _ in LINEAR_LAYERS.values())
    return {
        "params": sum(kept.values()) + biases,  # masked weights count only where kept
        "dense_params": sum(sizes.values()) + biases,
        "macs": sum(kept.values()),  # a linear layer's MACs per sample: its (kept) weights
        "dense_macs": sum(sizes.values()),
        "density": sum(kept[n] for n in pruned) / sum(sizes[n] for n in pruned),
    }


def test_random_prune_example_prunes_what_it_says(site: Path, tmp_path: Path) -> None:
    rows = run_suite(RANDOM_PRUNE_SUITE, tmp_path, site)
    assert {r["status"] for r in rows} == {"done"}
    assert sorted(r["method"] for r in rows) == ["dense", *["random_prune"] * 3]
    (dense,) = (r for r in rows if r["method"] == "dense")
    assert (dense["params"], dense["macs"]) == (1108, 1088)
    assert dense["density"] == 1.0

    seen = []
    for row in rows:
        if row["method"] != "random_prune":
            continue
        params = json.loads(row["method_params"])
        exclude = tuple(params["exclude"])
        want = expected_counts(params["sparsity"], exclude)
        got = {key: row[key] for key in want}
        assert got == pytest.approx(want, rel=1e-9), (params, got, want)
        assert row["compression"] == pytest.approx(want["dense_params"] / want["params"])
        assert row["prune_epoch"] == params["at_epoch"]
        assert row["epochs_trained"] == 2.0
        assert row["transform_time_s"] > 0  # the "prune" phase, of kind "transform"
        seen.append((params["sparsity"], params["at_epoch"], exclude))
    assert sorted(seen) == [(0.3, 1, ("fc",)), (0.5, 0, ()), (0.9, 1, ("fc",))]


def test_misspelled_exclude_pattern_fails_validation_at_its_line(
    site: Path, tmp_path: Path
) -> None:
    text = RANDOM_PRUNE_SUITE.replace(
        "    params: {sparsity: 0.5}\n", "    params: {sparsity: 0.5, exclude: [fc, fcc]}\n"
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(text, encoding="utf-8")
    validated = pcnbench_cli("validate", str(suite), env=env_with(site))
    assert validated.returncode == 2, validated.stdout + validated.stderr
    (line,) = (n for n, s in enumerate(text.splitlines(), 1) if "fcc" in s)
    column = text.splitlines()[line - 1].index("fcc") + 1
    assert validated.stderr.strip() == (
        f"{suite}:{line}:{column}: methods[2].params.exclude[1]: with model 'mlp' on "
        "'synthetic': pattern 'fcc' matches no conv or linear layer; did you mean 'fc'? "
        "(layers: fc1, fc)"
    )
    assert validated.stdout == ""


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    """The random_prune example module, imported from its source file."""
    name = "pcnbench_random_prune"
    spec = importlib.util.spec_from_file_location(name, RANDOM_PRUNE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the Params annotations through it
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


def test_random_mask_removes_exactly_its_share_from_a_stream_of_its_own(
    example: ModuleType,
) -> None:
    seed = 3
    torch.manual_seed(seed)  # as the session does before the model plugin builds the model
    layer = nn.Linear(64, 16)

    def mask(generator_seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(generator_seed)
        return example.random_mask(layer.weight, 0.3, generator)

    stream = derive_seed(seed, example.MASK_STREAM)
    ours = mask(stream)
    assert ours.shape == layer.weight.shape
    assert (int((ours == 0).sum()), int((ours == 1).sum())) == (round(0.3 * 1024), 1024 - 307)
    assert torch.equal(ours, mask(stream))  # the seed decides the mask
    assert not torch.equal(ours, mask(derive_seed(seed + 1, example.MASK_STREAM)))
    # Why a stream of its own: a generator seeded with the cell seed itself replays the draws that
    # initialized the weights (kaiming-uniform in ±1/√64), so its "random" scores would be the
    # initial weights, rescaled.
    replayed = torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(seed))
    bound = 1 / 8
    assert torch.allclose(replayed, (layer.weight.detach() + bound) / (2 * bound), atol=1e-6)


def test_random_prune_check_model_names_the_misspelled_pattern(example: ModuleType) -> None:
    with torch.device("meta"):
        model = nn.Sequential()
        model.add_module("fc1", nn.Linear(64, 16))
        model.add_module("fc", nn.Linear(16, 4))
    method = example.RandomPrune()
    method.check_model(example.RandomPruneParams(sparsity=0.5, exclude="fc"), model)
    with pytest.raises(pcnbench.api.ParamError) as err:
        method.check_model(example.RandomPruneParams(sparsity=0.5, exclude="fc1, fcc"), model)
    assert (err.value.key, "did you mean 'fc'?" in err.value.message) == ("exclude", True)
    with pytest.raises(pcnbench.api.ParamError, match="nothing to prune"):
        method.check_model(example.RandomPruneParams(sparsity=0.5, exclude="fc*"), model)
    with pytest.raises(pcnbench.api.ParamError, match=r"recipe\.epochs=2"):
        method.check(
            example.RandomPruneParams(sparsity=0.5, at_epoch=3), pcnbench.api.Recipe(epochs=2)
        )


def example_sources() -> list[Path]:
    """Every Python file of the example plugins."""
    files = sorted(EXAMPLES.rglob("*.py"))
    assert {f.name for f in files} >= {"pcnbench_example.py", "pcnbench_random_prune.py"}
    return files


@pytest.mark.parametrize("path", example_sources(), ids=lambda p: p.name)
def test_examples_import_only_the_public_api(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a plugin module imports absolutely"
            imported.append(node.module or "")
    ours = {name for name in imported if name.split(".")[0] in ("pcnbench", "pcnbench_plugins")}
    assert ours == {"pcnbench.api", "pcnbench.hookspecs"}


@pytest.mark.parametrize("path", example_sources(), ids=lambda p: p.name)
def test_examples_are_fully_typed(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    for fn in functions:
        args = [a for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)]
        untyped = [a.arg for a in args if a.annotation is None and a.arg != "self"]
        assert not untyped, f"{fn.name}: {untyped} not annotated"
        assert fn.returns is not None, f"{fn.name}: return not annotated"
    (run,) = (fn for fn in functions if fn.name == "run")
    assert ast.unparse(run.args.args[1].annotation) == "Session"


def session_table(source: str) -> str:
    """The Markdown table of the `Session` protocol's members, rendered from its source."""
    lines = source.splitlines()
    tree = ast.parse(source)
    (cls,) = (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Session")
    rows = ["| member | what it is |", "| --- | --- |"]

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    settable = {
        n.name
        for n in cls.body
        if isinstance(n, ast.FunctionDef)
        and any(ast.unparse(d).endswith(".setter") for d in n.decorator_list)
    }
    for node in cls.body:
        if isinstance(node, ast.AnnAssign):
            comment = lines[node.lineno - 1].partition("#")[2].strip()
            member = f"{ast.unparse(node.target)}: {ast.unparse(node.annotation)}"
            rows.append(f"| `{cell(member)}` | {cell(comment)} |")
        elif isinstance(node, ast.FunctionDef):
            decorators = [ast.unparse(d) for d in node.decorator_list]
            if any(d.endswith(".setter") for d in decorators):
                continue
            doc = " ".join((ast.get_docstring(node) or "").split())
            returns = ast.unparse(node.returns) if node.returns else "None"
            if "property" in decorators:
                kind = "settable property" if node.name in settable else "read-only property"
                rows.append(f"| `{cell(f'{node.name}: {returns}')}` ({kind}) | {cell(doc)} |")
                continue
            args = node.args.args[1:]
            defaults = [None] * (len(args) - len(node.args.defaults)) + node.args.defaults
            params = [
                f"{a.arg}: {ast.unparse(a.annotation)}"
                + (f" = {ast.unparse(d)}" if d is not None else "")
                for a, d in zip(args, defaults, strict=True)
            ]
            if node.args.kwarg is not None:
                kwarg = node.args.kwarg
                params.append(f"**{kwarg.arg}: {ast.unparse(kwarg.annotation)}")
            member = f"{node.name}({', '.join(params)}) -> {returns}"
            rows.append(f"| `{cell(member)}` | {cell(doc)} |")
    return "\n".join(rows)


def test_guide_lists_the_session_protocol_exactly() -> None:
    table = session_table((REPO / "pcnbench" / "protocols.py").read_text(encoding="utf-8"))
    assert table in GUIDE.read_text(encoding="utf-8"), (
        "docs/plugins.md: replace the Session table with this one (from pcnbench/protocols.py):\n"
        + table
    )


def test_guide_names_every_hook_and_public_name() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    hooks = [
        name for name, obj in vars(pcnbench.hookspecs).items() if hasattr(obj, "pcnbench_spec")
    ]
    assert {"register_methods", "on_cell_end"} <= set(hooks)
    missing = [n for n in (*hooks, *pcnbench.api.__all__) if f"`{n}" not in guide]
    assert missing == []
