"""Loading a suite: parse and validate the YAML, resolve each entry's grid, expand the cells.

Every error points into the YAML (file:line:col and key path) and says what was expected.

The modules, in the order `load_suite` (in `loading`) uses them:

- `matrix`: the matrix's size, counted before expanding it; its exclude rules; duplicate cells
- `axes`: each entry's grid points, validated by its plugin
- `claims_check`: claims and references against the suite's own cells
- `models_check`: each (dataset, model) pair built on the meta device, with what each method
  rejects (`Method.check_model`) and will reduce (`Method.plan_coverage`) of it
- `executor_check`: the executor's name and options
- `loaded`: `LoadedSuite`, what validation returns
- `plugin_errors`: how a plugin's rejection or failure is worded
"""

from __future__ import annotations

from pcnbench.errors import SuiteError
from pcnbench.suite.axes import resolve_axis
from pcnbench.suite.loaded import LoadedSuite
from pcnbench.suite.loading import load_suite
from pcnbench.suite.matrix import check_size, grid_size

__all__ = ["LoadedSuite", "SuiteError", "check_size", "grid_size", "load_suite", "resolve_axis"]
