"""`LoadedSuite`: a validated suite, its resolved grid points and its expanded cells."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pcnbench.cells import Cell, Choice
from pcnbench.coverage import Coverage
from pcnbench.schema import Suite
from pcnbench.yamlsrc import Source


@dataclass
class LoadedSuite:
    """A validated suite: the schema object, the resolved grid points, and the source."""

    suite: Suite
    source: Source
    datasets: list[Choice]
    models: list[Choice]
    methods: list[Choice]
    sha256: str
    text: str
    cells: list[Cell] = field(default_factory=list)  # the expanded matrix (expanded once)
    # (dataset, model, method) grid points and what the method will reduce of that model
    # (`Method.plan_coverage`; absent where the method does not say)
    coverage: list[tuple[Choice, Choice, Choice, Coverage]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The suite's name."""
        return self.suite.name

    @property
    def file(self) -> str:
        """The suite file's path as given."""
        return self.source.file

    def output_dir(self, override: str | Path | None = None) -> Path:
        """Where results go: override, else the suite's `output`, else reports/<name>."""
        if override is not None:
            return Path(override)
        return Path(self.suite.output) if self.suite.output else Path("reports") / self.suite.name
