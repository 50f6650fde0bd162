"""Claims (`claims:` in a suite) judged from stored results, their validation, `pcnbench claims`,
the statistics behind them (now in the core) and the suite's `references:`."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

import pcnbench.api as api
import pcnbench_plugins.reporters.stats as reporter_stats
from pcnbench.claims import format_claims, judge_claims, parse_expectation
from pcnbench.cli import main
from pcnbench.errors import SuiteError
from pcnbench.report import load_report_data
from pcnbench.store import Store
from pcnbench.suite import load_suite
from pcnbench_plugins.reporters.html import render_html
from tests.reportdata import _result, fake_cell, report_host

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = (REPO / "suites" / "quickstart.yaml").read_text(encoding="utf-8")
MLP = {"width": 512, "depth": 2}
DENSE_PARAMS, DENSE_MACS = 301_066, 300_000
SEEDS = (0, 1)
DENSE_ACC = {0: 0.950, 1: 0.960}

# The quickstart's method settings as the suite writes them, and what each scenario makes of
# them: per-seed accuracy offsets from dense in percentage points, and parameter/MAC counts.
PCN_SMALL = {"at_epoch": 3, "keep": "f0.0625", "layers": {"fc": None}, "calibration": 1000}
PCN_LARGE = {**PCN_SMALL, "keep": "v0.99"}
MAGNITUDE = {"sparsity": 0.95, "scope": "global", "finetune_epochs": 5}
LOTTERY = {"levels": 3, "rate": 0.5, "rewind": "1ep"}

# scenario → per-seed accuracy offsets (pp) of pcn f0.0625, pcn v0.99, magnitude 0.95 and the
# lottery's last level; pcn f0.0625's MACs and training times (dense: 10 s + seed)
SCENARIOS: dict[str, dict[str, Any]] = {
    # consistent small losses: every interval lies above its bound
    "supported": {
        "pcn_small": (-0.2, -0.1),
        "pcn_large": (0.0, 0.1),
        "magnitude": (-0.3, -0.2),
        "lottery": (-0.2, -0.3),
        "macs": 15_000,  # 20× fewer MACs than dense
        "time": (5.0, 6.0),  # per seed, against dense's 10 and 11 s
    },
    # consistent large losses: every interval lies below its bound
    "refuted": {
        "pcn_small": (-3.0, -3.1),
        "pcn_large": (-2.5, -2.6),
        "magnitude": (-4.0, -4.1),
        "lottery": (-5.0, -5.1),
        "macs": 30_000,  # 10×
        "time": (20.0, 21.0),
    },
    # two seeds that disagree: intervals (t with 1 df) straddle the bound
    "inconclusive": {
        "pcn_small": (-0.5, -1.5),
        "pcn_large": (-0.2, -1.9),
        "magnitude": (0.0, -2.0),
        "lottery": (0.0, -3.5),
        "macs": None,  # per seed 17× and 15×
        "time": (8.0, 13.2),  # 0.8× and 1.2× dense's time
    },
}
# the quickstart's claims, in order, and the verdict each scenario must give it
CLAIMS = [
    "PCN keeps dense accuracy (within 1 pp) with ≥ 4× fewer parameters",
    "PCN keeping 1/16 of the components trains faster than dense",
    "Magnitude pruning to 95% sparsity keeps dense accuracy (within 1 pp)",
    "Every IMP level of the lottery ticket stays within 2 pp of dense",
]


def write_quickstart_results(
    out: Path,
    scenario: str,
    *,
    fail: str | None = None,
    skip: str | None = None,
    suite_text: str = QUICKSTART,
) -> Path:
    """A results database shaped like the quickstart's (digits, the MLP, every method, 2 seeds).

    `fail` names a method whose seed-0 cell failed; `skip` one whose seed-1 cell never ran.
    """
    plan = SCENARIOS[scenario]
    store = Store(out / "results.db")
    run = store.begin_run("quickstart", "suites/quickstart.yaml", "ab" * 32, suite_text, [], {})

    def cell(method: str, params: dict[str, Any], seed: int, rows: list[dict[str, Any]]) -> None:
        if method == skip and seed == 1:
            return
        c = fake_cell("quickstart", MLP, method, params, seed, dataset="digits", model_name="mlp")
        store.start_cell(c, run, "cpu")
        if method == fail and seed == 0:
            store.finish_cell(c.id, "failed", error="RuntimeError: boom")
        else:
            store.finish_cell(c.id, "done", results=rows, epochs=[], phases=[])

    def row(
        params: int, macs: int, offset_pp: float, seed: int, time_s: float = 10.0, **extra: Any
    ) -> dict[str, Any]:
        acc = DENSE_ACC[seed] + offset_pp / 100
        out = _result(params, macs, acc, time_s, seed, **extra)  # train_time_s: time_s + seed
        out.update(dense_params=DENSE_PARAMS, dense_macs=DENSE_MACS)
        return out

    for seed in SEEDS:
        cell("dense", {}, seed, [row(DENSE_PARAMS, DENSE_MACS, 0.0, seed)])
        small_macs = plan["macs"] or (17_647 if seed == 0 else 20_000)
        time_s = plan["time"][seed] - seed
        small = row(20_000, small_macs, plan["pcn_small"][seed], seed, time_s)
        cell("pcn", PCN_SMALL, seed, [small])
        # 3× fewer parameters: never the 4× the first claim asks
        cell("pcn", PCN_LARGE, seed, [row(100_000, 90_000, plan["pcn_large"][seed], seed)])
        for sparsity, offsets in ((0.9, (0.0, 0.0)), (0.95, plan["magnitude"])):
            setting = {**MAGNITUDE, "sparsity": sparsity}
            n = round(DENSE_PARAMS * (1 - sparsity))
            cell("magnitude", setting, seed, [row(n, DENSE_MACS, offsets[seed], seed)])
        levels = [
            row(DENSE_PARAMS // 2**level, DENSE_MACS, plan["lottery"][seed] * level / 3, seed)
            | {"level": level}
            for level in (1, 2, 3)
        ]
        cell("lottery", LOTTERY, seed, levels)
        for rank in ("r0.0625", "r0.25"):
            cell("lowrank", {"at_epoch": 3, "rank": rank}, seed, [row(50_000, 50_000, -1, seed)])
    store.end_run(run, "done")
    store.close()
    return out


@pytest.fixture(scope="module")
def reporting() -> Any:
    """The built-in methods (their point keys: the lottery's `level`) and reporters."""
    return report_host()


def verdicts(out: Path, host: Any) -> dict[str, str]:
    """claim name → verdict for the results in `out`."""
    return {c.name: c.verdict for c in load_report_data(out, host).claims}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_quickstart_claim_gets_the_verdict_its_results_make(
    tmp_path: Path, reporting: Any, scenario: str
) -> None:
    got = verdicts(write_quickstart_results(tmp_path, scenario), reporting)
    assert got == dict.fromkeys(CLAIMS, scenario)


def test_a_supported_claim_keeps_the_numbers_and_cells_that_decided_it(
    tmp_path: Path, reporting: Any
) -> None:
    data = load_report_data(write_quickstart_results(tmp_path, "supported"), reporting)
    claim = data.claims[0]
    assert claim.verdict == "supported"
    assert claim.decided_by == 'pcn(at_epoch=3,keep=f0.0625,layers={"fc": null},calibration=1000)'
    # the v0.99 setting keeps accuracy but not 4× fewer parameters: one point is enough
    assert [p.verdict for p in claim.points] == ["supported", "refuted"]
    acc, compression = claim.points[0].checks
    # per-seed differences −0.2 and −0.1 pp: mean −0.15, t(0.975, 1) · s/√2 = 12.706 · 0.05
    assert acc.paired and acc.n == 2 and acc.unit == "pp"
    assert acc.estimate == pytest.approx(-0.15)
    assert acc.high - acc.estimate == pytest.approx(12.7062 * 0.05, rel=1e-4)
    assert compression.unit == "x"
    assert compression.estimate == pytest.approx(DENSE_PARAMS / 20_000)
    assert len(claim.points[0].subject_cells) == 2 and len(claim.points[0].baseline_cells) == 2
    lottery = data.claims[3]
    assert lottery.over == "all" and len(lottery.points) == 3  # one per IMP level
    assert [p.label.rsplit(" ", 1)[-1] for p in lottery.points] == ["level=1", "level=2", "level=3"]


def test_a_ratio_claim_is_judged_on_the_per_seed_log_ratios(tmp_path: Path, reporting: Any) -> None:
    claim = load_report_data(write_quickstart_results(tmp_path, "inconclusive"), reporting).claims[
        1
    ]
    time, speed = claim.points[0].checks
    # times 0.8× and 1.2× dense's: their geometric mean, an interval (t, 1 df) across 1×
    assert time.unit == "x" and time.estimate == pytest.approx(math.sqrt(0.8 * 1.2))
    assert time.low < 1 < time.high and time.verdict == "inconclusive"
    # speedups 300000/17647 = 17.0 and 15.0: well above 4× for all the interval's width
    assert speed.estimate == pytest.approx(math.sqrt(DENSE_MACS / 17_647 * 15.0))
    assert speed.low > 4 and speed.verdict == "supported"
    assert claim.verdict == "inconclusive"


@pytest.mark.parametrize(
    ("fail", "skip", "reason"),
    [
        ("pcn", None, r"2 subject cells did not finish: digits · mlp.* · pcn.* \(failed\)"),
        ("dense", None, r"1 baseline cell did not finish: .* · dense · seed 0 \(failed\)"),
        (None, "magnitude", r"magnitude\(.*sparsity=0.95.*\) .* has no result for seed 1"),
    ],
)
def test_failed_or_missing_cells_leave_a_claim_not_evaluated_with_the_reason(
    tmp_path: Path, reporting: Any, fail: str | None, skip: str | None, reason: str
) -> None:
    data = load_report_data(
        write_quickstart_results(tmp_path, "supported", fail=fail, skip=skip), reporting
    )
    claim = next(c for c in data.claims if f"={fail or skip}" in c.subject + c.baseline)
    assert claim.verdict == "not evaluated"
    assert re.search(reason, claim.reason), claim.reason


def test_a_quantity_the_results_lack_leaves_the_claim_not_evaluated(
    tmp_path: Path, reporting: Any
) -> None:
    text = QUICKSTART + (
        "  - name: PCN trains faster than the dense net takes to answer\n"
        "    subject: {method: pcn}\n"
        "    baseline: {method: dense}\n"
        '    expect: {latency_ratio: "< 1x"}\n'
    )
    out = write_quickstart_results(tmp_path, "supported", suite_text=text)
    data = load_report_data(out, reporting)
    for frame in (data.results,):
        frame["latency_ratio"] = math.nan
    claim = judge_claims(data)[-1]
    assert claim.verdict == "not evaluated" and "latency_ratio is not recorded" in claim.reason


@pytest.mark.parametrize(
    ("scenario", "code"), [("supported", 0), ("refuted", 1), ("inconclusive", 0)]
)
def test_pcnbench_claims_prints_each_verdict_and_exits_1_only_when_one_is_refuted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: str, code: int
) -> None:
    out = write_quickstart_results(tmp_path, scenario)
    assert main(["claims", str(out)]) == code
    printed = capsys.readouterr().out
    for name in CLAIMS:
        assert re.search(rf"^{scenario.upper()}\s+{re.escape(name)}$", printed, re.M), printed


def test_pcnbench_claims_exits_2_without_results_or_with_a_damaged_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["claims", str(tmp_path / "nowhere")]) == 2
    assert "no results database" in capsys.readouterr().err
    (tmp_path / "results.db").write_bytes(b"not a database at all" * 100)
    assert main(["claims", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_html_report_opens_with_the_claims_table(tmp_path: Path, reporting: Any) -> None:
    data = load_report_data(write_quickstart_results(tmp_path, "refuted"), reporting)
    html = render_html(data, tmp_path)
    assert html.index('id="claims"') < html.index('id="summary"')
    section = html[html.index('id="claims"') : html.index('id="summary"')]
    assert section.count('<span class="verdict refuted"') >= len(CLAIMS)
    assert "Every IMP level of the lottery ticket" in section and "level=3" in section


def test_a_long_operating_point_label_can_wrap_after_its_commas(
    tmp_path: Path, reporting: Any
) -> None:
    # a setting's label has almost no spaces: without break opportunities it ran over the
    # "Numbers that decided it" column
    data = load_report_data(write_quickstart_results(tmp_path, "supported"), reporting)
    html = render_html(data, tmp_path)
    section = html[html.index('id="claims"') : html.index('id="summary"')]
    label = (
        "pcn(at_epoch=3,<wbr>keep=f0.0625,<wbr>layers={&#34;fc&#34;: null},<wbr>calibration=1000)"
    )
    assert f'<td class="wrap point">{label}' in section
    assert section.count('<td class="wrap point">') == section.count('<td class="numbers">')
    assert "table.claims td.point { overflow-wrap: break-word; }" in html  # a comma-less part


def test_format_claims_says_when_the_suite_declares_none() -> None:
    assert "declares none" in format_claims([], "quickstart")


# --- validation ---------------------------------------------------------------------------


def where(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the `nth` occurrence of `needle` in `text`."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    return text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1


def claim(body: str) -> str:
    """The quickstart with one more claim: `body` is its mapping's lines after the name."""
    return QUICKSTART + "  - name: extra\n" + body


INVALID = [
    (
        "unknown_method",
        claim(
            "    subject: {method: pcnn}\n    baseline: {method: dense}\n"
            '    expect: {accuracy: ">= 0"}\n'
        ),
        "pcnn",
        "'pcnn' is not one of the suite's methods (dense, pcn, magnitude, lottery, lowrank)",
    ),
    (
        "params_matching_no_setting",
        claim(
            "    subject: {method: {name: magnitude, params: {sparsity: 0.8}}}\n"
            '    baseline: {method: dense}\n    expect: {accuracy: ">= 0"}\n'
        ),
        "0.8}}",
        "no method 'magnitude' of the suite has sparsity=0.8 (it has sparsity 0.9, 0.95)",
    ),
    (
        "unknown_quantity",
        claim(
            "    subject: {method: pcn}\n    baseline: {method: dense}\n"
            '    expect: {acuracy: ">= 0"}\n'
        ),
        "acuracy",
        "unknown quantity 'acuracy'; did you mean 'accuracy'?",
    ),
    (
        "bad_operator",
        claim(
            "    subject: {method: pcn}\n    baseline: {method: dense}\n"
            '    expect: {accuracy: "=> 0"}\n'
        ),
        '"=> 0"',
        "the operator is >=, >, <= or <",
    ),
    (
        "bad_unit",
        claim(
            "    subject: {method: pcn}\n    baseline: {method: dense}\n"
            '    expect: {compression: ">= 10%"}\n'
        ),
        '">= 10%"',
        "unit '%'",
    ),
    (
        "no_operator",
        claim(
            "    subject: {method: pcn}\n    baseline: {method: dense}\n"
            "    expect: {compression: 10}\n"
        ),
        "10}",
        "OP VALUE",
    ),
    (
        "same_cells_on_both_sides",
        claim(
            "    subject: {method: pcn}\n    baseline: {method: pcn}\n"
            '    expect: {accuracy: ">= 0"}\n'
        ),
        "{method: pcn}",
        "both subject and baseline",
    ),
    (
        "baseline_with_two_settings",
        claim(
            "    subject: {method: pcn}\n    baseline: {method: magnitude}\n"
            '    expect: {accuracy: ">= 0"}\n'
        ),
        "{method: magnitude}",
        "the baseline matches 2 settings",
    ),
    (
        "reference_without_source",
        QUICKSTART + "references:\n  - {label: paper, source: '', dataset: digits,"
        " accuracy: 0.98, params: 1000}\n",
        "''",
        "references[0].source",
    ),
    (
        "reference_accuracy_in_percent",
        QUICKSTART + "references:\n  - {label: paper, source: a paper, dataset: digits,"
        " accuracy: 98.0, params: 1000}\n",
        "98.0",
        "less than or equal to 1",
    ),
    (
        "reference_without_size",
        QUICKSTART + "references:\n  - {label: paper, source: a paper, dataset: digits,"
        " accuracy: 0.98}\n",
        "{label: paper",
        "params or macs",
    ),
]


@pytest.mark.parametrize(
    ("text", "needle", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_claims_and_references_are_errors_at_their_place_in_the_file(
    tmp_path: Path, host: Any, text: str, needle: str, message: str
) -> None:
    path = tmp_path / "quickstart.yaml"
    with pytest.raises(SuiteError) as caught:
        load_suite(path, host, text=text)
    error = caught.value
    assert message in str(error), str(error)
    assert (error.line, error.column) == where(text, needle, text.count(needle) - 1), str(error)


def test_the_quickstart_claims_and_a_reference_validate(host: Any) -> None:
    text = QUICKSTART + (
        "references:\n  - label: a published MLP\n    source: a paper, table 2\n"
        "    dataset: digits\n    model: {name: mlp, params: {width: 512}}\n"
        "    accuracy: 0.98\n    params: 300000\n"
    )
    loaded = load_suite("quickstart.yaml", host, text=text)
    assert [c.name for c in loaded.suite.claims] == CLAIMS
    assert loaded.suite.references[0].accuracy == 0.98


def test_references_reach_the_report_data(tmp_path: Path) -> None:
    text = QUICKSTART + (
        "references:\n  - label: a published MLP\n    source: a paper, table 2\n"
        "    dataset: digits\n    model: {name: mlp, params: {width: 512, depth: 2}}\n"
        "    accuracy: 0.98\n    macs: 300000\n"
    )
    data = load_report_data(write_quickstart_results(tmp_path, "supported", suite_text=text))
    assert data.references == [
        api.Reference(
            label="a published MLP",
            source="a paper, table 2",
            dataset="digits",
            model="mlp(width=512,depth=2)",
            accuracy=0.98,
            params=None,
            macs=300_000,
        )
    ]


def test_expectations_parse_with_their_units() -> None:
    acc = parse_expectation("accuracy", "≥ −0.5pp")
    assert (acc.op, acc.value, acc.unit, acc.ratio) == (">=", -0.5, "pp", False)
    assert parse_expectation("compression", ">= 10").ratio
    time = parse_expectation("train_time_s", "< 1x")
    assert (time.op, time.value, time.ratio) == ("<", 1.0, True)
    plain = parse_expectation("train_time_s", "<= 60")
    assert (plain.unit, plain.ratio) == ("s", False)
    with pytest.raises(ValueError, match="must be positive"):
        parse_expectation("speedup", "> 0")


# --- the statistics, now in the core ------------------------------------------------------


def test_the_reporters_statistics_are_the_cores() -> None:
    for name in ("Estimate", "mean_ci", "paired_delta", "t_quantile", "student_t_cdf"):
        assert getattr(reporter_stats, name) is getattr(api, name)


def test_welch_reduces_to_the_pooled_interval_for_equal_variances_and_sizes() -> None:
    a, b = [1.0, 2.0, 3.0], [5.0, 6.0, 7.0]
    est = api.welch_delta(a, b)
    assert est is not None and est.mean == pytest.approx(-4.0)
    # variances 1 and 1, n 3 and 3: se = √(2/3), df = 4
    assert est.half_width == pytest.approx(api.t_quantile(0.975, 4) * math.sqrt(2 / 3))
    assert api.welch_delta([1.0], []) is None
    assert api.welch_delta([1.0], [2.0]).half_width is None  # type: ignore[union-attr]


def test_claims_wrap_to_the_width_asked_for() -> None:
    from pcnbench.api import ClaimCheck, ClaimPoint, ClaimResult

    label = 'pcn(at_epoch=3,keep=f0.0625,layers={"fc": null},calibration=1000)'
    check = ClaimCheck(
        quantity="accuracy",
        expect=">= -1pp",
        op=">=",
        value=-1.0,
        unit="pp",
        estimate=0.0,
        low=0.0,
        high=0.0,
        n=2,
        paired=True,
        verdict="supported",
    )
    point = ClaimPoint(label, "supported", (check,), ("a" * 16,), ("b" * 16,))
    claim = ClaimResult(
        name="PCN keeps dense accuracy (within 1 pp) with at least 4x fewer parameters",
        verdict="supported",
        subject="method=pcn",
        baseline="method=dense",
        expect=("accuracy >= -1pp",),
        points=(point,),
        decided_by=label,
    )
    wide = format_claims([claim], "quickstart")
    narrow = format_claims([claim], "quickstart", width=60)
    assert max(len(line) for line in wide.splitlines()) > 60
    assert max(len(line) for line in narrow.splitlines()) <= 60
    assert narrow.split() == wide.split()  # the same words, only wrapped
