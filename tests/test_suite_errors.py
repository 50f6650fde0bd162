"""Malformed suites: one message with file:line:col, the key path and what was expected."""

from __future__ import annotations

import pytest

from pcnbench.cli import main
from pcnbench.errors import SuiteError
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE


def edit(old: str, new: str) -> str:
    """BASE_SUITE with one piece of text replaced (which must exist)."""
    assert old in BASE_SUITE
    return BASE_SUITE.replace(old, new)


def where(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the `nth` occurrence of `needle` in `text`."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    return line, column


# (id, suite text, needle locating the error, key path, expected text in the message)
CASES = [
    (
        "unknown_top_level_key",
        BASE_SUITE + "epoch: 3\n",
        "epoch: 3",
        "epoch",
        "unknown key 'epoch'",
    ),
    (
        "recipe_key_typo_did_you_mean",
        edit("  epochs: 2", "  epoch: 2"),
        "epoch: 2",
        "recipe.epoch",
        "did you mean 'epochs'",
    ),
    (
        "missing_recipe",
        BASE_SUITE.split("recipe:")[0],
        "name: t",
        "",
        "missing required key 'recipe'",
    ),
    ("bad_suite_name", edit("name: t", "name: my suite"), "my suite", "name", "must match pattern"),
    ("duplicate_seeds", edit("seeds: [0]", "seeds: [0, 0]"), "[0, 0]", "seeds", "distinct"),
    ("negative_seed_count", edit("seeds: [0]", "seeds: -1"), "-1", "seeds", "≥ 1"),
    ("seed_not_integer", edit("seeds: [0]", "seeds: [zero]"), "zero", "seeds[0]", "integer"),
    (
        "no_datasets",
        edit(
            "datasets:\n  - name: synthetic\n    params: {n_train: 64, n_test: 32}", "datasets: []"
        ),
        "[]",
        "datasets",
        "at least 1 item",
    ),
    (
        "unknown_dataset_lists_known",
        edit("- name: synthetic", "- name: digitz"),
        "digitz",
        "datasets[0].name",
        "unknown dataset 'digitz'; did you mean 'digits'? (known: ",
    ),
    ("unknown_model", edit("- name: mlp", "- name: mpl"), "mpl", "models[0].name", "'mlp'?"),
    ("unknown_method", edit("  - dense", "  - dnese"), "dnese", "methods[0].name", "'dense'?"),
    (
        "model_param_typo",
        edit("{width: 8, depth: 1}", "{widht: 8, depth: 1}"),
        "widht",
        "models[0].params.widht",
        "did you mean 'width'",
    ),
    (
        "model_param_wrong_type",
        edit("{width: 8, depth: 1}", "{width: eight, depth: 1}"),
        "eight",
        "models[0].params.width",
        "valid integer",
    ),
    (
        "bad_value_inside_grid_points_at_element",
        edit("{width: 8, depth: 1}", "{width: [8, -1], depth: 1}"),
        "-1",
        "models[0].params.width[1]",
        "greater than 0",
    ),
    (
        "empty_grid",
        edit("{width: 8, depth: 1}", "{width: [], depth: 1}"),
        "[]",
        "models[0].params.width",
        "empty list",
    ),
    (
        "method_param_beyond_recipe",
        edit("  - dense", "  - name: early\n    params: {at_epoch: 300}"),
        "300",
        "methods[0].params.at_epoch",
        "must be ≤ recipe.epochs (got 300)",
    ),
    (
        "method_grid_point_beyond_recipe",
        edit("  - dense", "  - name: early\n    params: {at_epoch: [1, 300]}"),
        "300",
        "methods[0].params.at_epoch[1]",
        "must be ≤ recipe.epochs (got 300)",
    ),
    (
        "method_param_out_of_range",
        edit("  - dense", "  - name: early\n    params: {keep: 1.5}"),
        "1.5",
        "methods[0].params.keep",
        "less than or equal to 1",
    ),
    ("zero_epochs", edit("epochs: 2", "epochs: 0"), "0\n", "recipe.epochs", "greater than 0"),
    (
        "fractional_batch_size",
        edit("batch_size: 16", "batch_size: 12.5"),
        "12.5",
        "recipe.batch_size",
        "integer",
    ),
    (
        "unknown_optimizer",
        edit("name: sgd", "name: rmsprop"),
        "rmsprop",
        "recipe.optimizer.name",
        "'sgd', 'adam' or 'adamw'",
    ),
    (
        "milestone_after_training",
        BASE_SUITE + "  schedule: {milestones: [5]}\n",
        "schedule",
        "recipe.schedule.milestones",
        "1..epochs=2 (got 5)",
    ),
    (
        "validation_split_too_large",
        BASE_SUITE + "  validation_split: 1.5\n",
        "1.5",
        "recipe.validation_split",
        "less than 1",
    ),
    ("unknown_device", BASE_SUITE + "device: tpu\n", "tpu", "device", "auto, cpu, cuda"),
    (
        "entry_exclude_names_unknown_param",
        edit("{width: 8, depth: 1}", "{width: [8, 16]}\n    exclude: [{depth: 1}]"),
        "depth",
        "models[0].exclude[0].depth",
        "not a parameter of this entry",
    ),
    (
        "entry_exclude_removes_everything",
        edit("{width: 8, depth: 1}", "{width: [8]}\n    exclude: [{width: 8}]"),
        "exclude: [{width",
        "models[0].exclude",
        "every combination",
    ),
    (
        "suite_exclude_unknown_key",
        BASE_SUITE + "exclude:\n  - {optimizer: sgd}\n",
        "optimizer: sgd",
        "exclude[0].optimizer",
        "exclude rule matches on dataset, model, method, seed",
    ),
    (
        "suite_exclude_names_absent_model",
        BASE_SUITE + "exclude:\n  - {model: vgg}\n",
        "vgg",
        "exclude[0].model",
        "'vgg' is not one of the suite's models (mlp)",
    ),
    (
        "suite_exclude_removes_every_cell",
        BASE_SUITE + "exclude:\n  - {method: dense}\n",
        "exclude:",
        "exclude",
        "remove every cell",
    ),
    ("duplicate_key", BASE_SUITE + "seeds: [1]\n", "seeds: [1]", "seeds", "duplicate key 'seeds'"),
    (
        "resnet_depth_not_6n_plus_2",
        edit(
            "- name: mlp\n    params: {width: 8, depth: 1}",
            "- name: resnet\n    params: {depth: 21}",
        ),
        "21",
        "models[0].params.depth",
        "6n+2",
    ),
    (
        "model_incompatible_with_dataset",
        edit("- name: mlp\n    params: {width: 8, depth: 1}", "- name: vgg"),
        "name: vgg",
        "models[0].params.depth",
        "with dataset 'synthetic' (input (1, 8, 8))",
    ),
    (
        "method_param_that_does_not_fit_the_model",
        edit("  - dense", "  - name: early\n    params: {keep: [0.5, 0.1]}"),
        "0.1",
        "methods[0].params.keep[1]",
        "with model 'mlp' on 'synthetic': keeps no unit of a 4-wide layer",
    ),
    ("entry_not_a_mapping", edit("  - dense", "  - 5"), "5", "methods[0]", "valid dictionary"),
    # A layer pattern that matches no layer of the model is a typo: named, with the layers there
    # are (mlp depth 1: fc1, fc), found on the model built on the meta device.
    (
        "lowrank_layer_pattern_matches_no_layer",
        edit("  - dense", "  - name: lowrank\n    params: {at_epoch: 1, layers: 'fc, fc_1'}"),
        "'fc, fc_1'",
        "methods[0].params.layers",
        "with model 'mlp' on 'synthetic': pattern 'fc_1' matches no conv, linear or attention "
        "layer; did you mean 'fc1'? (layers: fc1, fc)",
    ),
    (
        "magnitude_exclude_pattern_matches_no_layer",
        edit("  - dense", "  - name: magnitude\n    params: {sparsity: 0.5, exclude: fcc}"),
        "fcc",
        "methods[0].params.exclude",
        "pattern 'fcc' matches no conv, linear or attention layer; did you mean 'fc'? "
        "(layers: fc1, fc)",
    ),
    (
        "lottery_exclude_pattern_in_a_grid_matches_no_layer",
        edit("  - dense", "  - name: lottery\n    params: {levels: 1, exclude: [fc, head]}"),
        "head",
        "methods[0].params.exclude[1]",
        "pattern 'head' matches no conv, linear or attention layer (layers: fc1, fc)",
    ),
    (
        "lottery_exclude_leaves_nothing_to_prune",
        edit("  - dense", "  - name: lottery\n    params: {levels: 1, exclude: 'fc*'}"),
        "'fc*'",
        "methods[0].params.exclude",
        "excludes every conv, linear and attention layer; nothing to prune",
    ),
    (
        "dataset_param_wrong_type",
        edit("{n_train: 64, n_test: 32}", "{n_train: many, n_test: 32}"),
        "many",
        "datasets[0].params.n_train",
        "integer",
    ),
]


@pytest.mark.parametrize(
    ("text", "needle", "path", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_suite_points_at_file_line_column_and_key(
    host, write_suite, text, needle, path, expect
):
    file = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(file, host)
    err = info.value
    line, column = where(text, needle)
    assert (err.file, err.line, err.path) == (str(file), line, path), str(err)
    if needle not in ("name: t", "exclude:", "schedule", "name: vgg", "[{width"):
        assert err.column == column, str(err)
    assert expect in err.message, str(err)
    assert str(err).startswith(f"{file}:{line}:{err.column}: {path + ':' if path else ''}")


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("name: t\nseeds: [0\n", "YAML syntax error"),
        ("name: t\nrecipe:\n\tepochs: 2\n", "YAML syntax error"),
        ("", "empty"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
    ids=["unclosed_flow", "tab_indent", "empty_file", "top_level_list"],
)
def test_unparseable_suite_names_file_and_line(host, write_suite, text, expect):
    file = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(file, host)
    assert info.value.line is not None and info.value.line >= 1
    assert expect in info.value.message
    assert str(info.value).startswith(f"{file}:{info.value.line}:")


def test_cli_reports_suite_error_with_exit_2_and_no_traceback(write_suite, capsys):
    file = write_suite(edit("  epochs: 2", "  epoch: 2"))
    code = main(["validate", str(file)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip() == (
        f"{file}:{where(BASE_SUITE, 'epochs')[0]}:3: recipe.epoch: unknown key 'epoch'; "
        "did you mean 'epochs'? (allowed: epochs, batch_size, optimizer, weight_decay, schedule, "
        "augmentation, eval_every, validation_split, precision, channels_last, compile)"
    )
    assert "Traceback" not in captured.err


def test_missing_suite_file_is_a_clean_error(tmp_path, capsys):
    code = main(["validate", str(tmp_path / "nope.yaml")])
    assert code == 2
    assert "nope.yaml: suite file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("methods", "where", "message"),
    [
        (
            "  - dense\n  - dense\n",
            "11:5: methods[1]",
            "'dense' makes the same cells as methods[0]",
        ),
        (
            "  - pcn\n  - {name: pcn, params: {at_epoch: 5}}\n",
            "11:5: methods[1]",
            "'pcn(at_epoch=5)' makes the same cells as methods[0] ('pcn')",
        ),
        (
            "  - {name: magnitude, params: {sparsity: [0.5, 0.5]}}\n",
            "10:5: methods[0]",
            "'magnitude(sparsity=0.5)' makes the same cells as another grid point of it",
        ),
    ],
)
def test_two_grid_points_that_make_the_same_cell_are_refused(
    write_suite, capsys, methods: str, where: str, message: str
) -> None:
    text = BASE_SUITE.replace("  - dense\n", methods).replace("epochs: 2", "epochs: 6")
    file = write_suite(text)
    assert main(["validate", str(file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{file}:{where}: {message}"), err
    assert "identical once defaults are filled in" in err
