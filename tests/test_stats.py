"""Student-t quantiles and CDF (SciPy's, through pcnbench.stats) against tables of known values.

The reference values were computed independently of SciPy, with mpmath at 30 digits (the
regularized incomplete beta function), and agree with printed t tables where those have them.
"""

from __future__ import annotations

import math

import pytest

from pcnbench.api import mean_ci, student_t_cdf, t_quantile, welch_delta
from tests.conftest import BASE_SUITE, python_output

# (p, df) → t_p(df); fractional df as Welch's t produces them
QUANTILES = [
    (0.975, 1, 12.7062047361747),
    (0.975, 2, 4.30265272974946),
    (0.975, 3, 3.18244630528371),
    (0.975, 5, 2.57058183563631),
    (0.975, 10, 2.22813885198627),
    (0.975, 30, 2.04227245630124),
    (0.975, 100, 1.98397151852355),
    (0.975, 1e6, 1.95996635681411),
    (0.95, 4, 2.13184678632665),
    (0.995, 7, 3.49948329735049),
    (0.9, 20, 1.32534070698505),
    (0.999, 3, 10.2145318524074),
    (0.975, 4.5, 2.6589123472044),
    (0.975, 2.7, 3.39214838317375),
    (0.95, 12.3, 1.77867254623824),
]
# (t, df) → P(T ≤ t); df 1 and 2 have closed forms: 1/2 + atan(t)/π, 1/2 + t/(2√(2 + t²))
CDF = [
    (-1.0, 1, 0.25),
    (1.0, 2, 0.5 + 1.0 / (2.0 * math.sqrt(3.0))),
    (2.0, 3, 0.930337015720578),
    (2.5, 10, 0.984276577881696),
    (0.0, 7, 0.5),
    (3.0, 30, 0.997305017967174),
    (-2.0, 4.5, 0.0541289535905625),
    (1.5, 2.7, 0.879871404805801),
    (-0.5, 12.3, 0.312950050129634),
]


@pytest.mark.parametrize(("p", "df", "expected"), QUANTILES)
def test_t_quantile_matches_the_table(p: float, df: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-12)
    assert t_quantile(1.0 - p, df) == pytest.approx(-expected, rel=1e-12)  # symmetric


@pytest.mark.parametrize(("t", "df", "expected"), CDF)
def test_student_t_cdf_matches_the_table(t: float, df: float, expected: float) -> None:
    assert student_t_cdf(t, df) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert student_t_cdf(-t, df) == pytest.approx(1.0 - expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("p", "df", "expected"), QUANTILES)
def test_the_cdf_inverts_the_quantile(p: float, df: float, expected: float) -> None:
    assert student_t_cdf(t_quantile(p, df), df) == pytest.approx(p, rel=1e-13)


def test_results_are_plain_floats() -> None:
    assert type(t_quantile(0.975, 3)) is float
    assert type(student_t_cdf(2.0, 3)) is float


@pytest.mark.parametrize(("p", "df"), [(0.0, 3), (1.0, 3), (-0.1, 3), (math.nan, 3), (0.5, 0)])
def test_t_quantile_rejects_a_probability_outside_the_unit_interval_or_no_df(
    p: float, df: float
) -> None:
    with pytest.raises(ValueError, match="must"):
        t_quantile(p, df)


@pytest.mark.parametrize("df", [0, -1.5, math.nan])
def test_student_t_cdf_rejects_non_positive_df(df: float) -> None:
    with pytest.raises(ValueError, match="df must be positive"):
        student_t_cdf(1.0, df)


def test_mean_ci_half_width_is_t_times_standard_error() -> None:
    est = mean_ci([0.90, 0.92, 0.94])
    assert est is not None
    assert est.half_width == pytest.approx(4.30265272974946 * 0.02 / math.sqrt(3), rel=1e-12)
    assert est.low == pytest.approx(0.92 - est.half_width) and est.high > est.mean


def test_welch_delta_uses_the_fractional_welch_satterthwaite_df() -> None:
    est = welch_delta([1.0, 2.0, 3.0, 4.0], [1.0, 1.5, 2.0], level=0.9)
    assert est is not None
    # variances of the means 5/12 and 1/12: se = √½, df = ¼ / ((5/12)²/3 + (1/12)²/2) = 216/53
    assert est.mean == pytest.approx(1.0) and est.n == 3
    assert est.std == pytest.approx(math.sqrt(0.5), rel=1e-14)
    assert est.half_width == pytest.approx(t_quantile(0.95, 216 / 53) * math.sqrt(0.5), rel=1e-14)
    assert est.half_width == pytest.approx(2.12055416645677 * math.sqrt(0.5), rel=1e-12)


def test_only_computing_an_interval_imports_scipy(tmp_path) -> None:
    """SciPy costs about a second: validating a suite and running a cell must not import it."""
    suite = tmp_path / "s.yaml"
    suite.write_text(BASE_SUITE, encoding="utf-8")
    probe = f"""
import sys
from pcnbench.api import mean_ci, run_cell
from pcnbench.manager import load_plugins
from pcnbench.runner import Runner
from pcnbench.suite import load_suite

def scipy_loaded():
    return any(name.split(".")[0] == "scipy" for name in sys.modules)

host = load_plugins()
loaded = load_suite({str(suite)!r}, host)
print(scipy_loaded())
job = Runner(loaded, host, output={str(tmp_path / "out")!r}, metering=False).job(loaded.cells)
assert run_cell(job.config, loaded.cells[0]).status == "done"
print(scipy_loaded())
mean_ci([1.0, 2.0])
print(scipy_loaded())
"""
    validated, ran, interval = python_output(probe, timeout=120).split()
    assert (validated, ran, interval) == ("False", "False", "True")
