"""The training session a method drives: optimizer, schedule, data order, phases and results.

`Session` (what `pcnbench.protocols.Session` describes to plugins) is assembled in
`pcnbench.session.session` from parts that share its state, one concern each:

- `loop`: `train`, `finetune`, the epoch loop and `evaluate` (with `epochs`, the tally of an
  epoch trained in pieces, and `speed`, the recipe's TF32 and compile settings);
- `states`: the model and its optimizer, the step, `snapshot` and `restore`, and the states
  the trunk tracker (`pcnbench.trunk`) and the checkpoint replay (`pcnbench.checkpoint`)
  capture and apply;
- `clock`: what the work costs: `steps_trained`, the metered phases (`pcnbench.phases`) and
  the times they add up to;
- `recording`: `record`, the result rows.
"""

from __future__ import annotations

from pcnbench.records import EpochRecord as EpochRecord  # what on_epoch_end receives
from pcnbench.session.session import Session
from pcnbench.session.states import Snapshot

__all__ = ["Session", "Snapshot"]
