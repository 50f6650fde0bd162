"""Claims: a suite's `claims:` judged from its stored results, and its `references:`.

A claim compares the results of a *subject* (cells matching its selectors) with a *baseline*
over the quantities pcnbench stores, each expectation written `OP VALUE[UNIT]`:

- `accuracy`: the difference subject − baseline in percentage points (`pp` optional);
- `compression`, `speedup`: the ratio baseline/subject of params (of MACs) (`x` optional);
- any other quantity: with `x`, the ratio subject/baseline; a plain number, the difference
  subject − baseline in the quantity's unit (seconds, joules, ...).

Subject and baseline pair by dataset, model (unless the selectors fix the model differently
on the two sides: then by dataset alone) and seed. Each operating point of the subject (a
method setting, or one of a cell's rows told apart by `Method.point_keys`) is judged with a
95% Student-t interval: of the per-seed differences (log-ratios for ratios) where the two
sides have the same seeds, else (no seed in common) Welch's interval of the difference of
means. A point is supported when the whole interval satisfies every expectation, refuted when
the whole interval violates one, inconclusive otherwise (or with one seed: no interval). The
claim (`over: any`, the default) is supported when some point is, refuted when every point
is; with `over: all` it is supported when every point is, refuted when some point is. A
failed or missing cell (a seed one side has and the other lacks) or a quantity the results
lack makes it "not evaluated", with the reason.

A baseline may instead name one of the suite's `references:` (`baseline: {reference: LABEL}`),
a published figure: the subject's operating points on the reference's dataset are judged by a
one-sample Student-t interval of their per-seed values around the published one (accuracy,
params and MACs, so compression and speedup too), with the same expectations and verdicts;
`accuracy: ">= -2pp"` then reads "reproduces the published accuracy within 2 points".

The package: `expectations` (the quantities and `OP VALUE[UNIT]` expectations, the selectors'
labels), `stored` (the claims and references of a stored suite text), `points` (the cells a
selector picks and the operating points they make), `verdicts` (intervals to verdicts),
`judging` (claims judged from results) and `render` (claims as text).
"""

from __future__ import annotations

from pcnbench.claims.expectations import (
    QUANTITIES,
    REFERENCE_QUANTITIES,
    Expectation,
    Quantity,
    parse_expectation,
    pick_label,
    selector_label,
)
from pcnbench.claims.judging import judge_claim, judge_claims, reference_value
from pcnbench.claims.points import pairs_by_model, selects
from pcnbench.claims.render import format_check, format_claims
from pcnbench.claims.stored import read_claims, read_references
from pcnbench.claims.verdicts import INCONCLUSIVE as INCONCLUSIVE
from pcnbench.claims.verdicts import NOT_EVALUATED as NOT_EVALUATED
from pcnbench.claims.verdicts import REFUTED as REFUTED
from pcnbench.claims.verdicts import SUPPORTED as SUPPORTED
from pcnbench.claims.verdicts import VERDICTS, exit_code

__all__ = [
    "QUANTITIES",
    "REFERENCE_QUANTITIES",
    "VERDICTS",
    "Expectation",
    "Quantity",
    "exit_code",
    "format_check",
    "format_claims",
    "judge_claim",
    "judge_claims",
    "pairs_by_model",
    "parse_expectation",
    "pick_label",
    "read_claims",
    "read_references",
    "reference_value",
    "selector_label",
    "selects",
]
